"""Validation scores that steer the ``"paper"`` schedule, and the class-removal F1.

Every choice an edit makes from data beyond the training set (the step count k and the step norm
γ of the ``"paper"`` schedule, the checkpoint of a baseline) is made by a *validation score*:
a callable ``score(model) -> float``, higher is better, evaluated on a validation split. Test data
never enters :func:`geninf.edit.remove` or :func:`geninf.edit.relabel`: they have no argument
for it, and reporting on the test split is the caller's job, after the edit returned.

:class:`ClassRemovalValidation` is the score for removing a whole class (method.md §6): the F1
of forgetting the class and keeping the accuracy on the others.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DataError, InputError

__all__ = [
    "ClassRemovalValidation",
    "LabelChangeValidation",
    "ValidationScore",
    "f1_score",
    "resolve_validation",
]

ValidationScore = Callable[[nn.Module], float]


def f1_score(self_acc: float, test_acc: float) -> float:
    """F1 of forgetting and retained accuracy: ``2(1 − s)·t / ((1 − s) + t)`` (method.md §6).

    The harmonic mean of the forgetting rate 1 − s and the retained accuracy t: 1 when the removed
    examples are all misclassified and the others all correct, 0 when either part is 0.

    Args:
        self_acc: s, accuracy on the removed examples (or the removed class), a fraction in [0, 1].
        test_acc: t, accuracy on the other examples, a fraction in [0, 1].

    Returns:
        The F1 as a fraction in [0, 1] (0 when both 1 − s and t are 0).

    Raises:
        InputError: an argument is not a number in [0, 1] (e.g. a percentage).

    Example:
        >>> round(f1_score(0.0026, 0.9013), 4)  # paper Table 1, GIF at 5%
        0.9469
    """
    s = _fraction("self_acc", self_acc)
    t = _fraction("test_acc", test_acc)
    forget = 1.0 - s
    if forget + t == 0.0:
        return 0.0
    return 2.0 * forget * t / (forget + t)


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InputError(
            f"{name} must be a fraction in [0, 1], got {value!r}; divide percentages by 100"
        )
    return float(value)


class ClassRemovalValidation:
    """Validation score for removing a class: F1 of self accuracy s and retained accuracy t.

    s is the accuracy on the validation examples of ``forget_class``, t the accuracy on the other
    validation examples (both fractions); the score is :func:`f1_score` (s, t). Predictions are the
    argmax of ``model(inputs)`` over the last dimension, computed without gradients and in the
    model's current mode (call ``model.eval()`` before editing).

    Args:
        data: the validation split, an ``(inputs, targets)`` tuple of tensors with integer class
            targets of shape [N]. It must hold examples of ``forget_class`` and of other classes.
        forget_class: the class being removed.
        batch_size: examples per forward pass.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
        >>> val = ClassRemovalValidation((x, torch.tensor([0, 1, 1])), forget_class=0)
        >>> net = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = net.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        >>> val.accuracies(net), val(net)  # class 0 forgotten, the others kept
        ((0.0, 1.0), 1.0)
    """

    def __init__(self, data: Any, forget_class: int, *, batch_size: int = 1024):
        if (
            not isinstance(data, tuple | list)
            or len(data) < 2
            or not all(isinstance(t, Tensor) for t in data[:2])
        ):
            raise DataError(
                "ClassRemovalValidation needs the validation split as an (inputs, targets) tuple "
                f"of tensors, got {type(data).__name__}"
            )
        inputs, targets = data[0], data[1]
        if targets.dim() != 1 or targets.is_floating_point() or len(inputs) != len(targets):
            raise DataError(
                "ClassRemovalValidation needs integer class targets of shape [N] matching the "
                f"inputs; got targets {tuple(targets.shape)} ({targets.dtype}) for "
                f"{len(inputs)} inputs"
            )
        if isinstance(forget_class, bool) or not isinstance(forget_class, numbers.Integral):
            raise InputError(f"forget_class must be an int, got {forget_class!r}")
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        mask = targets == int(forget_class)
        if not bool(mask.any()) or bool(mask.all()):
            raise DataError(
                f"the validation split needs examples of class {int(forget_class)} and of other "
                f"classes; it has {int(mask.sum())} of {len(targets)} in class {int(forget_class)}"
            )
        self.inputs = inputs
        self.targets = targets
        self.forget_class = int(forget_class)
        self.batch_size = int(batch_size)
        self._mask = mask

    def accuracies(self, model: nn.Module) -> tuple[float, float]:
        """``(s, t)``: accuracy on the forgotten class and on the other classes (fractions)."""
        correct = self._correct(model)
        s = float(correct[self._mask].double().mean())
        t = float(correct[~self._mask].double().mean())
        return s, t

    def details(self, model: nn.Module) -> dict[str, float]:
        """``{"self_acc": s, "test_acc": t, "f1": F1}`` on the validation split (fractions)."""
        s, t = self.accuracies(model)
        return {"self_acc": s, "test_acc": t, "f1": f1_score(s, t)}

    def __call__(self, model: nn.Module) -> float:
        """The F1 score (higher is better)."""
        return f1_score(*self.accuracies(model))

    def describe(self) -> dict[str, Any]:
        """What the score is computed on (JSON-ready, for edit records)."""
        return {
            "kind": "class_removal_f1",
            "forget_class": self.forget_class,
            "num_examples": len(self.targets),
            "num_forget_class": int(self._mask.sum()),
        }

    def _correct(self, model: nn.Module) -> Tensor:
        return _correct(model, self.inputs, self.targets, self.batch_size)


def _correct(model: nn.Module, inputs: Tensor, targets: Tensor, batch_size: int) -> Tensor:
    """Boolean [N]: the argmax of ``model`` equals the target (no gradients, batched)."""
    device = _model_device(model)
    parts = []
    with torch.no_grad():
        for lo in range(0, len(targets), batch_size):
            pred = model(inputs[lo : lo + batch_size].to(device)).argmax(dim=-1).cpu()
            parts.append(pred == targets[lo : lo + batch_size].cpu())
    return torch.cat(parts)


class LabelChangeValidation:
    """Validation score for a label change: harmonic mean of two accuracies.

    a = accuracy on the validation split, b = accuracy on the changed training examples against
    their *new* labels; the score is ``2ab / (a + b)`` (0 when both are 0). The changed examples
    are part of the edit request, not held-out data: b says whether the change took effect, a
    whether the rest of the model survived it. Predictions as in
    :class:`ClassRemovalValidation`.

    Args:
        data: the validation split, an ``(inputs, targets)`` tuple of tensors.
        changed: ``(inputs, new_targets)`` of the changed training examples.
        batch_size: examples per forward pass.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = net.weight.copy_(torch.eye(2))
        >>> val = (torch.eye(2), torch.tensor([0, 1]))
        >>> LabelChangeValidation(val, (torch.eye(2)[:1], torch.tensor([1])))(net)
        0.0
    """

    def __init__(self, data: Any, changed: Any, *, batch_size: int = 1024):
        self.validation = _accuracy_data(data, "the validation split")
        self.changed = _accuracy_data(changed, "the changed examples")
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = int(batch_size)

    def accuracies(self, model: nn.Module) -> tuple[float, float]:
        """``(a, b)``: validation accuracy and accuracy on the changed examples (fractions)."""
        return (
            _accuracy(model, self.validation, self.batch_size),
            _accuracy(model, self.changed, self.batch_size),
        )

    def __call__(self, model: nn.Module) -> float:
        a, b = self.accuracies(model)
        return 0.0 if a + b == 0.0 else 2.0 * a * b / (a + b)

    def describe(self) -> dict[str, Any]:
        """What the score is computed on (JSON-ready, for edit records)."""
        return {
            "kind": "label_change_harmonic_accuracy",
            "num_examples": len(self.validation[1]),
            "num_changed": len(self.changed[1]),
        }


def _accuracy_data(data: Any, what: str) -> tuple[Tensor, Tensor]:
    ok = isinstance(data, tuple | list) and len(data) >= 2
    ok = ok and all(isinstance(t, Tensor) for t in data[:2])
    if not ok or data[1].dim() != 1 or data[1].is_floating_point() or len(data[1]) == 0:
        raise DataError(
            f"{what} must be a non-empty (inputs, integer class targets [N]) tuple of tensors"
        )
    if len(data[0]) != len(data[1]):
        raise DataError(f"{what}: {len(data[0])} inputs but {len(data[1])} targets")
    return data[0], data[1]


def _accuracy(model: nn.Module, data: tuple[Tensor, Tensor], batch_size: int) -> float:
    return float(_correct(model, data[0], data[1], batch_size).double().mean())


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def resolve_validation(validation: Any) -> tuple[ValidationScore | None, dict[str, Any] | None]:
    """Turn the ``validation`` argument into ``(score, description)`` (both None when absent).

    Raises:
        InputError: ``validation`` is neither None nor callable.
    """
    if validation is None:
        return None, None
    if not callable(validation):
        raise InputError(
            "validation must be a callable score(model) -> float (higher is better) or a "
            f"ClassRemovalValidation built from the validation split; got "
            f"{type(validation).__name__}"
        )
    if hasattr(validation, "describe"):
        return validation, dict(validation.describe())
    name = getattr(validation, "__qualname__", type(validation).__name__)
    return validation, {"kind": "callable", "name": str(name)}


def evaluate_score(score: ValidationScore, model: nn.Module) -> float:
    """Call ``score(model)`` without gradients and check it returned a finite number."""
    with torch.no_grad():
        value = score(model)
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"the validation score must return a number, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise InputError("the validation score returned NaN; it must return a comparable number")
    return value
