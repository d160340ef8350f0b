"""`NeumannNormalSolver`: the GIF paper's modified LiSSA (method.md §3.1, Eq. 8–9, Algorithm 1)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError, NonFiniteError, SolverDivergenceError
from ..linalg.base import LinearOperator
from .base import Monitor, Solver, check_choice, check_float, check_int, norm

__all__ = ["NeumannNormalSolver"]


class NeumannNormalSolver(Solver):
    """Truncated Neumann (Landweber) series on the normal equations, for ``min ‖A x − b‖``.

    For GIF, A = H_{:,J} (n × k) and b = g; any A works. With scale c (paper Eq. 8)::

        I_0 = Aᵀb / c²,    I_k = I_0 + (I − AᵀA / c²) I_{k−1}
            ⇔ I_k = I_{k−1} + Aᵀ(b − A I_{k−1}) / c²          (a Landweber step)

    The series converges to the min-norm least-squares solution iff c² > λ_max(AᵀA)/2. Cost: one
    product for Aᵀb (computed once, reused across restarts), then two per iteration
    (``AᵀA v = Aᵀ(A v)``), then two for the final residual check:
    ``products = 1 + 2·iterations + 2`` (+ ``2·power_iterations`` in ``scale_mode="auto"``,
    + 2 with an ``x0``). ``iterations`` counts every iteration, those of diverged runs included.

    ``scale_mode="paper"`` reproduces the authors' code: c starts at ``scale`` (1 in the paper)
    and, whenever the series diverges, grows additively, ``c ← c + scale_step``, and the series
    restarts from k = 1. Divergence test, as theirs: at every even k, the step norm
    ``d_k = ‖I_k − I_{k−1}‖`` is larger than ``d_{k−2}`` (with ``d_0 = ‖I_0‖``). For a
    convergent scale the step norms never grow, so the test has no false alarms. Their restart
    loop has no cap; ours stops after ``max_restarts`` restarts with a SolverDivergenceError.
    Stopping, as theirs: ``d_k ≤ tol · √k_sel`` (k_sel = ``A.shape[1]``) or k = ``max_iter``.

    Note: with the paper's ``tol=1e-9`` the step criterion is practically never met, so the
    series stops at ``max_iter``. The result is then a *truncated* Landweber series — an implicit
    regularization whose direction depends on c and ``max_iter`` — not the converged
    pseudo-inverse solution; ``converged`` is False and the message says so. For the converged
    solution use ``LSMRSolver`` (O(κ) iterations instead of O(κ²)).

    ``scale_mode="auto"`` sets c² to λ_max(AᵀA) estimated by ``power_iterations`` power
    iterations (counted products; random start from a generator seeded with ``seed``), i.e. the
    step size 1/λ_max; on a divergence c² doubles.

    Residuals are free: ``Aᵀb − AᵀA I_{k−1} = c² (I_k − I_{k−1})``, so ``residual_history``
    records, at each iteration, the relative normal residual ``‖Aᵀ(b − A I_{k−1})‖ / ‖Aᵀb‖`` of
    the previous iterate (plus, last, the checked residual of the returned x).
    ``diagnostics.scale`` is the final c; ``restarts`` the number of divergences.

    Args:
        scale: initial c > 0 (paper mode).
        scale_step: additive growth of c on a divergence (paper mode; 3, 5 or 7 in the paper).
        max_iter: iterations per run.
        tol: the paper's step-norm tolerance (0 disables it).
        max_restarts: restarts allowed before giving up.
        scale_mode: ``"paper"`` or ``"auto"``.
        residual_tol: optional stop when the relative normal residual ≤ residual_tol.
        power_iterations: power iterations for ``scale_mode="auto"``.
        seed: seeds the power iteration's start vector.
    """

    name = "neumann_normal"

    def __init__(
        self,
        scale: float = 1.0,
        scale_step: float = 3.0,
        max_iter: int = 200,
        tol: float = 1e-9,
        max_restarts: int = 50,
        scale_mode: str = "paper",
        residual_tol: float | None = None,
        power_iterations: int = 20,
        seed: int = 0,
    ):
        own = "NeumannNormalSolver"
        self.scale = check_float(own, "scale", scale, low=0.0, strict=True)
        self.scale_step = check_float(own, "scale_step", scale_step, low=0.0, strict=True)
        self.max_iter = check_int(own, "max_iter", max_iter, low=1)
        self.tol = check_float(own, "tol", tol, low=0.0)
        self.max_restarts = check_int(own, "max_restarts", max_restarts, low=0)
        self.scale_mode = check_choice(own, "scale_mode", scale_mode, ("paper", "auto"))
        self.residual_tol = check_float(
            own, "residual_tol", residual_tol, low=0.0, strict=True, allow_none=True
        )
        self.power_iterations = check_int(own, "power_iterations", power_iterations, low=1)
        self.seed = check_int(own, "seed", seed, low=0)

    def _problem_for_zero(self, A: LinearOperator) -> str:  # type: ignore[override]
        return "least_squares"

    def _solve(
        self, A: LinearOperator, b: Tensor, x0: Tensor | None, mon: Monitor
    ) -> tuple[Tensor, dict[str, Any]]:
        atb = A.rmatvec(b)
        atb_norm = norm(atb)
        if atb_norm == 0.0:
            return torch.zeros_like(atb), dict(
                problem="least_squares",
                converged=True,
                message="Aᵀb = 0: the min-norm solution is x = 0",
            )
        start = torch.zeros_like(atb) if x0 is None else x0
        g0 = atb if x0 is None else atb - A.rmatvec(A.matvec(x0))
        c = self._initial_scale(A, atb)
        mon.set_total(self.max_iter)
        threshold = self.tol * math.sqrt(A.shape[1])
        restarts, iterations = 0, 0
        while True:
            x, state, its, growth = self._run(A, atb, atb_norm, start, g0, c, threshold, mon)
            iterations += its
            if state != "diverged":
                break
            restarts += 1
            if restarts > self.max_restarts:
                raise SolverDivergenceError(self._cap_message(restarts, c, growth))
            c = c + self.scale_step if self.scale_mode == "paper" else c * math.sqrt(2.0)

        residual = norm(atb - A.rmatvec(A.matvec(x))) / atb_norm
        mon.record(residual, advance=0)
        converged = state in ("tol", "residual_tol")
        return x, dict(
            problem="least_squares",
            iterations=iterations,
            residual=residual,
            converged=converged,
            scale=c,
            restarts=restarts,
            message=self._message(state, residual, c, restarts),
        )

    def _run(
        self,
        A: LinearOperator,
        atb: Tensor,
        atb_norm: float,
        start: Tensor,
        g0: Tensor,
        c: float,
        threshold: float,
        mon: Monitor,
    ) -> tuple[Tensor, str, int, float]:
        """One run of the series at scale c; returns (x, state, iterations, last growth)."""
        c2 = c * c
        x = start + g0 / c2
        steps = [norm(g0) / c2]
        for k in range(1, self.max_iter + 1):
            g = atb - A.rmatvec(A.matvec(x))
            g_norm = norm(g)
            if not math.isfinite(g_norm):
                if k == 1:
                    raise NonFiniteError("neumann_normal: the operator returned NaN/inf")
                return x, "diverged", k, math.inf
            mon.record(g_norm / atb_norm)
            steps.append(g_norm / c2)
            if k % 2 == 0 and steps[k] > steps[k - 2]:
                return x, "diverged", k, steps[k] / steps[k - 2]
            x = x + g / c2
            if steps[k] <= threshold:
                return x, "tol", k, 1.0
            if self.residual_tol is not None and g_norm / atb_norm <= self.residual_tol:
                return x, "residual_tol", k, 1.0
        return x, "max_iter", self.max_iter, 1.0

    def _initial_scale(self, A: LinearOperator, like: Tensor) -> float:
        if self.scale_mode == "paper":
            return self.scale
        gen = torch.Generator().manual_seed(self.seed)
        v = torch.randn(A.shape[1], generator=gen, dtype=like.dtype).to(like.device)
        v = v / norm(v)
        lam = 0.0
        for _ in range(self.power_iterations):
            w = A.rmatvec(A.matvec(v))
            lam = float(torch.dot(v, w))
            w_norm = norm(w)
            if not math.isfinite(w_norm):
                raise NonFiniteError("neumann_normal: the operator returned NaN/inf")
            if w_norm == 0.0:
                break
            v = w / w_norm
        if not lam > 0.0:
            raise InputError(
                "neumann_normal: the power iteration found λ_max(AᵀA) = 0; A looks "
                "like zero on a random vector: use scale_mode='paper'"
            )
        return math.sqrt(lam)

    def _cap_message(self, restarts: int, c: float, growth: float) -> str:
        # growth of d over two steps ≈ ρ², ρ = λ_max/c² − 1  ⇒  λ_max ≈ c² (1 + √growth)
        lam = c * c * (1.0 + math.sqrt(growth)) if math.isfinite(growth) else 100.0 * c * c
        suggestion = float(f"{math.sqrt(lam) * 1.1:.2g}")
        return (
            f"neumann_normal diverged {restarts} times (last scale c={c:g}, "
            f"max_restarts={self.max_restarts}); start with a larger scale (e.g. "
            f"scale={suggestion:g}) or scale_mode='auto', or use solver='lsmr'"
        )

    def _message(self, state: str, residual: float, c: float, restarts: int) -> str:
        tail = f"; scale c={c:g} after {restarts} restart(s)"
        if state == "max_iter":
            return (
                f"stopped at max_iter={self.max_iter}: a truncated Landweber series (an "
                f"implicit regularization, not the converged least-squares solution); "
                f"relative normal residual {residual:.3e}{tail}"
            )
        crit = (
            "step norm <= tol·sqrt(k)"
            if state == "tol"
            else f"normal residual <= residual_tol={self.residual_tol:g}"
        )
        return f"converged ({crit}); relative normal residual {residual:.3e}{tail}"
