"""Benchmark building blocks: data sets, models and seeded (cached) training.

Lower layers of geninf never import this package.
"""

from .backdoor import (
    Poisoned,
    Trigger,
    apply_trigger,
    backdoor_metrics,
    badnets_patch,
    checkerboard_trigger,
    poison,
    triggered_test,
)
from .datasets import DatasetName, Splits, load_dataset, stratified_sample, stratified_split
from .metrics import (
    class_removal_metrics,
    distance_to_reference,
    mean_std,
    per_class_histogram,
    summarize_runs,
)
from .models import (
    MLP,
    VGG11,
    BasicBlock,
    ModelName,
    ResNet18,
    SmallCNN,
    TinyNet,
    build_model,
    num_parameters,
)
from .training import CachedModel, TrainResult, evaluate, train_cached, train_model

__all__ = [
    "Poisoned",
    "Trigger",
    "apply_trigger",
    "backdoor_metrics",
    "badnets_patch",
    "checkerboard_trigger",
    "class_removal_metrics",
    "distance_to_reference",
    "mean_std",
    "per_class_histogram",
    "poison",
    "summarize_runs",
    "triggered_test",
    "MLP",
    "VGG11",
    "BasicBlock",
    "CachedModel",
    "DatasetName",
    "ModelName",
    "ResNet18",
    "SmallCNN",
    "Splits",
    "TinyNet",
    "TrainResult",
    "build_model",
    "evaluate",
    "load_dataset",
    "num_parameters",
    "stratified_sample",
    "stratified_split",
    "train_cached",
    "train_model",
]
