"""The library's errors, under one base class (a base module: it imports nothing).

``except pyro_unlearn.UnlearningError`` catches a bad request, an unsupported posterior and
an unreliable result at once. Forget masks, the effect handlers, option values, model
features not supported and reference cache files raise the built-in ``ValueError``,
``TypeError`` or ``NotImplementedError`` instead, as Pyro's own handlers do
(``docs/errors.md`` lists which). Each class here also derives from the built-in
exception a caller would expect (``ValueError`` for a bad request, ``TypeError`` for a
posterior of the wrong kind, ``RuntimeError`` for a result the method judges unreliable),
so existing ``except ValueError`` code keeps working.

Unreliable results (:class:`UnreliableResultError` and its subclasses) follow one policy,
the ``on_unreliable`` option of every method that can detect them: ``"raise"`` (the default:
a deletion that did not work must not look done), ``"warn"`` (return the result, flagged:
``result.reliable`` is ``False`` and ``result.diagnostics["unreliable"]`` says why, with an
:class:`UnreliableResultWarning`), or ``"ignore"`` (return it, flagged, silently).
"""

from __future__ import annotations

import warnings


class UnlearningError(Exception):
    """Base class of every error pyro-unlearn raises."""


class BadRequestError(UnlearningError, ValueError):
    """An argument is invalid (its message names the argument and the value)."""


class UnknownOptionError(BadRequestError, TypeError):
    """An option the method does not have (the message names the closest it has). Also a
    ``TypeError``, as Python's own "unexpected keyword argument" is, so code that catches
    that keeps working."""


class UnsupportedPosteriorError(UnlearningError, TypeError):
    """The method cannot use a posterior of this kind (it names the methods that can)."""


class UnreliableResultError(UnlearningError, RuntimeError):
    """The method ran, and its own checks say the result cannot be trusted."""


class UnreliableResultWarning(UserWarning):
    """A result returned although its method judged it unreliable (``on_unreliable="warn"``)."""


class ImproperTargetError(UnreliableResultError):
    r"""The divided-out target :math:`q(\theta\mid D)/p(D_e\mid\theta)` is improper at the mode
    (:math:`\Lambda_D - \Lambda_e` is not positive definite): the forget set removes more than
    the posterior holds, e.g. the same data forgotten twice."""


class DegenerateWeightsError(UnreliableResultError):
    """Importance weights too uneven to estimate anything (Pareto k-hat > 0.7)."""


class UnlearningDivergedError(UnreliableResultError):
    """The unlearned posterior ran far from where the forget set could have moved it."""


class SMCStalledError(UnreliableResultError):
    """Sequential unlearning could not make progress through the forget set."""


class TargetNotReachedError(UnreliableResultError):
    """An iterative classifier method used its whole step budget (``max_steps``) without
    reaching its own target: the forget accuracy is still above ``target_forget_accuracy``,
    or forget examples are still predicted in a forgotten class."""


def unreliable(
    error: UnreliableResultError, on_unreliable: str, diagnostics: dict, stacklevel: int = 3
) -> None:
    """Apply the policy to an unreliable result: raise ``error``, or flag ``diagnostics``
    (``reliable=False``, ``unreliable=[reasons]``) and warn or stay silent."""
    if on_unreliable == "raise":
        raise error
    diagnostics["reliable"] = False
    diagnostics.setdefault("unreliable", []).append(f"{type(error).__name__}: {error}")
    if on_unreliable == "warn":
        warnings.warn(str(error), UnreliableResultWarning, stacklevel=stacklevel + 1)
