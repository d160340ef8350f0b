"""Iterated GIF: further Newton steps on J, re-linearized at the edited point.

The first edit solves x = argmin ‖H_{:,J} x − g‖ at θ̂. Its Newton reading is one step on the
edited training objective F (the retained risk for a removal, the corrected risk for a label
change): Δθ_J = −[H_{:,J}]⁺ ∇F(θ̂). Iterated GIF repeats it at the edited point θ′:

    Δθ′_J = −[H_{:,J} + λE_J]⁺ ∇F(θ′)      (the same H, sample and λ as the first step)

and chooses the step along Δθ′ with the same search on the validation score (t·Δθ′, t from 1).
It stops after ``iterations`` steps or as soon as a step does not raise the validation score.
Each step costs one gradient pass of F over its data (the Hessian sample when there is one) and
the products of one solve; both are charged to the edit's compute.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from ..errors import ConvergenceWarning
from ..functional import FunctionalModel
from .methods import Plan, edit_solver_options, warm_starts
from .record import ComputeUsed
from .schedules import ScheduleOutcome, search_update
from .settings import EditSettings

__all__ = ["iterate"]


def iterate(
    plan: Plan, outcome: ScheduleOutcome, s: EditSettings, compute: ComputeUsed
) -> tuple[ScheduleOutcome, list[dict[str, Any]]]:
    """Take up to ``s.opts.iterations − 1`` more steps (module docstring); return the last
    outcome that improved and one record entry per step tried."""
    history: list[dict[str, Any]] = []
    if s.opts.iterations <= 1 or plan.system is None or plan.objective is None or not s.score:
        return outcome, history
    objective, data, num = plan.objective
    lam = float(plan.extra.get("damping") or 0.0)
    current, x0 = outcome, None
    for step in range(2, s.opts.iterations + 1):
        fm = FunctionalModel(current.model, objective, check_determinism=s.opts.check_determinism)
        g = fm.gradient(data, batch_size=s.opts.batch_size)
        compute.add_gradient(num)
        system = dataclasses.replace(plan.system, gradient=-g)
        before = system.curvature.num_products
        with warnings.catch_warnings():
            if "max_iter" not in (s.opts.solver_options or {}):  # as in influence_plans
                warnings.simplefilter("ignore", ConvergenceWarning)
            res = system.solve(
                lam,
                solver=s.solver,
                solver_options=edit_solver_options(s),
                x0=x0 if warm_starts(s.solver) else None,
                progress=s.progress,
                cache_dense=True,
            )
        compute.add_hvps(system.curvature.num_products - before, num)
        if not float(res.delta.norm()) > 0.0:  # at a stationary point of F on J: done
            break
        x0 = res.delta
        nxt = search_update(
            current.model,
            plan.subset,
            res.delta,
            1.0,
            s.score,
            compute,
            max_evaluations=s.opts.max_evaluations,
        )
        improved = nxt.best_score > current.best_score
        history.append(
            {
                "step": step,
                "validation_score": nxt.best_score,
                "multiplier": nxt.search.best,
                "gradient_norm": float(g.norm()),
                "kept": improved,
            }  # fmt: skip
        )
        if not improved:
            break
        current = dataclasses.replace(nxt, alpha=current.alpha)  # α of the first step
    return current, history
