"""The ``pyro-unlearn`` command line: ``demo`` and ``bench``.

``pyro-unlearn demo`` tells the whole story on Bayesian logistic regression (scikit-learn's
breast_cancer): fit the posterior on all patients with SVI, forget a random fraction of
them with Laplace, EUBO and rKL unlearning, retrain with NUTS on the rest as the reference
(cached after the first run), compare in ArviZ and write a report folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from . import _rng
from .errors import BadRequestError

CACHE = Path(__file__).parent / "bench" / "cache"


class UserError(Exception):
    """A bad argument: reported in one line, without a traceback."""


def _check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create --out {out}: {error.strerror}") from error
    if not os.access(out, os.W_OK):
        raise UserError(f"--out {out} is not writable")


def _device(name: str) -> torch.device:
    """The device that ``--device`` names; every tensor is then made there (``with device:``)."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available here")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"--device {name}: {error}") from error
    if device.type not in ("cpu", "cuda"):
        raise UserError(
            f"--device {name}: choose cpu or cuda (a {device.type} device holds no data)"
        )
    return device


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise UserError(f"--seed must be an integer in [0, 2**63), got {seed}")


def _frame_markdown(frame) -> str:
    columns = list(frame.columns)
    lines = ["| posterior | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, row in frame.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.4g}" for c in columns) + " |")
    return "\n".join(lines)


def run_demo(
    out: Path,
    seed: int = 0,
    fraction: float = 0.1,
    quick: bool = False,
    progress: bool = True,
    lam: float | str | None = None,
) -> dict:
    """Run the demo and write ``report.md``, ``results.json``, plots and InferenceData to ``out``.

    ``lam`` is EUBO's and rKL's adjusted-likelihood threshold: their defaults when None, a
    number, or ``"certified"`` (chosen by the certificate on the retained data).
    """
    import matplotlib

    matplotlib.use("Agg")

    from . import (
        arviz_compat,
        compare_posteriors,
        fit_svi,
        plot_posteriors,
        retrain,
        to_inference_data,
        unlearn,
    )
    from .datasets import breast_cancer
    from .ledger import ForgetLedger
    from .models import BayesianLogisticRegression

    if not 0 < fraction < 1:
        raise UserError(f"--fraction must lie in (0, 1), got {fraction}")
    _check_seed(seed)
    if int(round(fraction * 569)) < 1:  # breast_cancer's 569 patients: checked before fitting
        raise UserError(
            f"--fraction {fraction} forgets no patient of 569: use at least {0.5 / 569:.2g}"
        )
    lam = _check_lam(lam)
    _check_out(out)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    X, y = breast_cancer()
    model = BayesianLogisticRegression(prior_scale=1.0).model
    n = len(y)
    forget_ids = _rng.permutation(n, _rng.generator(seed))[: int(round(fraction * n))]
    steps = 1000 if quick else 3000
    # --quick stops after Adam: the natural-gradient finish (about 4.5 s a step here) is
    # what makes EUBO's one-step removal exact, and the full run keeps it
    natural_steps = 0 if quick else 20
    finish = (
        "Adam only (--quick; the full run adds the natural-gradient finish)"
        if quick
        else "Adam + natural-gradient finish"
    )
    print(
        f"1/5 fitting q(theta|D) on all {n} patients (SVI, AutoMultivariateNormal, {steps} steps: {finish})"
    )
    start = time.perf_counter()
    full = fit_svi(model, X, y, num_steps=steps, seed=seed, natural_steps=natural_steps)
    fit_seconds = time.perf_counter() - start

    print(f"2/5 forgetting {len(forget_ids)} patients: Laplace, EUBO and rKL unlearning")
    ledger = ForgetLedger(n)
    keep = ledger.after(forget_ids).retained_mask
    adjusted = {} if lam is None else {"lam": lam}
    if lam == "certified":  # the certificate reads the retained data: 8 lambdas, 8 certificates
        print("    lam='certified': EUBO and rKL at every lambda, kept by the certificate on D_r")
        adjusted.update(retained=(X[keep], y[keep]), on_unreliable="warn")
    results = {}
    for name, options in {
        "laplace": dict(method="laplace", psd="clip"),
        "eubo": dict(method="eubo", seed=seed, **adjusted),
        "rkl": dict(method="rkl", seed=seed, **{"on_unreliable": "warn", **adjusted}),
    }.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # only the forget rows are passed: the retained data are never touched
            results[name] = unlearn(
                model, full, X[forget_ids], y[forget_ids], ids=forget_ids, ledger=ledger, **options
            )
        results[name].diagnostics["warnings"] = [
            str(w.message) for w in caught if issubclass(w.category, UserWarning)
        ]

    print(
        "3/5 retraining references on the retained patients (NUTS: cached after the first run; SVI)"
    )
    cache = CACHE if os.access(CACHE, os.W_OK) else out / "cache"
    name = f"breast_cancer_nuts_seed{seed}_frac{fraction}_draws{{}}_chains4.nc"
    shipped = [CACHE / name.format(1000), cache / name.format(1000)]
    # the shipped 1000-draw reference serves --quick too; otherwise --quick computes 500
    samples = 1000 if not quick or any(p.exists() for p in shipped) else 500
    cached = [p for p in (*shipped, cache / name.format(samples)) if p.exists()]
    reference = retrain(
        model,
        X,
        y,
        forget_mask=forget_ids,
        plate="data",
        method="nuts",
        num_samples=samples,
        warmup_steps=samples,
        num_chains=4,
        seed=seed,
        progress_bar=progress,
        cache=cached[0] if cached else cache / name.format(samples),
    )
    start = time.perf_counter()
    refit = fit_svi(
        model, X[keep], y[keep], num_steps=steps, seed=seed, natural_steps=natural_steps
    )
    refit_seconds = time.perf_counter() - start
    chains = reference.samples["w"]
    first, second = (
        chains[:2].reshape(-1, chains.shape[-1]),
        chains[2:].reshape(-1, chains.shape[-1]),
    )

    print("4/5 comparing in ArviZ (reference: NUTS chains 1-2; noise floor: chains 3-4)")
    posteriors = {
        "original": full,
        **{k: r.guide for k, r in results.items()},
        "SVI retrain": refit,
        "retrained": {"w": first},
    }
    frame = compare_posteriors(
        posteriors,
        model,
        X,
        y,
        forget_mask=forget_ids,
        reference="retrained",
        noise_floor={"w": second},
        num_samples=4000,
        seed=seed,
    )

    print("5/5 writing the report")
    figures = plot_posteriors(
        {
            "original": full,
            "eubo": results["eubo"].guide,
            "laplace": results["laplace"].guide,
            "retrained": reference,
        },
        model,
        X,
        y,
        forget_mask=forget_ids,
        var_names=None,
        num_samples=1000,
    )
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png", dpi=90, bbox_inches="tight")
    for name, posterior in {
        "original": full,
        **{k: r.guide for k, r in results.items()},
        "retrained": reference,
    }.items():
        arviz_compat.to_netcdf(
            to_inference_data(posterior, model, X, y, forget_mask=forget_ids, num_samples=1000),
            out / f"{name}.nc",
        )
    speed = {
        name: {
            "seconds": r.seconds,
            "speedup_vs_nuts": reference.seconds / r.seconds,
            "speedup_vs_svi_retrain": refit_seconds / r.seconds,
        }
        for name, r in results.items()
    }
    summary = {
        "setting": f"breast_cancer, Bayesian logistic regression (31 weights, prior N(0, I)); {len(forget_ids)} of {n} patients forgotten at random (seed {seed}); q(theta|D) and the SVI retrain: {steps} SVI steps, {finish}",
        "full_fit_seconds": fit_seconds,
        "reference": {"method": "nuts", "seconds": reference.seconds, **reference.diagnostics},
        "svi_retrain_seconds": refit_seconds,
        "metrics": json.loads(frame.to_json(orient="index")),
        "speed": speed,
        "diagnostics": {
            k: {
                kk: vv
                for kk, vv in r.diagnostics.items()
                if isinstance(vv, (int, float, str, bool, list))
            }
            for k, r in results.items()
        },
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "report.md").write_text(_report(summary, frame))
    return summary


def _report(summary: dict, frame) -> str:
    ref = summary["reference"]
    lines = [
        "# pyro-unlearn demo",
        "",
        summary["setting"] + ".",
        "",
        f"Reference: NUTS on the retained data, {ref['seconds']:.0f} s, r-hat {ref['rhat_max']:.3f}, "
        f"bulk ESS {ref['ess_bulk_min']:.0f} ({'trustworthy' if ref['trustworthy'] else 'NOT trustworthy: ' + str(ref['problems'])}). "
        "The reference is NUTS chains 1-2; chains 3-4, an independent run, give the noise floor: "
        "differences below it are not resolved by these metrics.",
        "",
        "## Distance to the retrained posterior (lower is closer; the noise floor is a second NUTS run)",
        "",
        _frame_markdown(frame),
        "",
        "## Speed",
        "",
        "| method | seconds | speed-up vs NUTS retrain | speed-up vs SVI retrain |",
        "|---|---:|---:|---:|",
    ]
    for name, s in summary["speed"].items():
        lines.append(
            f"| {name} | {s['seconds']:.3g} | {s['speedup_vs_nuts']:.0f}x | {s['speedup_vs_svi_retrain']:.0f}x |"
        )
    lines += [
        "",
        "Plots: `forest.png`, `density.png`, `forget_predictive.png`. InferenceData: `*.nc`.",
        "",
    ]
    return "\n".join(lines)


def _summary_screen(summary: dict) -> str:
    metrics, speed = summary["metrics"], summary["speed"]
    lines = ["", "Summary: " + summary["setting"]]
    for name in speed:
        gap = metrics[name].get("gap_closed", float("nan"))
        k = summary["diagnostics"][name].get("pareto_k")
        if k is not None and k > 0.7:
            lines.append(
                f"  {name:8s} UNRELIABLE: importance weights degenerate (Pareto k = {k:.2f} > 0.7); KL {metrics[name]['kl_mm']:.3g}; {_certificate_text(metrics[name])}"
            )
            continue
        search = summary["diagnostics"][name].get("lam_search")
        chosen = f" (lam={summary['diagnostics'][name]['lam']:g}, certified)" if search else ""
        lines.append(
            f"  {name:8s} closed {gap:6.1%} of the gap to retraining (KL {metrics[name]['kl_mm']:.3g}) in {speed[name]['seconds']:.3g} s{chosen}: {speed[name]['speedup_vs_nuts']:.0f}x faster than NUTS, {speed[name]['speedup_vs_svi_retrain']:.0f}x than SVI retraining; {_certificate_text(metrics[name])}"
        )
    floor = metrics.get("noise floor (2nd reference)", {}).get("kl_mm", float("nan"))
    lines.append(
        f"  noise floor (a second NUTS run): KL {floor:.3g}; SVI retrain: KL {metrics['SVI retrain']['kl_mm']:.3g}"
    )
    lines.append(
        "  (certificate: KL to retraining estimated without the reference, pyro_unlearn.certify;"
        " 'at least' marks an unreliable estimate, a lower bound)"
    )
    return "\n".join(lines)


def _check_lam(lam):
    """``--lam``: None, ``"certified"``, or a finite number >= 0."""
    if lam is None or lam == "certified":
        return lam
    from .infer.eubo import check_lam  # the library's rule (imported late: startup time)

    try:
        return check_lam(lam)
    except (TypeError, ValueError):
        raise UserError(f"--lam must be a number >= 0 or 'certified', got {lam!r}") from None


def _certificate_text(row: dict) -> str:
    kl = row.get("cert_kl")
    if kl is None or kl != kl:
        return "no certificate"
    if row.get("cert_reliable"):
        return f"certificate: KL {kl:.3g} +- {row['cert_se']:.2g}"
    return f"certificate: KL at least {kl:.3g}"


SUITES = ("bayes", "classifiers", "banknote", "evaluator", "certificate", "all")


def run_bench(out: Path, suite: str, seeds: list[int], quick: bool) -> dict:
    """Run the benchmark suites; write ``bench.md`` and ``bench.json`` to ``out``."""
    from .bench import banknote, bayes, certificate, classifiers, evaluator

    if suite not in SUITES:
        raise UserError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    for seed in seeds:
        _check_seed(seed)
    _check_out(out)
    results, sections = {}, []
    if suite in ("bayes", "all"):
        results["bayes"] = [bayes.run(seed=seed, quick=quick) for seed in seeds]
        sections += ["## Bayesian unlearning", ""] + [bayes.markdown(r) for r in results["bayes"]]
    if suite in ("classifiers", "all"):
        results["classifiers"] = classifiers.run(quick=quick, seeds=tuple(seeds))
        sections += ["## Classifier unlearning", "", classifiers.markdown(results["classifiers"])]
    if suite in ("banknote", "all"):
        if not banknote.DATA.exists():
            if suite == "banknote":
                raise UserError(f"the banknote data are not at {banknote.DATA}")
            sections += ["## Banknote (VBU setting)", "", f"skipped: no data at {banknote.DATA}"]
        else:
            results["banknote"] = [banknote.run(seed=seed, quick=quick) for seed in seeds[:1]]
            sections += ["## Banknote (VBU setting): flows and SMC", ""] + [
                banknote.markdown(r) for r in results["banknote"]
            ]
    if suite in ("evaluator", "all"):
        results["evaluator"] = evaluator.run(quick=quick)
        sections += ["## The model evaluator", "", evaluator.markdown(**results["evaluator"])]
    if suite in ("certificate", "all"):
        results["certificate"] = certificate.run(seed=seeds[0], quick=quick)
        sections += [
            "## The forgetting certificate",
            "",
            certificate.markdown(results["certificate"]),
        ]
    (out / "bench.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "bench.md").write_text("\n\n".join(sections) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyro-unlearn", description="Machine unlearning for Pyro models."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="forget patients from a fitted Bayesian model and compare with retraining"
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("pyro-unlearn-demo"),
        help="report folder (default: pyro-unlearn-demo)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--fraction", type=float, default=0.1, help="fraction of the data to forget, in (0, 1)"
    )
    demo.add_argument(
        "--quick", action="store_true", help="fewer optimisation steps and MCMC draws"
    )
    demo.add_argument(
        "--lam",
        default=None,
        help="EUBO's and rKL's adjusted-likelihood lambda: a number >= 0, or 'certified' "
        "(each method at 8 lambdas, kept by the certificate on the retained data)",
    )
    demo.add_argument("--device", default="cpu", help="cpu or cuda")
    bench = commands.add_parser("bench", help="run the benchmark suites")
    bench.add_argument(
        "--suite",
        default="bayes",
        help="bayes, classifiers, banknote (needs ../shared/data), evaluator, certificate or all",
    )
    bench.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--out", type=Path, default=Path("pyro-unlearn-bench"))
    bench.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        with _device(args.device):
            if args.command == "demo":
                summary = run_demo(args.out, args.seed, args.fraction, args.quick, lam=args.lam)
                print((args.out / "report.md").read_text())
                print(_summary_screen(summary))
            else:
                run_bench(args.out, args.suite, args.seeds, args.quick)
                print((args.out / "bench.md").read_text())
    except (UserError, BadRequestError) as error:  # a user's mistake: one line, no traceback
        print(f"pyro-unlearn: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
