"""Per-example gradients ∇θ ℓ(z_i), flat (length n), in batches.

One batch of B examples costs one vectorized backward pass: ``torch.func.vmap`` of
``torch.func.grad`` of the objective's loss on a batch of one example, called through
``functional_call`` with the detached parameter dict. The per-example loss is the objective's
mean loss on that one-example batch, so it includes the objective's regularizer (for
:class:`~geninf.SupervisedObjective` with ``weight_decay``), exactly as every example's term of
the training risk R(θ) = (1/m) Σ_i ℓ(z_i, θ) does.

Models or objectives that ``vmap`` cannot trace (data-dependent Python control flow, ``.item()``
calls, in-place updates of captured tensors) fall back to a loop of one backward pass per example,
with a warning; ``strategy="loop"`` asks for that loop directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from .._choices import parse_choice
from ..data import as_batches
from ..errors import DataError, NonFiniteError
from ..functional import FunctionalModel

__all__ = ["GradientStrategy", "per_example_gradients"]


class GradientStrategy(str, Enum):
    """How per-example gradients are computed.

    Members:
        VMAP: ``vmap(grad(loss of one example))`` over the batch; falls back to ``loop`` (with
            a warning) when the model cannot be traced.
        LOOP: one backward pass per example (slow; the reference ``vmap`` is tested against).
    """

    VMAP = "vmap"
    LOOP = "loop"


def per_example_gradients(
    model: nn.Module | FunctionalModel,
    objective: Any = None,
    data: Any = None,
    *,
    batch_size: int | None = None,
    strategy: GradientStrategy | str = GradientStrategy.VMAP,
    check_determinism: bool = True,
) -> Iterator[Tensor]:
    """Yield the flat per-example gradients of ``data``, one ``[B, n]`` tensor per batch.

    Rows follow the order of the examples in ``data``; columns the flat parameter order of
    :class:`~geninf.params.ParameterLayout`. Tensors are on the parameters' device and dtype.

    Args:
        model: the model (never modified), or a :class:`~geninf.functional.FunctionalModel`
            (then ``objective`` is ignored).
        objective: None (cross-entropy), ``loss_fn(outputs, targets)``, or an Objective.
        data: the examples, in any format :func:`geninf.data.as_batches` accepts.
        batch_size: examples per vectorized pass when ``data`` is a tensor tuple.
        strategy: ``"vmap"`` (default) or ``"loop"``; see :class:`GradientStrategy`.
        check_determinism: refuse a model in train mode with dropout or batch norm.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2)
        >>> x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
        >>> [g.shape for g in per_example_gradients(model, None, (x, y), batch_size=4)]
        [torch.Size([4, 8]), torch.Size([1, 8])]
    """
    fm = as_functional(model, objective, check_determinism)
    strategy = _strategy(strategy)
    batches = as_batches(data, batch_size, name="data")
    for batch, _ in fm.iter_weighted(batches):
        yield batch_gradients(fm, batch, strategy)


def as_functional(model: Any, objective: Any, check_determinism: bool) -> FunctionalModel:
    """``model`` as a :class:`FunctionalModel` (passed through when it already is one)."""
    if isinstance(model, FunctionalModel):
        return model
    return FunctionalModel(model, objective, check_determinism=check_determinism)


def batch_gradients(
    fm: FunctionalModel, batch: Any, strategy: GradientStrategy = GradientStrategy.VMAP
) -> Tensor:
    """``[B, n]`` per-example gradients of one batch (already on the model's device)."""
    size = int(fm.objective.num_examples(batch))
    if size == 0:
        raise DataError("a batch holds no example; pass non-empty batches")
    out: Tensor | None = None
    if strategy is GradientStrategy.VMAP:
        try:
            out = _vmap_gradients(fm, batch)
        except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
            warnings.warn(
                f"torch.func.vmap could not trace the per-example loss ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160]}); falling back to one backward pass per "
                "example (pass strategy='loop' to silence this)",
                RuntimeWarning,
                stacklevel=3,
            )
    if out is None:
        out = _loop_gradients(fm, batch, size)
    if out.shape[0] != size:
        raise DataError(
            f"the objective counts {size} examples in a batch but its tensors hold "
            f"{out.shape[0]}; per-example gradients need every tensor of a batch to have the "
            "example dimension first"
        )
    if not bool(torch.isfinite(out).all()):
        raise NonFiniteError(
            "a per-example gradient has NaN/inf entries; check the data and the model"
        )
    return out


def _strategy(value: Any) -> GradientStrategy:
    return parse_choice(GradientStrategy, value, "gradient strategy", any_case=False)


def _vmap_gradients(fm: FunctionalModel, batch: Any) -> Tensor:
    objective = fm.objective

    def one_loss(params: dict[str, Tensor], example: Any) -> Tensor:
        single = _tree_map(lambda t: t.unsqueeze(0), example)
        return objective.loss(fm.forward(params), single)

    grads = vmap(grad(one_loss), in_dims=(None, 0))(fm.params(), batch)
    return _flatten_rows(fm, grads)


def _loop_gradients(fm: FunctionalModel, batch: Any, size: int) -> Tensor:
    rows = []
    for i in range(size):
        single = _tree_map(lambda t, i=i: t[i : i + 1], batch)
        leaves = [p.detach().requires_grad_(True) for p in fm.params().values()]
        params = dict(zip(fm.layout.names, leaves, strict=True))
        with torch.enable_grad():
            loss = fm.batch_loss(params, single)
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, leaves, strict=True)
                ]
            )
        )
    return torch.stack(rows)


def _flatten_rows(fm: FunctionalModel, grads: dict[str, Tensor]) -> Tensor:
    first = grads[fm.layout.names[0]]
    size = first.shape[0]
    return torch.cat([grads[name].reshape(size, -1) for name in fm.layout.names], dim=1)


def _tree_map(fn: Callable[[Tensor], Tensor], tree: Any) -> Any:
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return type(tree)(_tree_map(fn, v) for v in tree)
    return tree


def count_examples(fm: FunctionalModel, data: Any, batch_size: int | None, name: str) -> int:
    """Number of examples in ``data`` (one pass over the batches; free for tensor tuples)."""
    batches = as_batches(data, batch_size, name=name)
    if batches.tensors is not None:
        return int(batches.tensors[0].shape[0])
    return sum(int(fm.objective.num_examples(b)) for b in batches)
