"""The function forms of the handlers, made by one factory (as Pyro's ``poutine/handlers.py``).

Each form ``h(fn=None, **options)`` builds the Messenger from ``options`` and returns it
(a context manager, ``with forget(mask=m, plate="data"): ...``) when ``fn`` is None, or
``fn`` wrapped in it (``forget(model, mask=m, plate="data")``; also a decorator).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from .anchor import AnchorMessenger
from .forget import ForgetMessenger
from .retain import RetainMessenger


def _make_handler(msngr_cls: type, name: str) -> Callable:
    def handler(fn: Callable | None = None, **options):
        msngr = msngr_cls(**options)
        return msngr if fn is None else msngr(fn)

    init = inspect.signature(msngr_cls.__init__)
    options = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in list(init.parameters.values())[1:]  # drop self
    ]
    fn = inspect.Parameter("fn", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
    handler.__signature__ = init.replace(
        parameters=[fn, *options], return_annotation=inspect._empty
    )
    handler.__name__ = handler.__qualname__ = name
    handler.__module__ = "pyro_unlearn.handlers"
    summary = inspect.getdoc(msngr_cls).split("\n\n")[0]
    handler.__doc__ = (
        f"Function form of :class:`~pyro_unlearn.handlers.{msngr_cls.__name__}`: {summary}\n\n"
        f"``{name}(fn, **options)`` wraps ``fn``; ``{name}(**options)`` is the Messenger itself, "
        "a context manager."
    )
    return handler


forget = _make_handler(ForgetMessenger, "forget")
retain = _make_handler(RetainMessenger, "retain")
anchor = _make_handler(AnchorMessenger, "anchor")
