"""The challenge score: epsilon against a direct enumeration of the threshold attacks, the
points per bucket, and the score ordering do-nothing below retraining on digits."""

import math

import numpy as np
import pytest
import torch

from pyro_unlearn import classifiers as unn
from pyro_unlearn.datasets import digits

pytestmark = pytest.mark.usefixtures("float32")


def _by_hand(u, r, delta):
    n, best = len(u), 0.0
    for t in sorted([*u, *r]):
        for above in (True, False):
            flagged_r = sum((s > t) == above for s in r)  # retrained called "unlearned"
            missed_u = sum((s > t) != above for s in u)  # unlearned not called so
            fpr, fnr = (flagged_r + 0.5) / (n + 1), (missed_u + 0.5) / (n + 1)
            for a, b in ((fpr, fnr), (fnr, fpr)):
                if 1 - delta - a > 0:
                    best = max(best, math.log(1 - delta - a) - math.log(b))
    return best


def test_epsilon_is_the_best_threshold_attack():
    rng = np.random.default_rng(3)
    unlearned, retrained = rng.normal(size=(6, 4)) + [0, 1, 2, 5], rng.normal(size=(6, 4))
    eps = unn.forgetting_epsilon(unlearned, retrained, delta=0.01)
    expected = [_by_hand(unlearned[:, j], retrained[:, j], 0.01) for j in range(4)]
    assert np.allclose(eps, expected)
    assert eps[3] == pytest.approx(math.log((1 - 0.01 - 0.5 / 7) / (0.5 / 7)))  # separated
    with pytest.raises(ValueError, match="same shape"):
        unn.forgetting_epsilon(unlearned, retrained[:, :2])


def test_points_halve_per_bucket():
    assert unn.bucket_points([0.0, 0.49, 0.5, 1.0, 1.6], bin_width=0.5).tolist() == [
        1.0,
        1.0,
        0.5,
        0.25,
        0.125,
    ]


def test_retraining_scores_above_doing_nothing():
    torch.set_num_threads(1)
    data = digits(seed=0)
    x, y = data["x_train"][:300], data["y_train"][:300]
    forget = torch.arange(300) < 30

    def make():
        return unn.mlp(hidden=(16,))

    def population(xs, ys, offset):
        return [unn.retrain(make, xs, ys, epochs=40, seed=offset + i) for i in range(8)]

    trained = population(x, y, 0)
    retrained = population(x[~forget], y[~forget], 100)
    oracle = population(x[~forget], y[~forget], 200)
    args = (x[forget], y[forget], x[~forget], y[~forget], data["x_test"], data["y_test"])
    nothing = unn.challenge_score(trained, retrained, *args, bootstrap=20)
    retrain = unn.challenge_score(oracle, retrained, *args, bootstrap=20)
    assert nothing["num_models"] == 8 and nothing["score_sd"] > 0
    # trained networks fit their forget set: easy to tell from networks that never saw it
    assert np.median(nothing["epsilons"]) > np.median(retrain["epsilons"])
    assert retrain["score"] > nothing["score"] + 2 * max(retrain["score_sd"], nothing["score_sd"])
