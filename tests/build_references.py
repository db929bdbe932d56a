"""Cached NUTS references for the non-conjugate models of ``user_models.py``.

``python tests/build_references.py`` (from the repository root) recomputes them into
``tests/data/references/``: NUTS on the retained data (the retraining reference) and on the
full data (the draws PSIS unlearning reweights), 2 chains of 1000 draws after 1000 warmup
steps (500 and 500 for the BNN, whose trees run to full depth). The tests load them through ``pyro_unlearn.retrain(..., cache=...)``, which checks that
each file was computed for the same model, data, forget set and settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).parent))

import user_models as um  # noqa: E402

import pyro_unlearn as pu  # noqa: E402

REFERENCES = Path(__file__).parent / "data" / "references"
SETTINGS = dict(num_samples=1000, warmup_steps=1000, num_chains=2)


def mixture_init():
    """Every chain in the label order of the data (the mixture is symmetric in its labels)."""
    return pyro.infer.autoguide.init_to_value(
        values={"locs": torch.tensor([-2.0, 2.5]), "weights": torch.tensor([0.4, 0.6])}
    )


def cases() -> dict:
    """name -> (model, args, forget ids, plate, init_strategy)."""
    X, y = um.poisson_data()
    data = um.mixture_data()
    return {
        "noncentred": (
            um.schools_noncentred,
            (8, um.SCHOOLS_SIGMA, um.SCHOOLS_Y),
            torch.tensor([0]),
            "J",
            None,
        ),
        "no_plate": (
            um.schools_no_plate,
            (um.SCHOOLS_SIGMA, um.SCHOOLS_Y),
            torch.tensor([0]),
            -1,
            None,
        ),
        "poisson": (um.poisson_glm, (X, y), X[:, 1].argsort()[-10:], "data", None),
        "mixture": (um.mixture, (data,), data.argsort()[-10:], "data", mixture_init()),
    }


def reference(
    name: str, which: str = "retained", progress: bool = False
) -> pu.references.Reference:
    """The cached reference ``which`` ("retained" or "full") of case ``name``."""
    model, args, forget, plate, init = cases()[name]
    mask = forget if which == "retained" else torch.tensor([], dtype=torch.long)
    return pu.retrain(
        model,
        *args,
        forget_mask=mask,
        plate=plate,
        seed=0 if which == "retained" else 100,
        progress_bar=progress,
        cache=REFERENCES / f"{name}_{which}.nc",
        init_strategy=init,
        **SETTINGS,
    )


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    for name in sys.argv[1:] or cases():
        for which in ("retained", "full"):
            ref = reference(name, which, progress=False)
            d = ref.diagnostics
            print(
                f"{name:12s} {which:9s} {ref.seconds:7.1f} s  r-hat {d['rhat_max']:.4f}  "
                f"bulk ESS {d['ess_bulk_min']:.0f}  tail ESS {d['ess_tail_min']:.0f}  "
                f"{'ok' if ref.trustworthy else d['problems']}"
            )
