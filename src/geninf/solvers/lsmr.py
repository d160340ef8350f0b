"""`LSMRSolver`: LSMR (Fong & Saunders 2011) in torch, for least squares with any A."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError, NonFiniteError
from ..linalg.base import LinearOperator
from .base import Monitor, Solver, check_float, check_int, default_max_iter, norm

__all__ = ["LSMRSolver"]


class LSMRSolver(Solver):
    """LSMR for ``min ‖A x − b‖² + damp² ‖x‖²`` — square (symmetric indefinite too) or rectangular.

    LSMR (D. C.-L. Fong, M. A. Saunders, "LSMR: an iterative algorithm for sparse least-squares
    problems", SIAM J. Sci. Comput. 33(5), 2011) is MINRES applied to the normal equations
    ``(AᵀA + damp² I) x = Aᵀb`` without forming them: Golub–Kahan bidiagonalization of A from b
    (two products per iteration: ``A v`` and ``Aᵀ u``), then two sets of Givens rotations — the
    first turns the lower-bidiagonal ``B_k`` (damped: after eliminating ``damp``) into upper
    ``R_k``, the second the resulting ``R_kᵀ`` into ``R̄_k`` — and short recurrences for x.
    The normal-equation residual ``‖Aᵀr_k − damp² x_k‖ = |ζ̄_{k+1}|`` is available for free at
    every iteration and decreases monotonically. From x0 = 0 (and damp = 0) the iterates stay in
    range(Aᵀ), so LSMR converges to the min-norm least-squares solution, in O(κ(A)) iterations.

    Stopping: the estimate ``|ζ̄_{k+1}| / ‖Aᵀb‖ ≤ tol``, a Golub–Kahan breakdown (β or α = 0:
    the Krylov space holds the solution), or ``max_iter`` (default ``min(10 · min(m, n), 1000)``).
    Then the true normal residual is computed (two products) and reported. If rounding made it
    exceed ``tol`` although the estimate did not, LSMR restarts on the true residual (the check's
    products are reused; counted in ``diagnostics.restarts``) while that makes progress
    (damp = 0 only). No reorthogonalization is done.

    Cost: ``1 + 2·iterations + 2`` products from x0 = 0 (one more, plus one for ``‖Aᵀb‖``,
    with an x0).

    Args:
        tol: relative normal-residual tolerance.
        max_iter: iteration cap.
        damp: Tikhonov damping λ ≥ 0 (solves ``(AᵀA + λ² I) x = Aᵀb``); x0 is then not supported.
    """

    name = "lsmr"

    def __init__(self, tol: float = 1e-6, max_iter: int | None = None, damp: float = 0.0):
        self.tol = check_float("LSMRSolver", "tol", tol, low=0.0, strict=True)
        self.max_iter = check_int("LSMRSolver", "max_iter", max_iter, low=1, allow_none=True)
        self.damp = check_float("LSMRSolver", "damp", damp, low=0.0)

    def _problem_for_zero(self, A: LinearOperator) -> str:  # type: ignore[override]
        return "least_squares"

    def _solve(
        self, A: LinearOperator, b: Tensor, x0: Tensor | None, mon: Monitor
    ) -> tuple[Tensor, dict[str, Any]]:
        if x0 is not None and self.damp > 0.0:
            raise InputError("LSMRSolver: x0 is not supported with damp > 0; drop x0")
        max_iter = self.max_iter or default_max_iter(A)
        mon.set_total(max_iter)
        if x0 is None:
            x, r = torch.zeros(A.shape[1], dtype=b.dtype, device=b.device), b.clone()
            atr = A.rmatvec(r)
            atb_norm = norm(atr)
        else:
            x, r = x0.clone(), b - A.matvec(x0)
            atr = A.rmatvec(r)
            atb_norm = norm(A.rmatvec(b))
        if atb_norm == 0.0:
            return torch.zeros_like(x), dict(
                problem="least_squares",
                converged=True,
                message="Aᵀb = 0: the min-norm solution is x = 0",
            )
        it, restarts, last_true = 0, 0, math.inf
        while True:
            dx, it, state = self._bidiagonalize(A, r, atr, atb_norm, it, max_iter, mon)
            x = x + dx
            r = b - A.matvec(x)
            atr = A.rmatvec(r)
            normal = atr - (self.damp**2) * x if self.damp > 0.0 else atr
            true_res = norm(normal) / atb_norm
            if true_res <= self.tol or state == "max_iter" or it >= max_iter or self.damp > 0.0:
                break
            if true_res > 0.5 * last_true:
                state = "stagnated"
                break
            last_true, restarts = true_res, restarts + 1

        converged = true_res <= self.tol
        return x, dict(
            problem="least_squares",
            iterations=it,
            residual=true_res,
            converged=converged,
            restarts=restarts,
            message=self._message(state, converged, true_res, it, max_iter),
        )

    def _bidiagonalize(
        self,
        A: LinearOperator,
        r: Tensor,
        atr: Tensor,
        atb_norm: float,
        it: int,
        max_iter: int,
        mon: Monitor,
    ) -> tuple[Tensor, int, str]:
        """LSMR on min ‖A dx − r‖ (+ damping) from dx = 0, with ``atr = Aᵀ r`` given."""
        dx = torch.zeros_like(atr)
        beta, atr_norm = norm(r), norm(atr)
        if beta == 0.0 or atr_norm == 0.0:
            return dx, it, "breakdown"
        # β_1 u_1 = r,  α_1 v_1 = Aᵀ u_1 = Aᵀr / β_1
        alpha = atr_norm / beta
        u, v = r / beta, atr / atr_norm
        # rotations state: ρ_0 = ρ̄_0 = c̄_0 = 1, s̄_0 = 0, ᾱ_1 = α_1, ζ̄_1 = α_1 β_1
        alphabar, zetabar = alpha, alpha * beta
        rho, rhobar, cbar, sbar = 1.0, 1.0, 1.0, 0.0
        h, hbar = v.clone(), torch.zeros_like(v)
        while it < max_iter:
            # Golub–Kahan: β u ← A v − α u,  α v ← Aᵀ u − β v
            u = A.matvec(v) - alpha * u
            beta = norm(u)
            if beta > 0.0:
                u = u / beta
            v = A.rmatvec(u) - beta * v
            alpha = norm(v)
            if alpha > 0.0:
                v = v / alpha
            it += 1
            if not (math.isfinite(alpha) and math.isfinite(beta)):
                raise NonFiniteError(f"lsmr: the operator returned NaN/inf at iteration {it}")
            # first rotation (after eliminating damp): [α̂ β] → ρ
            alphahat = math.hypot(alphabar, self.damp)
            rho_old = rho
            rho = math.hypot(alphahat, beta)
            c, s = alphahat / rho, beta / rho
            theta_new, alphabar = s * alpha, c * alpha
            # second rotation: [c̄ ρ, θ_new] → ρ̄
            rhobar_old = rhobar
            thetabar = sbar * rho
            rhotemp = cbar * rho
            rhobar = math.hypot(rhotemp, theta_new)
            cbar, sbar = rhotemp / rhobar, theta_new / rhobar
            zeta, zetabar = cbar * zetabar, -sbar * zetabar
            # updates of h̄, x, h
            hbar = hbar.mul_(-thetabar * rho / (rho_old * rhobar_old)).add_(h)
            dx = dx.add_(hbar, alpha=zeta / (rho * rhobar))
            h = h.mul_(-theta_new / rho).add_(v)
            estimate = abs(zetabar) / atb_norm
            mon.record(estimate)
            if estimate <= self.tol:
                return dx, it, "tol"
            if beta == 0.0 or alpha == 0.0:
                return dx, it, "breakdown"
        return dx, it, "max_iter"

    def _message(self, state: str, converged: bool, res: float, it: int, max_iter: int) -> str:
        if converged:
            return (
                f"converged: relative normal residual {res:.3e} <= tol={self.tol:g} after "
                f"{it} iterations"
            )
        if state == "stagnated":
            return (
                f"the residual estimate reached tol={self.tol:g} but the true normal residual "
                f"stagnates at {res:.3e} (rounding limit); use a larger tol"
            )
        if state == "max_iter" or it >= max_iter:
            return (
                f"stopped at max_iter={max_iter} with relative normal residual {res:.3e} > "
                f"tol={self.tol:g}"
            )
        return f"stopped ({state}) with relative normal residual {res:.3e} > tol={self.tol:g}"
