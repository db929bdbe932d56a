"""Build tutorials/classifiers.ipynb from its cells (run: python tutorials/build_classifiers.py)."""

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# Unlearning a neural classifier: PBU, JiT, instance-wise and continual requests

A small MLP on scikit-learn's digits (1797 images of 8×8 pixels) trains in about a second, so
every method can be compared with the gold standard, a network retrained from scratch without
the forgotten data. The metrics (forget / retain / test accuracy, a membership-inference
attack, the JS divergence of the predictions to the retrained network) are always read
*against the retrained network's values*, not against 0: a forget accuracy far below
retraining's is itself a signal an attacker can use.

`PYRO_UNLEARN_QUICK=1` runs it with one seed and fewer epochs."""),
    code("""import os

import pandas as pd
import torch

import pyro_unlearn as pu
from pyro_unlearn import classifiers as unn
from pyro_unlearn.datasets import digits

QUICK = os.environ.get("PYRO_UNLEARN_QUICK") == "1"
torch.set_num_threads(1)
torch.manual_seed(0)

data = digits(seed=0)
x, y, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
EPOCHS = 10 if QUICK else 30
net = unn.train(unn.mlp(), x, y, epochs=EPOCHS)
print(f"test accuracy of the trained MLP: {unn.accuracy(net, x_test, y_test):.3f}")"""),
    md("""## 1. Forgetting a whole class (the digit 3)

The retrained network is the target. Each method sees only the forget set (and the trained
network); SSD also reads the training inputs' importances, as its authors do."""),
    code("""import time

forget = y == 3
x_f, y_f, x_r, y_r = x[forget], y[forget], x[~forget], y[~forget]
start = time.perf_counter()
retrained = unn.retrain(unn.mlp, x_r, y_r, epochs=EPOCHS)
retrain_seconds = time.perf_counter() - start


def row(name, model, seconds):
    return {
        "method": name,
        "forget acc": unn.accuracy(model, x_f, y_f),
        "retain acc": unn.accuracy(model, x_r, y_r),
        "test acc (no 3s)": unn.accuracy(model, x_test[y_test != 3], y_test[y_test != 3]),
        "MIA (forget vs test)": unn.membership_attack(model, x_f, y_f, x_test, y_test),
        "JS to retrain": unn.js_divergence(model, retrained, x_test),
        "speed-up": retrain_seconds / seconds if seconds else float("nan"),
    }


rows = [row("original", net, 0.0), row("retrain (gold)", retrained, retrain_seconds)]
for name, method in [
    ("PBU", lambda: unn.pbu(net, x_f, y_f)),
    ("NegGrad", lambda: unn.neggrad(net, x_f, y_f)),
    ("JiT (defaults)", lambda: unn.jit(net, x_f)),
    ("SSD", lambda: unn.ssd(net, x_f, y_f, x, y)),
    ("instance-wise", lambda: unn.instance_unlearn(net, x_f, y_f, num_adversarial=5)),
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
    md("""PBU is the general mechanism with a Delta guide: the forget term with weight −α, and a
Gaussian anchor N(θ*, (2βF + 2γI)⁻¹) with F the diagonal Fisher of the forget data. Its loss
is checked against the direct formula in `tests/classifiers/test_classifiers.py`; here is the anchor it uses:"""),
    code("""fisher = unn.diagonal_fisher(net, x_f)
anchor = unn.pbu_anchor(net, fisher, beta=100.0, gamma=40.0)
name = next(iter(anchor))
print(name, "anchor scale (first 5):", anchor[name].base_dist.scale.reshape(-1)[:5])"""),
    md("""## 2. Continual requests with the ledger

Requests arrive one after another; each is honoured from the previous network, the ledger
refuses a repeated deletion before any work is done, and every step's metrics are kept.
First the class 3 deleted in five requests (a user's records arriving in batches):"""),
    code("""class_requests = list(forget.nonzero().flatten().tensor_split(5))
current, ledger, steps = unn.continual(
    unn.instance_unlearn,
    net,
    x,
    y,
    class_requests,
    pu.ForgetLedger(len(y)),
    x_test,
    y_test,
    num_adversarial=5,
)
pd.DataFrame(steps).round(3)"""),
    md("""Random single images are a different problem from a class: the retrained network still
classifies most of them correctly, so driving their accuracy to 0 (instance-wise
unlearning's stopping rule) is both destructive and a signal for an attacker. PBU is
stopped at 80% instead."""),
    code("""generator = torch.Generator().manual_seed(1)
ids = torch.randperm(len(y), generator=generator)
requests = [ids[5 * k : 5 * k + 5] for k in range(5)]  # five requests of five images
for name, method, options in [
    ("instance-wise", unn.instance_unlearn, {"num_adversarial": 5}),
    ("PBU, stopped at 80% forget accuracy", unn.pbu, {"target_forget_accuracy": 0.8}),
]:
    ledger, current, rows = pu.ForgetLedger(len(y)), net, []
    for request in requests:  # one at a time, so that a runaway request shows where it failed
        try:
            current, ledger, steps = unn.continual(
                method, current, x, y, [request], ledger, x_test, y_test, **options
            )
        except pu.UnlearningDivergedError as error:  # the ledger keeps only what succeeded
            rows.append({"forgotten": len(ledger.forgotten) + len(request), "diverged": str(error)[:48]})
            break
        rows += steps
    print(name)
    print(pd.DataFrame(rows).round(3), end="\\n\\n")
try:
    unn.continual(unn.instance_unlearn, current, x, y, [requests[0]], ledger)
except pu.RepeatedDeletionError as error:
    print("refused:", str(error)[:100])"""),
    md("""## What the papers claimed, what we measured

- *PBU* (Panda, Sourav & Prathosh, 2024) reports forgetting a class with retain accuracy close
  to the original. Measured here (3 seeds, `pyro-unlearn bench --suite classifiers`): forget
  accuracy 0 and a membership attack within 0.04 of retraining at 25× its speed, but 7
  points of retain accuracy lost (our target was 2). The authors' γ = 4000 cancelled the
  ascent entirely on digits; the default here is γ = 40.
- *JiT* (Foster et al., 2024) reports zero-shot forgetting by Lipschitz smoothing. At its
  published defaults (σ = 0.5, lr 3e-4, one pass) it did not remove a class here; larger steps
  collapsed retain accuracy.
- *Instance-wise unlearning* (Cha et al., 2024) reports that adversarial examples and weight
  importance keep the other classes intact while instances are forgotten. For the whole class
  3 its default (−CE) forgot the class and kept more retain accuracy than PBU or NegGrad,
  though still below retraining. In its relabelling mode, with each image relabelled as the
  class the network ranks second (`unn.runner_up_labels`), it stays close to retraining:
  over 3 seeds in the benchmark, retain and test accuracy within 2 points, the membership
  attack within 0.05, 13× faster than retraining. −CE raises every other class's logit on
  the forgotten images; CE to one label stops once that label wins. With the class deleted
  in five requests (section 2), the default forgot it with the first request (the later ones
  needed 4, then 0 steps). On five requests of five random images its stopping rule, forget accuracy 0, is out of reach without damage: each forget sample weighs as much
  as one adversarial example (the authors' weighting), the ascent on a confidently
  classified image is slow, and once it breaks through it takes the network with it (the
  benchmark measured the same on a random 10% of the training set). Stopping at the
  retrained model's accuracy level is what random instances need; here PBU stopped at 80%
  (see its rows for what that costs).
"""),
]
notebook = nbf.v4.new_notebook(
    cells=cells,
    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
)
nbf.write(notebook, "tutorials/classifiers.ipynb")
