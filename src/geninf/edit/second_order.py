"""Second-order group influence (Basu, You & Feizi 2020; method.md §4) for removing a group U.

With S the full training set (m examples), U ⊂ S the r removed ones, p = r/m, H the Hessian of
the mean loss over S (plus damping·I), H_U that over U and g_U the gradient of the mean loss over
U, all at the trained θ̂:

    I¹ = (1 − 2p)/(1 − p)² · p · H⁻¹ g_U
    I″ = 1/(1 − p)² · p² · H⁻¹ H_U H⁻¹ g_U
    Δθ ≈ I¹ + I″,      θ ← θ̂ + Δθ   (every parameter)

Sign convention. Δθ is *added* to θ̂, like the first-order removal update
``removal_scale · H_R⁻¹ g_U`` of :mod:`geninf.influence`. Check: with H_R = (H − p H_U)/(1 − p)
the Hessian of the retained mean loss, the Newton removal step is
``p/(1 − p) · H_R⁻¹ g_U = p (H − p H_U)⁻¹ g_U = p H⁻¹ g_U + p² H⁻¹ H_U H⁻¹ g_U + O(p³)``, while
``I¹ + I″ = p H⁻¹ g_U + p² H⁻¹ H_U H⁻¹ g_U + O(p³)`` — the same series to second order, so the
published formula, with this sign, is a removal update (it moves θ̂ towards the optimum of the
retained loss; ⟨g_U, Δθ⟩ > 0: the loss on U rises).

Cost: one gradient pass over U, two solves with H over S, one product with H_U.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..data import as_batches
from ..functional import FunctionalModel
from ..linalg.base import LinearOperator
from ..linalg.curvature import HessianOperator
from ..solvers import SolveResult, get_solver
from .damping import curvature_scale
from .datautil import ChainedData
from .record import ComputeUsed

__all__ = ["SecondOrderTerms", "second_order_terms"]


@dataclass
class SecondOrderTerms:
    """The two terms of the second-order group influence (flat, every parameter).

    Attributes:
        first: I¹ = (1 − 2p)/(1 − p)² · p · H⁻¹ g_U.
        second: I″ = p²/(1 − p)² · H⁻¹ H_U H⁻¹ g_U.
        p: |U|/|S|.
        diagnostics: ``{"first": ..., "second": ...}``, the diagnostics of the two solves.
    """

    first: Tensor
    second: Tensor
    p: float
    diagnostics: dict[str, Any]

    @property
    def total(self) -> Tensor:
        """Δθ = I¹ + I″ (add it to θ̂)."""
        return self.first + self.second


def second_order_terms(
    model: nn.Module,
    objective: Any,
    retain_data: Any,
    forget_data: Any,
    *,
    num_retain: int,
    num_forget: int,
    solver: Any = "auto",
    damping: float = 0.0,
    batch_size: int | None = None,
    hvp_method: str = "reverse_cached",
    solver_options: dict[str, Any] | None = None,
    check_determinism: bool = True,
    progress: bool = False,
    compute: ComputeUsed | None = None,
    relative_damping: float | None = None,
    seed: int = 0,
) -> SecondOrderTerms:
    """Compute I¹ and I″ (module docstring) for removing ``forget_data`` from the training set
    ``retain_data ∪ forget_data`` (``num_retain`` and ``num_forget`` examples). p uses these
    counts; ``retain_data`` may be a sample of the retained set (its products are charged for
    the examples it holds).

    With ``relative_damping`` ρ, λ = ρ·‖H‖₂ (estimated by :func:`~geninf.edit.damping.
    curvature_scale` with ``seed``) replaces ``damping``; the λ used is in the diagnostics."""
    compute = compute if compute is not None else ComputeUsed()
    fm = FunctionalModel(model, objective, check_determinism=check_determinism)
    forget = as_batches(forget_data, batch_size, name="forget_data")
    retain = as_batches(retain_data, batch_size, name="retain_data")
    m = num_retain + num_forget
    p = num_forget / m
    kw = {"method": hvp_method, "check_determinism": check_determinism}
    HU = HessianOperator(fm, None, forget, **kw)
    g = fm.gradient(forget)
    compute.add_gradient(HU.num_examples)  # the examples g saw (a sample with forget_examples)
    H0 = _full_hessian(fm, retain, forget, HU, (num_retain, num_forget), kw)
    lam = _damping(H0, damping, relative_damping, seed, compute)
    H = H0.damped(lam)
    the_solver = get_solver(solver, **(solver_options or {}))
    s = the_solver.solve(H, g, progress=progress)
    s.diagnostics.warn_if_unconverged("second_order: ", stacklevel=2)
    v = HU.matvec(s.x)
    t = the_solver.solve(H, v, progress=progress)
    t.diagnostics.warn_if_unconverged("second_order: ", stacklevel=2)
    compute.add_hvps(s.diagnostics.products + t.diagnostics.products, H0.num_examples)
    compute.add_hvps(1, HU.num_examples)
    return _terms(s, t, p, lam)


class _Mixture(LinearOperator):
    """H = (1 − p)·H_R + p·H_U from the mean Hessians of two data sets (one product of each per
    product); ``num_examples`` is what one product passes over."""

    def __init__(self, HR: HessianOperator, HU: HessianOperator, p: float):
        self.parts, self.p = (HR, HU), float(p)
        self.shape, self.dtype, self.device = HR.shape, HR.dtype, HR.device
        self.symmetric = True

    @property
    def num_products(self) -> int:
        return self.parts[0].num_products

    @property
    def num_examples(self) -> int:
        return self.parts[0].num_examples + self.parts[1].num_examples

    def _matvec(self, v: Tensor) -> Tensor:
        return (1.0 - self.p) * self.parts[0].matvec(v) + self.p * self.parts[1].matvec(v)


def _full_hessian(fm, retain, forget, HU, counts, kw) -> LinearOperator:
    """The Hessian of the mean loss over S = R ∪ U: one operator over R and U chained when the
    data hold them in S's proportions (all of both), else the mixture (1 − p)·H_R + p·H_U with
    p = r/m from the full counts, so a sample of either (``hessian_examples``,
    ``forget_examples``) keeps each set's weight."""
    num_retain, num_forget = counts
    HR = HessianOperator(fm, None, retain, **kw)
    if HR.num_examples * num_forget == HU.num_examples * num_retain:
        return HessianOperator(fm, None, ChainedData(retain, forget), **kw)
    return _Mixture(HR, HU, num_forget / (num_retain + num_forget))


def _damping(
    H0: HessianOperator,
    damping: float,
    relative_damping: float | None,
    seed: int,
    compute: ComputeUsed,
) -> float:
    """λ: ``damping``, or ρ·‖H‖₂ for ``relative_damping`` ρ (the estimate's products charged)."""
    lam = float(damping)
    if relative_damping is not None:
        scale, used = curvature_scale(H0, seed=seed)
        compute.add_hvps(used, H0.num_examples)
        lam = float(relative_damping) * scale
    return lam


def _terms(s: SolveResult, t: SolveResult, p: float, lam: float) -> SecondOrderTerms:
    """I¹ and I″ from s = H⁻¹ g_U and t = H⁻¹ H_U s (module docstring)."""
    c1 = (1.0 - 2.0 * p) / (1.0 - p) ** 2 * p
    c2 = p**2 / (1.0 - p) ** 2
    return SecondOrderTerms(
        first=(c1 * s.x).detach(),
        second=(c2 * t.x).detach(),
        p=p,
        diagnostics={
            "first": s.diagnostics.to_dict(),
            "second": t.diagnostics.to_dict(),
            "damping": lam,
        },
    )
