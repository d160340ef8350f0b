"""`DenseSolver`: materialize A and solve with LAPACK — the reference for small problems."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import ModelTooLargeError, NonFiniteError
from ..linalg.base import DEFAULT_MAX_DENSE, LinearOperator
from .base import Monitor, Solver, check_float, check_int, norm, relative

__all__ = ["DenseSolver"]


class DenseSolver(Solver):
    """Direct solve of the materialized matrix (``A.to_dense``: ``A.shape[1]`` products).

    - Square A: an LU solve (``torch.linalg.solve_ex``) when it is well-posed, i.e. LU succeeds
      and the solution does not reveal a condition number above ``1/rcond``
      (``‖A‖_F ‖x‖ / ‖b‖ ≤ 1/rcond``, a lower bound on κ(A) up to √n). The problem is then
      ``"linear"``.
    - Otherwise (singular or ill-conditioned square A, or rectangular A): the min-norm
      least-squares solution, singular values ``≤ rcond · σ_max`` treated as zero —
      ``torch.linalg.lstsq(driver="gelsd")`` on CPU, an SVD pseudo-inverse on other devices. The
      problem is then ``"least_squares"``.

    The residual reported is the true one (computed with the dense matrix: no extra product).

    Args:
        max_size: refuse (``ModelTooLargeError``) operators with more columns than this.
        rcond: relative cut-off for small singular values; default ``eps(dtype) · max(rows, cols)``.

    Example:
        >>> import torch
        >>> from geninf.linalg import MatrixOperator
        >>> A = MatrixOperator(torch.tensor([[2.0, 0.0], [0.0, 4.0]], dtype=torch.float64))
        >>> DenseSolver().solve(A, torch.tensor([2.0, 2.0], dtype=torch.float64)).x.tolist()
        [1.0, 0.5]
    """

    name = "dense"

    def __init__(self, max_size: int = DEFAULT_MAX_DENSE, rcond: float | None = None):
        self.max_size = check_int("DenseSolver", "max_size", max_size, low=1)
        self.rcond = check_float(
            "DenseSolver", "rcond", rcond, low=0.0, strict=True, high=1.0, allow_none=True
        )

    def _solve(
        self, A: LinearOperator, b: Tensor, x0: Tensor | None, mon: Monitor
    ) -> tuple[Tensor, dict[str, Any]]:
        rows, cols = A.shape
        if cols > self.max_size:  # also for operators whose to_dense ignores max_size
            raise ModelTooLargeError(
                f"DenseSolver: A has {cols} columns, more than max_size={self.max_size}; use an "
                "iterative solver (solver='cg' or 'lsmr') or raise max_size"
            )
        M = A.to_dense(self.max_size)
        if not bool(torch.isfinite(M).all()):
            raise NonFiniteError("the materialized operator contains NaN or infinity")
        rcond = self.rcond if self.rcond is not None else torch.finfo(M.dtype).eps * max(rows, cols)
        if rows == cols:
            x = self._direct(M, b, rcond)
            if x is not None:
                res = relative(norm(b - M @ x), norm(b))
                return x, dict(
                    problem="linear",
                    iterations=0,
                    residual=res,
                    converged=True,
                    message="direct LU solve",
                )
        x, rank = _min_norm_lstsq(M, b, rcond)
        res = relative(norm(M.T @ (b - M @ x)), norm(M.T @ b))
        why = "singular or ill-conditioned square matrix: " if rows == cols else ""
        return x, dict(
            problem="least_squares",
            iterations=0,
            residual=res,
            converged=True,
            message=f"{why}min-norm least squares, numerical rank {rank} of "
            f"{min(rows, cols)} (rcond={rcond:.2e})",
        )

    @staticmethod
    def _direct(M: Tensor, b: Tensor, rcond: float) -> Tensor | None:
        x, info = torch.linalg.solve_ex(M, b)
        if int(info) != 0 or not bool(torch.isfinite(x).all()):
            return None
        kappa_lower = norm(M) * norm(x) / norm(b)
        return x if kappa_lower * rcond < 1.0 else None


def _min_norm_lstsq(
    M: Tensor, b: Tensor, rcond: float, *, svd: bool | None = None
) -> tuple[Tensor, int]:
    """Min-norm least squares and the numerical rank: gelsd on CPU, else (or when ``svd``) an
    SVD pseudo-inverse (gelsd is CPU-only in torch)."""
    if not (M.device.type != "cpu" if svd is None else svd):
        out = torch.linalg.lstsq(M, b.unsqueeze(1), rcond=rcond, driver="gelsd")
        return out.solution.squeeze(1), int(out.rank)
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    keep = S > rcond * S.max()
    inv = torch.where(keep, 1.0 / torch.where(keep, S, torch.ones_like(S)), torch.zeros_like(S))
    return Vh.T @ (inv * (U.T @ b)), int(keep.sum())
