"""Build tutorials/lambda.ipynb from its cells (run: python tutorials/build_lambda.py)."""

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# EUBO vs rKL and the λ trade-off, with a flow posterior

Variational Bayesian Unlearning (Nguyen, Low & Jaillet, 2020) divides the forget likelihood
out of q(θ|D) only where q(θ|D) > λ·max q(θ|D) (the *adjusted likelihood*): λ = 0 is the plain
objective, which can run to regions where q(θ|D) is inaccurate ("catastrophic unlearning");
λ → 1 unlearns nothing. This notebook sweeps λ over the paper's grid for both objectives, EUBO
(KL(q_u‖target), mode-seeking, trained by SVI) and rKL (KL(target‖q_u), by importance
weighting), with a normalizing-flow q(θ|D) as the paper used, and plots VBU's metric: the
predictive KL to a NUTS retrain, averaged over the erased data D_e and the remaining data D_r.

The setting is the paper's banknote experiment when `../shared/data/banknote_authentication.csv`
is present (412 of 1372 points erased, prior N(0, 100² I)); otherwise a generated,
nearly separable data set of the same shape. `PYRO_UNLEARN_QUICK=1` shrinks the runs."""),
    code("""import os
import warnings

import matplotlib.pyplot as plt
import pandas as pd
import pyro
import torch
from sklearn.datasets import make_classification

import pyro_unlearn as pu
from pyro_unlearn.bench import banknote
from pyro_unlearn.diagnostics.compare import predictive_kl

QUICK = os.environ.get("PYRO_UNLEARN_QUICK") == "1"
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
pyro.set_rng_seed(0)

if banknote.DATA.exists():
    model, X, y, forget_ids, keep = banknote.setting(0)
    reference, _ = banknote.references(0)  # cached NUTS runs of the benchmark
    print("banknote: 412 of 1372 points erased")
else:
    features, labels = make_classification(
        n_samples=600, n_features=4, n_informative=3, n_redundant=0, class_sep=2.0, random_state=0
    )
    X = torch.cat([torch.as_tensor(features), torch.ones(600, 1)], -1)
    y = torch.as_tensor(labels, dtype=X.dtype)
    model = pu.BayesianLogisticRegression(prior_scale=100.0).model
    forget_ids = torch.randperm(600, generator=torch.Generator().manual_seed(0))[:180]
    keep = torch.ones(600, dtype=torch.bool)
    keep[forget_ids] = False
    reference = pu.retrain(model, X, y, forget_mask=forget_ids, plate="data",
                           num_samples=300 if QUICK else 1000, warmup_steps=300 if QUICK else 500,
                           progress_bar=False)
    print("generated data: 180 of 600 points erased")
Xe, ye = X[forget_ids], y[forget_ids]
ref_draws = reference.flat("w")[::2]"""),
    md("""## The full-data flow posterior

`pu.fit_flow` starts a flow at the Laplace approximation (z = b + L·F(ε)) and trains it by SVI:
the affine part is the Gaussian, the autoregressive layers learn the skew. Fit it generously:
every unlearning route divides the forget likelihood out of q(θ|D), so q's errors are what is
left (the benchmark measured EUBO at λ = 1e-3 closing 0.78 of the gap from a 2-layer flow
trained 1500 steps, and 0.86 from the 4-layer, 5000-step flow used here)."""),
    code("""q_full = pu.fit_flow(model, X, y, **(dict(banknote.FLOW, num_steps=300) if QUICK else banknote.FLOW))


def draws_of(guide, n=2000):
    with torch.no_grad():
        return pu.flow_posterior(guide).sample((n,))


def scores(draws):
    out = {}
    for part, mask in (("D_e", ~keep), ("D_r", keep)):
        kl = predictive_kl(model, {"w": ref_draws}, {"w": draws}, (X[mask], y[mask]))["y"]
        out[f"pred KL {part}"] = float(kl.mean())
    fitted = pu.moment_matched(draws)
    out["KL to ref"] = float(fitted.kl(pu.moment_matched(ref_draws)))
    return out


baseline = scores(draws_of(q_full))
baseline"""),
    md("""## The λ sweep

Each run starts from q(θ|D), sees only the erased data and returns a flow. Results the library
would refuse by default (rKL weights with Pareto k̂ above 0.7; EUBO running far beyond where the
forget set could move it, the catastrophic-unlearning guard) are kept here
(`on_unreliable="ignore"`), so that the whole curve shows; they carry `reliable=False`, and k̂ is
in the table."""),
    code("""lambdas = list(banknote.LAMBDAS)
rows = []
for lam in lambdas:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eubo = pu.unlearn(model, q_full, Xe, ye, method="eubo", lam=lam, on_unreliable="ignore",
                          num_steps=300 if QUICK else 2000, progress_bar=False)
        rkl = pu.unlearn(model, q_full, Xe, ye, method="rkl", lam=lam, on_unreliable="ignore",
                         num_samples=4000 if QUICK else 20000, num_steps=300 if QUICK else 1000)
    rows.append({"objective": "EUBO", "lam": f"{lam:g}", **scores(draws_of(eubo.guide)),
                 "seconds": eubo.seconds, "reliable": eubo.reliable})
    rows.append({"objective": "rKL", "lam": f"{lam:g}", **scores(draws_of(rkl.guide)),
                 "pareto k": rkl.diagnostics["pareto_k"], "seconds": rkl.seconds,
                 "reliable": rkl.reliable})
table = pd.DataFrame(rows)
table.map(lambda v: float(f"{v:.3g}") if isinstance(v, float) else v)"""),
    code("""fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
positions = range(len(lambdas))
for ax, part in zip(axes, ("D_e", "D_r"), strict=True):
    for objective, marker in (("EUBO", "o"), ("rKL", "s")):
        values = table[table.objective == objective][f"pred KL {part}"]
        ax.plot(positions, values, marker=marker, label=objective)
    ax.axhline(baseline[f"pred KL {part}"], color="grey", ls="--", label="do nothing")
    ax.set_xticks(list(positions), [f"{lam:g}" for lam in lambdas])
    ax.set_xlabel("λ")
    ax.set_yscale("log")
    ax.set_title(f"averaged predictive KL on {part}")
axes[0].legend()
fig.tight_layout()"""),
    md("""## What the paper claimed, what we measured

VBU reports, on banknote with a flow q, that EUBO and rKL with the adjusted likelihood come
close to retraining, that λ trades unlearning (small λ) against catastrophic unlearning, and
that rKL is more sensitive to λ. The table and plot above are this run's own numbers; the
benchmark's (`python -m pyro_unlearn.bench.banknote`, seed 0, numbers in
`pyro_unlearn/bench/results_banknote.md`) agree in shape:

- EUBO: λ = 0.5 barely moves (gap closed 0.05); λ = 0.1 closes 0.39, λ = 1e-3 0.89,
  λ = 1e-4 0.95 and λ = 1e-5 0.96, the best; λ = 1e-9 falls back to 0.92 and λ = 0 to 0.86
  as q_u drifts to where q(θ|D) is less accurate. How far λ = 0 drifts depends on the run:
  before the new flow layers' initialisation was seeded, one initialisation ran away
  (KL to the reference 2e7), which the catastrophic-unlearning guard refuses by default.
- rKL: worse than doing nothing at λ = 0.5 and 0.1 (−4.7, −1.4: inside the ball the draws are
  reweighted by 1/p(D_e|θ), outside they are not, and the weighted moments follow that cut);
  0.80 at 1e-3, 0.96 at 1e-5 (k̂ 0.48), 0.91 at 1e-9 and 0 (k̂ 0.59).
- With a smaller flow (2 layers, 1500 steps) the same sweep peaked at 0.78 (EUBO, λ = 1e-3)
  and λ ≤ 1e-5 ran away: how small λ can go depends on how accurate q(θ|D) is.
- A flow retrained on D_r closes 0.98; SMC from the flow at λ = 1e-5 with 2000 particles
  closes 0.98 at 0.05 of the flow retrain's time (0.89 on a second forget set;
  `docs/flows.md`).
"""),
]
notebook = nbf.v4.new_notebook(
    cells=cells,
    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
)
nbf.write(notebook, "tutorials/lambda.ipynb")
