"""Calling a user's model the way it was built (a base module: it imports nothing of the package)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pyro
import torch


def user_call(model: Callable) -> Callable:
    """``model`` run under the ``module_local_params`` setting its PyroModules were built with.

    A ``PyroModule`` built while ``pyro.settings`` had ``module_local_params=False`` (Pyro's
    default) fails when called under ``True`` (``'_Context' object has no attribute
    'param_state'``), and the library trains its own guides with module-local parameters, so
    every call of a user's model goes through this wrapper.
    """
    if getattr(model, "_unlearn_user_call", False):
        return model
    local = _built_module_local(model)
    if local is None:
        return model

    def call(*args, **kwargs):
        with pyro.settings.context(module_local_params=local):
            return model(*args, **kwargs)

    functools.update_wrapper(call, model, updated=())

    call._unlearn_user_call = True
    return call


def _built_module_local(model) -> bool | None:
    from pyro.nn import PyroModule
    from pyro.poutine.messenger import unwrap

    inner = getattr(model, "__wrapped__", None) or unwrap(model)  # under handlers
    if inner is not model:
        return _built_module_local(inner)
    owner = model if isinstance(model, torch.nn.Module) else getattr(model, "__self__", None)
    if not isinstance(owner, torch.nn.Module):
        return None
    for module in owner.modules():
        if isinstance(module, PyroModule):
            return hasattr(module._pyro_context, "param_state")
    return None
