"""Training, retraining and fine-tuning classifiers (the baselines and the references)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .. import _checks, _rng
from ._guards import checked_examples, evaluating


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct predictions (``nan`` on empty data), in eval mode (the network's
    modes and batch-norm statistics are left as they were)."""
    if isinstance(x, torch.Tensor) and len(x) == 0:
        return float("nan")
    return _accuracy(net, x, checked_examples(net, x, y, name="x"))


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """:func:`accuracy` of examples already checked (the methods' stopping rules)."""
    with evaluating(net), torch.no_grad():
        return float((net(x).argmax(-1) == y).double().mean())


def train(
    net: nn.Module, x, y, *, epochs: int = 30, lr: float = 1e-3, batch_size: int = 64, seed: int = 0
) -> nn.Module:
    """Train ``net`` in place with Adam and cross-entropy; returns it (seeded locally: the
    caller's RNG state is untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # dropout masks
        optim = torch.optim.Adam(net.parameters(), lr=lr)
        g = _rng.generator(seed)
        net.train()
        for _ in range(epochs):
            for batch in _rng.permutation(len(x), g).split(batch_size):
                optim.zero_grad()
                nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
                optim.step()
        net.eval()
    return net


def retrain(make_net, x_retain, y_retain, *, seed: int = 0, **train_options) -> nn.Module:
    """The gold standard: a fresh ``make_net()`` trained on the retained data only.

    ``seed`` fixes the initialisation as well as the training order, so the result does not
    depend on what ran before in the process.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the initialisation
        net = make_net()
    return train(net, x_retain, y_retain, seed=seed, **train_options)


def finetune(
    net: nn.Module, x_retain, y_retain, *, epochs: int = 2, lr: float = 1e-3, seed: int = 0
) -> nn.Module:
    """Baseline: a copy of ``net`` fine-tuned on the retained data (catastrophic forgetting)."""
    _checks.count("epochs", epochs)
    _checks.positive("lr", lr)
    return train(copy.deepcopy(net), x_retain, y_retain, epochs=epochs, lr=lr, seed=seed)
