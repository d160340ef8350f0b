"""The influence-based edit directions: choosing J, then solving for x with geninf.influence.

A :class:`Plan` is what every estimator hands to a schedule: the parameters that move, the
direction x on them, and the theoretical scale of the Newton update (θ_J ← θ_J + scale · x).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..defaults import EDIT_DEFAULTS
from ..errors import ConvergenceWarning
from ..influence import influence_system, label_change_gradient
from ..params.subset import ParameterSubset
from ..selection import Criterion, select_with_summary
from .damping import curvature_scale
from .options import EditOptions
from .record import ComputeUsed, EditMethod
from .settings import EditSettings

__all__ = ["Plan", "damping_values", "influence_plans", "resolve_subset", "subset_info"]


@dataclass
class Plan:
    """An estimated edit: θ_J ← θ_J + scale · direction (before a schedule is applied).

    Attributes:
        subset: J.
        direction: x, ordered like ``subset.flat_indices``.
        scale: the theoretical factor of the Newton update.
        solver: solver diagnostics (JSON-ready).
        subset_info: the record's subset summary.
        extra: method-specific details.
        system: the influence system solved (for re-solving with another right-hand side).
        objective: ``(objective, data, examples)`` of the edited training objective, whose
            gradient iterated GIF re-linearizes at the edited point.
    """

    subset: ParameterSubset
    direction: Tensor
    scale: float
    solver: dict[str, Any] | None
    subset_info: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    system: Any = field(default=None, repr=False)
    objective: tuple[Any, Any, int] | None = field(default=None, repr=False)


def subset_info(subset: ParameterSubset, source: str, selection: Any = None) -> dict[str, Any]:
    """The record's account of J: totals and selected/total per parameter tensor."""
    return {
        "source": source,
        "selected": len(subset),
        "total": subset.num_total,
        "fraction": len(subset) / subset.num_total,
        "per_tensor": {
            name: {"selected": row["selected"], "total": row["total"]}
            for name, row in subset.summary().items()
        },
        "selection": selection.to_dict() if selection is not None else None,
    }


def resolve_subset(
    model: nn.Module,
    objective: Any,
    data: Any,
    method: EditMethod,
    s: EditSettings,
    compute: ComputeUsed,
) -> tuple[ParameterSubset | None, dict[str, Any]]:
    """J for ``method``: ``s.subset``, a selection from ``data``, or all parameters.

    Returns ``(subset or None for "all parameters", record summary)``.
    """
    if not method.uses_subset:  # every parameter (a partial subset was refused by the settings)
        everything = ParameterSubset.all(model)
        return None, subset_info(everything, "all parameters")
    if s.subset is not None:
        return s.subset, subset_info(s.subset, "given")
    crit = Criterion.parse(s.criterion)
    chosen, summary = select_with_summary(
        model,
        objective,
        data,
        criterion=crit,
        ratio=s.ratio,
        seed=s.seed,
        max_examples=s.opts.max_examples,
        batch_size=s.opts.batch_size,
        exclude_normalization=s.opts.exclude_normalization,
    )
    if crit.uses_gradients:
        compute.add_gradient(summary.num_examples)
    elif crit.is_ranking:
        compute.forward_examples += summary.num_examples
    return chosen, subset_info(chosen, f"select(criterion={crit.value!r})", summary)


def influence_plans(
    model: nn.Module,
    objective: Any,
    hessian_data: Any,
    num_hessian: int,
    *,
    method: EditMethod,
    subset: ParameterSubset | None,
    info: dict[str, Any],
    scale: float,
    s: EditSettings,
    compute: ComputeUsed,
    target_data: Any = None,
    num_target: int = 0,
    gradient: Tensor | None = None,
) -> list[Plan]:
    """Solve the influence system of ``method`` (H over ``hessian_data``, g over ``target_data``
    or given) for every damping λ the settings ask for, largest λ first, each solve
    warm-started from the previous one; charge the gradient pass and 2·N per product.

    ``damping="auto"`` with a validation score gives one plan per value of the damping path;
    any other setting one plan. Every plan's ``extra["damping_info"]`` describes the choice.
    """
    system = influence_system(
        model,
        objective,
        hessian_data,
        target_data,
        method=method.value,
        subset=subset,
        curvature=s.opts.curvature,
        hvp_method=s.opts.hvp_method,
        gradient=gradient,
        batch_size=s.opts.batch_size,
        check_determinism=s.opts.check_determinism,
    )
    if target_data is not None:
        compute.add_gradient(num_target)
    H = system.curvature
    before = H.num_products
    lambdas, damping_info = damping_values(H, s)
    plans = _solve_path(system, lambdas, s, scale, info)
    compute.add_hvps(H.num_products - before, num_hessian)
    for plan in plans:
        plan.extra["damping_info"] = damping_info
    return plans


def _solve_path(
    system: Any, lambdas: list[float], s: EditSettings, scale: float, info: dict[str, Any]
) -> list[Plan]:
    """One plan per λ of ``lambdas``, each solve warm-started from the previous solution."""
    H = system.curvature
    options = edit_solver_options(s)
    plans, x0 = [], None
    # the default iteration cap truncates on purpose (a regularizer, with the residual in the
    # record): only a cap the caller chose warns when it stops the solver short
    truncated_by_default = "max_iter" not in (s.opts.solver_options or {})
    for lam in lambdas:
        used = H.num_products
        with warnings.catch_warnings():
            if truncated_by_default:
                warnings.simplefilter("ignore", ConvergenceWarning)
            res = system.solve(
                lam,
                solver=s.solver,
                solver_options=options,
                x0=x0 if warm_starts(s.solver) else None,
                progress=s.progress,
                cache_dense=len(lambdas) > 1,
            )
        solver_info = {**res.diagnostics.to_dict(), "curvature_products": H.num_products - used}
        extra = {"gradient_norm": res.gradient_norm, "damping": lam}
        plans.append(Plan(res.subset, res.delta, scale, solver_info, info, extra, system))
        x0 = res.delta
    return plans


def damping_values(H: Any, s: EditSettings) -> tuple[list[float], dict[str, Any]]:
    """The absolute λ to solve for (largest first) and the record's account of them."""
    spec = s.damping
    info: dict[str, Any] = {"spec": spec.describe(), "scale": None, "scale_products": 0}
    if not spec.needs_scale:
        return [float(spec.value or 0.0)], {**info, "path": None, "lambdas": [spec.value]}
    scale, used = curvature_scale(H, iterations=EDIT_DEFAULTS.scale_iterations, seed=s.seed)
    info.update(scale=scale, scale_products=used)
    if spec.mode == "relative":
        path = (float(spec.value or 0.0),)
    elif s.score is None:
        path = (EDIT_DEFAULTS.damping_fallback,)
        info["fallback"] = "no validation score: the documented relative fallback"
    else:
        path = tuple(s.opts.damping_path)
    lambdas = [rho * scale for rho in path]
    return lambdas, {**info, "path": list(path), "lambdas": lambdas}


def edit_solver_options(s: EditSettings) -> dict[str, Any] | None:
    """Solver options with the edit defaults' tolerance and cap for iterative solvers by name."""
    given = dict(s.opts.solver_options or {})
    name = s.solver.strip().lower() if isinstance(s.solver, str) else None
    if name in ("auto", "lsmr", "cg"):
        given.setdefault("tol", EDIT_DEFAULTS.solver_tol)
        given.setdefault("max_iter", EDIT_DEFAULTS.solver_max_iter)
    if name == "auto":
        given.setdefault("max_dense", EDIT_DEFAULTS.solver_max_dense)
    return given or None


def warm_starts(solver: Any) -> bool:
    """True for the solvers that continue from an initial guess (auto, lsmr, cg)."""
    return isinstance(solver, str) and solver.strip().lower() in ("auto", "lsmr", "cg")


def label_change_rhs(
    model: nn.Module,
    objective: Any,
    old: tuple[Tensor, ...],
    new: tuple[Tensor, ...],
    num_train: int,
    opts: EditOptions,
    compute: ComputeUsed,
) -> Tensor:
    """g = (1/m) Σ_W [∇ℓ(z_i) − ∇ℓ(z'_i)], charged as two gradient passes over the r changes."""
    g = label_change_gradient(model, objective, old, new, num_train, batch_size=opts.batch_size)
    compute.add_gradient(2 * int(old[0].shape[0]), passes=2)
    return g
