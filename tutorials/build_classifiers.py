"""Build tutorials/classifiers.ipynb from its cells (run: python tutorials/build_classifiers.py)."""

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# Unlearning a neural classifier: one setting, then the grid

A small MLP on scikit-learn's digits (1797 images of 8×8 pixels) trains in under a second,
so every method can be compared with the gold standard, a network retrained from scratch
without the forgotten data. The metrics (forget / retain / test accuracy, a
membership-inference attack, the speed-up) are read *against the retrained network's
values*, not against 0: a forget accuracy far below retraining's is itself a signal an
attacker can use.

Section 1 runs the methods on one setting, as a user would. It is an illustration, not
evidence: what a method does on one class of one network says little about the next
(section 2 shows by how much). Every claim here comes from the benchmark's grid, read in
section 2 from `pyro_unlearn/bench/results_classifiers.json`.

`PYRO_UNLEARN_QUICK=1` runs it with fewer epochs."""),
    code("""import json
import os
import time

import pandas as pd
import torch

import pyro_unlearn as pu
from pyro_unlearn import classifiers as unn
from pyro_unlearn.bench import classifiers as grid
from pyro_unlearn.datasets import digits

QUICK = os.environ.get("PYRO_UNLEARN_QUICK") == "1"
torch.set_num_threads(1)

data = digits(seed=1)
x, y, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
EPOCHS = 10 if QUICK else 30
net = unn.retrain(unn.mlp, x, y, epochs=EPOCHS, seed=1)
print(f"test accuracy of the trained MLP: {unn.accuracy(net, x_test, y_test):.3f}")"""),
    md("""## 1. One setting: the digit 7 forgotten from the MLP

Each method sees the trained network and the data its row in `docs/classifiers.md` says it
reads: SalUn, SCRUB and class distillation the forget set and the retained data (class
distillation a replay of two retained images per forgotten one), ℓ1-sparse the retained
data only, the others the forget set alone."""),
    code("""forget = y == 7
x_f, y_f, x_r, y_r = x[forget], y[forget], x[~forget], y[~forget]
start = time.perf_counter()
retrained = unn.retrain(unn.mlp, x_r, y_r, epochs=EPOCHS, seed=101)
retrain_seconds = time.perf_counter() - start
others = y_test != 7


def row(name, model, seconds):
    return {
        "method": name,
        "forget acc": unn.accuracy(model, x_f, y_f),
        "retain acc": unn.accuracy(model, x_r, y_r),
        "test acc (no 7s)": unn.accuracy(model, x_test[others], y_test[others]),
        "MIA (forget vs test)": unn.membership_attack(model, x_f, y_f, x_test, y_test),
        "speed-up": retrain_seconds / seconds if seconds else float("nan"),
    }


rows = [row("original", net, 0.0), row("retrain (gold)", retrained, retrain_seconds)]
for name, method in [
    ("class distillation", lambda: unn.class_distillation(net, x_f, y_f, x_r, y_r)),
    ("SalUn", lambda: unn.salun(net, x_f, y_f, x_r, y_r)),
    ("l1-sparse", lambda: unn.l1_sparse(net, x_r, y_r)),
    ("SCRUB (authors' settings)", lambda: unn.scrub(net, x_f, y_f, x_r, y_r)),
    ("PBU", lambda: unn.pbu(net, x_f, y_f)),
    ("JiT", lambda: unn.jit(net, x_f)),
    ("JiT (authors' code)", lambda: unn.jit(net, x_f, variant="authors")),
    (
        "instance-wise, CE to runner-up",
        lambda: unn.instance_unlearn(
            net,
            x_f,
            y_f,
            new_labels=unn.runner_up_labels(net, x_f, y_f),
            num_adversarial=2,
            pgd_iterations=20,
        ),
    ),
]:
    start = time.perf_counter()
    model, info = method()
    rows.append(row(name, model, time.perf_counter() - start))
pd.DataFrame(rows).set_index("method").round(3)"""),
    md("""The same calls go through `pu.unlearn(unn.ClassifierModel(net), net, x_f, y_f,
method="salun", x_retain=x_r, y_retain=y_r)`; the result's `network` is the new network.

## 2. The grid: what holds beyond one setting

`python -m pyro_unlearn.bench.classifiers` runs every method on 90 whole-class cells (10
classes × 3 seeds × the MLP, the small CNN and a wide MLP whose retraining takes 6–7 s)
and on random 1% / 10%, five single images and five single-image requests in a row. A cell
meets the full-class targets when forget accuracy ≤ 0.02, retain and test accuracy are
within 0.02 of retraining's, the membership attack within 0.05, and the method is ≥ 10×
faster. Each cell also retrains a second network from another seed and judges it like a
method, its speed excepted (`retrain (another seed)`): two networks that never saw the
forgotten data differ by this much, so its share is about as high as any method's can be
expected to go. The committed results:"""),
    code("""with open("pyro_unlearn/bench/results_classifiers.json") as handle:
    cells = json.load(handle)["cells"]
summary = grid.summarise(cells)
share = pd.DataFrame(
    {
        network: {
            method: entry["share_meeting_targets"]
            for method, entry in summary[f"class / {network}"].items()
        }
        for network in ("mlp", "cnn", "wide")
    }
)
share.drop(index="retrain").style.format("{:.0%}")"""),
    md("""Medians hide the cells a user will meet on a bad day, so here are the worst cells of
each gap to retraining over all 90 class cells, with the median speed-up on each network:"""),
    code("""everything = summary["class / all"]
worst = pd.DataFrame(
    {
        method: {
            "forget acc (worst)": entry["forget_acc"]["worst"],
            "retain gap (worst)": entry["retain_gap"]["worst"],
            "test gap (worst)": entry["test_gap"]["worst"],
            "MIA gap (worst)": entry["mia_gap"]["worst"],
            **{  # a method rerun on some networks only has no entry on the others
                f"speed-up {network} (median)": summary[f"class / {network}"].get(
                    method, {"speedup": {"median": float("nan")}}
                )["speedup"]["median"]
                for network in ("mlp", "cnn", "wide")
            },
        }
        for method, entry in everything.items()
        if method not in ("retrain", "original")
    }
).T
worst.round(3)"""),
    md("""- Class distillation, the library's own method for whole classes, meets every
  full-class target in 86 of the 90 class cells (28 of the MLP's, 29 of the CNN's and of
  the wide MLP's). Its misses are accuracy gaps of −0.021 and −0.022 (twice) and one
  speed-up of 9.3×; a second retraining meets the accuracy and attack targets in 88 of the
  90. On four seeds the grid does not use it meets them in 109 of 120 cells (88–93% per
  pair of seeds; a second retraining: 115), its worst cell a CNN that was weakly trained to
  begin with (retain and test gaps −0.043, −0.049).
- Of the published methods none meets every target in 90% of the class cells. On the wide
  MLP, ℓ1-sparse does in 27 of 30 (its misses: a test gap of −0.025 and a forget accuracy
  of 0.021 twice); on the small MLP and the CNN three epochs on the retained data do not
  forget the class.
- SalUn is the most accurate everywhere (forget accuracy ≤ 0.007, retain gap ≥ −0.029,
  attack within 0.024 of retraining in all 90 cells) but only 5.5–7× faster than
  retraining the small networks.
- The instance-wise runner-up recipe, measured once on class 3 of the MLP as meeting every
  target, meets them in 37% of the MLP's cells and none of the CNN's.

Random forgetting is a different problem: the retrained network still classifies 97% of a
random 10% correctly, so a method should leave them about as well classified as unseen
data. Share of cells within 0.02 of retraining's forget and retain accuracy:"""),
    code("""pd.DataFrame(
    {
        scenario: {
            method: entry["share_meeting_targets"]
            for method, entry in summary[f"{scenario} / all"].items()
        }
        for scenario in ("random1", "random10", "instances", "sequence")
    }
).drop(index="retrain").style.format("{:.0%}")"""),
    md("""Doing nothing passes these targets in 44% of the random-10% cells, a second retraining
in 89% (8 of 9): a random 10% is 143 images, and 0.02 of it is three. SalUn's 8 of 9 did
not hold on seven further splits (seeds 3 to 9,
`pyro_unlearn/bench/results_classifiers_random_seeds3to9.md`): within both targets in 12
of 21 cells, where doing nothing is in 10, ℓ1-sparse in 13 and a second retraining in 19.
No method here forgets a random 10% as closely as retraining does again. Those that drive
the forgotten images to misclassification (NegGrad, PBU, SSD, the runner-up recipe) lose up
to 0.5–0.8 of retain accuracy over five requests in a row.

## 3. Requests in a row, through the ledger

Requests arrive one after another; each is honoured from the previous network, the ledger
refuses a repeated deletion before any work is done, and every step's metrics are kept.
Here five single images, one request each, with PBU stopped at the network's held-out
accuracy (what a retrained network keeps on data it never saw):"""),
    code("""held_out = unn.accuracy(net, x_test, y_test)
generator = torch.Generator().manual_seed(1)
requests = [i.reshape(1) for i in torch.randperm(len(y), generator=generator)[:5]]
current, ledger, steps = unn.continual(
    unn.pbu,
    net,
    x,
    y,
    requests,
    pu.ForgetLedger(len(y)),
    x_test,
    y_test,
    target_forget_accuracy=held_out,
    on_unreliable="warn",  # the default raises at a request that stops short of its target
)
print(pd.DataFrame(steps).round(3))
try:
    unn.continual(unn.pbu, current, x, y, [requests[0]], ledger)
except pu.RepeatedDeletionError as error:
    print("refused:", str(error)[:100])"""),
    md("""With one image per request, "forget accuracy at most the held-out accuracy" can only
mean misclassifying the image: the rule cannot say "as confident as on unseen data", and
the network pays for it on the retained data. A request that uses all of PBU's
`max_steps` without reaching its target (here the second: the image is still predicted
right after 200 steps) raises `TargetNotReachedError` by default; `on_unreliable="warn"`
returns that step's network with a warning and `reached_target` False, as above. Over
the grid's five-requests-in-a-row cells PBU loses a median 0.21 of retain accuracy (worst
0.51), while SalUn, SCRUB and ℓ1-sparse, which also read the retained data, stay within
0.02 of retraining in every cell.

"""),
    md("""## 4. Per-example privacy

U-LiRA asks, per image, whether a network unlearned it or never saw it (0.5: like
retraining), over a population of shadow networks, and, read on retained images, whether
unlearning one image left a trace on the others; the NeurIPS 2023 challenge's score turns
per-image ε of a population of unlearned networks against retrained ones into points, times
the accuracy ratios. Both at a small scale (`pyro_unlearn/bench/results_privacy.json`):"""),
    code("""with open("pyro_unlearn/bench/results_privacy.json") as handle:
    privacy = json.load(handle)
print(pd.DataFrame(privacy["ulira"]["methods"]).T.round(3), end="\\n\\n")
print(f"challenge score, {privacy['challenge']['num_models']} networks per population:")
pd.DataFrame(privacy["challenge"]["methods"]).T[
    ["score", "score_sd", "forgetting_quality", "retain_ratio", "test_ratio"]
].round(3)"""),
    md("""With 32 networks per population the score is biased down for everyone (the challenge
used 512): a second, independent population of retrained networks scores 0.22, the best
reachable here, and every unlearning method scores 0.073 or less (PBU stopped at the held-out accuracy), doing
nothing 0.043.

## What the papers claimed, what the grid measured

(Class distillation is this library's own; its numbers are above.)

- *PBU* (Panda, Sourav & Prathosh, 2024): forgets every class and tracks the membership
  attack, but loses a median 5 points of retain accuracy (worst 39) against retraining.
- *JiT* (Foster et al., 2024): at its published σ = 0.5, lr 3e-4 the paper's Algorithm 1
  changes nothing (forget accuracy 1.00 in all 90 cells); the authors' code, which detaches
  the perturbed outputs and accumulates gradients, forgets the class and destroys the
  network (median retain gap −0.52).
- *Instance-wise unlearning* (Cha et al., 2024): its defaults forget a class but are slower
  than retraining the small networks (0.1–0.8×; 1.4× faster on the wide MLP); relabelling to
  the runner-up class with 2 adversarial examples and 20 PGD iterations meets every target
  in 37% / 0% / 83% of the MLP / CNN / wide cells; the authors' own code forgets nothing on
  the wide MLP in 1000 passes.
- *SalUn* (Fan et al., 2024): the closest to retraining in accuracy and the attack in every
  class cell; 5.5–37× faster (median per network).
- *SCRUB* (Kurmanji et al., 2023): at the authors' settings it does not forget a digits
  class; no single learning rate worked on both small networks.
- *ℓ1-sparse* (Jia et al., 2023): on the wide MLP it meets every target in 27 of 30 cells;
  on the small networks it does not forget the class in 3 epochs.
"""),
]
notebook = nbf.v4.new_notebook(
    cells=cells,
    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
)
nbf.write(notebook, "tutorials/classifiers.ipynb")
