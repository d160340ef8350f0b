"""``geninf train``: train a model on a data set and write a run directory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ...bench.datasets import Splits, load_dataset
from ...bench.models import build_model, num_parameters
from ...bench.training import evaluate, train_model
from ..checkpoint import MODEL_FILE, save_model
from ..rundir import RunDir
from .common import base_config, checkpoint_info, collect_warnings, finish
from .config import JobConfig, Started, keyword_entry, run_in, start_job

__all__ = ["TrainJob", "train_run"]


@dataclass(frozen=True, kw_only=True)
class TrainJob(JobConfig):
    """Train ``model`` on ``data`` with Adam and write ``out`` (model, config, results, report).

    ``flatten`` defaults to True for the MLP and False otherwise. The weight decay is recorded
    in the checkpoint: later edits use the same regularized objective.

    Returns:
        The results (the content of ``results.json``).
    """

    data: str
    model: str
    epochs: int = 10
    seed: int = 0
    data_seed: int = 0
    width: float = 1.0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    normalize: bool = False
    flatten: bool | None = None
    max_train: int | None = None
    max_eval: int | None = None

    UNRECORDED: ClassVar[tuple[str, ...]] = ("force", "progress", "out")

    @property
    def flat(self) -> bool:
        """Whether the inputs are flattened (by default for the MLP only)."""
        return (self.model == "mlp") if self.flatten is None else bool(self.flatten)

    def training(self) -> dict[str, Any]:
        """The training settings: the keyword arguments of :func:`~geninf.bench.train_model`
        and the checkpoint's ``training`` record."""
        return {
            "epochs": int(self.epochs),
            "seed": int(self.seed),
            "batch_size": int(self.batch_size),
            "lr": float(self.lr),
            "weight_decay": float(self.weight_decay),
        }

    def info(self, splits: Splits) -> dict[str, Any]:
        """The record saved with the trained model."""
        return checkpoint_info(
            self.model,
            self.width,
            splits,
            data=self.data,
            data_seed=self.data_seed,
            flatten=self.flat,
            normalize=self.normalize,
            max_train=self.max_train,
            max_eval=self.max_eval,
            training=self.training(),
        )


def run_train_job(job: TrainJob) -> dict[str, Any]:
    """Run ``geninf train`` (see :class:`TrainJob`) into ``job.run.out``."""
    started = start_job(job.run)
    return run_in(job.run, lambda run: _train(job, started, run))


train_run = keyword_entry(TrainJob, run_train_job, "train_run")


def _train(job: TrainJob, started: Started, run: RunDir) -> dict[str, Any]:
    splits = load_dataset(
        job.data,
        seed=job.data_seed,
        flatten=job.flat,
        normalize=job.normalize,
        max_train=job.max_train,
        max_eval=job.max_eval,
    )
    net = build_model(
        job.model,
        input_shape=splits.input_shape,
        num_classes=splits.num_classes,
        width=job.width,
        seed=job.seed,
    )
    caught: list[str] = []
    with collect_warnings(caught):
        trained = train_model(
            net, splits, progress=job.run.progress, device=started.device, **job.training()
        )
    net = trained.model.eval()
    info = job.info(splits)
    if run.root is not None:
        save_model(run.file(MODEL_FILE), net, info)
    config = base_config("train", job.options(), job.run.argv)
    seeds = {"model": job.seed, "data": job.data_seed}
    config.update(device=str(started.device), seeds=seeds, checkpoint=info)
    results = {
        "kind": "train",
        "title": f"Training {job.model} on {job.data}",
        "model_file": MODEL_FILE,
        "num_parameters": num_parameters(net),
        "splits": splits.sizes,
        "metrics": _metrics(net, splits),
        "per_class_test_acc": _per_class(net, splits, started.device),
        "history": trained.history,
        "train_seconds": trained.wall_time,
        "warnings": caught,
        "wall_time": started.elapsed(),
    }
    return finish(run, config, results)


def _metrics(net: nn.Module, splits: Splits) -> dict[str, Any]:
    metrics = {}
    for split in ("train", "validation", "test"):
        x, y = getattr(splits, split)
        if y.numel():
            metrics[split] = {**evaluate(net, x, y), "examples": int(y.numel())}
    return metrics


def _per_class(net: nn.Module, splits: Splits, device: Any) -> dict[str, float]:
    x, y = splits.test
    with torch.no_grad():
        pred = torch.cat(
            [net(x[i : i + 512].to(device)).argmax(1).cpu() for i in range(0, len(y), 512)]
        )
    return {
        str(c): 100.0 * float((pred[y == c] == c).double().mean())
        for c in range(splits.num_classes)
        if bool((y == c).any())
    }
