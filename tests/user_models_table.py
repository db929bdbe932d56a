"""The "Your model" table: every model of ``user_models.py`` through every method.

``python tests/user_models_table.py`` (from the repository root, about 3 minutes on 2 cores)
prints a markdown table of model feature x method: the gap closed to the retrained
posterior (``1 - KL(q_u || ref) / KL(q(theta|D) || ref)``; for conjugate models the KL is
the closed form against the exact retrained posterior, otherwise the moment-matched KL of
``compare_posteriors`` against the cached NUTS reference), or the error a method refused
with. Results a method judges unreliable are kept (``on_unreliable="warn"``) and marked with
their k-hat. It also prints which evaluator path and forget-set strategy each model got.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).parent))

import user_models as um  # noqa: E402
from build_references import reference  # noqa: E402
from test_user_models import conjugate_case, exact_guide  # noqa: E402

import pyro_unlearn as pu  # noqa: E402

METHODS = ("laplace", "eubo", "rkl", "smc", "psis")
FEATURES = {
    "pyromodule": "PyroModule[nn.Linear] regression (conjugate)",
    "matmul": "`X @ w`, `torch.mm` regression (conjugate)",
    "event_dim": "`nn.Linear(5, 2)`, `(N, 2)` observation under `to_event(1)` (conjugate)",
    "local_latents": "local latents in the plate (schools, known scale; conjugate)",
    "subsampled": "subsampled plate, `subsample_size=16` (conjugate)",
    "noncentred": "non-centred eight schools (`HalfCauchy` scale)",
    "no_plate": "eight schools with no plate (`plate=-1`)",
    "mixture": "enumerated mixture (`config_enumerate`)",
    "poisson": "Poisson GLM, `X @ w`",
    "bnn": "PyroModule BNN, 1-3-1 tanh (reference: SVI retrain)",
}


def _refusal(error: Exception) -> str:
    text = str(error).splitlines()[0]
    return f"refused: {type(error).__name__} ({text[:70]}...)"


def conjugate_row(name: str) -> dict:
    model, args, forget, plate, exact, _ = conjugate_case(name)
    q_full = exact_guide(model, args, exact)
    mean_r, precision_r = exact(um.keep_mask(len(args[-1]), forget))
    mean_d, precision_d = exact()
    before = um.gaussian_kl(mean_d, precision_d, mean_r, precision_r)
    layout = pu.guides.latent_layout(q_full)
    row, info = {}, ""
    for method in METHODS:
        posterior = q_full
        if method == "psis":
            g = torch.distributions.MultivariateNormal(mean_d, precision_matrix=precision_d)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                posterior = pu.guides.unpack(layout, g.sample((8000,)))
        try:
            options = {} if method == "laplace" else {"on_unreliable": "warn"}
            result = pu.unlearn(
                model, posterior, *args, mask=forget, plate=plate, method=method, **options
            )
        except pu.UnsupportedPosteriorError as error:
            row[method] = _refusal(error)
            continue
        except Exception as error:  # noqa: BLE001 - reported in the table
            row[method] = _refusal(error)
            continue
        info = result.diagnostics.get("evaluator", info)
        mean, cov = _moments(result.guide, layout)
        after = um.gaussian_kl(mean, torch.linalg.inv(cov), mean_r, precision_r)
        k = result.diagnostics.get("pareto_k")
        flag = f", k̂ {k:.2f}" if isinstance(k, float) and k > 0.7 else ""
        row[method] = f"{1 - after / before:.3f}" + (" (exact)" if after < 1e-8 else "") + flag
    row["nothing"] = f"{before:.3g}"
    return row, info


def _moments(posterior, layout):
    if isinstance(posterior, pu.WeightedSamples):
        z = torch.cat(
            [
                s.unconstrain(posterior.samples[s.name]).reshape(posterior.num_samples, -1)
                for s in layout
            ],
            -1,
        )
        w = posterior.log_weights.exp()
        mean = w @ z
        centred = z - mean
        return mean, (centred * w[:, None]).T @ centred
    g = pu.flat_gaussian(posterior)
    return g.loc, g.covariance


def reference_row(name: str) -> dict:
    if name == "noncentred":
        model, args, forget, plate = (
            um.schools_noncentred,
            (8, um.SCHOOLS_SIGMA, um.SCHOOLS_Y),
            torch.tensor([0]),
            "J",
        )
    elif name == "no_plate":
        model, args, forget, plate = (
            um.schools_no_plate,
            (um.SCHOOLS_SIGMA, um.SCHOOLS_Y),
            torch.tensor([0]),
            -1,
        )
    elif name == "poisson":
        X, y = um.poisson_data()
        model, args, forget, plate = um.poisson_glm, (X, y), X[:, 1].argsort()[-10:], "data"
    elif name == "mixture":
        data = um.mixture_data()
        model, args, forget, plate = um.mixture, (data,), data.argsort()[-10:], "data"
    else:
        x, t = um.bnn_data()
        model, args, forget, plate = um.BNN(), (x, t), torch.arange(32, 40), "data"
    if name == "mixture":
        init = pyro.infer.autoguide.init_to_value(
            values={"locs": torch.tensor([-2.0, 2.5]), "weights": torch.tensor([0.4, 0.6])}
        )
        q_full = pu.fit_laplace(model, *args, init_loc_fn=init)
    else:
        q_full = pu.fit_svi(model, *args, num_steps=2000)
    if name == "bnn":
        retrained = pu.retrain(
            model, *args, forget_mask=forget, plate=plate, method="svi", svi_steps=2000
        )
    else:
        retrained = reference(name, "retained")
    posteriors, row, info = {"original": q_full}, {}, ""
    for method in METHODS:
        posterior = q_full
        if method == "psis":
            if name == "bnn":
                row[method] = "n/a: NUTS did not converge (no draws to reweight)"
                continue
            posterior = reference(name, "full")
        options = {"psd": "clip"} if method == "laplace" else {"on_unreliable": "warn"}
        try:
            result = pu.unlearn(
                model, posterior, *args, mask=forget, plate=plate, method=method, **options
            )
        except Exception as error:  # noqa: BLE001 - reported in the table
            row[method] = _refusal(error)
            continue
        info = result.diagnostics.get("evaluator", info)
        posteriors[method] = result
        k = result.diagnostics.get("pareto_k")
        row[method] = k
    frame = pu.compare_posteriors(
        {**posteriors, "retrained": retrained},
        model,
        *args,
        forget_mask=forget,
        plate=plate,
        num_samples=2000,
    )
    metric = "pred_kl_forget" if name == "bnn" else "kl_mm"
    row["nothing"] = f"{frame.loc['original', metric]:.3g}"
    for method in METHODS:
        if method in posteriors:
            gap = 1 - frame.loc[method, metric] / frame.loc["original", metric]
            k = row[method]
            flag = f", k̂ {k:.2f}" if isinstance(k, float) and k > 0.7 else ""
            row[method] = f"{gap:.3f}{flag}"
    return row, info


def main() -> None:
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    lines = [
        "| model feature | distance of doing nothing | "
        + " | ".join(METHODS)
        + " | evaluator path; forget elements reached by |",
        "|---|---:|" + "---|" * (len(METHODS) + 1),
    ]
    start = time.perf_counter()
    for name, feature in FEATURES.items():
        pyro.clear_param_store()
        row, info = (
            conjugate_row
            if name in FEATURES
            and name in ("pyromodule", "matmul", "event_dim", "local_latents", "subsampled")
            else reference_row
        )(name)
        where = f"{info.get('path', '?')}; {info.get('forget_set', '?')}" if info else "?"
        cells = " | ".join(str(row[m]) for m in METHODS)
        lines.append(f"| {feature} | {row['nothing']} | {cells} | {where} |")
        print(lines[-1], flush=True)
    print()
    print("\n".join(lines))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
