"""Columns of a curvature matrix, many at a time: the set-up of the dense scoring path.

``LinearOperator.to_dense`` builds a matrix one product per column, each a full pass over the
data. For a plain :class:`~geninf.linalg.HessianOperator` (optionally damped) this module
instead pushes blocks of ``chunk`` unit vectors through one vectorized forward-over-reverse
product per batch (``torch.func.vmap`` of ``jvp(grad(loss))``), which is an order of magnitude
faster on small models, where a product's cost is mostly per-call overhead. Anything else (a
Gauss–Newton operator, a loss whose forward-over-reverse product fails) falls back to the
operator's own products.

(This is a linear-algebra helper; it would sit naturally in :mod:`geninf.linalg` as a batched
``to_dense``/``matmat``. It reads only public attributes of the operators.)
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from ..errors import ModelTooLargeError, NonFiniteError
from ..linalg.base import ColumnSubsetOperator, DampedOperator, LinearOperator
from ..linalg.curvature import HessianOperator
from ..params.subset import ParameterSubset

__all__ = ["dense_columns"]

DEFAULT_CHUNK = 128


def dense_columns(
    op: LinearOperator,
    subset: ParameterSubset,
    max_size: int,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[Tensor, int]:
    """``op[:, J]`` (n × k) for a symmetric curvature operator and the subset J.

    Returns the matrix and the number of columns computed (each worth one curvature product).

    Raises:
        ModelTooLargeError: more than ``max_size`` columns.
    """
    k = len(subset)
    if k > max_size:
        raise ModelTooLargeError(
            f"materializing {k} columns of an {op.shape[0]}x{op.shape[1]} operator exceeds "
            f"max_size={max_size}; use an iterative solver (solver='cg' or 'lsmr') or a subset"
        )
    base, damping = op, 0.0
    if isinstance(op, DampedOperator):
        base, damping = op.base, op.damping
    M = None
    if type(base) is HessianOperator:
        try:
            M = _hessian_columns(base, subset, chunk)
        except (RuntimeError, NotImplementedError):  # e.g. ZeroTensor errors of jvp∘grad
            M = None
    if M is None:
        return ColumnSubsetOperator(op, subset).to_dense(max_size), k
    if damping:
        idx = subset.indices_on(M.device)
        M[idx, torch.arange(k, device=M.device)] += damping
    return M, k


def _hessian_columns(H: HessianOperator, subset: ParameterSubset, chunk: int) -> Tensor:
    fm = H.fmodel
    layout = fm.layout
    params = fm.params()
    cols = subset.indices_on(fm.device)
    n, k = fm.num_params, cols.numel()
    out = torch.zeros(n, k, dtype=fm.dtype, device=fm.device)
    total = 0
    for batch, nb in fm.iter_weighted(H.data):
        g = grad(lambda p, batch=batch: fm.batch_loss(p, batch))

        def column(t: dict[str, Tensor], g=g) -> dict[str, Tensor]:
            return jvp(g, (params,), (t,))[1]

        for lo in range(0, k, chunk):
            idx = cols[lo : lo + chunk]
            eye = torch.zeros(idx.numel(), n, dtype=fm.dtype, device=fm.device)
            eye[torch.arange(idx.numel(), device=fm.device), idx] = 1.0
            tangents = _split_rows(eye, layout.names, layout.shapes)
            hv = vmap(column)(tangents)
            flat = torch.cat([hv[name].reshape(idx.numel(), -1) for name in layout.names], 1)
            out[:, lo : lo + idx.numel()] += nb * flat.T
        total += nb
    out /= total
    if not bool(torch.isfinite(out).all()):
        raise NonFiniteError("a curvature column contains NaN/inf; check the data and the model")
    return out


def _split_rows(
    rows: Tensor, names: tuple[str, ...], shapes: tuple[tuple[int, ...], ...]
) -> dict[str, Tensor]:
    out, lo = {}, 0
    for name, shape in zip(names, shapes, strict=True):
        size = 1
        for s in shape:
            size *= s
        out[name] = rows[:, lo : lo + size].reshape(rows.shape[0], *shape)
        lo += size
    return out
