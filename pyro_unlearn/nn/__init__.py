"""Unlearning for neural classifiers (point estimates): PBU, JiT, baselines and metrics."""

from .fisher import diagonal_fisher
from .methods import (
    accuracy,
    finetune,
    jit,
    lipschitz_loss,
    neggrad,
    pbu,
    pbu_anchor,
    pbu_loss,
    retrain,
    ssd,
    train,
)
from .metrics import js_divergence, membership_attack, per_sample
from .models import ClassifierModel, mlp, small_cnn

__all__ = [
    "ClassifierModel",
    "accuracy",
    "diagonal_fisher",
    "finetune",
    "jit",
    "js_divergence",
    "lipschitz_loss",
    "membership_attack",
    "mlp",
    "neggrad",
    "pbu",
    "pbu_anchor",
    "pbu_loss",
    "per_sample",
    "retrain",
    "small_cnn",
    "ssd",
    "train",
]
