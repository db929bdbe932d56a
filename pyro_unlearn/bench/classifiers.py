r"""Benchmark: unlearning in a digits classifier (MLP 64-128-128-10 or a small CNN).

Scenarios: a whole class (3) forgotten, a random 10% of the training images, and five
single images. Each
method sees the trained network and the forget set (fine-tuning and retraining also the
retained set; SSD all training images). Reported per method, mean ± sd over seeds:
accuracy on forget / retain / test, the membership attack's accuracy (forget vs test,
logistic regression on the loss: compare with retrain's value), the Jensen-Shannon
divergence to the retrained network on the forget set, wall time and speed-up vs
retraining (measured in the same run).

With ``--ulira`` it also runs the U-LiRA per-example attack (:func:`~pyro_unlearn.classifiers.ulira`)
on single-image requests against a population of shadow MLPs, for doing nothing, the
retraining oracle, PBU and NegGrad.

Run: ``python -m pyro_unlearn.bench.classifiers`` (``--quick``: one seed;
``--architecture cnn`` for the CNN; ``--ulira`` for the per-example attack).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from .. import _rng
from .. import classifiers as unn
from ..datasets import digits
from ..errors import UnlearningDivergedError

ARCHITECTURES = {"mlp": (unn.mlp, 30), "cnn": (unn.small_cnn, 15)}  # network, training epochs


METRICS = ("forget_acc", "retain_acc", "test_acc", "mia", "js_to_retrain")


def _evaluate(net, data, forget, retrained) -> dict:
    x, y, xt, yt = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    return {
        "forget_acc": unn.accuracy(net, x[forget], y[forget]),
        "retain_acc": unn.accuracy(net, x[~forget], y[~forget]),
        "test_acc": unn.accuracy(net, xt, yt),
        "mia": unn.membership_attack(net, x[forget], y[forget], xt, yt),
        "js_to_retrain": unn.js_divergence(net, retrained, x[forget]),
    }


def run_seed(seed: int, scenario: str, architecture: str = "mlp") -> dict[str, dict]:
    torch.set_num_threads(1)
    make_net, epochs = ARCHITECTURES[architecture]
    data = digits(seed=seed)
    x, y = data["x_train"], data["y_train"]
    net = unn.retrain(make_net, x, y, epochs=epochs, seed=seed)  # seeded initialisation too
    if scenario == "class":
        forget = y == 3
        target = 0.0  # a retrained model never predicts the forgotten class
        sigma = 0.5
    else:
        count = len(y) // 10 if scenario == "random" else 5
        order = _rng.permutation(len(y), _rng.generator(seed))
        forget = torch.zeros(len(y), dtype=torch.bool)
        forget[order[:count]] = True
        target = unn.accuracy(
            net, data["x_test"], data["y_test"]
        )  # forgotten = as good as held out
        sigma = 0.01
    xf, yf, xr, yr = x[forget], y[forget], x[~forget], y[~forget]

    start = time.perf_counter()
    retrained = unn.retrain(make_net, xr, yr, epochs=epochs, seed=seed + 100)
    retrain_seconds = time.perf_counter() - start
    methods = {
        "original": lambda: (net, {}),
        "retrain": lambda: (retrained, {}),
        "finetune (D_r, 2 epochs)": lambda: (unn.finetune(net, xr, yr, epochs=2, seed=seed), {}),
        "neggrad": lambda: unn.neggrad(net, xf, yf, target_forget_accuracy=target, seed=seed),
        "pbu": lambda: unn.pbu(net, xf, yf, target_forget_accuracy=target, seed=seed),
        "jit": lambda: unn.jit(net, xf, sigma=sigma, seed=seed),
        "ssd": lambda: unn.ssd(net, xf, yf, x, y, seed=seed),
        "instance-wise": lambda: unn.instance_unlearn(net, xf, yf, seed=seed),
        "instance-wise (2 adversarial, 20 PGD its)": lambda: unn.instance_unlearn(
            net, xf, yf, num_adversarial=2, pgd_iterations=20, seed=seed
        ),
        "instance-wise, CE to runner-up": lambda: unn.instance_unlearn(
            net, xf, yf, new_labels=unn.runner_up_labels(net, xf, yf), seed=seed
        ),
        "instance-wise, CE to runner-up (2 adversarial, 20 PGD its)": lambda: unn.instance_unlearn(
            net,
            xf,
            yf,
            new_labels=unn.runner_up_labels(net, xf, yf),
            num_adversarial=2,
            pgd_iterations=20,
            seed=seed,
        ),
    }
    rows = {}
    for name, run in methods.items():
        start = time.perf_counter()
        try:
            new, _ = run()
        except UnlearningDivergedError:  # a method that ran away is a row of NaNs, not a crash
            rows[name] = dict.fromkeys(METRICS + ("seconds", "speedup"), float("nan"))
            continue
        seconds = (
            0.0
            if name == "original"
            else (retrain_seconds if name == "retrain" else time.perf_counter() - start)
        )
        rows[name] = {
            **_evaluate(new, data, forget, retrained),
            "seconds": seconds,
            "speedup": retrain_seconds / seconds if seconds else float("nan"),
        }
    return rows


def run(
    seeds=(0, 1, 2), scenarios=("class", "random", "instances"), architecture: str = "mlp"
) -> dict:
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # the networks and the digits tensors
    try:
        return _run(seeds, scenarios, architecture)
    finally:
        torch.set_default_dtype(dtype)


def _run(seeds, scenarios, architecture) -> dict:
    results = {}
    for scenario in scenarios:
        per_seed = [run_seed(seed, scenario, architecture) for seed in seeds]
        summary = {}
        for method in per_seed[0]:
            summary[method] = {
                metric: (
                    float(np.mean([r[method][metric] for r in per_seed])),
                    float(np.std([r[method][metric] for r in per_seed])),
                )
                for metric in per_seed[0][method]
            }
        results[scenario] = {"seeds": list(seeds), "architecture": architecture, "summary": summary}
    return results


def markdown(results: dict) -> str:
    metrics = [*METRICS, "seconds", "speedup"]
    lines = ["nan: the method diverged (UnlearningDivergedError) on at least one seed.", ""]
    for scenario, block in results.items():
        title = {
            "class": "class 3 forgotten",
            "random": "random 10% forgotten",
            "instances": "5 single images forgotten",
        }[scenario]
        lines += [
            f"*digits {block.get('architecture', 'mlp').upper()}, {title}, seeds {block['seeds']} (mean ± sd)*",
            "",
            "| method | " + " | ".join(metrics) + " |",
            "|---|" + "---:|" * len(metrics),
        ]
        for method, values in block["summary"].items():
            cells = [f"{values[m][0]:.3g} ± {values[m][1]:.2g}" for m in metrics]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def ulira_table(seed: int = 0, num_shadows: int = 16, num_targets: int = 16) -> dict:
    """U-LiRA accuracy per method on single-image requests (400 digits, MLP 64-32-10)."""
    import itertools

    torch.set_num_threads(1)
    data = digits(seed)
    x, y = data["x_train"][:400], data["y_train"][:400]

    def make():
        return unn.mlp(hidden=(32,))

    options = {"epochs": 40}
    seeds = itertools.count(10_000)  # the oracle's retrains need their own random inits
    methods = {
        "do nothing": lambda net, xf, yf, xr, yr: net,
        "retrain (oracle)": lambda net, xf, yf, xr, yr: unn.retrain(
            make, xr, yr, seed=next(seeds), **options
        ),
        "pbu": lambda net, xf, yf, xr, yr: unn.pbu(net, xf, yf)[0],
        "neggrad": lambda net, xf, yf, xr, yr: unn.neggrad(net, xf, yf)[0],
    }
    out = {}
    for name, method in methods.items():
        start = time.perf_counter()
        result = unn.ulira(
            make,
            method,
            x,
            y,
            num_targets=num_targets,
            num_shadows=num_shadows,
            train_options=options,
            seed=seed,
        )
        out[name] = {"accuracy": result["accuracy"], "seconds": time.perf_counter() - start}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="mlp")
    parser.add_argument("--json", default=None)
    parser.add_argument("--ulira", action="store_true", help="also run the U-LiRA attack")
    args = parser.parse_args(argv)
    if args.ulira:
        print("| method | U-LiRA accuracy (0.5 = like retraining) | seconds |\n|---|---:|---:|")
        for name, row in ulira_table(args.seeds[0]).items():
            print(f"| {name} | {row['accuracy']:.3f} | {row['seconds']:.1f} |")
    results = run(
        seeds=args.seeds[:1] if args.quick else args.seeds, architecture=args.architecture
    )
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
