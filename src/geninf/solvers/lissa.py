"""`LiSSASolver`: Koh & Liang's (2017) LiSSA recursion for inverse-Hessian-vector products."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError, NonFiniteError, SolverDivergenceError
from ..linalg.base import LinearOperator
from .base import Monitor, Solver, check_float, check_int, norm

__all__ = ["LiSSASolver"]

_GROWTH_LIMIT = 1e8


class LiSSASolver(Solver):
    """LiSSA (Agarwal et al. 2017, as implemented by Koh & Liang 2017) for a square A.

    Recursion, with scale s and damping d::

        h_0 = b,   h_j = b + (1 − d) h_{j−1} − A h_{j−1} / s,   x = h_depth / s

    averaged over ``repeats`` independent runs when ``stochastic=True``.

    Fixed point: h = b + (1 − d) h − A h / s  ⇔  (A + d·s·I) h / s = b, so

        x → (A + d·s·I)⁻¹ b     (note: the effective damping is d·s, not d).

    The recursion converges iff every eigenvalue λ of A satisfies ``0 < d + λ/s < 2``. It is a
    truncated Neumann series: with M = (1 − d) I − A/s and h_0 = b,
    ``x = (1/s) (Σ_{i<depth} M^i b + M^depth b)``.

    Stochastic mode: each step uses one random batch's product ``A.batch_matvec(h, index)``
    (the operator must provide ``num_batches`` and ``batch_matvec``, as
    :class:`~geninf.linalg.curvature.HessianOperator` does); batch indices come from a
    ``torch.Generator`` seeded with ``seed``.

    Diagnostics: ``residual`` is the true ``‖b − A x‖/‖b‖`` of the returned x for the
    *undamped* A (one extra full product); ``residual_history`` holds, per step, the residual of
    the previous iterate for the damped system, ``‖b − (A + d·s·I) h_{j−1}/s‖/‖b‖ =
    ‖h_j − h_{j−1}‖/‖b‖`` (free; a noisy estimate in stochastic mode). ``converged`` is True when
    the ``tol`` criterion stopped the recursion (always False with ``tol=None``: a fixed-depth
    series). ``scale`` is s.

    Args:
        scale: s > 0; larger s = smaller, safer steps (needs s > λ_max(A)/2 at d = 0).
        damping: d ≥ 0 (Koh & Liang's ``damping``).
        depth: recursion steps per repeat.
        repeats: independent runs averaged (stochastic mode; without it runs are identical and
            one is computed).
        stochastic: use single-batch products.
        seed: seeds the batch sampling.
        tol: optional early stop when ``‖h_j − h_{j−1}‖ / ‖h_j‖ < tol``.

    Raises:
        SolverDivergenceError: h became NaN/inf or ``‖h‖ > 1e8 · ‖b‖ · depth``.
        NonFiniteError: a product ``A h`` of a finite, bounded h contains NaN/inf.
        InputError: rectangular A; ``stochastic=True`` on an operator without batches.
    """

    name = "lissa"
    rectangular = False

    def __init__(
        self,
        scale: float = 10.0,
        damping: float = 0.0,
        depth: int = 1000,
        repeats: int = 1,
        stochastic: bool = False,
        seed: int = 0,
        tol: float | None = None,
    ):
        own = "LiSSASolver"
        self.scale = check_float(own, "scale", scale, low=0.0, strict=True)
        self.damping = check_float(own, "damping", damping, low=0.0)
        self.depth = check_int(own, "depth", depth, low=1)
        self.repeats = check_int(own, "repeats", repeats, low=1)
        if not isinstance(stochastic, bool):
            raise InputError(f"{own}: stochastic must be True or False, got {stochastic!r}")
        self.stochastic = stochastic
        self.seed = check_int(own, "seed", seed, low=0)
        self.tol = check_float(own, "tol", tol, low=0.0, strict=True, allow_none=True)

    def _solve(
        self, A: LinearOperator, b: Tensor, x0: Tensor | None, mon: Monitor
    ) -> tuple[Tensor, dict[str, Any]]:
        num_batches = self._check_batches(A) if self.stochastic else 0
        gen = torch.Generator().manual_seed(self.seed)
        runs = self.repeats if self.stochastic else 1
        mon.set_total(runs * self.depth)
        b_norm = norm(b)
        total = torch.zeros_like(b)
        iterations, stopped_by_tol, last_rel = 0, True, math.nan
        for rep in range(runs):
            indices = (
                torch.randint(num_batches, (self.depth,), generator=gen).tolist()
                if self.stochastic
                else None
            )
            h = b.clone() if x0 is None else self.scale * x0
            stopped = False
            for j in range(1, self.depth + 1):
                if indices is not None:
                    Ah = A.batch_matvec(h, indices[j - 1])  # type: ignore[attr-defined]
                else:
                    Ah = A.matvec(h)
                if not bool(torch.isfinite(Ah).all()):  # h is finite and bounded here
                    raise NonFiniteError(
                        f"lissa: the operator returned NaN/inf at step {j} (repeat {rep}) for a "
                        "finite input; check the data and the model for non-finite values"
                    )
                h_new = b + (1.0 - self.damping) * h - Ah / self.scale
                h_norm, step = norm(h_new), norm(h_new - h)
                iterations += 1
                if not (math.isfinite(h_norm) and math.isfinite(step)) or (
                    h_norm > _GROWTH_LIMIT * b_norm * self.depth
                ):
                    raise SolverDivergenceError(self._divergence_message(j, rep, h_norm))
                mon.record(step / b_norm)
                h = h_new
                last_rel = step / h_norm if h_norm > 0 else 0.0
                if self.tol is not None and last_rel < self.tol:
                    stopped = True
                    break
            stopped_by_tol = stopped_by_tol and stopped
            total += h
        x = total / (runs * self.scale)
        residual = norm(b - A.matvec(x)) / b_norm
        converged = self.tol is not None and stopped_by_tol
        return x, dict(
            problem="linear",
            iterations=iterations,
            residual=residual,
            converged=converged,
            scale=self.scale,
            message=self._message(converged, runs, last_rel, residual),
        )

    def _check_batches(self, A: LinearOperator) -> int:
        nb = getattr(A, "num_batches", None)
        if not callable(getattr(A, "batch_matvec", None)) or not isinstance(nb, int) or nb < 1:
            raise InputError(
                f"LiSSASolver(stochastic=True) needs an operator with `num_batches` and "
                f"`batch_matvec(v, index)` (e.g. a HessianOperator); {type(A).__name__} has "
                "none: use stochastic=False"
            )
        return nb

    def _divergence_message(self, j: int, rep: int, h_norm: float) -> str:
        return (
            f"lissa diverged at step {j} (repeat {rep}): ‖h‖ = {h_norm:.3e} exceeds "
            f"{_GROWTH_LIMIT:.0e}·‖b‖·depth. The recursion converges only if every eigenvalue λ "
            f"of A has 0 < damping + λ/scale < 2: use a larger scale (e.g. scale="
            f"{10 * self.scale:g}) or more damping (if A is indefinite damping·scale must exceed "
            "|λ_min|), or use solver='lsmr'"
        )

    def _message(self, converged: bool, runs: int, last_rel: float, residual: float) -> str:
        note = (
            " (repeats > 1 without stochastic=True: the runs are identical, one was computed)"
            if self.repeats > 1 and not self.stochastic
            else ""
        )
        head = (
            f"stopped by tol={self.tol:g}"
            if converged
            else f"ran the full depth={self.depth} (truncated series)"
        )
        return (
            f"{head}; last relative step {last_rel:.3e}, true residual ‖b − A x‖/‖b‖ = "
            f"{residual:.3e}; x approximates (A + {self.damping * self.scale:g}·I)⁻¹ b{note}"
        )
