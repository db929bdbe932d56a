r"""Benchmark: the banknote setting of Variational Bayesian Unlearning, with non-Gaussian routes.

Logistic regression on UCI banknote (4 raw features + bias, prior :math:`\mathcal N(0, 100^2 I)`),
412 of 1372 points erased at random. The data are nearly separable, so the retrained
posterior is skewed and every Gaussian route stops short. Each row reports:

* truth-relative gap closed :math:`1 - \mathrm{KL}(q_u\|\mathrm{ref})/\mathrm{KL}(q_D\|\mathrm{ref})`,
  with moment-matched Gaussians and a NUTS reference on :math:`D_r`; :math:`q_D` is the
  full-data posterior in the method's own family (Laplace, flow, or NUTS draws);
* the energy distance to the reference draws (it sees skew; the reference's own noise
  floor is printed);
* the VBU averaged predictive KL on :math:`D_e` and :math:`D_r`;
* time, and its ratio to a NUTS retrain and to a flow retrain, measured in the same run.

The data file lives beside the project (``../shared/data/banknote_authentication.csv``):
the benchmark is skipped when it is absent. NUTS runs are cached next to this file.

Run: ``python -m pyro_unlearn.bench.banknote`` (``--quick``: fewer flow steps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..models import BayesianLogisticRegression
from ..references.retrain import retrain

CACHE = Path(__file__).parent / "cache"
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "banknote_authentication.csv"
PRIOR_SCALE = 100.0
NUM_FORGET = 412
LAMBDAS = (0.5, 0.1, 1e-3, 1e-5, 1e-9, 0.0)


def load(path: Path = DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """Banknote: 1372 x (4 raw features + a ones column), 0/1 labels."""
    import numpy as np

    table = np.loadtxt(path, delimiter=",", skiprows=1)
    X = torch.as_tensor(table[:, :4], dtype=torch.get_default_dtype())
    X = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], -1)
    return X, torch.as_tensor(table[:, 4], dtype=X.dtype)


def setting(seed: int = 0, path: Path = DATA):
    """``(model, X, y, forget_ids, keep)`` of the VBU banknote experiment."""
    X, y = load(path)
    model = BayesianLogisticRegression(PRIOR_SCALE).model
    forget_ids = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:NUM_FORGET]
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[forget_ids] = False
    return model, X, y, forget_ids, keep


def references(seed: int = 0, progress: bool = False, cache_dir: Path = CACHE):
    """NUTS on the retained data (the reference) and on the full data (PSIS's draws)."""
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    model, X, y, forget_ids, _ = setting(seed)
    options = dict(num_samples=2000, warmup_steps=1000, num_chains=2, progress_bar=progress)
    retained = retrain(
        model,
        X,
        y,
        forget_mask=forget_ids,
        plate="data",
        seed=seed,
        cache=cache_dir / f"banknote_nuts_retained_seed{seed}.nc",
        **options,
    )
    full = retrain(
        model,
        X,
        y,
        forget_mask=torch.tensor([], dtype=torch.long),
        plate="data",
        seed=seed + 100,
        cache=cache_dir / f"banknote_nuts_full_seed{seed}.nc",
        **options,
    )
    return retained, full


if __name__ == "__main__":
    argparse.ArgumentParser().parse_args()
    for ref in references(progress=True):
        print(ref.seconds, ref.diagnostics)
