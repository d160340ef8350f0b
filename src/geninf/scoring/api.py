"""Data scoring: which training examples drive a prediction (method.md §2 and §3).

Sign and scale — stated once, here. With m training examples (``num_train``), g_i = ∇θ ℓ(z_i)
the per-example training gradients and g_q = ∇θ ℓ_q(z_q) the gradient of a query's measurement
(``query_objective``, by default the training objective), every method returns

    score[q, i] = (1/m) · w_qᵀ g_i   ≈   ℓ_q(z_q; θ̂ without z_i) − ℓ_q(z_q; θ̂),

the first-order change of the query's loss when z_i is removed and the model retrained.
**Positive: removing z_i would raise the query loss — z_i is helpful** (a proponent).
Negative: z_i is harmful. The vector w_q of each method (:mod:`geninf.scoring.vectors`):

- ``original`` — removing z_i moves θ by Δθ ≈ (1/m) H⁻¹ g_i (the Newton removal step
  (1/(m−1)) H_R⁻¹ g_i of method.md §2 with the full-data H, dropping an O(1/m²) difference), and
  the query loss by g_qᵀ Δθ; H is symmetric, so score = (1/m) (H⁻¹ g_q)ᵀ g_i: w_q = H⁻¹ g_q.
- ``gif`` — only θ_J moves: the GIF removal step of z_i is Δθ_J ≈ (1/m) x_i with
  x_i = argmin_x ‖H_{:,J} x − g_i‖ = A⁺ g_i (A = H_{:,J}, min-norm; method.md §3), and the
  first-order change of the query loss is [g_q]_Jᵀ Δθ_J. Hence
  score = (1/m) [g_q]_Jᵀ A⁺ g_i = (1/m) ((Aᵀ)⁺ [g_q]_J)ᵀ g_i: w_q = (Aᵀ)⁺ [g_q]_J, the min-norm
  solution of [H w]_J = [g_q]_J. This is exactly the GIF removal estimate, with one solve per
  query instead of one per training example. It is *not* the query-side form
  [g_i]_Jᵀ A⁺ g_q (which swaps the roles of query and training example); both equal the
  original influence function when J holds every parameter.
- ``freezing`` — score = (1/m) [g_q]_Jᵀ H_JJ⁻¹ [g_i]_J (θ_−J treated as constants).
- ``projecting`` — score = (1/m) [g_q]_Jᵀ [H⁻¹ g_i]_J.
- ``grad_dot`` — score = (1/m) g_qᵀ g_i: TracIn at the final checkpoint (H replaced by I; the
  1/m keeps every method on one scale).
- ``random`` — independent standard normal draws, seeded by ``(seed, query index)``.

H is the Hessian (or Gauss–Newton matrix) of the mean training loss over ``hessian_data``
(default ``train_data``) plus ``damping``·I. Self-influence uses the same convention:
``self_influence(...)[i] == score(..., query_data=train_data)[i, i]``.

Cost: one vectorized per-example gradient pass per batch (``torch.func.vmap``); the training
gradients are kept in memory when m·n values fit in ``max_memory`` bytes and recomputed for every
query block otherwise; one solve per query (or a factorization shared by all queries with the
dense solver, see :mod:`geninf.scoring.vectors`); then a [block, n] × [n, m] product per block.

Under ``torch.distributed`` the curvature products are sharded (:mod:`geninf.linalg`), every
rank solves for the same query vectors, and each rank takes every W-th training batch: it fills
the columns of its batches and the blocks are summed over ranks (zeros elsewhere, so the sum is
exact). Every rank returns the whole matrix; only rank 0 writes ``out``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data import as_batches, to_device
from ..distributed import all_reduce_sum, is_main_process, world
from ..errors import InputError
from ..functional import FunctionalModel
from ..linalg.curvature import DEFAULT_HVP_METHOD
from ..params.subset import ParameterSubset, resolve_subset
from ..solvers import get_solver
from .gradients import as_functional, batch_gradients, count_examples
from .storage import DEFAULT_MAX_MEMORY, ScoreSink, open_sink
from .vectors import InfluenceVectors, ScoreMethod, build_curvature, parse_method

__all__ = ["score", "self_influence"]

SIGN_CONVENTION = (
    "score[q, i] = (1/m) w_q^T grad l(z_i) ~ change of the query loss when z_i is removed; "
    "positive = z_i helpful, negative = z_i harmful"
)


def score(
    model: nn.Module,
    objective: Any,
    train_data: Any,
    query_data: Any,
    *,
    method: ScoreMethod | str = ScoreMethod.GIF,
    subset: ParameterSubset | None = None,
    solver: Any = "auto",
    solver_options: dict[str, Any] | None = None,
    damping: float = 0.0,
    hessian_data: Any = None,
    num_train: int | None = None,
    query_objective: Any = None,
    curvature: str = "hessian",
    hvp_method: str = DEFAULT_HVP_METHOD.value,
    query_block: int = 64,
    batch_size: int | None = None,
    out: str | os.PathLike[str] | None = None,
    max_memory: int | None = DEFAULT_MAX_MEMORY,
    seed: int = 0,
    progress: bool = False,
    check_determinism: bool = True,
) -> Tensor:
    """Score every training example against every query (see the module docstring).

    Args:
        model: the trained model (never modified).
        objective: the training loss: None (cross-entropy), ``loss_fn(outputs, targets)`` or an
            Objective; its per-example value is ℓ(z_i).
        train_data: the training examples to score (columns, in data order).
        query_data: the queries (rows, in data order).
        method: ``"gif"``, ``"original"``, ``"freezing"``, ``"projecting"``, ``"grad_dot"`` or
            ``"random"``.
        subset: the parameters J (from :func:`geninf.select`) for gif/freezing/projecting; None
            means all parameters.
        solver: a solver name or instance (see :func:`geninf.solvers.get_solver`); ``"dense"``
            and small ``"auto"`` systems are factorized once for all queries.
        solver_options: keyword options for a solver given by name.
        damping: λ ≥ 0 added to H.
        hessian_data: data whose mean-loss curvature is H (default ``train_data``).
        num_train: m, the size of the training set (default: the examples in ``train_data``;
            give it when ``train_data`` is a part of the training set).
        query_objective: the measurement of a query (default ``objective``), e.g. the loss
            without the regularizer, or a margin.
        curvature: ``"hessian"`` or ``"gauss_newton"``.
        hvp_method: see :class:`~geninf.linalg.HVPMethod`.
        query_block: queries whose gradients and solutions are held together (tensor data; a
            DataLoader's own batches are the blocks).
        batch_size: batch size of the training data (per-example gradients and H).
        out: a ``.npy`` path: write the matrix there in row blocks (see
            :mod:`geninf.scoring.storage`) and return it memory-mapped.
        max_memory: bytes above which a matrix without ``out`` goes to a temporary file, and
            above which training gradients are recomputed per query block instead of kept.
        seed: seed of ``method="random"``.
        progress: progress bars.
        check_determinism: refuse train-mode dropout/batch norm and shuffling loaders.

    Returns:
        A ``[n_query, n_train]`` tensor (memory-mapped from ``out`` when written to disk).

    Raises:
        InputError: unknown method, a subset with a method that moves every parameter, bad
            ``damping``/``num_train``/``query_block``/``out``.
        DataError: empty or malformed data.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2).double()
        >>> x, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1, 0])
        >>> score(model, None, (x, y), (x[:2], y[:2]), method="original", damping=0.1).shape
        torch.Size([2, 6])
    """
    start = time.perf_counter()
    method = parse_method(method)
    query_block = _positive_int(query_block, "query_block")
    fm, system = _prepare(
        model, objective, train_data, method, subset, solver, solver_options, damping,
        hessian_data, curvature, hvp_method, batch_size, check_determinism, progress,
    )  # fmt: skip
    qfm = fm
    if query_objective is not None:
        qfm = FunctionalModel(model, query_objective, check_determinism=check_determinism)
    m_data = count_examples(fm, train_data, batch_size, "train data")
    m = _num_train(num_train, m_data)
    queries = as_batches(query_data, query_block, name="query data")
    n_query = count_examples(qfm, queries, query_block, "query data")
    out = out if is_main_process() else None  # one writer
    sink = open_sink((n_query, m_data), fm.dtype, fm.device, out, max_memory)
    bar = tqdm(total=n_query, desc=f"score ({method.value})", disable=not progress, leave=False)
    try:
        if system is None:  # method="random"
            _random_blocks(sink, seed, n_query, m_data, query_block, fm, bar)
        else:
            train_grads = _TrainGradients(fm, train_data, batch_size, m_data, max_memory)
            _score_blocks(sink, system, qfm, queries, train_grads, m, bar)
    except BaseException:
        sink.abort()
        raise
    finally:
        bar.close()
    meta = _metadata(method, m, (n_query, m_data), damping, solver, subset, curvature, seed)
    meta.update(wall_time=time.perf_counter() - start)
    if system is not None:
        system.warn_unconverged()
        meta["solves"] = system.summary()
    return sink.finish(meta)


def self_influence(
    model: nn.Module,
    objective: Any,
    train_data: Any,
    *,
    method: ScoreMethod | str = ScoreMethod.GIF,
    subset: ParameterSubset | None = None,
    solver: Any = "auto",
    solver_options: dict[str, Any] | None = None,
    damping: float = 0.0,
    hessian_data: Any = None,
    num_train: int | None = None,
    curvature: str = "hessian",
    hvp_method: str = DEFAULT_HVP_METHOD.value,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = False,
    check_determinism: bool = True,
) -> Tensor:
    """Self-influence of every training example: ``score`` of z_i against itself, e.g.
    (1/m) g_iᵀ H⁻¹ g_i for ``original`` and (1/m) [g_i]_Jᵀ H_{:,J}⁺ g_i for ``gif``.

    High self-influence marks examples the model fits only because it trained on them (e.g.
    mislabelled ones). Arguments as in :func:`score`.

    Cost: with a dense solver (``"dense"``, or ``"auto"`` on a small system) the matrix is
    materialized and factorized once and every batch of examples is a block of right-hand
    sides: n (or k) curvature products plus O(m·n·k) arithmetic. Any other solver runs **one
    iterative solve per training example** (m solves): prefer the dense path, a subset with a
    small k, or score a part of the training set (``train_data`` a slice, ``num_train`` = m).

    Returns:
        A ``[n_train]`` tensor in data order.
    """
    method = parse_method(method)
    fm, system = _prepare(
        model, objective, train_data, method, subset, solver, solver_options, damping,
        hessian_data, curvature, hvp_method, batch_size, check_determinism, progress,
    )  # fmt: skip
    m_data = count_examples(fm, train_data, batch_size, "train data")
    m = _num_train(num_train, m_data)
    if method is ScoreMethod.RANDOM:
        return _random_rows(seed, [None], m_data, fm)[0]
    assert system is not None
    # Ranks split the examples only when a solve needs no collective curvature product;
    # per-example iterative solves run on every rank in step (their products are sharded).
    system.prepare()
    split = system.local
    values = torch.zeros(m_data, dtype=fm.dtype, device=fm.device)
    for lo, G in _TrainGradients(fm, train_data, batch_size, m_data, limit=0, split=split):
        values[lo : lo + G.shape[0]] = (system(G) * G).sum(dim=1) / m
    system.warn_unconverged()
    return all_reduce_sum(values) if split else values


# ---------------------------------------------------------------------------------- internals
def _prepare(
    model: nn.Module,
    objective: Any,
    train_data: Any,
    method: ScoreMethod,
    subset: ParameterSubset | None,
    solver: Any,
    solver_options: dict[str, Any] | None,
    damping: float,
    hessian_data: Any,
    curvature: str,
    hvp_method: str,
    batch_size: int | None,
    check_determinism: bool,
    progress: bool,
) -> tuple[FunctionalModel, InfluenceVectors | None]:
    if isinstance(damping, bool) or not isinstance(damping, int | float) or not damping >= 0.0:
        raise InputError(f"damping must be a non-negative number, got {damping!r}")
    fm = as_functional(model, objective, check_determinism)
    subset = resolve_subset(
        model, subset, whole_model_method=None if method.uses_subset else method.value
    )
    if method is ScoreMethod.RANDOM:
        return fm, None
    H = None
    if method.uses_curvature:
        H = build_curvature(
            fm, train_data if hessian_data is None else hessian_data, curvature=curvature,
            hvp_method=hvp_method, batch_size=batch_size, check_determinism=check_determinism,
            damping=float(damping),
        )  # fmt: skip
    the_solver = get_solver(solver, **(solver_options or {}))
    return fm, InfluenceVectors(method, H, subset, the_solver, progress=progress)


def _score_blocks(
    sink: ScoreSink,
    system: InfluenceVectors,
    qfm: FunctionalModel,
    queries: Any,
    train_grads: _TrainGradients,
    m: int,
    bar: Any,
) -> None:
    """One solve per query block, then (1/m) W Gᵀ against every (of this rank's) training
    batches, summed over ranks."""
    lo = 0
    for batch, _ in qfm.iter_weighted(queries):
        W = system(batch_gradients(qfm, batch)) / m
        rows = W.new_zeros(W.shape[0], train_grads.m)
        for col, G in train_grads:
            rows[:, col : col + G.shape[0]] = W @ G.T
        rows = all_reduce_sum(rows)
        sink.write(lo, rows)
        lo += rows.shape[0]
        bar.update(rows.shape[0])


def _random_blocks(
    sink: ScoreSink,
    seed: int,
    n_query: int,
    m: int,
    query_block: int,
    fm: FunctionalModel,
    bar: Any,
) -> None:
    """``method="random"``: write the rows of ``query_block`` queries at a time."""
    for lo in range(0, n_query, query_block):
        rows = list(range(lo, min(lo + query_block, n_query)))
        sink.write(lo, _random_rows(seed, rows, m, fm))
        bar.update(len(rows))


class _TrainGradients:
    """Re-iterable ``(first column, per-example gradients)`` of this rank's training batches
    (all of them in one process, or with ``split=False``), kept after the first pass when they
    fit in ``limit`` bytes."""

    def __init__(
        self,
        fm: FunctionalModel,
        data: Any,
        batch_size: int | None,
        m: int,
        limit: int | None,
        split: bool = True,
    ):
        self.fm = fm
        self.m = m
        self.split = split
        self.data = as_batches(data, batch_size, name="train data")
        itemsize = torch.empty((), dtype=fm.dtype).element_size()
        self.keep = limit is None or m * fm.num_params * itemsize <= limit
        self._cache: list[tuple[int, Tensor]] | None = None

    def __iter__(self) -> Iterator[tuple[int, Tensor]]:
        if self._cache is not None:
            yield from self._cache
            return
        cache = []
        rank, size = world() if self.split else (0, 1)
        col = 0
        for i, batch in enumerate(self.data):
            n = int(self.fm.objective.num_examples(batch))
            if i % size == rank:
                G = batch_gradients(self.fm, to_device(batch, self.fm.device))
                if self.keep:
                    cache.append((col, G))
                yield col, G
            col += n
        if self.keep:
            self._cache = cache


def _random_rows(seed: int, rows: list[int | None], m: int, fm: FunctionalModel) -> Tensor:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    draws = [
        np.random.default_rng([int(seed)] if r is None else [int(seed), r]).standard_normal(m)
        for r in rows
    ]
    return torch.as_tensor(np.stack(draws), dtype=fm.dtype, device=fm.device)


def _num_train(num_train: int | None, m_data: int) -> int:
    if num_train is None:
        return m_data
    if isinstance(num_train, bool) or not isinstance(num_train, int) or num_train < m_data:
        raise InputError(
            f"num_train (m, the size of the whole training set) must be an integer >= the "
            f"{m_data} examples in train_data, got {num_train!r}"
        )
    return num_train


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _metadata(
    method: ScoreMethod,
    m: int,
    shape: tuple[int, int],
    damping: float,
    solver: Any,
    subset: ParameterSubset | None,
    curvature: str,
    seed: int,
) -> dict[str, Any]:
    return {
        "convention": SIGN_CONVENTION,
        "method": method.value,
        "num_train": m,
        "shape": list(shape),
        "damping": float(damping),
        "solver": solver if isinstance(solver, str) else repr(solver),
        "subset_size": None if subset is None else len(subset),
        "curvature": curvature,
        "seed": seed,
    }
