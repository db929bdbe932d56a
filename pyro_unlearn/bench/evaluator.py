"""The model evaluator's cost: its three paths, and masked-mode unlearning as |D| grows.

``python -m pyro_unlearn.bench.evaluator`` prints two tables (ratios measured in one run) and
writes ``results_evaluator.md`` / ``.json`` next to this file:

* **paths**: the log-likelihood of breast_cancer's 569 patients at S posterior draws, for the
  same Bayesian logistic regression written two ways: broadcasting over draws
  (``(X * w).sum(-1)``, which every path takes) and as a user writes it (``X @ w``, which the
  vectorized path cannot take). Each path is forced in turn; the cost is the median of
  ``repeats`` timings, and the ratio is against the vectorized path on the broadcasting model.
* **masked mode**: Laplace and EUBO unlearning of 50 points from a logistic regression with 10
  features on |D| = 1e3 and 1e5 synthetic points, in unmasked mode (the forget rows are
  passed) and masked mode (all data and a mask). The ratio time(|D| = 1e5) / time(|D| = 1e3)
  is the quantity to watch: masked mode evaluates the forget elements only, so it should
  stay near 1 (target at most 1.5), where running the model on all data and then masking it
  grows with |D|.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

from .. import _rng
from ..datasets import breast_cancer
from ..guides import LaplaceGuide
from ..model_eval import ModelEvaluator

HERE = Path(__file__).parent


def broadcasting_logistic(X, y=None):
    """The same model written to broadcast over draws: ``(X * w).sum(-1)`` (every path takes it)."""
    w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), 1.0).to_event(1))
    with pyro.plate("data", X.shape[0]):
        return pyro.sample("y", dist.Bernoulli(logits=(X * w).sum(-1)), obs=y)


def matmul_logistic(X, y=None):
    """Logistic regression as users write it: ``X @ w`` (does not broadcast over draws)."""
    w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), 1.0).to_event(1))
    with pyro.plate("data", X.shape[0]):
        return pyro.sample("y", dist.Bernoulli(logits=X @ w), obs=y)


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (the path probe and first-call costs are not what is measured)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paths(num_draws: int = 1000, repeats: int = 5) -> tuple[list[dict], dict]:
    X, y = breast_cancer()
    w = _rng.normal((num_draws, X.shape[1]), _rng.generator(0), like=X)
    rows = []
    for model_name, model, available in (
        ("(X * w).sum(-1), broadcasts", broadcasting_logistic, ("vectorized", "vmap", "loop")),
        ("X @ w, as users write it", matmul_logistic, ("vmap", "loop")),
    ):
        for path in available:
            evaluator = ModelEvaluator(model, (X, y), path=path)
            with torch.no_grad():
                seconds = _median_seconds(lambda e=evaluator: e.log_likelihood({"w": w}), repeats)
            rows.append(
                {"model": model_name, "path": path, "seconds": seconds, "num_draws": num_draws}
            )
    base = rows[0]["seconds"]
    for row in rows:
        row["ratio_vs_vectorized"] = row["seconds"] / base
    probe = ModelEvaluator(matmul_logistic, (X, y))
    probe.log_likelihood({"w": w[:4]})
    return rows, probe.describe()


def _logistic_data(n: int, d: int = 10, seed: int = 0):
    g = _rng.generator(seed)
    X = _rng.normal((n, d), g, like=torch.zeros(()))
    w = _rng.normal((d,), g, like=X)
    y = (torch.sigmoid(X @ w) > _rng.uniform((n,), g, like=X)).to(X.dtype)
    return X, y


def masked_scaling(sizes=(1_000, 100_000), num_forget: int = 50, repeats: int = 5) -> list[dict]:
    rows = []
    for model_name, model in (
        ("(X * w).sum(-1)", broadcasting_logistic),
        ("X @ w", matmul_logistic),
    ):
        for n in sizes:
            X, y = _logistic_data(n)
            forget = _rng.permutation(n, _rng.generator(1))[:num_forget]
            d = X.shape[1]
            guide = LaplaceGuide.from_precision(
                model, torch.zeros(d), torch.eye(d) * n / 10, model_args=(X[:2], y[:2])
            )
            for method, options in (("laplace", {}), ("eubo", {"progress_bar": False})):
                for mode in ("unmasked", "masked"):
                    # the first request on these data decides how to reach the forget
                    # elements (one run on all data); later requests reuse the decision
                    first_call = _unlearning_call(
                        model, guide, X.clone(), y.clone(), forget, method, options, mode
                    )
                    start = time.perf_counter()
                    result = first_call()
                    first = time.perf_counter() - start
                    call = _unlearning_call(model, guide, X, y, forget, method, options, mode)
                    rows.append(
                        {
                            "model": model_name,
                            "method": method,
                            "mode": mode,
                            "num_data": n,
                            "first_seconds": first,
                            "seconds": _median_seconds(call, repeats),
                            "forget_set": result.diagnostics["evaluator"]["forget_set"],
                        }
                    )
    return rows


def _unlearning_call(model, guide, X, y, forget, method, options, mode):
    from ..api import unlearn

    if mode == "masked":
        return lambda: unlearn(
            model, guide, X, y, mask=forget, plate="data", method=method, **options
        )
    Xe, ye = X[forget], y[forget]
    return lambda: unlearn(model, guide, Xe, ye, method=method, **options)


def ratios(rows: list[dict], sizes=(1_000, 100_000)) -> list[dict]:
    out = []
    keys = sorted({(r["model"], r["method"], r["mode"]) for r in rows})
    for model, method, mode in keys:
        by_n = {
            r["num_data"]: r
            for r in rows
            if (r["model"], r["method"], r["mode"]) == (model, method, mode)
        }
        small, large = by_n[sizes[0]], by_n[sizes[1]]
        out.append(
            {
                "model": model,
                "method": method,
                "mode": mode,
                "seconds_small": small["seconds"],
                "seconds_large": large["seconds"],
                "ratio": large["seconds"] / small["seconds"],
                "first_small": small["first_seconds"],
                "first_large": large["first_seconds"],
                "first_ratio": large["first_seconds"] / small["first_seconds"],
                "forget_set": large["forget_set"],
            }
        )
    return out


def run(quick: bool = False, repeats: int = 5) -> dict:
    """Both tables; ``quick``: |D| = 1e3 and 1e4, 200 draws, one repeat (a smoke run)."""
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    sizes = (1_000, 10_000) if quick else (1_000, 100_000)
    repeats = 1 if quick else repeats
    path_rows, probe = paths(num_draws=200 if quick else 1000, repeats=repeats)
    scaling = ratios(masked_scaling(sizes=sizes, repeats=repeats), sizes=sizes)
    return {"path_rows": path_rows, "probe": probe, "scaling": scaling, "sizes": sizes}


def markdown(path_rows, probe, scaling, sizes=(1_000, 100_000)) -> str:
    lines = [
        "# The model evaluator's cost",
        "",
        "## Paths: log-likelihood of breast_cancer (569 patients, 31 weights) at 1000 draws",
        "",
        "| model | path | seconds | cost vs vectorized |",
        "|---|---|---:|---:|",
    ]
    for r in path_rows:
        lines.append(
            f"| {r['model']} | {r['path']} | {r['seconds']:.4f} | {r['ratio_vs_vectorized']:.1f}x |"
        )
    lines += [
        "",
        f"Left to choose, the evaluator took the `{probe['path']}` path for `X @ w` "
        f"(not taken: {probe.get('not_taken', {})}).",
        "",
        f"## Masked mode: unlearning 50 points, |D| = {sizes[0]:.0e} and {sizes[1]:.0e} (10 features)",
        "",
        "Later requests on the same data (the decision of how to reach the forget elements "
        "is remembered): median of the repeats. First request on new data tensors: it runs "
        "the model on all data once, to check that the forget elements alone reproduce the "
        "masked run.",
        "",
        f"| model | method | mode | later requests: s at {sizes[0]:.0e} | s at {sizes[1]:.0e} | "
        f"ratio (target <= 1.5) | first request: s at {sizes[0]:.0e} | s at {sizes[1]:.0e} | "
        "ratio | forget elements reached by |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in scaling:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['mode']} | {r['seconds_small']:.4f} | "
            f"{r['seconds_large']:.4f} | {r['ratio']:.2f} | {r['first_small']:.4f} | "
            f"{r['first_large']:.4f} | {r['first_ratio']:.2f} | {r['forget_set']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    results = run(quick=args.quick, repeats=args.repeats)
    text = markdown(**results)
    print(text)
    (args.out / "results_evaluator.md").write_text(text)
    (args.out / "results_evaluator.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
