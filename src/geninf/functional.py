"""The functional core: a model called through ``torch.func.functional_call`` with a params dict.

Nothing here mutates the user's model: parameters are detached copies, and the model is only ever
*called* (never put in train/eval mode or edited).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .data import Batches, as_batches, to_device
from .distributed import all_reduce_sum, shard
from .errors import DataError, DeterminismError, NonFiniteError
from .objective import Objective, as_objective, check_loss
from .params.layout import ParameterLayout, trainable_parameters

__all__ = ["FunctionalModel", "check_model_deterministic", "stochastic_modules"]

_STOCHASTIC_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)


class _BoundForward:
    """Callable model bound to a params dict (implements :class:`geninf.objective.Forward`)."""

    __slots__ = ("model", "params")

    def __init__(self, model: nn.Module, params: Mapping[str, Tensor]):
        self.model = model
        self.params = params

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self.model, dict(self.params), args, kwargs)


class FunctionalModel:
    """A model, its objective and its flat parameter layout, evaluated functionally.

    Args:
        model: the trained model (left untouched).
        objective: see :func:`geninf.objective.as_objective`.
        check_determinism: refuse a model in train mode that has dropout or batch-norm layers.
    """

    def __init__(self, model: nn.Module, objective: Any = None, *, check_determinism: bool = True):
        self.model = model
        self.objective: Objective = as_objective(objective)
        self.layout = ParameterLayout.from_model(model)
        if check_determinism:
            check_model_deterministic(model)
        params = trainable_parameters(model)
        self._params = {n: p.detach() for n, p in params.items()}
        self.flat_params = self.layout.flatten(self._params)

    @property
    def dtype(self) -> torch.dtype:
        return self.flat_params.dtype

    @property
    def device(self) -> torch.device:
        return self.flat_params.device

    @property
    def num_params(self) -> int:
        return self.layout.size

    def params(self) -> dict[str, Tensor]:
        """Detached parameter tensors (do not modify)."""
        return dict(self._params)

    def params_from_flat(self, flat: Tensor) -> dict[str, Tensor]:
        return self.layout.unflatten(flat)

    def forward(self, params: Mapping[str, Tensor]) -> _BoundForward:
        return _BoundForward(self.model, params)

    def batch_loss(self, params: Mapping[str, Tensor], batch: Any) -> Tensor:
        """Mean loss of one batch at ``params``."""
        return self.objective.loss(self.forward(params), batch)

    def batches(self, data: Any, batch_size: int | None = None, name: str = "data") -> Batches:
        return as_batches(data, batch_size, name=name)

    def iter_weighted(self, data: Batches) -> Iterator[tuple[Any, int]]:
        """Yield ``(batch on the model's device, number of examples)`` for every batch."""
        for batch in data:
            batch = to_device(batch, self.device)
            yield batch, int(self.objective.num_examples(batch))

    def iter_sharded(self, data: Batches) -> Iterator[tuple[int, Any, int]]:
        """Yield ``(global batch index, batch on device, examples)`` for this rank's share of the
        batches — all of them without a process group (see :mod:`geninf.distributed`)."""
        for i, batch in shard(enumerate(data)):
            batch = to_device(batch, self.device)
            yield i, batch, int(self.objective.num_examples(batch))

    def count_examples(self, data: Any, batch_size: int | None = None) -> int:
        """Number of examples in ``data`` (all ranks' batches)."""
        return sum(n for _, n in self.iter_weighted(as_batches(data, batch_size)))

    def loss_and_gradient(
        self, data: Any, *, batch_size: int | None = None, flat_params: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean loss and its gradient (flat, length n) over ``data``, streamed over batches and
        sharded over ranks when a process group exists."""
        data = as_batches(data, batch_size)
        flat = self.flat_params if flat_params is None else flat_params
        leaves = [t.detach().requires_grad_(True) for t in self.layout.unflatten(flat).values()]
        params = dict(zip(self.layout.names, leaves, strict=True))
        acc = torch.zeros(flat.numel() + 2, dtype=self.dtype, device=self.device)
        for _, batch, n in self.iter_sharded(data):
            with torch.enable_grad():
                loss = check_loss(self.batch_loss(params, batch), "gradient pass")
                grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            acc[:-2] += n * _flat_grads(grads, leaves)
            acc[-2] += n * loss.detach()
            acc[-1] += n
        all_reduce_sum(acc)
        count = acc[-1]
        if count == 0:
            raise DataError("the data set holds no example; pass at least one")
        grad = acc[:-2] / count
        if not torch.isfinite(grad).all():
            raise NonFiniteError(
                "the gradient of the mean loss has NaN/inf entries; check the data and model"
            )
        return acc[-2] / count, grad

    def gradient(self, data: Any, *, batch_size: int | None = None) -> Tensor:
        """Gradient (flat, length n) of the mean loss over ``data``."""
        return self.loss_and_gradient(data, batch_size=batch_size)[1]

    def loss(self, data: Any, *, batch_size: int | None = None) -> Tensor:
        """Mean loss over ``data`` (no gradient)."""
        data = as_batches(data, batch_size)
        acc = torch.zeros(2, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            for _, batch, n in self.iter_sharded(data):
                acc[0] += n * self.batch_loss(self._params, batch)
                acc[1] += n
        all_reduce_sum(acc)
        return acc[0] / acc[1]


def _flat_grads(grads: tuple[Tensor | None, ...], leaves: list[Tensor]) -> Tensor:
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, leaves, strict=True)
        ]
    )


def stochastic_modules(model: nn.Module) -> list[str]:
    """Names of submodules that make a train-mode forward pass random or stateful (dropout,
    batch norm, instance norm that tracks running statistics)."""
    return [
        name or type(model).__name__
        for name, m in model.named_modules()
        if m.training
        and isinstance(m, _STOCHASTIC_TYPES)
        and not (isinstance(m, nn.modules.instancenorm._InstanceNorm) and not m.track_running_stats)
    ]


def check_model_deterministic(
    model: nn.Module, consequence: str = "Hessian products would change between passes"
) -> None:
    """Raise :class:`DeterminismError` if ``model`` would not compute the same function twice."""
    culprits = stochastic_modules(model)
    if culprits:
        raise DeterminismError(
            f"the model is in train mode with dropout/batch-norm layers ({', '.join(culprits[:4])}"
            f"{', ...' if len(culprits) > 4 else ''}); {consequence}: call model.eval() first"
        )
