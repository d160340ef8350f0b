"""Metrics of an edited model (method.md §6): class removal, distance to a reference, summaries.

Every metric is a pure function of a model and data: the model runs in eval mode under
``torch.no_grad`` (its train/eval mode is restored afterwards), in batches moved to the device of
its parameters, and nothing is written to it. Results are plain ``dict``\\ s of Python floats.

Conventions:

- accuracies are in percent (0–100); losses are the mean cross-entropy;
- F1 is a fraction (0–1): ``F1 = 2 (1 - s) t / ((1 - s) + t)`` with ``s`` the self accuracy
  (on the removed examples) and ``t`` the test accuracy, both as fractions — the harmonic mean of
  "forgotten" (``1 - s``) and "still right" (``t``); it is 0 when both are 0;
- standard deviations in :func:`mean_std` / :func:`summarize_runs` are *sample* standard
  deviations (``ddof=1``), labelled ``"std"``.

:func:`f1_score` is :func:`geninf.edit.validation.f1_score`, re-exported here.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from geninf.bench.metrics import distance_to_reference, f1_score
    >>> f1_score(0.0, 1.0), f1_score(1.0, 0.0)
    (1.0, 0.0)
    >>> net = nn.Linear(4, 3)
    >>> distance_to_reference(net, net, torch.randn(8, 4))["agreement"]
    100.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..edit.validation import f1_score
from ..errors import DataError, InputError
from .datasets import Splits
from .training import evaluate

__all__ = [
    "class_removal_metrics",
    "distance_to_reference",
    "f1_score",
    "mean_std",
    "per_class_histogram",
    "predict_logits",
    "summarize_runs",
]


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _inputs_of(data: Tensor | Sequence[Tensor], name: str) -> Tensor:
    """The input tensor of ``data``: a tensor itself or the first element of ``(inputs, ...)``."""
    if isinstance(data, Tensor):
        inputs = data
    elif isinstance(data, tuple | list) and data and isinstance(data[0], Tensor):
        inputs = data[0]
    else:
        raise DataError(
            f"{name} must be an input tensor [N, ...] or an (inputs, targets) tuple, got "
            f"{type(data).__name__}"
        )
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise DataError(f"{name} is empty (inputs of shape {tuple(inputs.shape)})")
    return inputs


def predict_logits(model: nn.Module, inputs: Tensor, batch_size: int = 512) -> Tensor:
    """Logits of ``model`` on ``inputs``, computed in eval mode without gradients, in batches.

    Batches go to the device of the model's parameters; the result is gathered on the CPU, so it
    fits any later comparison. The model's train/eval mode is restored afterwards.

    Returns:
        Logits ``[N, num_outputs]`` on the CPU, in the model's dtype.
    """
    inputs = _inputs_of(inputs, "inputs")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    device, was_training = _model_device(model), model.training
    chunks = []
    model.eval()
    try:
        with torch.no_grad():
            for lo in range(0, inputs.shape[0], int(batch_size)):
                chunks.append(model(inputs[lo : lo + int(batch_size)].to(device)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def _class_subset(data: tuple[Tensor, Tensor], keep: Tensor) -> tuple[Tensor, Tensor]:
    return data[0][keep], data[1][keep]


def _forget_set(
    splits: Splits, forget_class: int, forget_train: tuple[Tensor, Tensor] | None
) -> tuple[int, tuple[Tensor, Tensor]]:
    """The removed class as an int and its removed training examples (checked)."""
    if not isinstance(splits, Splits):
        raise InputError(
            f"splits must be geninf.bench.Splits, got {type(splits).__name__}; "
            "build one with load_dataset"
        )
    c = int(forget_class)
    if not 0 <= c < splits.num_classes:
        raise InputError(f"forget_class must be in 0..{splits.num_classes - 1}, got {forget_class}")
    if forget_train is None:
        forget_train = _class_subset(splits.train, splits.train[1] == c)
    if forget_train[1].numel() == 0:
        raise DataError(f"the forget set is empty (class {c} has no training example)")
    return c, forget_train


def class_removal_metrics(
    model: nn.Module,
    splits: Splits,
    forget_class: int,
    forget_train: tuple[Tensor, Tensor] | None = None,
    *,
    batch_size: int = 512,
) -> dict[str, float]:
    """Metrics of a model from which class ``forget_class`` was removed (method.md §6).

    Args:
        model: The model to judge (edited, retrained or original).
        splits: The data; its ``test`` split is read, and its ``train`` split when
            ``forget_train`` is ``None``.
        forget_class: The removed label ``c``.
        forget_train: The removed training examples ``(inputs, targets)``; default: every
            training example of class ``c`` (``splits.train`` filtered by label).
        batch_size: Examples per forward pass.

    Returns:
        ``test_acc`` / ``test_loss`` on the test examples of the other classes; ``self_acc`` /
        ``self_loss`` on the removed training examples; ``self_test_acc`` / ``self_test_loss`` on
        the test examples of class ``c``; ``f1`` = :func:`f1_score` of ``self_acc`` and
        ``test_acc`` and ``f1_test`` = :func:`f1_score` of ``self_test_acc`` and ``test_acc``
        (fractions). Accuracies in %, losses mean cross-entropy.

    Raises:
        DataError: The test split has no example of class ``c`` or none of another class, or the
            forget set is empty.
    """
    c, forget_train = _forget_set(splits, forget_class, forget_train)
    test_y = splits.test[1]
    removed_test, kept_test = test_y == c, test_y != c
    if not bool(removed_test.any()) or not bool(kept_test.any()):
        raise DataError(
            f"the test split needs examples of class {c} and of other classes; it has "
            f"{int(removed_test.sum())} and {int(kept_test.sum())}"
        )
    kept = evaluate(model, *_class_subset(splits.test, kept_test), batch_size=batch_size)
    forgotten = evaluate(model, *forget_train, batch_size=batch_size)
    removed = evaluate(model, *_class_subset(splits.test, removed_test), batch_size=batch_size)
    return {
        "test_acc": kept["acc"],
        "test_loss": kept["loss"],
        "self_acc": forgotten["acc"],
        "self_loss": forgotten["loss"],
        "self_test_acc": removed["acc"],
        "self_test_loss": removed["loss"],
        "f1": f1_score(forgotten["acc"] / 100.0, kept["acc"] / 100.0),
        "f1_test": f1_score(removed["acc"] / 100.0, kept["acc"] / 100.0),
    }


def _parameter_distance(model: nn.Module, reference: nn.Module) -> float:
    """``‖θ - θ_ref‖ / ‖θ_ref‖`` over trainable parameters (float64)."""
    mine = {n: p for n, p in model.named_parameters() if p.requires_grad}
    theirs = {n: p for n, p in reference.named_parameters() if p.requires_grad}
    shapes = {n: tuple(p.shape) for n, p in mine.items()}
    ref_shapes = {n: tuple(p.shape) for n, p in theirs.items()}
    if shapes != ref_shapes:
        differ = sorted(set(shapes.items()) ^ set(ref_shapes.items()))[:4]
        raise InputError(
            "model and reference have different trainable parameters (name, shape) — "
            f"e.g. {differ}; compare models of the same architecture"
        )
    if not mine:
        raise InputError("the models have no trainable parameter to compare")
    diff_sq, ref_sq = 0.0, 0.0
    with torch.no_grad():
        for name, p in mine.items():
            r = theirs[name].detach().to(device=p.device, dtype=torch.float64)
            diff_sq += float((p.detach().to(torch.float64) - r).pow(2).sum())
            ref_sq += float(r.pow(2).sum())
    if ref_sq == 0.0:
        return 0.0 if diff_sq == 0.0 else math.inf
    return math.sqrt(diff_sq) / math.sqrt(ref_sq)


def distance_to_reference(
    model: nn.Module,
    reference: nn.Module,
    data: Tensor | Sequence[Tensor],
    *,
    batch_size: int = 512,
) -> dict[str, float]:
    """How far ``model`` is from ``reference`` (typically the retrained model).

    Args:
        model: The model to judge.
        reference: The model it should match, of the same architecture.
        data: Inputs ``[N, ...]`` or ``(inputs, targets)`` (targets are ignored).
        batch_size: Examples per forward pass.

    Returns:
        ``agreement``: % of inputs on which the two predict the same label (argmax);
        ``kl``: mean over inputs of ``KL(p_ref ‖ p_model) = Σ_k p_ref,k (log p_ref,k -
        log p_model,k)`` of the softmax outputs (nats; 0 for identical outputs);
        ``param_distance``: ``‖θ - θ_ref‖₂ / ‖θ_ref‖₂`` over the trainable parameters (those
        that require grad), matched by name.

    Raises:
        InputError: The architectures differ (trainable parameter names or shapes, or the number
            of outputs).
    """
    distance = _parameter_distance(model, reference)
    inputs = _inputs_of(data, "data")
    logits = predict_logits(model, inputs, batch_size).to(torch.float64)
    ref_logits = predict_logits(reference, inputs, batch_size).to(torch.float64)
    if logits.shape != ref_logits.shape:
        raise InputError(
            f"model and reference give outputs of shapes {tuple(logits.shape)} and "
            f"{tuple(ref_logits.shape)}; compare models of the same architecture"
        )
    log_p, log_ref = F.log_softmax(logits, dim=1), F.log_softmax(ref_logits, dim=1)
    kl = (log_ref.exp() * (log_ref - log_p)).sum(dim=1)
    agree = (logits.argmax(dim=1) == ref_logits.argmax(dim=1)).to(torch.float64)
    return {
        "agreement": 100.0 * float(agree.mean()),
        "kl": float(kl.mean()),
        "param_distance": distance,
    }


def per_class_histogram(
    model: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    *,
    num_classes: int | None = None,
    batch_size: int = 512,
) -> dict[int, int]:
    """How many of ``inputs`` the model predicts as each label (argmax of the logits).

    Args:
        model: The classifier.
        inputs: Inputs ``[N, ...]`` or ``(inputs, targets)`` (targets are ignored).
        num_classes: Labels to count; default: the number of model outputs.
        batch_size: Examples per forward pass.

    Returns:
        ``{label: count}`` for every label ``0 … num_classes - 1`` (zeros included); the counts
        sum to ``N``.
    """
    logits = predict_logits(model, _inputs_of(inputs, "inputs"), batch_size)
    k = logits.shape[1] if num_classes is None else int(num_classes)
    if k < logits.shape[1]:
        raise InputError(f"num_classes={k} is smaller than the model's {logits.shape[1]} outputs")
    counts = torch.bincount(logits.argmax(dim=1), minlength=k)
    return {label: int(count) for label, count in enumerate(counts.tolist())}


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and *sample* standard deviation (``ddof=1``) of ``values``.

    Returns:
        ``(mean, std)``; ``std`` is ``nan`` for a single value (undefined with ``ddof=1``).

    Raises:
        InputError: ``values`` is empty.
    """
    xs = [float(v) for v in values]
    if not xs:
        raise InputError("mean_std needs at least one value, got none")
    mean = math.fsum(xs) / len(xs)
    if len(xs) < 2:
        return mean, math.nan
    variance = math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return mean, math.sqrt(variance)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, sample std (``ddof=1``) and count of every numeric metric over runs (e.g. seeds).

    Each run is a metric dict (as the functions above return). A metric missing from some runs is
    summarized over the runs that have it; values that are not real numbers (strings, ``None``,
    booleans, nested dicts) are skipped.

    Returns:
        ``{metric: {"mean": ..., "std": ..., "n": ...}}`` in first-seen order; ``std`` is the
        sample standard deviation (``nan`` when ``n == 1``), ``n`` the number of runs (an int).
    """
    if not runs:
        raise InputError("summarize_runs needs at least one run, got none")
    collected: dict[str, list[float]] = {}
    for run in runs:
        if not isinstance(run, Mapping):
            raise InputError(f"every run must be a dict of metrics, got {type(run).__name__}")
        for key, value in run.items():
            if _is_number(value):
                collected.setdefault(str(key), []).append(float(value))
    summary = {}
    for key, values in collected.items():
        mean, std = mean_std(values)
        summary[key] = {"mean": mean, "std": std, "n": len(values)}
    return summary
