"""``geninf train``: train a model on a data set and write a run directory."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from ...bench.datasets import load_dataset
from ...bench.models import build_model, num_parameters
from ...bench.training import evaluate, train_model
from ...distributed import is_main_process
from ..checkpoint import MODEL_FILE, save_model
from ..rundir import RunDir
from .common import base_config, collect_warnings, finish, set_threads
from .inputs import resolve_device

__all__ = ["train_run"]


def train_run(
    *,
    data: str,
    model: str,
    out: str,
    epochs: int = 10,
    seed: int = 0,
    data_seed: int = 0,
    width: float = 1.0,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    normalize: bool = False,
    flatten: bool | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    force: bool = False,
    progress: bool = True,
    argv: Sequence[str] = (),
) -> dict[str, Any]:
    """Train ``model`` on ``data`` with Adam and write ``out`` (model, config, results, report).

    ``flatten`` defaults to True for the MLP and False otherwise. The weight decay is recorded
    in the checkpoint: later edits use the same regularized objective.

    Returns:
        The results (the content of ``results.json``).
    """
    options = dict(locals())
    for key in ("argv", "force", "progress", "out"):
        options.pop(key)
    start = time.perf_counter()
    set_threads(threads)
    dev = resolve_device(device)
    flat = (model == "mlp") if flatten is None else bool(flatten)
    run = RunDir(out, force=force, enabled=is_main_process())
    try:
        splits = load_dataset(
            data,
            seed=data_seed,
            flatten=flat,
            normalize=normalize,
            max_train=max_train,
            max_eval=max_eval,
        )
        net = build_model(
            model,
            input_shape=splits.input_shape,
            num_classes=splits.num_classes,
            width=width,
            seed=seed,
        )
        caught: list[str] = []
        with collect_warnings(caught):
            trained = train_model(
                net,
                splits,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                weight_decay=weight_decay,
                seed=seed,
                progress=progress,
                device=dev,
            )
        net = trained.model.eval()
        metrics = {}
        for split in ("train", "validation", "test"):
            x, y = getattr(splits, split)
            if y.numel():
                metrics[split] = {**evaluate(net, x, y), "examples": int(y.numel())}
        x, y = splits.test
        with torch.no_grad():
            pred = torch.cat(
                [net(x[i : i + 512].to(dev)).argmax(1).cpu() for i in range(0, len(y), 512)]
            )
        per_class = {
            str(c): 100.0 * float((pred[y == c] == c).double().mean())
            for c in range(splits.num_classes)
            if bool((y == c).any())
        }
        info = {
            "architecture": {
                "model": model,
                "width": float(width),
                "input_shape": list(splits.input_shape),
                "num_classes": splits.num_classes,
                "options": {},
            },
            "data": {
                "spec": data,
                "seed": int(data_seed),
                "flatten": flat,
                "normalize": bool(normalize),
                "max_train": max_train,
                "max_eval": max_eval,
            },
            "training": {
                "epochs": int(epochs),
                "seed": int(seed),
                "batch_size": int(batch_size),
                "lr": float(lr),
                "weight_decay": float(weight_decay),
            },
            "edits": [],
        }
        if run.root is not None:
            save_model(run.file(MODEL_FILE), net, info)
        config = base_config("train", options, argv)
        config.update(device=str(dev), seeds={"model": seed, "data": data_seed}, checkpoint=info)
        results = {
            "kind": "train",
            "title": f"Training {model} on {data}",
            "model_file": MODEL_FILE,
            "num_parameters": num_parameters(net),
            "splits": splits.sizes,
            "metrics": metrics,
            "per_class_test_acc": per_class,
            "history": trained.history,
            "train_seconds": trained.wall_time,
            "warnings": caught,
            "wall_time": time.perf_counter() - start,
        }
        results = finish(run, config, results)
    except BaseException:
        run.abort()
        raise
    run.commit()
    return results
