"""Unlearning for neural classifiers (point estimates): PBU, JiT, baselines and metrics.

One module per concept: ``training`` (train, retrain, fine-tune), one per method (``pbu`` with
NegGrad, ``jit``, ``ssd``, ``instance`` with its PGD and importances), ``continual``
(requests through a ledger), ``salun``, ``scrub`` and ``sparse`` (the stronger
baselines), ``class_distillation`` (the library's own method for whole classes),
``metrics``, ``ulira`` and ``challenge`` (privacy), ``fisher`` (importances); ``methods`` holds their ``unlearn(..., method=...)`` forms.
"""

from .challenge import bucket_points, challenge_score, forgetting_epsilon
from .class_distillation import class_distillation, forgotten_class_targets
from .continual import continual
from .fisher import diagonal_fisher, output_sensitivity
from .instance import (
    batch_output_importance,
    instance_loss,
    instance_unlearn,
    mas_importance,
    random_other_labels,
    runner_up_labels,
    targeted_pgd,
)
from .jit import jit, lipschitz_loss
from .metrics import js_divergence, membership_attack, per_sample
from .models import ClassifierModel, mlp, small_cnn
from .pbu import neggrad, pbu, pbu_anchor, pbu_loss
from .salun import salun, weight_saliency
from .scrub import distillation_divergence, scrub
from .sparse import l1_sparse
from .ssd import minibatch_importance, ssd
from .training import accuracy, finetune, retrain, train
from .ulira import logit_confidence, ulira

__all__ = [
    "ClassifierModel",
    "accuracy",
    "batch_output_importance",
    "bucket_points",
    "challenge_score",
    "class_distillation",
    "continual",
    "instance_loss",
    "instance_unlearn",
    "mas_importance",
    "minibatch_importance",
    "targeted_pgd",
    "diagonal_fisher",
    "distillation_divergence",
    "finetune",
    "forgetting_epsilon",
    "forgotten_class_targets",
    "jit",
    "js_divergence",
    "l1_sparse",
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
    "random_other_labels",
    "retrain",
    "runner_up_labels",
    "salun",
    "scrub",
    "small_cnn",
    "ssd",
    "train",
    "ulira",
    "weight_saliency",
]
