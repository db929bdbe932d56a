"""Run a model once for many posterior draws: a particle plate on the left of every site.

The model must broadcast over a leading particle dimension, as Pyro's
``vectorize_particles=True`` requires of it.
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample

PARTICLE_PLATE = "_unlearn_particles"


class SetLatents(Messenger):
    """Give latent sites fixed values without marking them observed (unlike ``condition``)."""

    def __init__(self, values: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or msg["name"] not in self.values:
            return
        value = self.values[msg["name"]]
        model_shape = msg["fn"].batch_shape + msg["fn"].event_shape
        if value.shape[value.dim() - len(model_shape) :] != model_shape:  # extra dims: particles
            raise ValueError(
                f"the data do not match the fitted model: latent site {msg['name']!r} has "
                f"shape {tuple(model_shape)} under these arguments but {tuple(value.shape)} "
                "in the guide"
            )
        msg["value"] = value


def model_structure(model, args: tuple, kwargs: dict | None = None) -> tuple[int, dict[str, int]]:
    """``(max_plate_nesting, {latent site: number of plates it sits in})`` from one run."""
    with poutine.block():
        trace = poutine.trace(model).get_trace(*args, **(kwargs or {}))
    nesting, plates = 0, {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or isinstance(site["fn"], _Subsample):
            continue
        frames = [f for f in site["cond_indep_stack"] if f.vectorized]
        nesting = max([nesting] + [-f.dim for f in frames])
        if not site["is_observed"]:
            plates[name] = len(frames)
    return nesting, plates


def vectorized_trace(
    model, values: dict[str, torch.Tensor], args: tuple, kwargs: dict | None = None, structure=None
):
    """Trace ``model`` with latent sites set to ``values[name]`` of shape ``(S, *site_shape)``.

    Returns the trace (log probabilities computed) and the particle dim.
    """
    kwargs = kwargs or {}
    nesting, plates = structure or model_structure(model, args, kwargs)
    num = len(next(iter(values.values())))
    shaped = {}
    for name, value in values.items():
        pad = nesting - plates.get(name, 0)
        shaped[name] = value.reshape((num,) + (1,) * pad + value.shape[1:])
    with pyro.plate(PARTICLE_PLATE, num, dim=-(nesting + 1)):
        trace = poutine.trace(SetLatents(shaped)(model)).get_trace(*args, **kwargs)
    trace.compute_log_prob()
    return trace, -(nesting + 1)


def observed_log_prob(trace, num: int) -> dict[str, torch.Tensor]:
    """Scaled, masked log-likelihood per observed site, shape ``(num, *site batch)``."""
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and site["is_observed"]:
            lp = site["log_prob"]
            lp = lp.expand((num,) + lp.shape[1:]) if lp.dim() else lp.expand(num)
            out[name] = lp
    return out


def log_likelihood(
    model,
    values: dict[str, torch.Tensor],
    args: tuple,
    kwargs: dict | None = None,
    chunk_size: int = 2048,
) -> torch.Tensor:
    """Total observed log-likelihood for each draw: shape ``(S,)``."""
    num = len(next(iter(values.values())))
    structure = model_structure(model, args, kwargs)
    totals = []
    for start in range(0, num, chunk_size):
        chunk = {k: v[start : start + chunk_size] for k, v in values.items()}
        n = len(next(iter(chunk.values())))
        trace, _ = vectorized_trace(model, chunk, args, kwargs, structure)
        totals.append(sum(lp.reshape(n, -1).sum(-1) for lp in observed_log_prob(trace, n).values()))
    return torch.cat(totals)


def log_joint(
    model, layout, z: torch.Tensor, args: tuple, kwargs: dict | None = None
) -> torch.Tensor:
    r""":math:`\log p(\theta(z), D) + \log|\det \partial\theta/\partial z|` for each row of ``z``.

    The log density of the unconstrained flat latents ``z`` (shape ``(S, d)``, in the
    order of ``layout``) under the model's joint: every sample site's (scaled, masked) log
    probability plus the Jacobians of the transforms to the constrained supports.
    Shape ``(S,)``.
    """
    num = len(z)
    values = {site.name: site.constrain(z[:, site.slice]) for site in layout}
    trace, particle_dim = vectorized_trace(model, values, args, kwargs)
    total = z.new_zeros(num)
    for site in trace.nodes.values():
        if site["type"] != "sample" or isinstance(site["fn"], _Subsample):
            continue
        lp = site["log_prob"]
        if lp.dim() >= -particle_dim:  # has the particle dim (size num or 1) on the left
            total = total + lp.reshape(lp.shape[0], -1).sum(-1)
        else:
            total = total + lp.sum()
    for site in layout:
        z_site = z[:, site.slice].reshape((num,) + site.unconstrained_shape)
        jacobian = site.transform.log_abs_det_jacobian(z_site, values[site.name])
        total = total + jacobian.reshape(num, -1).sum(-1)
    return total
