"""Linear operators on flat vectors, defined only by their matrix-vector products.

A :class:`LinearOperator` A of shape (rows, cols) maps a 1-D tensor of length ``cols`` to one of
length ``rows`` (:meth:`matvec`) and back (:meth:`rmatvec`, the transpose). Every operator counts
the curvature products it triggers in :attr:`num_products` (for a Hessian operator: HVPs), which is
how the solvers report their cost.

Composition helpers build the operators GIF needs from one symmetric curvature operator H (n × n)
and a :class:`~geninf.params.ParameterSubset` J (k elements):

- ``H + λI`` — :meth:`LinearOperator.damped`;
- ``H_{:,J}`` (n × k) — :class:`ColumnSubsetOperator`: ``H_{:,J} x = H P_Jᵀ x`` and
  ``H_{:,J}ᵀ y = [H y]_J`` (H symmetric), one product each;
- ``H_{J,J}`` (k × k) — :class:`PrincipalSubmatrixOperator`;
- ``AᵀA`` — :class:`NormalOperator`, two products per matvec.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ..errors import InputError, ModelTooLargeError
from ..params.subset import ParameterSubset

__all__ = [
    "LinearOperator",
    "MatrixOperator",
    "DampedOperator",
    "ColumnSubsetOperator",
    "PrincipalSubmatrixOperator",
    "NormalOperator",
    "DEFAULT_MAX_DENSE",
]

DEFAULT_MAX_DENSE = 4096


class LinearOperator(ABC):
    """A matrix known through its products. Subclasses implement :meth:`_matvec`.

    Attributes:
        shape: ``(rows, cols)``.
        dtype, device: of the vectors it takes and returns.
        symmetric: True when A = Aᵀ (then ``rmatvec`` is ``matvec``).
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    symmetric: bool = False

    @abstractmethod
    def _matvec(self, v: Tensor) -> Tensor: ...

    def _rmatvec(self, v: Tensor) -> Tensor:
        if self.symmetric:
            return self._matvec(v)
        raise NotImplementedError(f"{type(self).__name__} does not implement rmatvec")

    @property
    @abstractmethod
    def num_products(self) -> int:
        """Curvature products (e.g. Hessian-vector products) computed so far."""

    def matvec(self, v: Tensor) -> Tensor:
        """A v for a 1-D ``v`` of length ``shape[1]``."""
        _check_vector(v, self.shape[1], type(self).__name__)
        return self._matvec(v)

    def rmatvec(self, v: Tensor) -> Tensor:
        """Aᵀ v for a 1-D ``v`` of length ``shape[0]``."""
        _check_vector(v, self.shape[0], type(self).__name__ + ".T")
        return self._rmatvec(v)

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def damped(self, damping: float) -> LinearOperator:
        """The operator A + λI (square operators only); λ = 0 returns ``self``."""
        if damping == 0.0:
            return self
        return DampedOperator(self, damping)

    def to_dense(self, max_size: int = DEFAULT_MAX_DENSE) -> Tensor:
        """Materialize A column by column (``shape[1]`` products). Refuses more than ``max_size``
        columns with :class:`~geninf.errors.ModelTooLargeError`."""
        rows, cols = self.shape
        if cols > max_size:
            raise ModelTooLargeError(
                f"materializing a {rows}x{cols} operator needs {cols} products and "
                f"{rows * cols * 8 / 2**20:.0f} MiB; the limit is {max_size} columns: use an "
                "iterative solver (solver='cg' or 'lsmr') or raise max_dense"
            )
        eye = torch.eye(cols, dtype=self.dtype, device=self.device)
        return torch.stack([self.matvec(eye[i]) for i in range(cols)], dim=1)


class MatrixOperator(LinearOperator):
    """An explicit matrix as an operator (for tests and small problems)."""

    def __init__(self, matrix: Tensor, *, symmetric: bool | None = None):
        if matrix.dim() != 2:
            raise InputError(f"expected a 2-D matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.shape = (int(matrix.shape[0]), int(matrix.shape[1]))
        self.dtype = matrix.dtype
        self.device = matrix.device
        if symmetric is None:
            symmetric = self.shape[0] == self.shape[1] and bool(
                torch.allclose(matrix, matrix.T, rtol=1e-10, atol=1e-12)
            )
        self.symmetric = symmetric
        self._count = 0

    @property
    def num_products(self) -> int:
        return self._count

    def _matvec(self, v: Tensor) -> Tensor:
        self._count += 1
        return self.matrix @ v

    def _rmatvec(self, v: Tensor) -> Tensor:
        self._count += 1
        return self.matrix.T @ v

    def to_dense(self, max_size: int = DEFAULT_MAX_DENSE) -> Tensor:
        if self.shape[1] > max_size:
            return super().to_dense(max_size)  # raises ModelTooLargeError
        return self.matrix


class _Wrapper(LinearOperator):
    def __init__(self, base: LinearOperator):
        self.base = base
        self.dtype = base.dtype
        self.device = base.device

    @property
    def num_products(self) -> int:
        return self.base.num_products


class DampedOperator(_Wrapper):
    """A + λI for a square operator A."""

    def __init__(self, base: LinearOperator, damping: float):
        super().__init__(base)
        if base.shape[0] != base.shape[1]:
            raise InputError(f"damping needs a square operator, got shape {base.shape}")
        if not damping >= 0.0:
            raise InputError(f"damping must be a non-negative number, got {damping}")
        self.damping = float(damping)
        self.shape = base.shape
        self.symmetric = base.symmetric

    def _matvec(self, v: Tensor) -> Tensor:
        return self.base.matvec(v) + self.damping * v

    def _rmatvec(self, v: Tensor) -> Tensor:
        return self.base.rmatvec(v) + self.damping * v

    @property
    def num_batches(self) -> int | None:
        """The base operator's number of batches (None when it has no batches)."""
        return getattr(self.base, "num_batches", None)

    def batch_matvec(self, v: Tensor, index: int) -> Tensor:
        """(A_i + λI) v, A_i the base operator's product for batch ``index`` alone (what the
        stochastic solvers use): damping is added to every batch, as to the full product.

        Raises:
            InputError: the base operator has no ``batch_matvec``, or ``v`` has the wrong shape.
        """
        batch_matvec = getattr(self.base, "batch_matvec", None)
        if not callable(batch_matvec):
            raise InputError(
                f"{type(self.base).__name__} has no batch_matvec(v, index): its damped version "
                "has no per-batch products either"
            )
        _check_vector(v, self.shape[1], type(self).__name__)
        return batch_matvec(v, index) + self.damping * v


class ColumnSubsetOperator(_Wrapper):
    """H_{:,J} (n × k) for a symmetric n × n operator H and a subset J."""

    def __init__(self, base: LinearOperator, subset: ParameterSubset):
        super().__init__(base)
        _check_symmetric_base(base, subset)
        self.subset = subset
        self.shape = (base.shape[0], len(subset))
        self._idx = subset.indices_on(base.device)

    def _matvec(self, v: Tensor) -> Tensor:
        full = torch.zeros(self.shape[0], dtype=v.dtype, device=v.device)
        full.index_copy_(0, self._idx, v)
        return self.base.matvec(full)

    def _rmatvec(self, v: Tensor) -> Tensor:
        return self.base.matvec(v).index_select(0, self._idx)


class PrincipalSubmatrixOperator(_Wrapper):
    """H_{J,J} (k × k) for a symmetric n × n operator H and a subset J."""

    symmetric = True

    def __init__(self, base: LinearOperator, subset: ParameterSubset):
        super().__init__(base)
        _check_symmetric_base(base, subset)
        self.subset = subset
        self.shape = (len(subset), len(subset))
        self._idx = subset.indices_on(base.device)

    def _matvec(self, v: Tensor) -> Tensor:
        full = torch.zeros(self.base.shape[0], dtype=v.dtype, device=v.device)
        full.index_copy_(0, self._idx, v)
        return self.base.matvec(full).index_select(0, self._idx)


class NormalOperator(_Wrapper):
    """AᵀA (cols × cols) of any operator A: one ``matvec`` and one ``rmatvec`` of A per product."""

    symmetric = True

    def __init__(self, base: LinearOperator):
        super().__init__(base)
        self.shape = (base.shape[1], base.shape[1])

    def _matvec(self, v: Tensor) -> Tensor:
        return self.base.rmatvec(self.base.matvec(v))


def _check_symmetric_base(base: LinearOperator, subset: ParameterSubset) -> None:
    if not base.symmetric or base.shape[0] != base.shape[1]:
        raise InputError("a parameter-subset view needs a square symmetric operator (a Hessian)")
    if subset.num_total != base.shape[0]:
        raise InputError(
            f"the subset addresses {subset.num_total} parameters but the operator has "
            f"{base.shape[0]}; build both from the same model"
        )


def _check_vector(v: Tensor, n: int, who: str) -> None:
    if not isinstance(v, Tensor) or v.dim() != 1 or v.shape[0] != n:
        shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        raise InputError(f"{who}: expected a 1-D tensor of length {n}, got {shape}")
