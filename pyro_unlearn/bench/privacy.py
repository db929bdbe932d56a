r"""Benchmark: per-example privacy of classifier unlearning.

* U-LiRA (Hayes et al., 2024): single-image requests on 200 digits and an MLP 64-64-10
  trained for 100 epochs (small and overfitted, so that single images are memorised),
  against a population of shadow networks (:func:`~pyro_unlearn.classifiers.ulira`).
  Reported per method: the attack's accuracy over all (shadow, target) pairs (0.5: the
  unlearned networks look like networks that never saw the image) and its distribution over
  the target images (per-example accuracy: median, 90th percentile, worst); and the same
  attack read on 16 retained images every shadow trains on (does unlearning one image leave
  a trace on the others?), with its distribution over those images.
* The NeurIPS 2023 challenge's score at a small scale
  (:func:`~pyro_unlearn.classifiers.challenge_score`): a random 10% of the digits training
  images forgotten from ``N`` networks trained with different seeds, against ``N`` networks
  retrained without them, with a second independent retrained population as the reference
  (the best score reachable at this ``N``) and the score's bootstrap spread over networks.

Run: ``python -m pyro_unlearn.bench.privacy --json results_privacy.json`` (or
``python -m pyro_unlearn.bench.classifiers --ulira`` for the tables after the grid).
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch

from .. import _rng
from .. import classifiers as unn
from ..datasets import digits


def ulira_table(
    seed: int = 0, num_shadows: int = 16, num_targets: int = 16, num_retained: int = 16
) -> dict:
    """U-LiRA per method on single-image requests, overall and per target image, and on
    retained images."""
    torch.set_num_threads(1)
    data = digits(seed)
    x, y = data["x_train"][:200], data["y_train"][:200]

    def make():
        return unn.mlp(hidden=(64,))

    options = {"epochs": 100}
    seeds = itertools.count(10_000)  # the oracle's retrains need their own random inits
    methods = {
        "do nothing": lambda net, xf, yf, xr, yr: net,
        "retrain (oracle)": lambda net, xf, yf, xr, yr: unn.retrain(
            make, xr, yr, seed=next(seeds), **options
        ),
        "pbu": lambda net, xf, yf, xr, yr: unn.pbu(net, xf, yf, on_unreliable="ignore")[0],
        "neggrad": lambda net, xf, yf, xr, yr: unn.neggrad(net, xf, yf, on_unreliable="ignore")[0],
        "salun": lambda net, xf, yf, xr, yr: unn.salun(net, xf, yf, xr, yr)[0],
        "scrub": lambda net, xf, yf, xr, yr: unn.scrub(net, xf, yf, xr, yr)[0],
        "l1_sparse": lambda net, xf, yf, xr, yr: unn.l1_sparse(net, xr, yr)[0],
    }
    out = {
        "num_shadows": num_shadows,
        "num_targets": num_targets,
        "num_retained": num_retained,
        "methods": {},
    }
    for name, method in methods.items():
        start = time.perf_counter()
        result = unn.ulira(
            make,
            method,
            x,
            y,
            num_targets=num_targets,
            num_shadows=num_shadows,
            num_retained=num_retained,
            train_options=options,
            seed=seed,
        )
        per_target = np.array(result["per_target"])
        per_retained = np.array(result["per_retained"])
        out["methods"][name] = {
            "accuracy": result["accuracy"],
            "per_target_median": float(np.median(per_target)),
            "per_target_p90": float(np.quantile(per_target, 0.9)),
            "per_target_worst": float(per_target.max()),
            "retained_accuracy": result["retained_accuracy"],
            "per_retained_median": float(np.median(per_retained)),
            "per_retained_p90": float(np.quantile(per_retained, 0.9)),
            "per_retained_worst": float(per_retained.max()),
            "seconds": time.perf_counter() - start,
        }
    return out


def markdown(table: dict) -> str:
    lines = [
        f"U-LiRA, {table['num_shadows']} shadows x {table['num_targets']} single-image targets "
        f"and {table['num_retained']} retained images in every shadow (0.5: like retraining; "
        "per image: the attack's accuracy on that image)",
        "",
        "| method | forgotten: accuracy | per image: median | 90th pct | worst "
        "| retained: accuracy | per image: median | 90th pct | worst | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in table["methods"].items():
        lines.append(
            f"| {name} | {row['accuracy']:.3f} | {row['per_target_median']:.3f} | "
            f"{row['per_target_p90']:.3f} | {row['per_target_worst']:.3f} | "
            f"{row['retained_accuracy']:.3f} | {row['per_retained_median']:.3f} | "
            f"{row['per_retained_p90']:.3f} | {row['per_retained_worst']:.3f} | "
            f"{row['seconds']:.1f} |"
        )
    return "\n".join(lines)


def challenge_table(seed: int = 0, num_models: int = 32) -> dict:
    """The challenge's score per method, from ``num_models`` networks per population."""
    torch.set_num_threads(1)
    data = digits(seed)
    x, y, xt, yt = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    forget = torch.zeros(len(y), dtype=torch.bool)
    forget[_rng.permutation(len(y), _rng.generator(seed))[: len(y) // 10]] = True
    xf, yf, xr, yr = x[forget], y[forget], x[~forget], y[~forget]

    def make():
        return unn.mlp(hidden=(32,))

    options = {"epochs": 30}
    start = time.perf_counter()
    trained = [unn.retrain(make, x, y, seed=seed * 1000 + i, **options) for i in range(num_models)]
    retrained = [
        unn.retrain(make, xr, yr, seed=seed * 1000 + 500 + i, **options) for i in range(num_models)
    ]
    training_seconds = time.perf_counter() - start
    held_out = float(np.mean([unn.accuracy(net, xt, yt) for net in trained]))
    oracle_seeds = itertools.count(seed * 1000 + 900)
    methods = {
        "do nothing": lambda net: net,
        "retrain (independent population)": lambda net: unn.retrain(
            make, xr, yr, seed=next(oracle_seeds), **options
        ),
        "finetune": lambda net: unn.finetune(net, xr, yr),
        "neggrad": lambda net: unn.neggrad(
            net, xf, yf, target_forget_accuracy=held_out, on_unreliable="ignore"
        )[0],
        "pbu": lambda net: unn.pbu(
            net, xf, yf, target_forget_accuracy=held_out, on_unreliable="ignore"
        )[0],
        "jit": lambda net: unn.jit(net, xf, sigma=0.01)[0],
        "salun": lambda net: unn.salun(net, xf, yf, xr, yr)[0],
        "scrub": lambda net: unn.scrub(net, xf, yf, xr, yr)[0],
        "l1_sparse": lambda net: unn.l1_sparse(net, xr, yr)[0],
    }
    out = {
        "num_models": num_models,
        "forgotten": int(forget.sum()),
        "training_seconds": training_seconds,
        "methods": {},
    }
    for name, method in methods.items():
        start = time.perf_counter()
        unlearned = [method(net) for net in trained]
        seconds = time.perf_counter() - start
        result = unn.challenge_score(unlearned, retrained, xf, yf, xr, yr, xt, yt, seed=seed)
        epsilons = result.pop("epsilons")
        out["methods"][name] = {
            **result,
            "epsilon_median": float(np.median(epsilons)),
            "epsilon_p90": float(np.quantile(epsilons, 0.9)),
            "seconds_per_network": seconds / num_models,
        }
    return out


def challenge_markdown(table: dict) -> str:
    lines = [
        f"NeurIPS 2023 challenge score at a small scale: {table['forgotten']} random digits "
        f"forgotten, {table['num_models']} networks per population (MLP 64-32-10); "
        "score ± its bootstrap sd over networks",
        "",
        "| method | score | forgetting quality | RA ratio | TA ratio | eps median | eps 90th pct "
        "| s / network |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in table["methods"].items():
        lines.append(
            f"| {name} | {row['score']:.3f} ± {row['score_sd']:.3f} | "
            f"{row['forgetting_quality']:.3f} | {row['retain_ratio']:.3f} | "
            f"{row['test_ratio']:.3f} | {row['epsilon_median']:.2f} | {row['epsilon_p90']:.2f} | "
            f"{row['seconds_per_network']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    import argparse
    import json

    from . import rounded

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write both tables to this file")
    args = parser.parse_args(argv)
    tables = {"ulira": ulira_table(args.seed), "challenge": challenge_table(args.seed)}
    print(f"`python -m pyro_unlearn.bench.privacy` (seed {args.seed})\n")
    print(markdown(tables["ulira"]) + "\n")
    print(challenge_markdown(tables["challenge"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rounded(tables), handle, separators=(",", ":"))


if __name__ == "__main__":
    main()
