r"""The NeurIPS 2023 unlearning challenge's score, at a small scale (Triantafillou et al., 2024).

A population of :math:`N` networks unlearned (each from its own trained network) is
compared with :math:`N` networks retrained without the forget set. For each forget example
:math:`x`, every network gives its logit-scaled confidence :math:`\phi`
(:func:`~pyro_unlearn.classifiers.logit_confidence`); threshold attacks on the two groups of
:math:`N` values give false positive and negative rates, and the example's privacy degree is

.. math:: \varepsilon_x = \max_{\text{attacks}} \max\Big(\log\frac{1-\delta-\mathrm{FPR}}{\mathrm{FNR}},\ \log\frac{1-\delta-\mathrm{FNR}}{\mathrm{FPR}}\Big).

Examples earn points by bucket, :math:`H(\varepsilon) = 2 / 2^{n}` with
:math:`n = \lfloor \varepsilon / w \rfloor + 1` (1 point below the first bucket edge :math:`w`,
half a point in the next, ...), and the score is

.. math:: \bar H \cdot \frac{\overline{\mathrm{RA}}_U}{\overline{\mathrm{RA}}_R} \cdot \frac{\overline{\mathrm{TA}}_U}{\overline{\mathrm{TA}}_R}

with RA and TA the retain and test accuracies averaged over each population. The challenge
used 512 networks per population; with a few dozen, :math:`\varepsilon` is noisy and biased
upwards even for two populations of retrained networks (:func:`forgetting_epsilon`), so
report :math:`N` and the score of a second, independent retrained population (the best
score reachable at that :math:`N`) beside each method's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from torch import nn

from .training import accuracy
from .ulira import logit_confidence


def forgetting_epsilon(unlearned: np.ndarray, retrained: np.ndarray, *, delta: float = 0.01):
    r"""Per-example privacy degree :math:`\varepsilon_x` from two ``(N, S)`` arrays of scores.

    The attacks are thresholds at every pooled score, in both directions (higher, or lower,
    scores called "unlearned"). A rate counted as :math:`k` of :math:`N` networks is
    estimated as :math:`(k + 1/2)/(N + 1)`, so that no attack has a zero rate (an infinite
    :math:`\varepsilon` from a finite sample) and :math:`\varepsilon \le \log(2N + 1)`.
    The maximum over thresholds is biased upwards at small :math:`N`: two samples of one
    distribution get a median :math:`\varepsilon` of 1.4 to 1.6 (measured over 200 examples at
    :math:`N` = 8 to 64); compare with an independent population of retrained networks.

    >>> rng = np.random.default_rng(0)
    >>> same = forgetting_epsilon(rng.normal(size=(64, 3)), rng.normal(size=(64, 3)))
    >>> apart = forgetting_epsilon(rng.normal(size=(64, 3)) + 5, rng.normal(size=(64, 3)))
    >>> bool(same.max() < 3 < 4 < apart.min())
    True
    """
    unlearned, retrained = np.asarray(unlearned, float), np.asarray(retrained, float)
    if unlearned.shape != retrained.shape or unlearned.ndim != 2 or len(unlearned) < 2:
        raise ValueError(
            "forgetting_epsilon takes two (N, S) arrays of the same shape with N >= 2 networks, "
            f"got {unlearned.shape} and {retrained.shape}"
        )
    n = len(unlearned)
    thresholds = np.concatenate([unlearned, retrained])[:, None, :]  # (2N, 1, S)
    # "unlearned" when the score is above t: FPR = P_R(s > t), FNR = P_U(s <= t)
    fpr = ((retrained[None] > thresholds).sum(1) + 0.5) / (n + 1)
    fnr = ((unlearned[None] <= thresholds).sum(1) + 0.5) / (n + 1)
    tnr = ((retrained[None] <= thresholds).sum(1) + 0.5) / (n + 1)  # the reverse direction
    tpr = ((unlearned[None] > thresholds).sum(1) + 0.5) / (n + 1)

    def log_odds(a, b):  # log(1 - delta - a) - log(b)
        with np.errstate(divide="ignore"):
            return np.log(np.maximum(1 - delta - a, 0)) - np.log(b)

    candidates = np.stack(
        [log_odds(fpr, fnr), log_odds(fnr, fpr), log_odds(tnr, tpr), log_odds(tpr, tnr)]
    )
    return np.maximum(candidates.max((0, 1)), 0.0)


def bucket_points(epsilons, bin_width: float = 0.5) -> np.ndarray:
    r""":math:`H(\varepsilon) = 2/2^n`, :math:`n = \lfloor\varepsilon/w\rfloor + 1`.

    >>> bucket_points([0.0, 0.49, 0.5, 1.2]).tolist()
    [1.0, 1.0, 0.5, 0.25]
    """
    n = np.floor(np.asarray(epsilons, float) / bin_width) + 1
    return 2.0 / 2.0**n


def challenge_score(
    unlearned: Sequence[nn.Module],
    retrained: Sequence[nn.Module],
    x_forget,
    y_forget,
    x_retain,
    y_retain,
    x_test,
    y_test,
    *,
    delta: float = 0.01,
    bin_width: float = 0.5,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict:
    """The challenge's score of a population of unlearned networks against retrained ones.

    Returns ``score``, ``forgetting_quality`` (the mean points), ``retain_ratio``,
    ``test_ratio``, the per-example ``epsilons``, ``num_models`` and ``score_sd``: the
    spread of the score over ``bootstrap`` resamplings of the networks (with replacement,
    within each population), its Monte Carlo error at this ``num_models``.
    """
    if len(unlearned) != len(retrained) or len(unlearned) < 2:
        raise ValueError(
            f"challenge_score needs two populations of the same size >= 2, got {len(unlearned)} "
            f"unlearned and {len(retrained)} retrained networks"
        )

    def scores(nets):
        return np.stack(
            [logit_confidence(net, x_forget, y_forget).double().numpy() for net in nets]
        )

    def accuracies(nets, x, y):
        return np.array([accuracy(net, x, y) for net in nets])

    s_u, s_r = scores(unlearned), scores(retrained)
    ra_u, ra_r = (
        accuracies(unlearned, x_retain, y_retain),
        accuracies(retrained, x_retain, y_retain),
    )
    ta_u, ta_r = accuracies(unlearned, x_test, y_test), accuracies(retrained, x_test, y_test)

    def score(iu, ir):
        epsilons = forgetting_epsilon(s_u[iu], s_r[ir], delta=delta)
        quality = float(bucket_points(epsilons, bin_width).mean())
        ratios = (ra_u[iu].mean() / ra_r[ir].mean(), ta_u[iu].mean() / ta_r[ir].mean())
        return quality * ratios[0] * ratios[1], quality, ratios, epsilons

    n = len(unlearned)
    every = np.arange(n)
    total, quality, (retain_ratio, test_ratio), epsilons = score(every, every)
    rng = np.random.default_rng(seed)
    resampled = [score(rng.integers(0, n, n), rng.integers(0, n, n))[0] for _ in range(bootstrap)]
    return {
        "score": float(total),
        "forgetting_quality": quality,
        "retain_ratio": float(retain_ratio),
        "test_ratio": float(test_ratio),
        "epsilons": epsilons,
        "num_models": n,
        "score_sd": float(np.std(resampled)) if bootstrap else math.nan,
    }
