"""The ``pyro-unlearn`` command line: ``pyro-unlearn demo``.

The demo fits Bayesian linear regression on scikit-learn's diabetes data with Pyro
(``AutoLaplaceApproximation`` trained by SVI), forgets a random fraction of the
patients with Laplace unlearning, and compares the result with the exact posterior of
the retained data (closed form), printing how much of the gap it closed and how fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyro
import torch
from tqdm.auto import trange

from .api import unlearn
from .ledger import ForgetLedger
from .references import BayesianLinearRegression, GaussianPosterior


class UserError(Exception):
    """A bad argument: reported in one line, without a traceback."""


def _diabetes() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X, y = torch.tensor(X), torch.tensor(y)
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def _fit_laplace(model, X, y, steps: int, progress: bool, desc: str):
    guide = pyro.infer.autoguide.AutoLaplaceApproximation(model)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), pyro.infer.Trace_ELBO())
    for _ in trange(steps, desc=desc, disable=not progress):
        svi.step(X, y)
    return guide.laplace_approximation(X, y)


def run_demo(
    out: Path | None, seed: int, fraction: float, quick: bool, progress: bool = True
) -> dict:
    """Run the demo; return (and optionally write) its results."""
    if not 0 < fraction < 1:
        raise UserError(f"--fraction must lie in (0, 1), got {fraction}")
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    X, y = _diabetes()
    blr = BayesianLinearRegression(noise_scale=0.7, prior_scale=1.0)
    steps = 300 if quick else 1500
    full = _fit_laplace(blr.model, X, y, steps, progress, "fit on all data (SVI + Laplace)")
    n = len(y)
    forget_ids = torch.randperm(n)[: int(round(fraction * n))]
    ledger = ForgetLedger(n)
    result = unlearn(blr.model, full, X, y, mask=forget_ids, plate="data", ledger=ledger)

    start = time.perf_counter()
    retained = blr.posterior(X[result.ledger.retained_mask], y[result.ledger.retained_mask])
    retrain_seconds = time.perf_counter() - start
    start = time.perf_counter()
    kept = result.ledger.retained_mask
    _fit_laplace(blr.model, X[kept], y[kept], steps, progress, "refit on retained data (SVI)")
    refit_seconds = time.perf_counter() - start

    def as_gaussian(guide) -> GaussianPosterior:
        cov = (guide.scale[:, None] * guide.scale_tril) @ (
            guide.scale[:, None] * guide.scale_tril
        ).T
        return GaussianPosterior(guide.loc.detach(), torch.linalg.inv(cov))

    kl_nothing = float(as_gaussian(full).kl(retained))
    unlearned = GaussianPosterior(result.guide.loc, result.guide.precision)
    kl_unlearned = max(float(unlearned.kl(retained)), 0.0)  # round-off can go below 0
    results = {
        "data": "diabetes (sklearn), Bayesian linear regression, 10 weights",
        "num_data": n,
        "num_forgotten": len(forget_ids),
        "kl_to_retrained": {"do_nothing": kl_nothing, "laplace": kl_unlearned},
        "gap_closed": 1 - kl_unlearned / kl_nothing,
        "seconds": {
            "laplace_unlearning": result.seconds,
            "svi_refit": refit_seconds,
            "closed_form": retrain_seconds,
        },
        "speedup_vs_svi_refit": refit_seconds / result.seconds,
        "min_eigenvalue_H_r": result.diagnostics["min_eigenvalue"],
    }
    if out is not None:
        _write(out, results)
    return results


def _write(out: Path, results: dict) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        (out / "report.md").write_text(_report(results))
    except OSError as error:
        raise UserError(f"cannot write to --out {out}: {error.strerror}") from error


def _report(r: dict) -> str:
    kl = r["kl_to_retrained"]
    return "\n".join(
        [
            "# pyro-unlearn demo",
            "",
            f"Forgot {r['num_forgotten']} of {r['num_data']} patients ({r['data']}).",
            "",
            "| posterior | KL to exact retrained posterior | seconds |",
            "|---|---|---|",
            f"| original (do nothing) | {kl['do_nothing']:.4g} | 0 |",
            f"| Laplace unlearning | {kl['laplace']:.3g} | {r['seconds']['laplace_unlearning']:.3g} |",
            f"| SVI refit on retained data | - | {r['seconds']['svi_refit']:.3g} |",
            "",
            f"Gap closed: {r['gap_closed']:.6f}; speed-up vs SVI refit: {r['speedup_vs_svi_refit']:.0f}x.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyro-unlearn", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="forget data from a fitted Pyro model, compare with retraining"
    )
    demo.add_argument(
        "--out", type=Path, default=None, help="folder for report.md and results.json"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--fraction", type=float, default=0.1, help="fraction of the data to forget")
    demo.add_argument("--quick", action="store_true", help="fewer optimisation steps")
    args = parser.parse_args(argv)
    try:
        results = run_demo(args.out, args.seed, args.fraction, args.quick)
    except UserError as error:
        print(f"pyro-unlearn: error: {error}", file=sys.stderr)
        return 2
    print(_report(results))
    if args.out is not None:
        print(f"wrote {args.out / 'report.md'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
