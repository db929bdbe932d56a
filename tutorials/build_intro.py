"""Build tutorials/intro.ipynb from its cells (run: python tutorials/build_intro.py)."""

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# Forgetting data in a fitted Pyro model

This tutorial wraps a Pyro model with the `forget` and `anchor` effect handlers, forgets a
subset of the data with SVI (the EUBO of Variational Bayesian Unlearning) and with
`pyro_unlearn.unlearn`, and checks the result in ArviZ against a NUTS reference retrained on
the remaining data.

Set the environment variable `PYRO_UNLEARN_QUICK=1` to run it with fewer steps and draws
(that is how the test suite executes it)."""),
    code("""import os

import pyro
import torch
from pyro.infer import SVI

import pyro_unlearn as pu
from pyro_unlearn.datasets import diabetes

QUICK = os.environ.get("PYRO_UNLEARN_QUICK") == "1"
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
pyro.set_rng_seed(0)

X, y = diabetes()  # 442 patients, 10 standardised features
blr = pu.BayesianLinearRegression(noise_scale=0.7, prior_scale=1.0)
model = blr.model  # w ~ N(0, I); y_i ~ N(x_i . w, 0.7^2) in plate "data"
forget_ids = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:44]
keep = torch.ones(len(y), dtype=torch.bool)
keep[forget_ids] = False
print(f"forgetting {len(forget_ids)} of {len(y)} patients")"""),
    md("""## 1. The full-data posterior

Any Pyro guide will do; here an `AutoMultivariateNormal` fitted by SVI (`pu.fit_svi` keeps its
parameters module-local, so the global param store stays empty). After Adam, `fit_svi` takes a
few natural-gradient steps to the fixed point of the ELBO: removing the forget set's
contribution later (the default EUBO step) is exact only from there. On this conjugate model
that fixed point is the exact posterior."""),
    code("""q_full = pu.fit_svi(model, X, y, num_steps=500 if QUICK else 3000)
print(pu.flat_gaussian(q_full).loc)"""),
    md("""## 2. The handlers

`forget(model)` multiplies the observed sites' log-likelihood by -1 (run on the forget rows),
and `anchor(model, guide=q_full)` replaces the prior by the fitted posterior. By Bayes,
p(w | D_r) ∝ p(w | D) / p(D_e | w), so `anchor(forget(model))` run on D_e is the unnormalised
retrained posterior, and its negative ELBO under a guide q_u is the EUBO
U(q_u) = E_q[log p(D_e|w)] + KL(q_u || q_full). Both modes of `forget` give the same term:"""),
    code("""w = pu.flat_gaussian(q_full).loc
fixed = pyro.poutine.condition(pu.forget(model), {"w": w})  # forget first, then fix w
sliced = pyro.poutine.trace(fixed).get_trace(X[forget_ids], y[forget_ids])
masked_model = pyro.poutine.condition(pu.forget(model, mask=forget_ids, plate="data"), {"w": w})
masked = pyro.poutine.trace(masked_model).get_trace(X, y)
sliced.compute_log_prob(), masked.compute_log_prob()
print(float(sliced.nodes["y"]["log_prob_sum"]), float(masked.nodes["y"]["log_prob_sum"]))"""),
    md("""## 3. SVI-based forgetting with Pyro's own machinery

`pu.EUBO(q_full)` is a `pyro.infer.ELBO`: hand it to `SVI` with any guide for the unlearned
posterior, trained on the forget rows only."""),
    code("""def guide_u(X, y=None):
    loc = pyro.param("loc_u", pu.flat_gaussian(q_full).loc.clone())
    scale = pyro.param("scale_u", 0.05 * torch.ones(10), constraint=pyro.distributions.constraints.positive)
    pyro.sample("w", pyro.distributions.Normal(loc, scale).to_event(1))

loss = pu.EUBO(q_full, num_particles=16, vectorize_particles=True, max_plate_nesting=1)
svi = SVI(model, guide_u, pyro.optim.ClippedAdam({"lr": 0.02, "lrd": 0.995}), loss)
for _ in range(200 if QUICK else 1000):
    value = svi.step(X[forget_ids], y[forget_ids])
print("EUBO after SVI:", value)
pyro.clear_param_store()"""),
    md("""## 4. `unlearn`: one call per method

Every method returns an `UnlearnResult` whose `guide` works with `Predictive`; the ledger
refuses a second deletion of the same patients."""),
    code("""ledger = pu.ForgetLedger(len(y))
results = {
    method: pu.unlearn(model, q_full, X[forget_ids], y[forget_ids], method=method, ids=forget_ids, ledger=ledger)
    for method in ("laplace", "eubo")
}
for result in results.values():
    print(result)
try:
    pu.unlearn(model, results["eubo"].guide, X[forget_ids[:3]], y[forget_ids[:3]], ids=forget_ids[:3])
except pu.RepeatedDeletionError as error:
    print("refused:", error)"""),
    md("""## 5. The check: NUTS on the retained patients, compared in ArviZ

`retrain` runs NUTS on `retain(model)` (the forget rows masked out of the likelihood) and flags
a reference whose r-hat or ESS fails; the closed form of this conjugate model is the exact
answer, so we can see both."""),
    code("""draws = 300 if QUICK else 1000
reference = pu.retrain(model, X, y, forget_mask=forget_ids, plate="data", method="nuts",
                       num_samples=draws, warmup_steps=draws, num_chains=2, progress_bar=False)
print(reference.diagnostics)
exact = blr.posterior(X[keep], y[keep])
for name, result in results.items():  # against the closed form
    g = pu.flat_gaussian(result.guide)
    print(f"{name}: KL to the exact retrained posterior {float(g.kl(exact)):.2e}")
frame = pu.compare_posteriors(
    {"original": q_full, "laplace": results["laplace"], "eubo": results["eubo"], "retrained": reference},
    model, X, y, forget_mask=forget_ids, num_samples=2000,
)
frame"""),
    code("""figures = pu.plot_posteriors(
    {"original": q_full, "eubo": results["eubo"], "retrained": reference},
    model, X, y, forget_mask=forget_ids, num_samples=1000,
)
figures["forest"]"""),
    md("""## What the paper claimed, what we measured

*Variational Bayesian Unlearning* (Nguyen, Low & Jaillet, 2020) showed that minimising the EUBO
from q(w|D), with the forget data only, approaches the retrained posterior, and that on
linear-Gaussian models its optimum is the exact retrained posterior.

Measured here: on this linear-Gaussian model the Laplace downdate and the default EUBO step
(one natural-gradient step) coincide, as the theory says, and land on the exact retrained
posterior (KL printed above), because `fit_svi` ended at the ELBO's fixed point; what remains
against NUTS in the table is the reference's own Monte Carlo error. On the harder breast_cancer
logistic regression of the benchmark (`python -m pyro_unlearn.bench.bayes`) the published Adam
EUBO ran away (KL to NUTS 581, from 2.1 before unlearning) while the default step closed 83% of
the gap at over 50x the speed of SVI retraining; from a fit stopped after Adam (0.18 nats off
the fixed point) the same step closed 74%.
"""),
]
notebook = nbf.v4.new_notebook(
    cells=cells,
    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
)
nbf.write(notebook, "tutorials/intro.ipynb")
