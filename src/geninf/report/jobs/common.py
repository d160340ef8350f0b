"""What every job shares: the configuration record, warnings, metrics and finishing a run."""

from __future__ import annotations

import contextlib
import datetime
import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...bench.datasets import Splits
from ...bench.metrics import class_removal_metrics, distance_to_reference, per_class_histogram
from ...bench.training import evaluate
from ...edit.config import solver_options
from ...edit.record import json_safe
from ...errors import InputError
from ..content import CAPTIONS, make_plots, write_report
from ..gradcam import grad_cam, last_conv_layer
from ..plots import matplotlib_available, plot_gradcam
from ..rundir import RunDir, versions
from .inputs import ForgetSet

__all__ = [
    "MAX_THREADS",
    "base_config",
    "check_threads",
    "checkpoint_info",
    "collect_warnings",
    "edit_metrics",
    "finish",
    "gradcam_figure",
    "histograms",
    "set_threads",
    "solver_options",
]


#: The most CPU threads a run may ask for: more is a typo, and torch would start that many.
MAX_THREADS = 4096


def check_threads(threads: object, name: str = "threads") -> int:
    """``threads`` as an ``int`` if it is an integer in ``[1, MAX_THREADS]``.

    Raises:
        InputError: not an integer (a bool is not one), or outside ``[1, MAX_THREADS]``.
    """
    ok = isinstance(threads, numbers.Integral) and not isinstance(threads, bool)
    if not ok or not 1 <= int(threads) <= MAX_THREADS:  # type: ignore[arg-type]
        raise InputError(f"{name} must be an integer in [1, {MAX_THREADS}], got {threads!r}")
    return int(threads)  # type: ignore[arg-type]


def set_threads(threads: int | None) -> int:
    """Use ``threads`` CPU threads (None: leave PyTorch's choice); return the count in use.

    Raises:
        InputError: ``threads`` is not an integer in ``[1, MAX_THREADS]``.
    """
    if threads is not None:
        torch.set_num_threads(check_threads(threads))
    return torch.get_num_threads()


def checkpoint_info(
    model: str,
    width: float,
    splits: Splits,
    *,
    data: str,
    data_seed: int,
    flatten: bool,
    normalize: bool,
    max_train: int | None = None,
    max_eval: int | None = None,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record saved with a model file (:func:`~geninf.report.checkpoint.save_model`): its
    architecture, the data it was trained on, its training and (empty) edits — what later jobs
    read to rebuild the model, reload the data and retrain."""
    return {
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
            "flatten": bool(flatten),
            "normalize": bool(normalize),
            "max_train": max_train,
            "max_eval": max_eval,
        },
        "training": dict(training or {}),
        "edits": [],
    }


def base_config(command: str, options: Mapping[str, Any], argv: Sequence[str] = ()) -> dict:
    """The resolved configuration of a run: command, options, versions, threads, time."""
    return json_safe(
        {
            "command": command,
            "kind": command.split()[0],
            "argv": list(argv),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "options": dict(options),
            "threads": torch.get_num_threads(),
            "versions": versions(),
        }
    )


@contextlib.contextmanager
def collect_warnings(sink: list[str]) -> Iterator[None]:
    """Record every warning raised inside (one line each, deduplicated) into ``sink``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        line = f"{w.category.__name__}: {str(w.message).splitlines()[0] if str(w.message) else ''}"
        if line not in sink and not issubclass(w.category, DeprecationWarning):
            sink.append(line)


def edit_metrics(model: nn.Module, splits: Splits, forget: ForgetSet) -> dict[str, float]:
    """Class-removal metrics (method.md §6) for a class, test/self accuracy for indices."""
    if forget.forget_class is not None:
        return class_removal_metrics(model, splits, forget.forget_class, forget.forget)
    from ...edit.validation import f1_score

    test = evaluate(model, *splits.test)
    own = evaluate(model, *forget.forget)
    return {
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "self_acc": own["acc"],
        "self_loss": own["loss"],
        "f1": f1_score(own["acc"] / 100.0, test["acc"] / 100.0),
    }


def histograms(
    models: Mapping[str, nn.Module], splits: Splits, forget: ForgetSet
) -> dict[str, Any]:
    """Predicted labels of the removed class's test examples (or of the removed training
    examples) under each model."""
    if forget.forget_class is not None:
        x, y = splits.test
        inputs, subject = (
            x[y == forget.forget_class],
            f"test examples of class {forget.forget_class}",
        )
    else:
        inputs, subject = forget.forget[0], f"the {forget.role} training examples"
    counts = {
        name: per_class_histogram(m, inputs, num_classes=splits.num_classes)
        for name, m in models.items()
    }
    return {"subject": subject, "forget_class": forget.forget_class, "counts": counts}


def agreement(models: Mapping[str, nn.Module], reference: nn.Module, inputs: Tensor) -> dict:
    """Prediction agreement, KL and parameter distance of each model to ``reference``."""
    return {name: distance_to_reference(m, reference, inputs) for name, m in models.items()}


def gradcam_figure(
    run: RunDir,
    models: Mapping[str, nn.Module],
    splits: Splits,
    forget: ForgetSet,
    *,
    per_group: int = 3,
) -> tuple[list[str], list[str]]:
    """Grad-CAM of ``per_group`` removed-class and kept test images under every model."""
    first = next(iter(models.values()))
    if run.root is None:
        return [], []
    if last_conv_layer(first) is None:
        return [], ["Grad-CAM skipped: the model has no convolution layer (Grad-CAM is for CNNs)"]
    if len(splits.input_shape) != 3:
        return [], ["Grad-CAM skipped: the inputs are not images [C, H, W]"]
    if not matplotlib_available():
        return [], []
    x, y = splits.test
    if forget.forget_class is not None:
        gone = torch.nonzero(y == forget.forget_class).flatten()[:per_group]
        kept = torch.nonzero(y != forget.forget_class).flatten()[:per_group]
        images = torch.cat([x[gone], x[kept]])
        labels = torch.cat([y[gone], y[kept]])
        tags = ["removed class"] * len(gone) + ["kept"] * len(kept)
    else:
        images = torch.cat([forget.forget[0][:per_group], x[:per_group]])
        labels = torch.cat([forget.forget[1][:per_group], y[:per_group]])
        n_gone, n_test = min(per_group, len(forget.forget[1])), min(per_group, len(y))
        tags = [forget.role] * n_gone + ["test"] * n_test
    cams, preds = {}, {}
    for name, model in models.items():
        cams[name] = grad_cam(model, images, labels)
        with torch.no_grad():
            device = next(model.parameters()).device
            preds[name] = model(images.to(device)).argmax(dim=1).cpu().tolist()
    rows = [f"{t}, label {int(lab)}" for t, lab in zip(tags, labels, strict=True)]
    plot_gradcam(
        run.file("plots/gradcam.png"),
        images,
        cams,
        row_labels=rows,
        predictions=preds,
        title="Grad-CAM (evidence for the true label) — last convolution layer",
    )
    return ["plots/gradcam.png"], []


def _order(paths: Sequence[str]) -> list[str]:
    known = list(CAPTIONS)
    unique = list(dict.fromkeys(paths))
    return sorted(unique, key=lambda p: known.index(p) if p in known else len(known))


def finish(
    run: RunDir,
    config: dict[str, Any],
    results: dict[str, Any],
    *,
    extra_plots: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Draw the plots, write ``results.json``, ``config.json`` and the report into the run and
    return ``results`` (JSON-ready) — the same content as ``results.json``."""
    results.setdefault("notes", [])
    results["notes"] = list(results["notes"]) + list(notes)
    results.setdefault("warnings", [])
    root = run.root
    plots: list[str] = list(extra_plots)
    if root is not None:
        made, more = make_plots(results, root)
        plots += made
        results["notes"] += more
    results["plots"] = _order(plots)
    results = json_safe(results)
    if root is not None:
        run.write_json("results.json", results)
        run.write_json("config.json", config)
        write_report(Path(root), config, results)
    return results
