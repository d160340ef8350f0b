"""Objectives: how the loss of one batch is computed.

The ``objective`` argument of geninf's functions accepts

- ``None`` — mean cross-entropy of ``model(inputs)`` against ``targets``;
- a plain loss function ``loss_fn(outputs, targets) -> mean loss`` such as
  ``torch.nn.functional.cross_entropy`` or ``mse_loss``, applied to ``model(inputs)``; batches are
  ``(inputs, targets)`` pairs;
- an :class:`Objective` object, for dict batches, regularizers and any other loss.

An objective's ``loss`` returns the **mean** loss over the batch (plus any regularizer, which then
appears once in the data-set mean because batch means are averaged with example weights).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from .data import num_examples_default
from .errors import DataError, ObjectiveError

__all__ = ["Forward", "Objective", "SupervisedObjective", "as_objective"]


@runtime_checkable
class Forward(Protocol):
    """The model bound to the parameters being differentiated.

    Call it like the model (``forward(inputs)``); ``forward.params`` is the ``{name: tensor}``
    dict of trainable parameters, for regularizers.
    """

    params: Mapping[str, Tensor]

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


class Objective:
    """Base class for objectives. Subclasses implement :meth:`loss`.

    Example — a language-model batch given as a dict::

        class NextToken(Objective):
            def loss(self, forward, batch):
                logits = forward(batch["input_ids"])
                return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())
    """

    def loss(self, forward: Forward, batch: Any) -> Tensor:
        """Mean loss over the examples of ``batch`` (a scalar tensor)."""
        raise NotImplementedError

    def num_examples(self, batch: Any) -> int:
        """Number of examples in ``batch`` (the weight of its mean loss)."""
        return num_examples_default(batch)


class SupervisedObjective(Objective):
    """``loss_fn(model(inputs), targets)`` plus an optional ℓ2 term ``weight_decay/2 · ‖θ‖²``.

    Batches are ``(inputs, targets)`` sequences or dicts with keys ``input_key`` and
    ``target_key``. This objective also exposes the split into model outputs and output loss that
    the Gauss–Newton operator needs.

    Args:
        loss_fn: ``loss_fn(outputs, targets)`` returning the mean loss; cross-entropy if None.
        weight_decay: coefficient of the ℓ2 regularizer on the trainable parameters.
        input_key, target_key: keys used when batches are dicts.
    """

    def __init__(
        self,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        *,
        weight_decay: float = 0.0,
        input_key: str = "inputs",
        target_key: str = "targets",
    ):
        self.loss_fn = loss_fn if loss_fn is not None else F.cross_entropy
        self.weight_decay = float(weight_decay)
        self.input_key = input_key
        self.target_key = target_key

    def __repr__(self) -> str:
        name = getattr(self.loss_fn, "__name__", type(self.loss_fn).__name__)
        return f"SupervisedObjective({name}, weight_decay={self.weight_decay})"

    def split(self, batch: Any) -> tuple[Any, Tensor]:
        """Return ``(inputs, targets)`` of a batch."""
        if isinstance(batch, Mapping):
            try:
                return batch[self.input_key], batch[self.target_key]
            except KeyError as exc:
                raise ObjectiveError(
                    f"dict batch lacks key {exc.args[0]!r} (has {sorted(batch)}); set "
                    "input_key/target_key or write an Objective subclass"
                ) from None
        if isinstance(batch, tuple | list) and len(batch) >= 2:
            return batch[0], batch[1]
        raise ObjectiveError(
            f"expected an (inputs, targets) batch, got {type(batch).__name__}; "
            "write an Objective subclass for other batch formats"
        )

    def outputs(self, forward: Forward, batch: Any) -> Tensor:
        """The model's outputs for the inputs of ``batch``.

        Raises:
            DataError: the inputs do not fit the model (a floating dtype other than the
                parameters', a wrong number of features or channels...).
        """
        inputs, _ = self.split(batch)
        try:
            return forward(inputs)
        except RuntimeError as exc:
            if not _is_data_mismatch(exc):
                raise
            hint = _dtype_hint(inputs, forward.params)
            raise ModelInputError(
                f"the model cannot take the inputs ({_describe(inputs)}): {_first_line(exc)}; "
                + (hint or "check that the data matches the model (features, channels, size)")
            ) from exc

    def output_loss(self, outputs: Tensor, batch: Any) -> Tensor:
        """Mean loss of the model outputs for this batch (without the regularizer).

        Raises:
            DataError: the targets do not fit the loss (class indices out of range, a float
                dtype where cross-entropy needs class indices, a wrong shape).
        """
        _, targets = self.split(batch)
        if _is_cross_entropy(self.loss_fn):
            _check_class_targets(outputs, targets, getattr(self.loss_fn, "ignore_index", -100))
        try:
            return self.loss_fn(outputs, targets)
        except IndexError as exc:  # cross-entropy: "Target 7 is out of bounds."
            raise ModelInputError(
                f"targets do not fit outputs with {_classes(outputs)} classes: "
                f"{_first_line(exc)}; class targets must be integers in [0, C - 1]"
            ) from exc
        except RuntimeError as exc:
            if not _is_data_mismatch(exc):
                raise
            raise ModelInputError(
                f"the loss function cannot take outputs of shape {tuple(outputs.shape)} and "
                f"targets ({_describe(targets)}): {_first_line(exc)}"
            ) from exc

    def regularizer(self, params: Mapping[str, Tensor]) -> Tensor | float:
        if self.weight_decay == 0.0:
            return 0.0
        return 0.5 * self.weight_decay * sum((p * p).sum() for p in params.values())

    def loss(self, forward: Forward, batch: Any) -> Tensor:
        value = self.output_loss(self.outputs(forward, batch), batch)
        if not isinstance(value, Tensor) or value.dim() != 0:
            raise ObjectiveError(
                "the loss function must return a scalar mean loss (use reduction='mean'); got "
                + (f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else repr(value))
            )
        return value + self.regularizer(forward.params)

    def num_examples(self, batch: Any) -> int:
        inputs, _ = self.split(batch)
        return num_examples_default(inputs)


def as_objective(objective: Any) -> Objective:
    """Turn the ``objective`` argument (None, a loss function or an Objective) into an Objective."""
    if objective is None:
        return SupervisedObjective()
    if isinstance(objective, Objective):
        return objective
    if hasattr(objective, "loss") and callable(objective.loss):
        return _DuckObjective(objective)
    if callable(objective):
        return SupervisedObjective(objective)
    raise ObjectiveError(
        f"objective must be None, a loss function loss_fn(outputs, targets) or an Objective; "
        f"got {type(objective).__name__}"
    )


class _DuckObjective(Objective):
    """Adapts any object with ``loss(forward, batch)`` (and optionally ``num_examples``)."""

    def __init__(self, inner: Any):
        self.inner = inner

    def loss(self, forward: Forward, batch: Any) -> Tensor:
        return self.inner.loss(forward, batch)

    def num_examples(self, batch: Any) -> int:
        if hasattr(self.inner, "num_examples"):
            return int(self.inner.num_examples(batch))
        return num_examples_default(batch)


class ModelInputError(DataError, RuntimeError):
    """A batch does not fit the model or the loss (shape, dtype, class range).

    A :class:`~geninf.errors.DataError`; also a ``RuntimeError`` so that code which falls back
    to a slower path when a ``torch.func`` transform raises (per-example gradients, Hessian
    columns) still does, and then meets the same error outside the transform.
    """


def _is_cross_entropy(fn: Any) -> bool:
    return fn is F.cross_entropy or isinstance(fn, torch.nn.CrossEntropyLoss)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"shape {tuple(value.shape)}, dtype {str(value.dtype).replace('torch.', '')}"
    return type(value).__name__


def _classes(outputs: Any) -> str:
    return str(outputs.shape[-1]) if isinstance(outputs, Tensor) and outputs.dim() else "?"


def _is_data_mismatch(exc: RuntimeError) -> bool:
    """True for a torch error about the data (shape, dtype, size) — not for out-of-memory or
    the ``torch.func`` limitations that callers catch to fall back (ZeroTensor, vmap)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError | ModelInputError):
        return False
    text = str(exc)
    return not any(k in text for k in ("ZeroTensor", "vmap", "out of memory", "CUDA error"))


def _is_plain(t: Tensor) -> bool:
    """False for a tensor wrapped by a ``torch.func`` transform (e.g. batched by ``vmap``), whose
    values cannot be inspected with Python control flow."""
    try:
        return not torch._C._functorch.is_functorch_wrapped_tensor(t)
    except (AttributeError, RuntimeError):  # pragma: no cover - other torch versions
        return False


def _dtype_hint(inputs: Any, params: Mapping[str, Tensor]) -> str:
    """What to do when a failed forward pass got inputs of another dtype than the parameters."""
    dtypes = {p.dtype for p in params.values() if p.is_floating_point()}
    if not isinstance(inputs, Tensor) or len(dtypes) != 1 or inputs.dtype in dtypes:
        return ""
    want = str(next(iter(dtypes))).replace("torch.", "")
    return f"the model's parameters are {want}: convert the inputs with .to(torch.{want})"


def _check_class_targets(outputs: Any, targets: Any, ignore_index: int = -100) -> None:
    """Class-index targets of cross-entropy: integers in [0, C) (-100, the ignore index, too)."""
    if not isinstance(targets, Tensor) or not isinstance(outputs, Tensor) or outputs.dim() < 1:
        return
    if targets.is_floating_point() and targets.shape == outputs.shape:
        return  # class probabilities
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise DataError(
            f"cross-entropy needs class indices (an integer tensor), got targets of "
            f"{_describe(targets)}; convert them with .long()"
        )
    if targets.numel() == 0 or not _is_plain(targets):
        return
    classes = int(outputs.shape[1] if outputs.dim() > 1 else outputs.shape[0])
    try:
        lo, hi = torch.aminmax(torch.where(targets == ignore_index, 0, targets))
        low, high = int(lo), int(hi)
    except RuntimeError:  # a tracing tensor (torch.func.linearize, make_fx): no values to read
        return
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise DataError(
            f"target {bad} is not a class of a model with {classes} outputs; class targets "
            f"must be integers in [0, {classes - 1}]"
        )


def check_loss(value: Any, where: str) -> Tensor:
    """Raise unless ``value`` is a finite scalar tensor."""
    if not isinstance(value, Tensor) or value.dim() != 0:
        raise ObjectiveError(f"{where}: the objective must return a scalar tensor, got {value!r}")
    if not torch.isfinite(value.detach()):
        from .errors import NonFiniteError

        raise NonFiniteError(
            f"{where}: the loss is {value.item()}; check the inputs and the model for NaN/inf"
        )
    return value
