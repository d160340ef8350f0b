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
from .errors import ObjectiveError

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
        inputs, _ = self.split(batch)
        return forward(inputs)

    def output_loss(self, outputs: Tensor, batch: Any) -> Tensor:
        """Mean loss of the model outputs for this batch (without the regularizer)."""
        _, targets = self.split(batch)
        return self.loss_fn(outputs, targets)

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
