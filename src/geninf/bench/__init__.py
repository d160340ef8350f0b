"""Benchmark building blocks: data sets, models and seeded (cached) training.

Lower layers of geninf never import this package.
"""

from .datasets import DatasetName, Splits, load_dataset, stratified_sample, stratified_split
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
