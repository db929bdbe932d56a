import pyro
import pytest
import torch
from sklearn.datasets import load_diabetes

import pyro_unlearn as pu

pytest_plugins = ["classifier_fixtures"]  # tiny, trained, float32 (tests/classifier_fixtures.py)

torch.set_num_threads(1)  # tiny models: intra-op threading only slows them down here

N_FORGET = 40


@pytest.fixture(autouse=True)
def _fresh_state():
    """Float64, a clean param store and a fixed seed for every test."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    torch.set_default_dtype(dtype)


def diabetes():
    X, y = load_diabetes(return_X_y=True)
    X, y = torch.tensor(X), torch.tensor(y)
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def synthetic(n=200, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    w = torch.randn(d, generator=g)
    return X, X @ w + 0.5 * torch.randn(n, generator=g)


@pytest.fixture
def blr():
    return pu.BayesianLinearRegression(noise_scale=0.7, prior_scale=1.5)


def exact_guide(blr, X, y):
    """The exact full-data posterior as a LaplaceGuide."""
    post = blr.posterior(X, y)
    return pu.LaplaceGuide.from_precision(blr.model, post.mean, post.precision, model_args=(X, y))


def relative_error(a, b):
    return float((a - b).abs().max() / b.abs().max())


def moment_kl(draws, target):
    fitted = pu.FlatGaussian(draws.mean(0), precision=torch.linalg.inv(torch.cov(draws.T)))
    return float(fitted.kl(target))


@pytest.fixture
def problem(blr):
    """The EUBO / rKL setting: 200 points, the first N_FORGET to forget; blr, X, y, the exact
    full-data guide and the exact retrained posterior. (Modules with a setting of their own,
    e.g. test_flows.py and test_cuda.py, define their own ``problem``, which takes precedence.)"""
    X, y = synthetic(n=200, d=6)
    retrained = blr.posterior(X[N_FORGET:], y[N_FORGET:])
    return blr, X, y, exact_guide(blr, X, y), retrained
