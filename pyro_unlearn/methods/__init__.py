"""The unlearning methods, one module each, below the API that dispatches to them.

Each module exports ``<name>_unlearn`` taking ``(model, posterior, *forget_args, **options)``
and returning ``(unlearned, diagnostics)``; :data:`pyro_unlearn.api.METHODS` names them.
``_common`` holds what eubo and rkl share; the divided-out target they aim at, and its
check, are in :mod:`pyro_unlearn.targets`.
"""

from .eubo import eubo_unlearn
from .laplace import laplace_unlearn
from .psis import psis_unlearn
from .rkl import rkl_unlearn
from .smc import smc_unlearn

__all__ = ["eubo_unlearn", "laplace_unlearn", "psis_unlearn", "rkl_unlearn", "smc_unlearn"]
