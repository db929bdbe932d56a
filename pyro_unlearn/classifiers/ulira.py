r"""U-LiRA: a per-example likelihood-ratio attack on unlearning (Hayes et al., 2024).

A membership attack on the unlearned model asks "was this example trained on?"; U-LiRA asks
the sharper question "was this example *unlearned*, or never trained on?". For each target
example :math:`(x, y)` a population of shadow models is trained on random halves of the
data. Shadows that saw the target have it unlearned (with the method under test); the
others never saw it. The target's logit-scaled confidence

.. math:: \phi = \log p(y\mid x) - \log(1 - p(y\mid x))

is Gaussian-ish in each group; with :math:`\mathcal N(\mu_u, \sigma_u^2)` (unlearned) and
:math:`\mathcal N(\mu_r, \sigma_r^2)` (never trained) fitted on the other shadows, a model is
called "unlearned" when its :math:`\phi` is more likely under the first. The attack's
accuracy over all (shadow, target) pairs, leave-one-shadow-out, is 0.5 for unlearning that is
indistinguishable from retraining, and higher the more the unlearned model still remembers.

On *retained* examples (``num_retained``: examples every shadow trains on) the same attack
reads :math:`\phi` of a retained example instead of the target's, from the same models: it
asks whether unlearning the target left a trace on the examples that stayed, such as the
collateral damage of gradient ascent. 0.5 again means no trace.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .. import _rng
from ._guards import checked_examples, evaluating
from .training import retrain


def logit_confidence(net: nn.Module, x, y) -> torch.Tensor:
    r""":math:`\phi = \log p(y\mid x) - \log(1-p(y\mid x))` per example, computed stably
    (in eval mode)."""
    y = checked_examples(net, x, y, name="x")
    with evaluating(net), torch.no_grad():
        log_p = net(x).log_softmax(-1)
    own = log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    others = log_p.scatter(-1, y.unsqueeze(-1), -math.inf).logsumexp(-1)
    return own - others


def _log_normal(value: float, mean: float, sd: float) -> float:
    return -0.5 * ((value - mean) / sd) ** 2 - math.log(sd)


def ulira(
    make_net: Callable[[], nn.Module],
    unlearn_fn: Callable,
    x,
    y,
    *,
    num_targets: int = 10,
    num_shadows: int = 16,
    num_retained: int = 0,
    train_options: dict | None = None,
    seed: int = 0,
) -> dict:
    """Leave-one-shadow-out U-LiRA accuracy of ``unlearn_fn`` on ``num_targets`` examples.

    Parameters
    ----------
    make_net : callable
        Builds a fresh, untrained network.
    unlearn_fn : callable
        ``unlearn_fn(net, x_forget, y_forget, x_retain, y_retain) -> net``: the method
        under test (most ignore the retained data; the retraining oracle uses it).
    x, y : tensors
        The data the shadows are drawn from (each shadow trains on a random half).
    num_targets, num_shadows : int
        Target examples (the first ``num_targets`` of a seeded permutation) and shadow
        models; each target is in about half of the shadows' training sets.
    num_retained : int
        Retained examples (the next ``num_retained`` of the permutation), in every shadow's
        training set, attacked on the same models.
    train_options : dict, optional
        Passed to :func:`~pyro_unlearn.classifiers.train` (e.g. ``epochs``).

    Returns
    -------
    dict
        ``accuracy`` (0.5: indistinguishable from retraining), ``per_target`` accuracies,
        and the raw ``scores`` and ``unlearned`` flags, shape ``(num_shadows, num_targets)``;
        with ``num_retained``, ``retained_accuracy`` and ``per_retained`` (each retained
        example's accuracy over all targets and shadows).
    """
    if num_shadows < 4:
        raise ValueError(f"num_shadows must be at least 4 (two per group), got {num_shadows}")
    train_options = train_options or {}
    g = _rng.generator(seed)
    order = _rng.permutation(len(y), g)
    targets, probes = order[:num_targets], order[num_targets : num_targets + num_retained]
    scores = np.zeros((num_shadows, num_targets))
    retained = np.zeros((num_shadows, num_targets, len(probes)))
    member = np.zeros((num_shadows, num_targets), dtype=bool)
    # each target in exactly half the shadows, which half drawn independently per target:
    # another target's membership then says nothing about this one's (a fixed pattern, such
    # as even shadows in and odd out, makes the groups differ in every target at once)
    halves = torch.stack(
        [_rng.permutation(num_shadows, g) < num_shadows // 2 for _ in range(num_targets)], 1
    )
    for s in range(num_shadows):
        inside = _rng.uniform((len(y),), g, like=torch.empty(())) < 0.5
        inside[targets] = halves[s].to(inside.device)
        inside[probes] = True
        # retrain seeds the initialisation too: the same seed gives the same shadows, and the
        # caller's global RNG is left alone
        shadow = retrain(make_net, x[inside], y[inside], seed=seed + 1 + s, **train_options)
        for j, t in enumerate(targets.tolist()):
            member[s, j] = bool(inside[t])
            net = shadow
            if member[s, j]:
                keep = inside.clone()
                keep[t] = False
                net = unlearn_fn(shadow, x[t : t + 1], y[t : t + 1], x[keep], y[keep])
            scores[s, j] = float(logit_confidence(net, x[t : t + 1], y[t : t + 1]))
            if len(probes):
                retained[s, j] = logit_confidence(net, x[probes], y[probes]).cpu().numpy()
    correct = np.stack([_attack(scores[:, j], member[:, j]) for j in range(num_targets)], 1)
    out = {
        "accuracy": float(correct.mean()),
        "per_target": correct.mean(0).tolist(),
        "targets": targets.tolist(),
        "scores": scores,
        "unlearned": member,
    }
    if len(probes):
        on_retained = np.array(
            [
                [_attack(retained[:, j, p], member[:, j]) for j in range(num_targets)]
                for p in range(len(probes))
            ]
        )  # (probe, target, shadow)
        out["retained_accuracy"] = float(on_retained.mean())
        out["per_retained"] = on_retained.mean((1, 2)).tolist()
        out["retained"] = probes.tolist()
    return out


def _attack(scores: np.ndarray, unlearned: np.ndarray) -> np.ndarray:
    """Per shadow: does the likelihood ratio, fitted on the other shadows, call it right?"""
    correct = np.zeros(len(scores), dtype=bool)
    for s in range(len(scores)):
        others = np.arange(len(scores)) != s
        u, r = scores[others & unlearned], scores[others & ~unlearned]
        sd_u, sd_r = max(u.std(), 1e-3), max(r.std(), 1e-3)
        says = _log_normal(scores[s], u.mean(), sd_u) > _log_normal(scores[s], r.mean(), sd_r)
        correct[s] = says == unlearned[s]
    return correct
