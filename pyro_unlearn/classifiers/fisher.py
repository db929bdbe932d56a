r"""Per-parameter importances of a classifier, from per-example gradients.

The diagonal of the exact expected Fisher information,

.. math:: F_{kk} = \frac1n \sum_i \sum_c p_\theta(c\mid x_i)\, \big(\partial_{\theta_k} \log p_\theta(c\mid x_i)\big)^2,

and MAS's output sensitivity :math:`\frac1n\sum_i |\partial_{\theta_k} \|f_\theta(x_i)\|_2^2|`.
Networks whose parameters all belong to ``nn.Linear`` layers take a fast path (each
example's weight gradient is the outer product :math:`\delta_i a_i^\top` of the gradient at
the layer's output and the layer's input); others use ``torch.func.vmap`` over ``grad``.
Both are taken in eval mode (batch norm's running statistics, no dropout; the network's
modes are restored). A frozen parameter (``requires_grad=False``, e.g. a pretrained body)
gets importance 0: no method changes it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ._guards import evaluating


def diagonal_fisher(
    net: nn.Module, x: torch.Tensor, chunk_size: int = 256
) -> dict[str, torch.Tensor]:
    """Diagonal of the exact expected Fisher at the current weights, one tensor per parameter.

    Networks whose parameters all belong to ``nn.Linear`` layers take a fast path: one
    backward pass per class gives every example's gradient with respect to each layer's
    output, and the squared weight gradient is :math:`\\delta^2 (a^2)^\top` per example.
    Other networks use per-example, per-class gradients (``torch.func``).
    """
    with evaluating(net):
        if _only_linear_layers(net):
            return _trainable_only(net, _linear_fisher(net, x))
        return _trainable_only(net, _vmap_fisher(net, x, chunk_size))


def _vmap_fisher(net: nn.Module, x: torch.Tensor, chunk_size: int) -> dict[str, torch.Tensor]:
    params, frozen, buffers = _detached_state(net)

    def log_prob(p, xi, onehot):
        logits = functional_call(net, (p, frozen, buffers), (xi.unsqueeze(0),))
        return (logits.log_softmax(-1)[0] * onehot).sum()

    per_class = vmap(grad(log_prob), in_dims=(None, None, 0))  # all classes of one example
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    with torch.no_grad():
        probs = net(x).softmax(-1)
    classes = torch.eye(probs.shape[-1], dtype=probs.dtype)
    for start in range(0, len(x), chunk_size):
        xs, ps = x[start : start + chunk_size], probs[start : start + chunk_size]
        grads = vmap(per_class, in_dims=(None, 0, None))(params, xs, classes)  # (b, C, *shape)
        for k, g in grads.items():
            weights = ps.reshape(ps.shape + (1,) * (g.dim() - 2))
            fisher[k] += (weights * g.pow(2)).sum((0, 1))
    return {k: v / len(x) for k, v in fisher.items()}


def _only_linear_layers(net: nn.Module) -> bool:
    """Whether every module that owns parameters is an ``nn.Linear`` (the fast paths)."""
    return all(
        isinstance(m, nn.Linear)
        for m in net.modules()
        if next(m.parameters(recurse=False), None) is not None
    )


def _detached_state(net: nn.Module) -> tuple[dict, dict, dict]:
    """Trainable parameters, frozen parameters and buffers by name, detached, for
    ``functional_call`` under ``vmap`` (gradients are taken for the first only)."""
    named = dict(net.named_parameters())
    return (
        {k: v.detach() for k, v in named.items() if v.requires_grad},
        {k: v.detach() for k, v in named.items() if not v.requires_grad},
        {k: v.detach() for k, v in net.named_buffers()},
    )


def _trainable_only(net: nn.Module, importance: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``importance`` for every parameter of ``net``, 0 for the frozen ones."""
    return {
        k: importance[k] if p.requires_grad and k in importance else torch.zeros_like(p)
        for k, p in net.named_parameters()
    }


def _forward_recording_linears(net: nn.Module, x: torch.Tensor):
    """``net(x)``, with each ``nn.Linear`` layer's input (detached) and output kept by name."""
    inputs, outputs = {}, {}
    linears = {name: m for name, m in net.named_modules() if isinstance(m, nn.Linear)}

    def hook(name):
        def save(module, args, output):
            inputs[name], outputs[name] = args[0].detach(), output

        return save

    handles = [m.register_forward_hook(hook(name)) for name, m in linears.items()]
    try:
        return net(x), linears, inputs, outputs
    finally:
        for h in handles:
            h.remove()


def _linear_fisher(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    logits, linears, inputs, outputs = _forward_recording_linears(net, x)
    log_p = logits.log_softmax(-1)
    probs = log_p.detach().exp()
    fisher = {
        f"{name}.{p}": torch.zeros_like(getattr(m, p))
        for name, m in linears.items()
        for p in ("weight", "bias")
        if getattr(m, p) is not None
    }
    names = [n for n in linears if outputs[n].requires_grad]
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


def output_sensitivity(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    r"""MAS's importance before normalisation: :math:`\frac1n\sum_i |\partial_{\theta_k} \|f_\theta(x_i)\|_2^2|`.

    One backward pass for ``nn.Linear`` networks (:math:`|\delta_i a_i^\top| = |\delta_i|\,|a_i|^\top`),
    per-example gradients otherwise.
    """
    with evaluating(net):
        if _only_linear_layers(net):
            out, linears, inputs, outputs = _forward_recording_linears(net, x)
            names = [n for n in linears if outputs[n].requires_grad]
            deltas = torch.autograd.grad(out.pow(2).sum(), [outputs[n] for n in names])
            importance = {}
            for name, delta in zip(names, deltas, strict=True):
                importance[f"{name}.weight"] = delta.abs().T @ inputs[name].abs() / len(x)
                if linears[name].bias is not None:
                    importance[f"{name}.bias"] = delta.abs().sum(0) / len(x)
            return _trainable_only(net, importance)
        params, frozen, buffers = _detached_state(net)

        def squared_norm(p, xi):
            return functional_call(net, (p, frozen, buffers), (xi.unsqueeze(0),)).pow(2).sum()

        grads = vmap(grad(squared_norm), in_dims=(None, 0))(params, x)
        return _trainable_only(net, {k: g.abs().mean(0) for k, g in grads.items()})
