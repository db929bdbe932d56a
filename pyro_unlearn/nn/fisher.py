r"""The exact expected Fisher information of a classifier, diagonal.

.. math:: F_{kk} = \frac1n \sum_i \sum_c p_\theta(c\mid x_i)\, \big(\partial_{\theta_k} \log p_\theta(c\mid x_i)\big)^2

computed with per-example, per-class gradients (``torch.func.vmap`` over ``grad``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap


def diagonal_fisher(
    net: nn.Module, x: torch.Tensor, chunk_size: int = 256
) -> dict[str, torch.Tensor]:
    """Diagonal of the exact expected Fisher at the current weights, one tensor per parameter.

    Networks whose parameters all belong to ``nn.Linear`` layers take a fast path: one
    backward pass per class gives every example's gradient with respect to each layer's
    output, and the squared weight gradient is :math:`\\delta^2 (a^2)^\top` per example.
    Other networks use per-example, per-class gradients (``torch.func``).
    """
    if all(isinstance(m, nn.Linear) for m in net.modules() if _owns_parameters(m)):
        return _linear_fisher(net, x)
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = {k: v.detach() for k, v in net.named_buffers()}

    def log_prob(p, xi, onehot):
        logits = functional_call(net, (p, buffers), (xi.unsqueeze(0),))
        return (logits.log_softmax(-1)[0] * onehot).sum()

    per_class = vmap(grad(log_prob), in_dims=(None, None, 0))  # all classes of one example
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    with torch.no_grad():
        probs = functional_call(net, (params, buffers), (x,)).softmax(-1)
    classes = torch.eye(probs.shape[-1], dtype=probs.dtype)
    for start in range(0, len(x), chunk_size):
        xs, ps = x[start : start + chunk_size], probs[start : start + chunk_size]
        grads = vmap(per_class, in_dims=(None, 0, None))(params, xs, classes)  # (b, C, *shape)
        for k, g in grads.items():
            weights = ps.reshape(ps.shape + (1,) * (g.dim() - 2))
            fisher[k] += (weights * g.pow(2)).sum((0, 1))
    return {k: v / len(x) for k, v in fisher.items()}


def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _linear_fisher(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    inputs, outputs = {}, {}
    linears = {name: m for name, m in net.named_modules() if isinstance(m, nn.Linear)}

    def hook(name):
        def save(module, args, output):
            inputs[name], outputs[name] = args[0].detach(), output

        return save

    handles = [m.register_forward_hook(hook(name)) for name, m in linears.items()]
    try:
        log_p = net(x).log_softmax(-1)
    finally:
        for h in handles:
            h.remove()
    probs = log_p.detach().exp()
    fisher = {
        f"{name}.{p}": torch.zeros_like(getattr(m, p))
        for name, m in linears.items()
        for p in ("weight", "bias")
        if getattr(m, p) is not None
    }
    names = list(linears)
    for c in range(probs.shape[-1]):
        deltas = torch.autograd.grad(
            log_p[:, c].sum(), [outputs[n] for n in names], retain_graph=True
        )
        w = probs[:, c : c + 1]
        for name, delta in zip(names, deltas, strict=True):
            d2 = w * delta.pow(2)
            fisher[f"{name}.weight"] += d2.T @ inputs[name].pow(2)
            if f"{name}.bias" in fisher:
                fisher[f"{name}.bias"] += d2.sum(0)
    return {k: v / len(x) for k, v in fisher.items()}
