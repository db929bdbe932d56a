"""Every method family on a CUDA device, against the same known answers as on the CPU.

Skipped without a GPU (CI has none). The supported way to run on a GPU is the one the
command line takes with ``--device cuda``: data moved there and the work done inside
``with torch.device("cuda"):``, so that the tensors a model or method creates land there too.
Data are drawn on the CPU from the seeded helpers first, then moved.
"""

import pytest
import torch
from conftest import exact_guide, relative_error, synthetic

import pyro_unlearn as pu
from pyro_unlearn import classifiers as unn
from pyro_unlearn.datasets import digits

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
N_FORGET = 40


@pytest.fixture
def problem(blr):
    X, y = synthetic(n=200, d=6)
    retrained = blr.posterior(X[N_FORGET:], y[N_FORGET:])  # the answer, computed on the CPU
    return blr, X.to(CUDA), y.to(CUDA), retrained


def test_laplace_is_exact_on_cuda(problem):
    blr, X, y, retrained = problem
    with CUDA:
        result = pu.unlearn(
            blr.model, exact_guide(blr, X, y), X, y, mask=torch.arange(N_FORGET), plate="data"
        )
    assert result.guide.loc.device.type == "cuda"
    assert relative_error(result.guide.loc.cpu(), retrained.mean) <= 1e-8
    assert relative_error(result.guide.precision.cpu(), retrained.precision) <= 1e-8


def test_out_of_range_request_is_a_clear_error_on_cuda(problem):
    """Checked before any indexing: a bad index on a GPU must not become a device assert."""
    blr, X, y, _ = problem
    with CUDA:
        guide = exact_guide(blr, X, y)
        with pytest.raises(ValueError, match="forget index 200 is out of range"):
            pu.unlearn(blr.model, guide, X, y, mask=torch.tensor([0, 200]), plate="data")
        with pytest.raises(ValueError, match="out of range"):
            pu.ForgetLedger(200).after(torch.tensor([201]))
        assert torch.isfinite(guide.loc).all()  # the device is still usable afterwards


def test_eubo_and_rkl_on_cuda(problem):
    blr, X, y, retrained = problem
    with CUDA:
        q_full = exact_guide(blr, X, y)
        eubo = pu.unlearn(blr.model, q_full, X[:N_FORGET], y[:N_FORGET], method="eubo")
        rkl = pu.unlearn(
            blr.model, q_full, X[:N_FORGET], y[:N_FORGET], method="rkl", num_samples=20000
        )
    g = pu.flat_gaussian(eubo.guide)  # one natural-gradient step is exact on linear-Gaussian
    assert g.loc.device.type == "cuda"
    assert relative_error(g.loc.cpu(), retrained.mean) <= 1e-8
    g, ess = pu.flat_gaussian(rkl.guide), rkl.diagnostics["ess"]
    sd = retrained.covariance.diagonal().sqrt()
    assert rkl.diagnostics["pareto_k"] < 0.7
    assert ((g.loc.cpu() - retrained.mean).abs() < 4 * sd / ess**0.5).all()


def test_smc_and_psis_on_cuda(blr):
    X, y = synthetic(n=200, d=6)
    retrained = blr.posterior(X[120:], y[120:])
    full = blr.posterior(X, y)
    draws = (
        full.mean
        + torch.randn(4000, 6, generator=torch.Generator().manual_seed(1), dtype=X.dtype)
        @ torch.linalg.cholesky(full.covariance).T
    )
    X, y, draws = X.to(CUDA), y.to(CUDA), draws.to(CUDA)
    with CUDA:
        smc = pu.unlearn(blr.model, exact_guide(blr, X, y), X[:120], y[:120], method="smc", lam=0.0)
        psis = pu.unlearn(
            blr.model, {"w": draws}, X[:20], y[:20], method="psis", on_unreliable="ignore"
        )
    w = smc.guide.samples["w"]
    assert w.device.type == "cuda"
    standard_error = retrained.covariance.diagonal().sqrt() / (len(w) / 2) ** 0.5
    assert ((w.mean(0).cpu() - retrained.mean).abs() / standard_error).max() < 4.5
    small = blr.posterior(X[20:].cpu(), y[20:].cpu())
    ess = psis.diagnostics["ess"]
    assert psis.diagnostics["pareto_k"] < 0.7
    mean = psis.guide.mean("w").cpu()
    assert ((mean - small.mean).abs() < 4 * small.covariance.diagonal().sqrt() / ess**0.5).all()


def test_classifier_unlearning_on_cuda():
    data = digits(seed=0)
    x, y = data["x_train"].float().to(CUDA), data["y_train"].to(CUDA)
    forget = y == 3
    with CUDA:
        torch.set_default_dtype(torch.float32)
        net = unn.train(unn.mlp(), x, y, epochs=20, seed=0)
        results = {
            name: pu.unlearn(unn.ClassifierModel(net), net, x[forget], y[forget], method=name)
            for name in ("pbu", "neggrad")
        }
        jit, _ = unn.jit(net, x[forget])
        instance, _ = unn.instance_unlearn(net, x[forget][:3], y[forget][:3])
    for result in results.values():
        assert result.diagnostics["reached_target"]
        assert unn.accuracy(result.guide, x[forget], y[forget]) == 0.0
        assert unn.accuracy(result.guide, x[~forget], y[~forget]) > 0.8
    assert unn.accuracy(instance, x[forget][:3], y[forget][:3]) == 0.0
    assert next(jit.parameters()).device.type == "cuda"
    assert unn.membership_attack(net, x[forget], y[forget], x[~forget], y[~forget]) > 0.3
    assert unn.accuracy(net, x[forget], y[forget]) > 0.95  # the caller's network is untouched


def test_fit_svi_finish_on_cuda(blr):
    """The natural-gradient finish (log joint, antithetic draws) runs on the GPU: exact here."""
    X, y = synthetic(n=200, d=6)
    exact = blr.posterior(X, y)
    with CUDA:
        guide = pu.fit_svi(blr.model, X.to(CUDA), y.to(CUDA), num_steps=200)
    g = pu.flat_gaussian(guide)
    assert g.loc.device.type == "cuda"
    assert relative_error(g.loc.cpu(), exact.mean) < 1e-10
    assert relative_error(g.precision.cpu(), exact.precision) < 1e-8
