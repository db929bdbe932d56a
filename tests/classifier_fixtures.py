"""Fixtures of the classifier tests (a plugin of ``tests/conftest.py``): float32, a tiny network,
a digits MLP."""

import pytest
import torch

from pyro_unlearn import classifiers as unn
from pyro_unlearn.datasets import digits


@pytest.fixture
def float32():
    """The classifiers' dtype (the networks and the digits tensors), restored afterwards."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(dtype)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    net = unn.mlp(4, (5,), 3)
    x = torch.randn(12, 4)
    y = torch.randint(0, 3, (12,))
    return net, x, y


@pytest.fixture(scope="session")
def trained():
    """A digits MLP 64-128-128-10 trained for 20 epochs (seed 0)."""
    torch.set_num_threads(1)
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        data = digits(seed=0)
        net = unn.train(unn.mlp(), data["x_train"], data["y_train"], epochs=20, seed=0)
    finally:
        torch.set_default_dtype(dtype)
    return net, data
