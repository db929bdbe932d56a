"""Unlearning for neural classifiers (point estimates): PBU, JiT, baselines and metrics."""

from .fisher import diagonal_fisher, output_sensitivity
from .methods import (
    accuracy,
    continual,
    finetune,
    instance_loss,
    instance_unlearn,
    jit,
    lipschitz_loss,
    mas_importance,
    minibatch_importance,
    neggrad,
    pbu,
    pbu_anchor,
    pbu_loss,
    retrain,
    runner_up_labels,
    ssd,
    targeted_pgd,
    train,
)
from .metrics import js_divergence, membership_attack, per_sample
from .models import ClassifierModel, mlp, small_cnn
from .ulira import logit_confidence, ulira

__all__ = [
    "ClassifierModel",
    "accuracy",
    "continual",
    "instance_loss",
    "instance_unlearn",
    "mas_importance",
    "minibatch_importance",
    "targeted_pgd",
    "diagonal_fisher",
    "finetune",
    "jit",
    "js_divergence",
    "lipschitz_loss",
    "logit_confidence",
    "membership_attack",
    "mlp",
    "neggrad",
    "output_sensitivity",
    "pbu",
    "pbu_anchor",
    "pbu_loss",
    "per_sample",
    "retrain",
    "runner_up_labels",
    "small_cnn",
    "ssd",
    "train",
    "ulira",
]
