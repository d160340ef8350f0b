"""`CGSolver`: conjugate gradients (and CGNR for non-symmetric or rectangular A)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import NonFiniteError
from ..linalg.base import LinearOperator, NormalOperator
from .base import Monitor, Solver, check_float, check_int, default_max_iter, norm

__all__ = ["CGSolver", "NEGATIVE_CURVATURE_MESSAGE"]

NEGATIVE_CURVATURE_MESSAGE = "negative curvature: H is indefinite, add damping or use lsmr"


class CGSolver(Solver):
    """Conjugate gradients for a symmetric positive definite A: ``A x = b``.

    - Square symmetric A (``A.symmetric``): plain CG, one product per iteration; problem
      ``"linear"``. If a search direction p has ``pᵀAp ≤ 0`` (A indefinite or singular) the
      solver stops there: ``converged=False``, ``diagnostics.negative_curvature=True`` and the
      message says what to do (damping, or ``solver="lsmr"``); x is the last iterate.
    - Any other A (rectangular, or square but not flagged symmetric): CG on the normal equations
      ``AᵀA x = Aᵀb`` (CGNR), two products per iteration plus one for ``Aᵀb``; problem
      ``"least_squares"``. From x0 = 0 it converges to the min-norm least-squares solution.

    The residual of the CG recurrence is recorded every iteration. When it reaches ``tol`` the
    true residual is recomputed (one product; two for CGNR) — that check is the final residual
    reported. If rounding made the two differ and the true one is above ``tol``, CG restarts
    from the true residual (counted in ``diagnostics.restarts``) as long as that makes progress.

    Args:
        tol: stop when the relative residual ≤ tol.
        max_iter: iteration cap; default ``min(10 · n, 1000)``.
    """

    name = "cg"

    def __init__(self, tol: float = 1e-6, max_iter: int | None = None):
        self.tol = check_float("CGSolver", "tol", tol, low=0.0, strict=True)
        self.max_iter = check_int("CGSolver", "max_iter", max_iter, low=1, allow_none=True)

    def _problem_for_zero(self, A: LinearOperator) -> str:  # type: ignore[override]
        return "linear" if A.shape[0] == A.shape[1] and A.symmetric else "least_squares"

    def _solve(
        self, A: LinearOperator, b: Tensor, x0: Tensor | None, mon: Monitor
    ) -> tuple[Tensor, dict[str, Any]]:
        rows, cols = A.shape
        normal = not (rows == cols and A.symmetric)
        op: LinearOperator = NormalOperator(A) if normal else A
        rhs = A.rmatvec(b) if normal else b
        problem = "least_squares" if normal else "linear"
        prefix = (
            "A is not square and symmetric: CG on the normal equations (CGNR); " if normal else ""
        )
        max_iter = self.max_iter or default_max_iter(A)
        mon.set_total(max_iter)
        rhs_norm = norm(rhs)
        if rhs_norm == 0.0:
            return torch.zeros_like(rhs), dict(
                problem=problem, converged=True, message=prefix + "Aᵀb = 0: x = 0"
            )

        x = torch.zeros_like(rhs) if x0 is None else x0.clone()
        r = rhs.clone() if x0 is None else rhs - op.matvec(x0)
        it, restarts, last_true = 0, 0, math.inf
        while True:
            x, it, state, curvature = self._iterate(op, x, r, rhs_norm, it, max_iter, mon)
            true_r = rhs - op.matvec(x)
            true_res = norm(true_r) / rhs_norm
            if true_res <= self.tol or state != "tol" or it >= max_iter:
                break
            if true_res > 0.5 * last_true:
                state = "stagnated"
                break
            last_true, restarts, r = true_res, restarts + 1, true_r

        if normal and state == "negative":
            state = "breakdown"  # ‖A p‖² = 0: cannot be negative curvature for AᵀA
        converged = state == "tol" and true_res <= self.tol
        message = prefix + _message(state, converged, true_res, self.tol, max_iter, it, curvature)
        return x, dict(
            problem=problem,
            iterations=it,
            residual=true_res,
            converged=converged,
            restarts=restarts,
            message=message,
            negative_curvature=state == "negative",
        )

    def _iterate(
        self,
        op: LinearOperator,
        x: Tensor,
        r: Tensor,
        rhs_norm: float,
        it: int,
        max_iter: int,
        mon: Monitor,
    ) -> tuple[Tensor, int, str, float]:
        """CG from (x, r) until tol, max_iter or pᵀAp ≤ 0; returns (x, it, state, pᵀAp)."""
        p = r.clone()
        rr = float(torch.dot(r, r))
        if math.sqrt(rr) / rhs_norm <= self.tol:
            return x, it, "tol", math.nan
        while it < max_iter:
            Ap = op.matvec(p)
            pAp = float(torch.dot(p, Ap))
            it += 1
            if not math.isfinite(pAp):
                raise NonFiniteError(f"CG: the operator returned NaN/inf at iteration {it}")
            if pAp <= 0.0:
                mon.record(math.sqrt(rr) / rhs_norm)
                return x, it, "negative", pAp
            alpha = rr / pAp
            x = x.add_(p, alpha=alpha)
            r = r.sub_(Ap, alpha=alpha)
            rr_new = float(torch.dot(r, r))
            res = math.sqrt(rr_new) / rhs_norm
            mon.record(res)
            if res <= self.tol:
                return x, it, "tol", pAp
            p = r + (rr_new / rr) * p
            rr = rr_new
        return x, it, "max_iter", math.nan


def _message(
    state: str, converged: bool, res: float, tol: float, max_iter: int, it: int, curvature: float
) -> str:
    if state == "negative":
        return f"{NEGATIVE_CURVATURE_MESSAGE} (pᵀAp = {curvature:.3e} at iteration {it})"
    if state == "breakdown":
        return f"breakdown at iteration {it}: A p = 0 for a nonzero direction p (rounding)"
    if converged:
        return f"converged: relative residual {res:.3e} <= tol={tol:g} after {it} iterations"
    if state == "stagnated":
        return (
            f"the recurrence residual reached tol={tol:g} but the true residual stagnates at "
            f"{res:.3e} (rounding limit for this condition number and dtype); use a larger tol"
        )
    return f"stopped at max_iter={max_iter} with relative residual {res:.3e} > tol={tol:g}"
