"""What :func:`~pyro_unlearn.unlearn` returns: the unlearned posterior, as data."""

from __future__ import annotations

from dataclasses import dataclass, field

from .ledger import ForgetLedger


@dataclass
class UnlearnResult:
    """What :func:`unlearn` returns.

    Attributes
    ----------
    guide
        The unlearned posterior, a Pyro guide: use it with
        ``pyro.infer.Predictive(model, guide=result.guide, num_samples=...)``.
    method : str
        The method used.
    seconds : float
        Wall time of the unlearning call.
    diagnostics : dict
        Method-specific numbers (eigenvalues, loss traces, effective sample sizes, ...).
    ledger : ForgetLedger or None
        The data ids this posterior has forgotten, when ids were given.
    """

    guide: object
    method: str
    seconds: float
    diagnostics: dict = field(default_factory=dict)
    ledger: ForgetLedger | None = None

    @property
    def reliable(self) -> bool:
        """False when the method judged its result unreliable (``on_unreliable="warn"`` or
        ``"ignore"``); ``diagnostics["unreliable"]`` says why."""
        return bool(self.diagnostics.get("reliable", True))

    def __repr__(self) -> str:
        forgotten = "" if self.ledger is None else f", forgotten={len(self.ledger.forgotten)}"
        return (
            f"UnlearnResult(method={self.method!r}, guide={type(self.guide).__name__}, "
            f"seconds={self.seconds:.3g}{forgotten}, reliable={self.reliable}, "
            f"diagnostics={sorted(self.diagnostics)})"
        )
