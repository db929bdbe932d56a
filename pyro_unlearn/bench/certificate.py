r"""Benchmark: does the forgetting certificate rank posteriors as a NUTS retrain does, and at what cost?

On breast_cancer (31 weights, 57 of 569 forgotten) every posterior gets two distances to
retraining: the reference's, :math:`\mathrm{KL}(q\,\|\,\text{NUTS})` between moment-matched
Gaussians (NUTS on :math:`D_r`, 4 chains; the noise floor compares chains 1-2 with 3-4), and
the certificate's, estimated from :math:`q` and one likelihood pass over :math:`D_r` per draw,
without the reference. Reported: both per posterior, the Spearman rank correlation, the share
of pairs the reference can tell apart (difference above twice its noise floor) that the
certificate orders the same way, and the certificate's time against an SVI and a NUTS retrain.

On banknote (when ``../shared/data`` has it; both forget sets): the gap closed of EUBO and rKL
from a Laplace :math:`q_D` at every fixed :math:`\lambda` of ``CERTIFIED_LAMS``, beside
``lam="certified"``.

Run: ``pyro-unlearn bench --suite certificate``.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import torch

from .. import _rng
from ..api import CERTIFIED_LAMS, unlearn
from ..certificate import certify
from ..datasets import breast_cancer
from ..diagnostics.metrics import gap_closed, moment_matched
from ..fit import fit_flow, fit_laplace, fit_svi
from ..models import BayesianLogisticRegression
from ..posteriors import posterior_view
from ..references.retrain import retrain
from . import banknote
from .evaluator import broadcasting_logistic

CACHE = Path(__file__).parent / "cache"
NUM_CERTIFICATE = 10000


def _flat_w(posterior, num: int = 4000) -> torch.Tensor:
    """Equally weighted draws of the weights from any posterior (resampled when weighted)."""
    return posterior_view(posterior).site_draws(num, 0)["w"]


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def breast_cancer_block(seed: int = 0, progress: bool = False, quick: bool = False) -> dict:
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    X, y = breast_cancer()
    model = BayesianLogisticRegression(1.0).model
    n = len(y)
    forget_ids = _rng.permutation(n, _rng.generator(seed))[: int(round(0.1 * n))]
    keep = torch.ones(n, dtype=torch.bool)
    keep[forget_ids] = False
    Xe, ye = X[forget_ids], y[forget_ids]
    reference = retrain(
        model, X, y, forget_mask=forget_ids, plate="data", method="nuts", num_samples=1000,
        warmup_steps=1000, num_chains=4, seed=seed, progress_bar=progress,
        cache=CACHE / f"breast_cancer_nuts_seed{seed}_frac0.1_draws1000_chains4.nc",
    )  # fmt: skip
    # the cached draws are the reference every benchmark shares; the cost ratio needs a NUTS
    # retrain timed in this run, with the library's model as it is now (--quick: the cached
    # reference's recorded time, labelled so)
    nuts_seconds = reference.seconds if quick else retrain(
        model, X, y, forget_mask=forget_ids, plate="data", method="nuts", num_samples=1000,
        warmup_steps=1000, num_chains=4, seed=seed, progress_bar=progress,
    ).seconds  # fmt: skip
    chains = reference.samples["w"]
    ref = moment_matched(chains.reshape(-1, chains.shape[-1]))
    floor = float(
        moment_matched(chains[2:].reshape(-1, chains.shape[-1])).kl(
            moment_matched(chains[:2].reshape(-1, chains.shape[-1]))
        )
    )
    laplace = fit_laplace(model, X, y)
    svi = fit_svi(model, X, y, num_steps=3000, seed=seed)
    start = time.perf_counter()
    svi_retrain = fit_svi(model, X[keep], y[keep], num_steps=3000, seed=seed, certificate_samples=0)
    svi_seconds = time.perf_counter() - start
    posteriors = {"do nothing (Laplace q_D)": laplace, "do nothing (SVI q_D)": svi}
    methods = {
        "laplace": (laplace, dict(method="laplace")),
        "eubo (Laplace q_D)": (laplace, dict(method="eubo")),
        "smc (Laplace q_D)": (laplace, dict(method="smc", on_unreliable="warn")),
        "eubo (SVI q_D)": (svi, dict(method="eubo")),
        "eubo adam lam=1e-5 (SVI q_D)": (
            svi, dict(method="eubo", optimizer="adam", lam=1e-5, progress_bar=False)
        ),
        "rkl lam=1e-5 (SVI q_D, forced)": (svi, dict(method="rkl", lam=1e-5, on_unreliable="ignore")),
        "smc (SVI q_D)": (svi, dict(method="smc", on_unreliable="warn")),
    }  # fmt: skip
    posteriors.update(_unlearned(model, methods, Xe, ye))
    posteriors["SVI retrain"] = svi_retrain
    rows, scored, ranking = _ranking(posteriors, model, X, y, forget_ids, ref, floor, seed)

    # the certificate's cost is the model's: the same posterior through the model written to
    # broadcast over draws, (X * w).sum(-1), which builds a (draws, N, D) intermediate
    certify(svi_retrain, broadcasting_logistic, X, y, forget_mask=forget_ids, num_samples=100)
    broadcasting = certify(
        svi_retrain,
        broadcasting_logistic,
        X,
        y,
        forget_mask=forget_ids,
        num_samples=NUM_CERTIFICATE,
    )
    seconds = sorted(r["cert_seconds"] for r in scored)
    median = seconds[len(seconds) // 2]
    return {
        "setting": f"breast_cancer, logistic regression, 57 of 569 forgotten (seed {seed})",
        "rows": rows,
        "noise_floor": floor,
        **ranking,
        "certificate_seconds_median": median,
        "svi_retrain_seconds": svi_seconds,
        "nuts_seconds": float(nuts_seconds),
        "nuts_timed_in_this_run": not quick,
        "broadcasting_certificate_seconds": broadcasting.seconds,
        "broadcasting_certificate_kl": broadcasting.kl,
        "full_data_certificates": {
            "laplace": _cert_columns(laplace.certificate),
            "svi": _cert_columns(svi.certificate),
        },
    }


def _unlearned(model, methods: dict, Xe, ye) -> dict:
    """``name -> unlearn(...)`` for ``methods`` (``name -> (start guide, options)``); a
    refusal is kept as its exception, a row of the table."""
    out = {}
    for name, (start_guide, options) in methods.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out[name] = unlearn(model, start_guide, Xe, ye, **options)
            except Exception as error:  # noqa: BLE001 - a refusal is a row
                out[name] = error
    return out


def _ranking(posteriors, model, X, y, forget_ids, ref, floor, seed, cross_check=False):
    """Each posterior's moment-matched KL to the NUTS reference beside its certificate; the
    Spearman correlation and the pairs the reference tells apart (> 2 x ``floor``) that the
    certificate orders the same way."""
    rows = []
    for name, posterior in posteriors.items():
        if isinstance(posterior, Exception):
            rows.append({"posterior": name, "error": f"{type(posterior).__name__}"})
            continue
        guide = posterior.guide if hasattr(posterior, "method") else posterior
        nuts_kl = float(moment_matched(_flat_w(guide)).kl(ref))
        cert = certify(
            posterior, model, X, y, forget_mask=forget_ids, num_samples=NUM_CERTIFICATE,
            seed=seed, cross_check=cross_check,
        )  # fmt: skip
        rows.append({"posterior": name, "nuts_kl": nuts_kl, **_cert_columns(cert)})
    scored = [r for r in rows if "nuts_kl" in r]
    ranking = _agreement(scored, "cert_kl", floor)
    moments = [r for r in scored if math.isfinite(r["cert_moment_kl"])]
    by_moments = _agreement(moments, "cert_moment_kl", floor)
    ranking.update({f"moment_{k}": v for k, v in by_moments.items()}, moment_rows=len(moments))
    return rows, scored, ranking


def _agreement(scored: list[dict], key: str, floor: float) -> dict:
    """Spearman correlation of ``key`` with the NUTS-based KL, and the pairs the reference
    tells apart (> 2 x ``floor``) that ``key`` orders the same way."""
    pairs = agree = 0
    for i, a in enumerate(scored):
        for b in scored[i + 1 :]:
            if abs(a["nuts_kl"] - b["nuts_kl"]) > 2 * floor:
                pairs += 1
                agree += (a["nuts_kl"] < b["nuts_kl"]) == (a[key] < b[key])
    spearman = _spearman([r["nuts_kl"] for r in scored], [r[key] for r in scored])
    return {"spearman": spearman, "pairs_resolved": pairs, "pairs_agreeing": agree}


def banknote_ranking_block(seed: int, quick: bool = False) -> dict:
    """The certificate (cross-checked by SMC) beside the NUTS comparison on banknote, for
    Laplace, EUBO, rKL and SMC from a Laplace and from a flow q_D, and the retrains."""
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    model, X, y, forget_ids, keep = banknote.setting(seed)
    Xe, ye = X[forget_ids], y[forget_ids]
    reference, _ = banknote.references(seed)
    chains = reference.samples["w"]
    ref = moment_matched(chains.reshape(-1, chains.shape[-1]))
    floor = float(moment_matched(chains[1]).kl(moment_matched(chains[0])))
    flow_options = dict(banknote.FLOW, num_steps=1000) if quick else banknote.FLOW
    laplace = fit_laplace(model, X, y, certificate_samples=0)
    flow = fit_flow(model, X, y, seed=seed, certificate_samples=0, **flow_options)
    posteriors = {"do nothing (Laplace q_D)": laplace, "do nothing (flow q_D)": flow}
    methods = {
        "laplace": (laplace, dict(method="laplace")),
        "eubo (Laplace q_D)": (laplace, dict(method="eubo")),
        "eubo flow, lam=1e-05": (flow, dict(method="eubo", lam=1e-5, seed=seed)),
        "rkl flow, lam=1e-05": (flow, dict(method="rkl", lam=1e-5, seed=seed)),
        "smc (flow q_D), lam=1e-05": (flow, dict(method="smc", lam=1e-5, seed=seed)),
    }
    for _, options in methods.values():  # a flagged result is a row, with its flag
        if options["method"] != "laplace":
            options["on_unreliable"] = "ignore"
    posteriors.update(_unlearned(model, methods, Xe, ye))
    posteriors["Laplace retrain"] = fit_laplace(model, X[keep], y[keep], certificate_samples=0)
    posteriors["flow retrain"] = fit_flow(
        model, X[keep], y[keep], seed=seed, certificate_samples=0, **flow_options
    )
    rows, scored, ranking = _ranking(
        posteriors, model, X, y, forget_ids, ref, floor, seed, cross_check=True
    )
    # an independent value of KL(q || p(theta | D_r)) for every q: its unbiased mean log
    # weight with log Z from the flow retrain (reliable, the closest proposal there is)
    # instead of its own log-mean-exp, which errs low when q is far from the target
    best = next(r for r in rows if r["posterior"] == "flow retrain")
    for r in scored:
        r["kl_by_reference_log_z"] = best["cert_log_z"] - (r["cert_log_z"] - r["cert_kl"])
    by_reference = _spearman(
        [r["kl_by_reference_log_z"] for r in scored], [r["cert_kl"] for r in scored]
    )
    nuts_vs_reference = _spearman(
        [r["nuts_kl"] for r in scored], [r["kl_by_reference_log_z"] for r in scored]
    )
    return {
        "seed": seed, "rows": rows, "noise_floor": floor, **ranking,
        "log_z_from": "flow retrain", "log_z_reliable": best["cert_reliable"],
        "spearman_certificate_vs_reference_log_z": by_reference,
        "spearman_nuts_vs_reference_log_z": nuts_vs_reference,
    }  # fmt: skip


def _cert_columns(cert) -> dict:
    return {
        "cert_kl": cert.kl,
        "cert_se": cert.standard_error,
        "cert_reliable": cert.reliable,
        "pareto_k": cert.pareto_k,
        "cert_seconds": cert.seconds,
        "cert_kl_smc": cert.kl_smc,
        "cert_log_z": cert.log_z,
        "cert_moment_kl": cert.moment_kl,
    }


def banknote_block(seed: int) -> dict:
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    model, X, y, forget_ids, keep = banknote.setting(seed)
    Xe, ye = X[forget_ids], y[forget_ids]
    reference, _ = banknote.references(seed)
    ref = moment_matched(reference.flat("w"))
    laplace = fit_laplace(model, X, y, certificate_samples=0)
    nothing = float(moment_matched(_flat_w(laplace)).kl(ref))
    rows = []
    for method in ("eubo", "rkl"):
        fixed, results = {}, {}
        for lam in CERTIFIED_LAMS:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    results[lam] = unlearn(model, laplace, Xe, ye, method=method, lam=lam)
                kl = float(moment_matched(_flat_w(results[lam].guide)).kl(ref))
                fixed[lam] = gap_closed(kl, nothing)
            except Exception:  # noqa: BLE001 - a refused lambda has no gap closed
                fixed[lam] = float("nan")
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chosen = unlearn(
                model, laplace, X, y, mask=forget_ids, plate="data", method=method,
                lam="certified", on_unreliable="warn",
            )  # fmt: skip
        seconds = time.perf_counter() - start
        kl = float(moment_matched(_flat_w(chosen.guide)).kl(ref))
        best = max((v, k) for k, v in fixed.items() if v == v)
        # the certificate of the best fixed lambda, and both cross-checked by SMC: do the
        # certificate and the NUTS comparison disagree, or is the certificate off?
        best_cert = certify(results[best[1]], model, X, y, forget_mask=forget_ids, cross_check=True)
        chosen_cert = certify(chosen, model, X, y, forget_mask=forget_ids, cross_check=True)
        rows.append(
            {
                "method": method,
                "fixed": fixed,
                "best_lam": best[1],
                "best_gap_closed": best[0],
                "certified_lam": chosen.diagnostics["lam"],
                "certified_gap_closed": gap_closed(kl, nothing),
                "certified_kl": chosen.certificate.kl,
                "certified_reliable": chosen.certificate.reliable,
                "certified_kl_smc": chosen_cert.kl_smc,
                "best_kl": best_cert.kl,
                "best_kl_smc": best_cert.kl_smc,
                "seconds": seconds,
            }
        )
    return {"seed": seed, "rows": rows}


PERTURBATIONS = (
    (0.0, 1.0),
    (0.1, 1.0),
    (0.3, 1.0),
    (0.5, 1.0),
    (1.0, 1.0),
    (0.0, 0.5),
    (0.0, 2.0),
    (0.3, 1.5),
)


#: the certificate's draws are seeded apart from the data: both streams start from ``seed``, and
#: draws that replay the normals the data were made from are correlated with the data (with
#: one seed for both, a q shifted 0.3 sd and 1.5x wider erred by 3.6 and 4.1 se in two of
#: 400 runs; from fresh draws on the same two data sets, by less than 1 se)
DRAWS_SEED = 100_003


def _conjugate_case(d: int, seed: int, shift: float, scale: float):
    """Bayesian linear regression (200 rows, the first 20 forgotten) and a Gaussian guide:
    the exact retrained posterior, mean shifted by ``shift`` sds, covariance times ``scale``."""
    from ..gaussian import FlatGaussian
    from ..guides import LaplaceGuide
    from ..references.conjugate import BayesianLinearRegression

    blr = BayesianLinearRegression(noise_scale=0.5)
    g = _rng.generator(seed)
    X = _rng.normal((200, d), g, like=torch.zeros(()))
    y = X @ _rng.normal((d,), g, like=X) + 0.5 * _rng.normal((200,), g, like=X)
    forget = torch.arange(200) < 20
    exact = blr.posterior(X[~forget], y[~forget])
    sd = exact.covariance.diagonal().sqrt()
    q = FlatGaussian(exact.loc + shift * sd, precision=exact.precision / scale)
    guide = LaplaceGuide.from_precision(blr.model, q.loc, q.precision, model_args=(X, y))
    return blr.model, guide, X, y, forget, float(q.kl(exact))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _sd(values: list[float]) -> float:
    return float(torch.tensor(values).std()) if len(values) > 1 else float("nan")


def conjugate_block(dims=(5, 30), seeds: int = 20) -> list[dict]:
    """The certificate against the closed-form KL (:func:`_conjugate_case`), over ``seeds``
    draws of data and certificate."""
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    rows = []
    for d in dims:
        for shift, scale in PERTURBATIONS:
            errors, z, flagged, seconds, trues = [], [], 0, [], []
            moment_errors = []  # q and the target are Gaussian: moment_kl estimates KL too
            for seed in range(seeds):
                model, guide, X, y, forget, true = _conjugate_case(d, seed, shift, scale)
                cert = certify(guide, model, X, y, forget_mask=forget, seed=DRAWS_SEED + seed)
                trues.append(true)
                seconds.append(cert.seconds)
                if math.isfinite(cert.moment_kl):
                    moment_errors.append(cert.moment_kl - true)
                if cert.reliable:
                    errors.append(cert.kl - true)
                    z.append(
                        (cert.kl - true) / cert.standard_error
                        if abs(cert.kl - true) > 1e-9
                        else 0.0
                    )
                else:
                    flagged += 1
                    errors.append(float("nan"))
            done = [e for e in errors if e == e]
            zt = torch.tensor(z) if z else torch.zeros(0)
            rows.append(
                {
                    "d": d, "shift": shift, "scale": scale, "true_kl": sum(trues) / len(trues),
                    "reliable": len(done), "flagged": flagged,
                    "bias": sum(done) / len(done) if done else float("nan"),
                    "error_sd": float(torch.tensor(done).std()) if len(done) > 1 else float("nan"),
                    "z_sd": float(zt.std()) if len(zt) > 1 else float("nan"),
                    "max_abs_z": float(zt.abs().max()) if len(zt) else float("nan"),
                    "within_3_se": int((zt.abs() <= 3).sum()) if len(zt) else 0,
                    "seconds": sum(seconds) / len(seconds),
                    "moment_runs": len(moment_errors),
                    "moment_bias": _mean(moment_errors),
                    "moment_error_sd": _sd(moment_errors),
                }
            )  # fmt: skip
    return rows


def smc_cross_check_block(dims=(5, 30), seeds: int = 3) -> list[dict]:
    """``certify(..., cross_check=True)`` on the conjugate cases: per case, the IS and SMC
    errors against the closed form, how often IS alone was reliable, and how often SMC
    flagged a run IS alone called reliable (a false alarm unless IS was off)."""
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    rows = []
    for d in dims:
        for shift, scale in PERTURBATIONS:
            runs = []
            for seed in range(seeds):
                model, guide, X, y, forget, true = _conjugate_case(d, seed, shift, scale)
                cert = certify(
                    guide, model, X, y, forget_mask=forget, seed=DRAWS_SEED + seed, cross_check=True
                )
                by_is = [r for r in cert.reasons if "SMC" not in r]
                runs.append(
                    {
                        "is_error": cert.kl - true,
                        "smc_error": cert.kl_smc - true,
                        "is_reliable": not by_is,
                        "smc_flag": len(by_is) < len(cert.reasons),
                        "seconds": cert.seconds,
                    }
                )
            rows.append(
                {
                    "d": d, "shift": shift, "scale": scale, "runs": len(runs),
                    "is_reliable": sum(r["is_reliable"] for r in runs),
                    "smc_flags_of_reliable": sum(r["is_reliable"] and r["smc_flag"] for r in runs),
                    "smc_flags_of_unreliable": sum(
                        not r["is_reliable"] and r["smc_flag"] for r in runs
                    ),
                    "is_error": sum(r["is_error"] for r in runs) / len(runs),
                    "smc_error": sum(r["smc_error"] for r in runs) / len(runs),
                    "seconds": sum(r["seconds"] for r in runs) / len(runs),
                }
            )  # fmt: skip
    return rows


def smc_markdown(rows: list[dict]) -> str:
    lines = [
        "**SMC cross-check** (`certify(..., cross_check=True)`, 8 replicas of S/8 particles, "
        f"S = {NUM_CERTIFICATE}; errors are means over the seeds, estimate minus closed form).",
        "",
        "| d | shift | scale | runs | IS reliable | SMC flags of those | SMC flags of the rest "
        "| IS error | SMC error | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['d']} | {r['shift']} | {r['scale']} | {r['runs']} | {r['is_reliable']} | "
            f"{r['smc_flags_of_reliable']} | {r['smc_flags_of_unreliable']} | "
            f"{r['is_error']:.3g} | {r['smc_error']:.3g} | {r['seconds']:.3g} |"
        )
    return "\n".join(lines)


def run(seed: int = 0, quick: bool = False, progress: bool = False) -> dict:
    out = {"conjugate": conjugate_block(seeds=5 if quick else 60)}
    out["breast_cancer"] = breast_cancer_block(seed, progress, quick)
    if banknote.DATA.exists():
        out["banknote"] = [banknote_block(s) for s in (0, 1)]
        out["banknote_ranking"] = [banknote_ranking_block(s, quick) for s in (0, 1)]
    return out


def _posterior_table(rows: list[dict], extra: dict | None = None) -> list[str]:
    """Markdown rows: each posterior's NUTS-based KL beside its certificate (and ``extra``
    columns: header -> row key)."""
    extra = extra or {}
    names = "".join(f" {name} |" for name in extra)
    lines = [
        f"| posterior | NUTS-based KL | certificate |{names} reliable | k-hat | seconds |",
        "|---|---:|---:|" + "---:|" * len(extra) + "---|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['posterior']} | refused ({r['error']}) |" + " |" * (4 + len(extra)))
            continue
        se = f" ± {r['cert_se']:.2g}" if r["cert_reliable"] else " (lower bound)"
        cells = "".join(f" {r[key]:.4g} |" for key in extra.values())
        lines.append(
            f"| {r['posterior']} | {r['nuts_kl']:.4g} | {r['cert_kl']:.4g}{se} |{cells} "
            f"{r['cert_reliable']} | {r['pareto_k']:.2f} | {r['cert_seconds']:.3g} |"
        )
    return lines


def _moment_sentence(block: dict) -> str:
    """How the certificate's moment-matched KL ranks the posteriors against the NUTS one."""
    if not block["moment_pairs_resolved"]:
        return (
            f"its moment-matched KL is computed for {block['moment_rows']} of "
            f"{len(block['rows'])} posteriors (k-hat > 0.7 for the others), too few pairs to rank"
        )
    return (
        f"its moment-matched KL (computed for {block['moment_rows']} of {len(block['rows'])} "
        f"posteriors, k-hat <= 0.7) orders {block['moment_pairs_agreeing']} of the "
        f"{block['moment_pairs_resolved']} pairs among them the same way (Spearman "
        f"{block['moment_spearman']:.3f})"
    )


def markdown(results: dict) -> str:
    bc = results["breast_cancer"]
    conjugate = results.get("conjugate", [])
    runs = conjugate[0]["reliable"] + conjugate[0]["flagged"] if conjugate else 0
    lines = [
        f"**Conjugate linear regression** ({runs} data sets per row, each 200 rows with 20 "
        "forgotten; q = the exact retrained posterior, mean shifted by `shift` posterior sds, "
        f"covariance times `scale`; {NUM_CERTIFICATE} draws, seeded apart from the data; "
        "z = error / stated se over the runs flagged reliable; moment-matched: the certificate's "
        "`moment_kl`, which equals the KL here since q and the target are Gaussian, over the "
        "runs where it is computed, k-hat <= 0.7).",
        "",
        "| d | shift | scale | true KL | reliable / flagged | bias | error sd | z sd | max abs z | within 3 se | moment-matched: runs, bias, error sd | seconds |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in conjugate:
        lines.append(
            f"| {r['d']} | {r['shift']} | {r['scale']} | {r['true_kl']:.4g} | {r['reliable']} / "
            f"{r['flagged']} | {r['bias']:.2g} | {r['error_sd']:.2g} | {r['z_sd']:.2f} | "
            f"{r['max_abs_z']:.2f} | {r['within_3_se']} of {r['reliable']} | "
            f"{r['moment_runs']}, {r['moment_bias']:.2g}, {r['moment_error_sd']:.2g} | "
            f"{r['seconds']:.3g} |"
        )
    reliable = sum(r["reliable"] for r in conjugate)
    within = sum(r["within_3_se"] for r in conjugate)
    lines += ["", f"Of the {reliable} runs flagged reliable, {within} are within 3 se."]
    lines += [
        "",
        f"**{bc['setting']}.** NUTS-based KL: moment-matched KL to the NUTS reference "
        f"(noise floor {bc['noise_floor']:.3g}); certificate: KL to the retrained posterior "
        f"from q and D_r only ({NUM_CERTIFICATE} draws).",
        "",
        *_posterior_table(bc["rows"], {"moment-matched": "cert_moment_kl"}),
    ]
    lines += [
        "",
        f"Spearman rank correlation {bc['spearman']:.3f}; of the {bc['pairs_resolved']} pairs "
        f"the reference tells apart (difference > 2 x noise floor), the certificate orders "
        f"{bc['pairs_agreeing']} the same way; {_moment_sentence(bc)}. Certificate: median {bc['certificate_seconds_median']:.3g} s, "
        f"{bc['certificate_seconds_median'] / bc['svi_retrain_seconds']:.3g} of an SVI retrain "
        f"({bc['svi_retrain_seconds']:.3g} s) and {bc['certificate_seconds_median'] / bc['nuts_seconds']:.3g} "
        f"of a NUTS retrain ({bc['nuts_seconds']:.3g} s, "
        + (
            "timed in this run)."
            if bc.get("nuts_timed_in_this_run")
            else "the cached reference's recorded time: not measured beside the certificate)."
        ),
        "",
        f"The time is the model's. The library's model is written `X @ w` (run under vmap, one "
        f"matrix product per block of draws); the same certificate of the SVI retrain through "
        f"the model written to broadcast, `(X * w).sum(-1)`, took "
        f"{bc['broadcasting_certificate_seconds']:.3g} s ({bc['broadcasting_certificate_seconds'] / bc['svi_retrain_seconds']:.3g} "
        f"of the SVI retrain, {bc['broadcasting_certificate_seconds'] / bc['nuts_seconds']:.3g} of NUTS; "
        f"KL {bc['broadcasting_certificate_kl']:.4g}).",
        "",
        "q(theta|D)'s own error (full-data certificate, computed by the fitters): "
        + ", ".join(
            f"{k} {v['cert_kl']:.3g} nats" for k, v in bc["full_data_certificates"].items()
        ),
    ]
    for block in results.get("banknote", []):
        lines += [
            "",
            f"**banknote, forget set seed {block['seed']}**: gap closed (NUTS) at fixed lambda and with lam='certified'.",
            "",
            "| method | "
            + " | ".join(f"lam={lam:g}" for lam in CERTIFIED_LAMS)
            + " | best | certified (lam) | certified - best "
            + "| certificate at best: IS / SMC | at certified: IS / SMC |",
            "|---|" + "---:|" * (len(CERTIFIED_LAMS) + 5),
        ]
        for r in block["rows"]:
            cells = " | ".join(f"{r['fixed'][lam]:.3f}" for lam in CERTIFIED_LAMS)
            lines.append(
                f"| {r['method']} | {cells} | {r['best_gap_closed']:.3f} | "
                f"{r['certified_gap_closed']:.3f} ({r['certified_lam']:g}) | "
                f"{r['certified_gap_closed'] - r['best_gap_closed']:+.3f} | "
                f"{r['best_kl']:.3g} / {r['best_kl_smc']:.3g} | "
                f"{r['certified_kl']:.3g} / {r['certified_kl_smc']:.3g} |"
            )
    for block in results.get("banknote_ranking", []):
        lines += [
            "",
            f"**banknote, forget set seed {block['seed']}: the certificate beside the NUTS "
            f"comparison** (noise floor {block['noise_floor']:.3g}: chain 2 vs chain 1; "
            "certificate cross-checked by SMC).",
            "",
            *_posterior_table(
                block["rows"],
                {
                    "SMC": "cert_kl_smc",
                    "KL with the flow retrain's log Z": "kl_by_reference_log_z",
                    "moment-matched": "cert_moment_kl",
                },
            ),
        ]
        lines += [
            "",
            f"Spearman {block['spearman']:.3f}; of the {block['pairs_resolved']} pairs the "
            f"reference tells apart, the certificate orders {block['pairs_agreeing']} the same way; "
            f"{_moment_sentence(block)}. Against the KL with the flow retrain's log Z (reliable: "
            f"{block['log_z_reliable']}): certificate Spearman "
            f"{block['spearman_certificate_vs_reference_log_z']:.3f}, NUTS-based KL "
            f"{block['spearman_nuts_vs_reference_log_z']:.3f}.",
        ]
    lines += [
        "",
        "The certificate is KL(q || p(theta | D_r)); the gap closed compares q with NUTS's "
        "moment-matched Gaussian. Where SMC agrees with the certificate and the two rank "
        "lambdas apart, they measure different distances. The certificate's `moment_kl` "
        "estimates the second from the same draws (the retrained posterior's mean and "
        "covariance by PSIS), without NUTS.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m pyro_unlearn.bench.certificate: the SMC cross-check
    print(smc_markdown(smc_cross_check_block()))
