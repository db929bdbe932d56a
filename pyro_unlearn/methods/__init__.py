"""The unlearning methods, one module each, below the API that dispatches to them.

Each module exports ``<name>_unlearn`` (or a ``<name>_method`` form) taking
``(model, posterior, *forget_args, **options)`` and returning ``(unlearned, diagnostics)``;
:data:`pyro_unlearn.api.METHODS` names them. ``_common`` holds what eubo and rkl share;
the divided-out target they aim at, and its check, are in :mod:`pyro_unlearn.targets`.
"""
