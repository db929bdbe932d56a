"""Models written the way Pyro's tutorials and examples write them (none broadcasts over draws).

Each entry of ``MODELS`` builds ``(model, data)`` where ``data`` holds the model arguments
(``args``), the forget elements of the data plate (``forget``), the plate's name (``plate``)
and, for conjugate models, a function giving the exact posterior on any subset of the data
(``exact(keep)`` -> mean, precision over the flat unconstrained latent vector, in the
guide's site order). Data are generated with a fixed seed; nothing is downloaded.

Do not rewrite these models to broadcast: the library must take them as written.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoDelta
from pyro.nn import PyroModule, PyroSample
from torch import nn

NOISE = 0.5


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------- 1. PyroModule regression
class BayesianRegression(PyroModule):
    """The bayesian_regression tutorial's model, with the noise scale known (conjugate)."""

    def __init__(self, in_features: int, out_features: int = 1, noise: float = NOISE):
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, out_features)
        self.linear.weight = PyroSample(
            dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2)
        )
        self.linear.bias = PyroSample(dist.Normal(0.0, 10.0).expand([out_features]).to_event(1))
        self.noise = noise

    def forward(self, x, y=None):
        mean = self.linear(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("obs", dist.Normal(mean, self.noise), obs=y)


# --------------------------------------------------------------------- 2. X @ w regression
def matmul_regression(X, y=None):
    """A plain ``X @ w`` linear model (``torch.mm``-style algebra, no broadcasting)."""
    w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), 1.0).to_event(1))
    b = pyro.sample("b", dist.Normal(0.0, 10.0))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("obs", dist.Normal(torch.mm(X, w.unsqueeze(-1)).squeeze(-1) + b, NOISE), obs=y)


# --------------------------------------------------------------------- 3. (N, k) observation
class MultiOutputRegression(PyroModule):
    """``nn.Linear(5, 2)`` with an ``(N, 2)`` observation under ``to_event(1)``."""

    def __init__(self, in_features: int = 5, out_features: int = 2):
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, out_features)
        self.linear.weight = PyroSample(
            dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2)
        )
        self.linear.bias = PyroSample(dist.Normal(0.0, 10.0).expand([out_features]).to_event(1))

    def forward(self, x, y=None):
        mean = self.linear(x)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("obs", dist.Normal(mean, NOISE).to_event(1), obs=y)


# --------------------------------------------------------------------- 4. hierarchical, local latents
TAU = 2.0  # known group scale: the model stays Gaussian (exact answer)


def schools_known_scale(sigma, y=None):
    """Eight schools with the group scale known: ``theta`` sits in the schools plate."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    with pyro.plate("schools", len(sigma)):
        theta = pyro.sample("theta", dist.Normal(mu, TAU))
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


# --------------------------------------------------------------------- 5. non-centred hierarchical
def schools_noncentred(J, sigma, y=None):
    """Non-centred eight schools, as in Pyro's examples: ``mu``, ``tau``, ``eta`` per school."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("J", J):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = mu + tau * eta
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def schools_no_plate(sigma, y=None):
    """Eight schools as ``examples/eight_schools`` writes it: vectors, no plate at all."""
    J = sigma.shape[0]
    eta = pyro.sample("eta", dist.Normal(torch.zeros(J), torch.ones(J)))
    mu = pyro.sample("mu", dist.Normal(torch.zeros(1), 10 * torch.ones(1)))
    tau = pyro.sample("tau", dist.HalfCauchy(25 * torch.ones(1)))
    theta = mu + tau * eta
    return pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


# --------------------------------------------------------------------- 6. subsampled plate
def subsampled_regression(X, y=None, subsample_size=16):
    """A data plate subsampled for large N; the model indexes its data with the plate."""
    w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), 1.0).to_event(1))
    with pyro.plate("data", X.shape[0], subsample_size=subsample_size) as idx:
        pyro.sample("obs", dist.Normal(X[idx] @ w, NOISE), obs=None if y is None else y[idx])


# --------------------------------------------------------------------- 7. enumerated mixture
K = 2


@pyro.infer.config_enumerate
def mixture(data):
    """The Gaussian mixture tutorial's model: a discrete assignment per data point."""
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("components", K):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(data)):
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def mixture_guide():
    """``AutoDelta`` on the globals, as the tutorial fits it with ``TraceEnum_ELBO``."""
    return AutoDelta(pyro.poutine.block(mixture, expose=["weights", "locs", "scale"]))


def mixture_log_likelihood(data, weights, locs, scale):
    """Per-point marginal log-likelihood by hand: logsumexp over the components."""
    components = dist.Normal(locs, scale).log_prob(data.unsqueeze(-1)) + weights.log()
    return components.logsumexp(-1)


# --------------------------------------------------------------------- 8. Poisson GLM
def poisson_glm(X, y=None):
    """A Poisson regression with a log link, ``X @ w``."""
    w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), 1.0).to_event(1))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("obs", dist.Poisson(rate=(X @ w).exp()), obs=y)


# --------------------------------------------------------------------- 9. PyroModule BNN
class BNN(PyroModule):
    """A small Bayesian neural network: ``PyroModule[nn.Linear]`` layers, tanh, Gaussian noise."""

    def __init__(self, hidden: int = 3):
        super().__init__()
        self.fc1 = PyroModule[nn.Linear](1, hidden)
        self.fc1.weight = PyroSample(dist.Normal(0.0, 1.0).expand([hidden, 1]).to_event(2))
        self.fc1.bias = PyroSample(dist.Normal(0.0, 1.0).expand([hidden]).to_event(1))
        self.fc2 = PyroModule[nn.Linear](hidden, 1)
        self.fc2.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, hidden]).to_event(2))
        self.fc2.bias = PyroSample(dist.Normal(0.0, 1.0).expand([1]).to_event(1))

    def forward(self, x, y=None):
        mean = self.fc2(torch.tanh(self.fc1(x))).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("obs", dist.Normal(mean, 0.2), obs=y)


# --------------------------------------------------------------------- data
def regression_data(n: int = 80, d: int = 3, seed: int = 0):
    g = _generator(seed)
    X = torch.randn(n, d, generator=g)
    w = torch.randn(d, generator=g)
    return X, X @ w + 0.5 + NOISE * torch.randn(n, generator=g)


def multi_output_data(n: int = 60, seed: int = 1):
    g = _generator(seed)
    X = torch.randn(n, 5, generator=g)
    W = torch.randn(2, 5, generator=g)
    return X, X @ W.T + torch.tensor([0.3, -0.7]) + NOISE * torch.randn(n, 2, generator=g)


SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
SCHOOLS_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)


def mixture_data(n: int = 120, seed: int = 2):
    g = _generator(seed)
    which = torch.rand(n, generator=g) < 0.4
    return torch.where(which, -2.0, 2.5) + 0.7 * torch.randn(n, generator=g)


def poisson_data(n: int = 100, seed: int = 3):
    g = _generator(seed)
    X = torch.cat([torch.ones(n, 1), 0.5 * torch.randn(n, 2, generator=g)], -1)
    rate = (X @ torch.tensor([0.5, 0.8, -0.6])).exp()
    return X, torch.poisson(rate, generator=g)


def bnn_data(n: int = 40, seed: int = 4):
    g = _generator(seed)
    x = torch.linspace(-2.0, 2.0, n).unsqueeze(-1)
    return x, torch.sin(1.5 * x.squeeze(-1)) + 0.2 * torch.randn(n, generator=g)


# --------------------------------------------------------------------- exact posteriors
def gaussian_from_log_density(log_density, dim: int, dtype=torch.float64):
    r"""Mean and precision of a Gaussian given its (hand-written, quadratic) log density.

    For a quadratic :math:`\log p(z)`, one Newton step from 0 lands on the mean; the
    negative Hessian is the precision (exact, no Monte Carlo).
    """
    z0 = torch.zeros(dim, dtype=dtype)
    hessian = torch.autograd.functional.hessian(log_density, z0)
    gradient = torch.autograd.functional.jacobian(log_density, z0)
    precision = -(hessian + hessian.T) / 2
    return torch.linalg.solve(precision, gradient), precision


def regression_exact(X, y, keep, noise=NOISE):
    """Exact posterior of ``BayesianRegression`` / ``matmul_regression``: flat ``(w..., b)``."""
    Xk, yk = X[keep], y[keep]
    d = X.shape[1]

    def log_density(z):
        w, b = z[:d], z[d]
        prior = dist.Normal(0.0, 1.0).log_prob(w).sum() + dist.Normal(0.0, 10.0).log_prob(b)
        return prior + dist.Normal(Xk @ w + b, noise).log_prob(yk).sum()

    return gaussian_from_log_density(log_density, d + 1)


def multi_output_exact(X, Y, keep):
    """Exact posterior of ``MultiOutputRegression``: flat ``(W row-major (2, 5), b (2,))``."""
    Xk, Yk = X[keep], Y[keep]

    def log_density(z):
        W, b = z[:10].reshape(2, 5), z[10:]
        prior = dist.Normal(0.0, 1.0).log_prob(W).sum() + dist.Normal(0.0, 10.0).log_prob(b).sum()
        return prior + dist.Normal(Xk @ W.T + b, NOISE).log_prob(Yk).sum()

    return gaussian_from_log_density(log_density, 12)


def schools_exact(sigma, y, keep):
    """Exact posterior of ``schools_known_scale``: flat ``(mu, theta_1..J)``; a forgotten
    school keeps ``theta_j | mu ~ N(mu, TAU)``, its prior given the global."""
    J = len(sigma)

    def log_density(z):
        mu, theta = z[0], z[1:]
        prior = dist.Normal(0.0, 5.0).log_prob(mu) + dist.Normal(mu, TAU).log_prob(theta).sum()
        return prior + dist.Normal(theta[keep], sigma[keep]).log_prob(y[keep]).sum()

    return gaussian_from_log_density(log_density, J + 1)


def subsampled_exact(X, y, keep):
    Xk, yk = X[keep], y[keep]
    d = X.shape[1]
    precision = torch.eye(d, dtype=X.dtype) + Xk.T @ Xk / NOISE**2
    return torch.linalg.solve(precision, Xk.T @ yk / NOISE**2), precision


def keep_mask(n: int, forget) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[forget] = False
    return keep


def gaussian_kl(mean_a, precision_a, mean_b, precision_b) -> float:
    """KL(N_a || N_b) in closed form."""
    a = torch.distributions.MultivariateNormal(mean_a, precision_matrix=precision_a)
    b = torch.distributions.MultivariateNormal(mean_b, precision_matrix=precision_b)
    return float(torch.distributions.kl_divergence(a, b))
