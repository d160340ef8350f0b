"""The influence-based edit directions: choosing J, then solving for x with geninf.influence.

A :class:`Plan` is what every estimator hands to a schedule: the parameters that move, the
direction x on them, and the theoretical scale of the Newton update (θ_J ← θ_J + scale · x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..influence import influence, label_change_gradient
from ..params.subset import ParameterSubset
from ..selection import Criterion, select_with_summary
from .options import EditOptions
from .record import ComputeUsed, EditMethod
from .settings import EditSettings

__all__ = ["Plan", "influence_plan", "resolve_subset", "subset_info"]


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
    """

    subset: ParameterSubset
    direction: Tensor
    scale: float
    solver: dict[str, Any] | None
    subset_info: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


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


def influence_plan(
    model: nn.Module,
    objective: Any,
    hessian_data: Any,
    num_hessian: int,
    *,
    method: EditMethod,
    subset: ParameterSubset | None,
    info: dict[str, Any],
    scale: float,
    solver: Any,
    damping: float,
    opts: EditOptions,
    compute: ComputeUsed,
    progress: bool,
    target_data: Any = None,
    num_target: int = 0,
    gradient: Tensor | None = None,
) -> Plan:
    """Solve the influence system of ``method`` (H over ``hessian_data``, g over ``target_data``
    or given) and charge its cost: the gradient pass and 2·N per HVP."""
    result = influence(
        model,
        objective,
        hessian_data,
        target_data,
        method=method.value,
        subset=subset,
        solver=solver,
        damping=damping,
        curvature=opts.curvature,
        hvp_method=opts.hvp_method,
        gradient=gradient,
        batch_size=opts.batch_size,
        solver_options=opts.solver_options,
        progress=progress,
        check_determinism=opts.check_determinism,
    )
    if target_data is not None:
        compute.add_gradient(num_target)
    compute.add_hvps(result.diagnostics.products, num_hessian)
    return Plan(
        subset=result.subset,
        direction=result.delta,
        scale=scale,
        solver=result.diagnostics.to_dict(),
        subset_info=info,
        extra={"gradient_norm": result.gradient_norm},
    )


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
