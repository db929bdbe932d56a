"""Build tutorials/samples.ipynb from its cells (run: python tutorials/build_samples.py)."""

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# Unlearning MCMC draws: PSIS, its Pareto k̂, and sequential unlearning

A posterior given as draws θ_s ~ p(θ|D) (NUTS, say) is unlearned by importance reweighting:
p(θ|D_r) ∝ p(θ|D)/p(D_e|θ), so weights w_s ∝ 1/p(D_e|θ_s) turn the draws into draws of the
retrained posterior. It is what PSIS-LOO does for one point, here for a whole forget set.
Pareto smoothing (PSIS) stabilises the weights, and the Pareto k̂ of their tail says whether
to trust them: k̂ > 0.7 means the forget set moved the posterior further than the draws
reach. When that happens, `method="smc"` removes the forget set in steps, resampling and
moving the particles by Metropolis steps in between.

The model is conjugate (Bayesian linear regression on scikit-learn's diabetes data), so the
exact retrained posterior is known and every number below is checked against it.
`PYRO_UNLEARN_QUICK=1` runs it with fewer draws."""),
    code("""import os
import warnings

import matplotlib.pyplot as plt
import pyro
import torch
from pyro.infer import MCMC, NUTS

import pyro_unlearn as pu
from pyro_unlearn.datasets import diabetes

QUICK = os.environ.get("PYRO_UNLEARN_QUICK") == "1"
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
pyro.set_rng_seed(0)

X, y = diabetes()
blr = pu.BayesianLinearRegression(noise_scale=0.7, prior_scale=1.0)
model = blr.model
mcmc = MCMC(NUTS(model), num_samples=300 if QUICK else 2000, warmup_steps=200 if QUICK else 500,
            disable_progbar=True)
mcmc.run(X, y)
print("NUTS draws:", mcmc.get_samples()["w"].shape)"""),
    md("""## 1. A small request: 5% of the patients, chosen at random"""),
    code("""def z_scores(draws_mean, forget_ids, num_draws):
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[forget_ids] = False
    exact = blr.posterior(X[keep], y[keep])
    sd = exact.covariance.diagonal().sqrt()
    return ((draws_mean - exact.mean) / sd).abs().max().item(), exact

small = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:22]
result = pu.unlearn(model, mcmc, X[small], y[small], method="psis")
error, _ = z_scores(result.guide.mean("w"), small, result.guide.num_samples)
print(f"Pareto k = {result.diagnostics['pareto_k']:.2f}, ESS = {result.diagnostics['ess']:.0f}")
print(f"largest error of the reweighted mean: {error:.3f} posterior sd")"""),
    md("""## 2. A large, structured request: the 40% of patients with the highest target

These points pull the posterior in one direction; removing them moves it several standard
deviations, beyond what draws of p(θ|D) cover. PSIS says so: k̂ is far above 0.7. By default
that is an error (`DegenerateWeightsError`: a deletion that did not work must not look done);
`on_unreliable="warn"` returns the result flagged, with a warning naming the number."""),
    code("""large = y.argsort(descending=True)[: int(0.4 * len(y))]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = pu.unlearn(model, mcmc, X[large], y[large], method="psis", on_unreliable="warn")
print("reliable:", result.reliable)
print("warning:", str(caught[0].message)[:120] if caught else None)
error, exact = z_scores(result.guide.mean("w"), large, result.guide.num_samples)
print(f"Pareto k = {result.diagnostics['pareto_k']:.2f}, ESS = {result.diagnostics['ess']:.1f}")
print(f"largest error of the reweighted mean: {error:.2f} posterior sd")"""),
    md("""## 3. Sequential unlearning when one-shot reweighting fails

`method="smc"` starts from a fitted posterior *with a density* (here the exact Gaussian
posterior; in practice a Laplace, SVI or flow guide), removes the forget set's likelihood
factors in adaptive steps that keep the effective sample size above half the particles, and
after each step resamples and runs Metropolis moves on the current target
q(θ|D)/p(D_e, removed so far|θ). Only the forget data are used. With an exact q(θ|D) the plain
target (`lam=0`) is the retrained posterior."""),
    code("""post = blr.posterior(X, y)
q_full = pu.LaplaceGuide.from_precision(model, post.mean, post.precision, model_args=(X, y))
smc = pu.unlearn(model, q_full, X[large], y[large], method="smc", lam=0.0,
                 num_particles=1000 if QUICK else 4000)
for step in smc.diagnostics["steps"]:
    print("factors {:6.1f} -> {:6.1f}  ESS {:5.0f}  k {:.2f}  acceptance {:.2f}".format(
        *step["chunk"], step["ess"], step["pareto_k"], step["acceptance"]))
error, _ = z_scores(smc.guide.mean("w"), large, smc.guide.num_samples)
print(f"largest error of the SMC mean: {error:.3f} posterior sd")"""),
    code("""draws_psis = result.guide.resample(2000)["w"][:, 2]
draws_smc = smc.guide.samples["w"][:, 2]
exact_draws = exact.mean[2] + exact.covariance[2, 2].sqrt() * torch.randn(20000)
fig, ax = plt.subplots(figsize=(6, 3))
for label, draws in [("exact retrained", exact_draws), ("PSIS", draws_psis), ("SMC", draws_smc),
                     ("original NUTS", mcmc.get_samples()["w"][:, 2])]:
    ax.hist(draws.numpy(), bins=60, density=True, histtype="step", label=label)
ax.set_xlabel("coefficient of feature 3 (bmi)")
ax.legend()
fig.tight_layout()"""),
    md("""## What was claimed, what we measured

*PSIS* (Vehtari, Gelman & Gabry, 2017; Vehtari et al., 2024) claims importance sampling with
Pareto smoothing is reliable when k̂ < 0.7 and unreliable above it. Measured here: a 5%
random request gives k̂ = 0.15 and a mean within 0.02 posterior sd of the exact answer; a
40% structured request gives k̂ = 1.3 (ESS 4 of 2000) and an error of 1.2 posterior sd, as
the diagnostic warned; SMC brings it back to 0.03 sd. Sequential unlearning recovers the exact retrained
posterior in that second case (the test suite checks mean and covariance within Monte Carlo
error, `tests/methods/test_smc.py`).

On the harder banknote setting of Variational Bayesian Unlearning (`python -m
pyro_unlearn.bench.banknote`, 412 of 1372 points) PSIS of NUTS draws closed 87% of the gap to
a NUTS retrain in 0.06 s but with k̂ = 0.83 (flagged), and SMC from an accurately fitted flow
q(θ|D) with λ = 1e-5 closed 93% in 0.05 of the NUTS time (k̂ ≤ 0.47 at every step); from a
Laplace q(θ|D) it was worse than doing nothing: the divided target is only as good as q.
"""),
]
notebook = nbf.v4.new_notebook(
    cells=cells,
    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
)
nbf.write(notebook, "tutorials/samples.ipynb")
