r"""Benchmark: Bayesian logistic regression on breast_cancer, 10% of patients forgotten at random.

Every method starts from a full-data posterior and sees only the forget set; each row
reports its wall time, the KL of its (moment-matched) Gaussian to a NUTS reference on
the retained data, :math:`\mathrm{KL}(q\,\|\,\mathrm{ref})`, and the gap closed relative to
doing nothing. The NUTS reference (2 chains, 1000 warm-up + 1000 draws, dense mass,
:math:`\hat R` and ESS recorded) is cached next to this file, so it is computed once.
Speed-ups are measured in the same run against SVI and Laplace refits on the retained data.

Run: ``python -m pyro_unlearn.bench.bayes`` (``--quick`` for fewer SVI steps).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from ..api import unlearn
from ..datasets import breast_cancer
from ..diagnostics.metrics import gap_closed, moment_matched
from ..guides import flat_gaussian
from ..laplace import fit_laplace
from ..models import BayesianLogisticRegression
from ..references.conjugate import GaussianPosterior
from ..references.retrain import retrain

CACHE = Path(__file__).parent / "cache"
PRIOR_SCALE = 1.0
FRACTION = 0.1


def _kl_to(reference: GaussianPosterior, guide) -> float:
    g = flat_gaussian(guide)
    return float(GaussianPosterior(g.loc, g.precision_matrix()).kl(reference))


def _svi_fit(model, X, y, steps: int, seed: int):
    """SVI with an AutoMultivariateNormal (the same family as EUBO's q_u), timed."""
    start = time.perf_counter()
    ref = retrain(
        model,
        X,
        y,
        forget_mask=torch.zeros(len(y), dtype=torch.bool),
        plate="data",
        method="svi",
        svi_steps=steps,
        lr=0.01,
        num_samples=4000,
        seed=seed,
    )
    return moment_matched(ref.flat("w")), time.perf_counter() - start


def run(
    seed: int = 0, quick: bool = False, cache_dir: Path = CACHE, progress: bool = False
) -> dict:
    """Run the benchmark; return ``{"rows": [...], "reference": {...}, ...}``."""
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    X, y = breast_cancer()
    model = BayesianLogisticRegression(PRIOR_SCALE).model
    n = len(y)
    forget_ids = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[
        : int(round(FRACTION * n))
    ]
    keep = torch.ones(n, dtype=torch.bool)
    keep[forget_ids] = False
    Xe, ye = X[forget_ids], y[forget_ids]

    reference = retrain(
        model,
        X,
        y,
        forget_mask=forget_ids,
        plate="data",
        method="nuts",
        num_samples=1000,
        warmup_steps=1000,
        num_chains=2,
        seed=seed,
        progress_bar=progress,
        cache=cache_dir / f"breast_cancer_nuts_seed{seed}.nc",
    )
    ref = moment_matched(reference.flat("w"))
    svi_steps = 1000 if quick else 3000

    start = time.perf_counter()
    laplace_full = fit_laplace(model, X, y)
    laplace_fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    laplace_refit = fit_laplace(model, X[keep], y[keep])
    laplace_refit_seconds = time.perf_counter() - start
    svi_refit, svi_refit_seconds = _svi_fit(model, X[keep], y[keep], svi_steps, seed)

    nothing = _kl_to(ref, laplace_full)
    rows = [
        {"method": "do nothing (full-data Laplace)", "seconds": 0.0, "kl": nothing},
        {
            "method": "refit: Laplace on D_r",
            "seconds": laplace_refit_seconds,
            "kl": _kl_to(ref, laplace_refit),
        },
        {
            "method": f"refit: SVI MVN on D_r ({svi_steps} steps)",
            "seconds": svi_refit_seconds,
            "kl": float(svi_refit.kl(ref)),
        },
        {"method": "refit: NUTS on D_r (reference)", "seconds": reference.seconds, "kl": 0.0},
    ]
    methods = {
        "laplace (1 Newton step)": dict(method="laplace"),
        "laplace (ggn)": dict(method="laplace", hessian="ggn"),
        "laplace (5 Newton steps, clip)": dict(method="laplace", newton_steps=5, psd="clip"),
        "eubo (lam=0, published)": dict(method="eubo", progress_bar=progress, seed=seed),
        "eubo (lam=1e-5)": dict(method="eubo", lam=1e-5, progress_bar=progress, seed=seed),
        "eubo (init=laplace)": dict(
            method="eubo", init="laplace", progress_bar=progress, seed=seed
        ),
        "rkl (q(theta|D) proposal, published)": dict(
            method="rkl", on_degenerate="ignore", seed=seed
        ),
        "rkl (lam=1e-5)": dict(method="rkl", lam=1e-5, on_degenerate="ignore", seed=seed),
        "rkl (laplace proposal)": dict(
            method="rkl", proposal="laplace", on_degenerate="ignore", seed=seed
        ),
    }
    for name, options in methods.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = unlearn(model, laplace_full, Xe, ye, **options)
            except Exception as error:  # a method that fails is a row, not a crash
                rows.append(
                    {
                        "method": name,
                        "seconds": float("nan"),
                        "kl": float("nan"),
                        "error": str(error)[:120],
                    }
                )
                continue
        row = {"method": name, "seconds": result.seconds, "kl": _kl_to(ref, result.guide)}
        for key in ("ess_raw", "pareto_k", "num_steps", "min_eigenvalue"):
            if key in result.diagnostics:
                row[key] = result.diagnostics[key]
        rows.append(row)
    for row in rows:
        row["gap_closed"] = gap_closed(row["kl"], nothing)
        row["speedup_vs_svi_refit"] = (
            svi_refit_seconds / row["seconds"] if row["seconds"] else float("inf")
        )
    return {
        "setting": f"breast_cancer logistic regression, prior N(0, {PRIOR_SCALE}^2 I), 31 weights, {len(forget_ids)} of {n} forgotten (seed {seed})",
        "reference": {
            "method": "nuts",
            **{k: v for k, v in reference.diagnostics.items()},
            "seconds": reference.seconds,
        },
        "full_fit_seconds": laplace_fit_seconds,
        "rows": rows,
    }


def markdown(results: dict) -> str:
    lines = [
        f"**{results['setting']}.** NUTS reference: r-hat {results['reference']['rhat_max']:.3f}, "
        f"bulk ESS {results['reference']['ess_bulk_min']:.0f}, trustworthy: {bool(results['reference']['trustworthy'])}.",
        "",
        "| method | seconds | KL(q ‖ NUTS ref) | gap closed | speed-up vs SVI refit | notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results["rows"]:
        notes = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in r.items()
            if k in ("ess_raw", "pareto_k", "num_steps", "min_eigenvalue", "error")
        )
        lines.append(
            f"| {r['method']} | {r['seconds']:.3g} | {r['kl']:.3g} | {r['gap_closed']:.2f} | {r['speedup_vs_svi_refit']:.3g} | {notes} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results = run(args.seed, args.quick, progress=True)
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
