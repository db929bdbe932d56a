r"""Privacy and agreement metrics for unlearned classifiers.

Compare every number with the retrained model's, not with an ideal: a forget accuracy far
below retrain's is itself a leak (the Streisand effect a membership attack picks up).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import BadRequestError
from ._guards import checked_examples, evaluating


def per_sample(net: nn.Module, x, y) -> dict[str, torch.Tensor]:
    """Per-example cross-entropy loss and predictive entropy, in eval mode."""
    return _per_sample(net, x, checked_examples(net, x, y, name="x"))


def _per_sample(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`per_sample` of examples already checked."""
    with evaluating(net), torch.no_grad():
        log_p = net(x).log_softmax(-1)
    return {
        "loss": -log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1),
        "entropy": -(log_p.exp() * log_p).sum(-1),
    }


def membership_attack(
    net: nn.Module,
    x_forget,
    y_forget,
    x_test,
    y_test,
    *,
    feature: str = "loss",
    folds: int = 5,
    seed: int = 0,
) -> float:
    """Cross-validated accuracy of a logistic-regression attack telling forget from test examples.

    Classes are balanced by subsampling the larger set; 0.5 means the attack cannot tell
    them apart. The retrained model's value is the target (it is > 0.5 when forget and
    test examples differ, e.g. a whole forgotten class).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    y_forget = checked_examples(net, x_forget, y_forget, name="x_forget")
    y_test = checked_examples(net, x_test, y_test, name="x_test")
    for name, x in (("x_forget", x_forget), ("x_test", x_test)):
        if len(x) < 2:
            raise BadRequestError(
                f"membership_attack: {name} must hold at least 2 examples with one label each "
                f"(got {len(x)}): the attack is cross-validated"
            )

    a = _per_sample(net, x_forget, y_forget)[feature].double().cpu().numpy()
    b = _per_sample(net, x_test, y_test)[feature].double().cpu().numpy()
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    a, b = rng.choice(a, n, replace=False), rng.choice(b, n, replace=False)
    features = np.log1p(np.concatenate([a, b]).clip(min=0))[:, None]
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    folds = max(2, min(folds, n))
    return float(cross_val_score(LogisticRegression(), features, labels, cv=folds).mean())


def js_divergence(net_a: nn.Module, net_b: nn.Module, x) -> float:
    r"""Mean Jensen-Shannon divergence (nats) between the two networks' predictive distributions
    (both in eval mode).

    >>> net = nn.Linear(3, 4)
    >>> js_divergence(net, net, torch.randn(5, 3))
    0.0
    """
    with evaluating(net_a), evaluating(net_b), torch.no_grad():
        p, q = net_a(x).softmax(-1), net_b(x).softmax(-1)
    m = (p + q) / 2

    def kl(u, v):
        return (u * (u.clamp(min=1e-30).log() - v.clamp(min=1e-30).log())).sum(-1)

    value = float((0.5 * kl(p, m) + 0.5 * kl(q, m)).mean())
    return 0.0 if abs(value) < 1e-12 else min(value, math.log(2))
