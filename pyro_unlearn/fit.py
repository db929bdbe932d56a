"""Fitting full-data posteriors to unlearn from (and same-family retraining references)."""

from __future__ import annotations

import pyro
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoLaplaceApproximation, AutoMultivariateNormal
from pyro.infer.autoguide.initialization import init_to_median

from .guides import freeze
from .vectorized import model_structure


def fit_laplace(
    model, *args, max_iter: int = 200, init_loc_fn=init_to_median, **kwargs
) -> AutoMultivariateNormal:
    """Fit a Laplace approximation: MAP by L-BFGS on the unconstrained latents, then the Hessian.

    Returns ``AutoLaplaceApproximation.laplace_approximation(*args)``, a fixed
    AutoMultivariateNormal, ready to be unlearned from. Parameters are module-local, so
    the global param store is untouched. ``init_loc_fn`` is Pyro's initialisation
    strategy (``init_to_sample`` breaks the symmetry of a neural network's weights, whose
    prior median is a saddle point).
    """
    with pyro.settings.context(module_local_params=True):
        guide = AutoLaplaceApproximation(model, init_loc_fn=init_loc_fn)
        guide(*args, **kwargs)
        loss = Trace_ELBO()(model, guide)
        optim = torch.optim.LBFGS(
            loss.parameters(),
            max_iter=max_iter,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )

        def closure():
            optim.zero_grad()
            value = loss(*args, **kwargs)
            value.backward()
            return value

        optim.step(closure)
        return guide.laplace_approximation(*args, **kwargs)


def fit_svi(
    model,
    *args,
    num_steps: int = 3000,
    lr: float = 0.02,
    num_particles: int = 16,
    guide_class=AutoMultivariateNormal,
    seed: int = 0,
    **kwargs,
):
    """Fit ``guide_class(model)`` by SVI and return it frozen (parameters as buffers).

    Adam with learning rate ``lr`` decayed 100x over ``num_steps``, ``num_particles``
    vectorized particles, module-local parameters (the param store is untouched).
    """
    pyro.set_rng_seed(seed)
    with pyro.settings.context(module_local_params=True):
        guide = (
            guide_class(model, init_scale=0.05)
            if guide_class is AutoMultivariateNormal
            else guide_class(model)
        )
        guide(*args, **kwargs)
        nesting = model_structure(model, args, kwargs)[0]
        elbo = Trace_ELBO(
            num_particles=num_particles, vectorize_particles=True, max_plate_nesting=nesting
        )
        elbo = elbo(model, guide)
        optim = torch.optim.Adam(elbo.parameters(), lr=lr)
        decay = torch.optim.lr_scheduler.ExponentialLR(optim, 0.01 ** (1 / max(num_steps, 1)))
        for _ in range(num_steps):
            optim.zero_grad()
            elbo(*args, **kwargs).backward()
            optim.step()
            decay.step()
    return freeze(guide)
