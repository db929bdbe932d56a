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
        The unlearned posterior, a Pyro guide (weighted draws are a guide too:
        :class:`~pyro_unlearn.WeightedSamples` picks one draw per run by its weight): use it
        with ``pyro.infer.Predictive(model, guide=result.guide, num_samples=...)``. ``None``
        for the classifier methods, which return a network.
    method : str
        The method used.
    seconds : float
        Wall time of the unlearning call.
    diagnostics : dict
        Method-specific numbers (eigenvalues, loss traces, effective sample sizes, ...).
    ledger : ForgetLedger or None
        The data ids this posterior has forgotten, when ids were given.
    network : torch.nn.Module or None
        The unlearned classifier (methods ``"pbu"``, ``"jit"``, ``"neggrad"``, ``"ssd"``,
        ``"instance"``): a new network, the caller's untouched.
    certificate : Certificate or None
        Its estimated KL to the retrained posterior, once :func:`~pyro_unlearn.certify` has
        been called on it (or ``unlearn(..., lam="certified")`` chose its lambda by it).
    """

    guide: object
    method: str
    seconds: float
    diagnostics: dict = field(default_factory=dict)
    ledger: ForgetLedger | None = None
    network: object = None
    certificate: object = None

    @property
    def unlearned(self):
        """What was unlearned: the guide, or the network for the classifier methods."""
        return self.network if self.network is not None else self.guide

    @property
    def reliable(self) -> bool:
        """False when the method judged its result unreliable (``on_unreliable="warn"`` or
        ``"ignore"``); ``diagnostics["unreliable"]`` says why."""
        return bool(self.diagnostics.get("reliable", True))

    def __repr__(self) -> str:
        forgotten = "" if self.ledger is None else f", forgotten={len(self.ledger.forgotten)}"
        return (
            f"UnlearnResult(method={self.method!r}, "
            f"{'network' if self.network is not None else 'guide'}="
            f"{type(self.unlearned).__name__}, "
            f"seconds={self.seconds:.3g}{forgotten}, reliable={self.reliable}, "
            f"diagnostics={sorted(self.diagnostics)})"
        )
