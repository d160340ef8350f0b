"""Applying an estimated direction x to a copy of the model: the two schedules.

- ``newton``: θ_J ← θ_J + scale · x, scale the theoretical factor (r/(m − r) for removal, 1 for a
  label change or the second-order estimate, which already carries its scale).
- ``search`` (the default with validation): a bracketing search over multipliers t of the
  Newton update, θ_J ← θ_J + t · scale · x (:mod:`geninf.edit.search`).
- ``paper``: the authors' procedure. For every γ in ``gammas``: θ_J ← θ_J + k · γ · x/‖x‖ for
  k = 1..max_steps, scoring each k on validation; return the (γ, k) with the highest score (the
  first one met on ties: smallest γ of the grid order, then smallest k). The scale of x is
  irrelevant here, only its direction (and sign) matters.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..defaults import EDIT_DEFAULTS
from ..errors import InputError
from ..params.subset import ParameterSubset
from .record import ComputeUsed
from .search import StepSearch, bracket, refine
from .validation import ValidationScore, evaluate_score

__all__ = [
    "ScheduleOutcome",
    "describe_outcome",
    "newton_update",
    "paper_search",
    "refine_search",
    "search_update",
]


@dataclass
class ScheduleOutcome:
    """The edited copy and how the schedule chose it.

    Attributes:
        model: the edited deep copy.
        alpha: the multiplier applied to x (θ_J ← θ_J + alpha · x).
        steps: k (paper) or None.
        gamma: γ (paper) or None.
        best_score: the validation score of ``model`` (None without validation).
        scores: ``{str(γ): [score of k = 1, 2, ...]}`` (paper) or None.
        search: the step search's state (search) or None.
    """

    model: nn.Module
    alpha: float
    steps: int | None = None
    gamma: float | None = None
    best_score: float | None = None
    scores: dict[str, list[float]] | None = field(default=None)
    search: StepSearch | None = field(default=None)


def newton_update(
    model: nn.Module,
    subset: ParameterSubset,
    direction: Tensor,
    scale: float,
    score: ValidationScore | None,
    compute: ComputeUsed,
) -> ScheduleOutcome:
    """θ_J ← θ_J + scale · x on a deep copy; scored on validation when a score is given."""
    edited = subset.apply(model, direction, alpha=float(scale))
    best = None
    if score is not None:
        best = evaluate_score(score, edited)
        compute.validation_evaluations += 1
    return ScheduleOutcome(model=edited, alpha=float(scale), best_score=best)


def paper_search(
    model: nn.Module,
    subset: ParameterSubset,
    direction: Tensor,
    score: ValidationScore,
    gammas: tuple[float, ...],
    max_steps: int,
    compute: ComputeUsed,
    *,
    progress: bool = False,
) -> ScheduleOutcome:
    """The ``paper`` schedule (module docstring); every choice is made by ``score`` alone."""
    norm = float(direction.norm())
    if not norm > 0.0:
        raise InputError(
            "the estimated direction is zero (the gradient of the edited data vanishes on the "
            "chosen parameters); nothing to schedule: select other parameters or check the data"
        )
    unit = direction / norm
    best: tuple[float, float, int] | None = None  # (score, gamma, k)
    scores: dict[str, list[float]] = {}
    bar = tqdm(total=len(gammas) * max_steps, desc="paper schedule", disable=not progress)
    try:
        for gamma in gammas:
            work = copy.deepcopy(model)
            row = scores.setdefault(f"{gamma:g}", [])
            for k in range(1, max_steps + 1):
                subset.apply(work, unit, alpha=gamma, inplace=True)
                value = evaluate_score(score, work)
                compute.validation_evaluations += 1
                row.append(value)
                if best is None or value > best[0]:
                    best = (value, gamma, k)
                bar.update(1)
    finally:
        bar.close()
    assert best is not None
    value, gamma, k = best
    alpha = k * gamma / norm
    edited = subset.apply(model, direction, alpha=alpha)
    return ScheduleOutcome(
        model=edited, alpha=alpha, steps=k, gamma=gamma, best_score=value, scores=scores
    )


def _scorer(model, subset, direction, scale, score, compute):
    """``evaluate(t)``: the score of θ_J + t·scale·x, on one working copy of ``model`` whose
    touched tensors are reset to ``model``'s before each step (the same arithmetic as editing a
    fresh copy, without a deep copy per evaluation)."""
    work = copy.deepcopy(model)
    touched = [name for name, row in subset.summary().items() if row["selected"]]
    originals = dict(model.named_parameters())
    params = dict(work.named_parameters())

    def evaluate(t: float) -> float:
        with torch.no_grad():
            for name in touched:
                params[name].copy_(originals[name])
        subset.apply(work, direction, alpha=t * scale, inplace=True)
        compute.validation_evaluations += 1
        return evaluate_score(score, work)

    return evaluate


def search_update(
    model: nn.Module,
    subset: ParameterSubset,
    direction: Tensor,
    scale: float,
    score: ValidationScore,
    compute: ComputeUsed,
    *,
    max_evaluations: int,
    refine_rounds: int = EDIT_DEFAULTS.step_refine,
) -> ScheduleOutcome:
    """The ``search`` schedule (:mod:`geninf.edit.search`): bracket, then ``refine_rounds``
    rounds of refinement; returns the edited copy at the best multiplier."""
    if not float(direction.norm()) > 0.0 or not scale > 0.0:
        raise InputError(
            "the estimated direction is zero (the gradient of the edited data vanishes on the "
            "chosen parameters); nothing to schedule: select other parameters or check the data"
        )
    d = EDIT_DEFAULTS
    state = bracket(
        _scorer(model, subset, direction, scale, score, compute),
        growth=d.step_growth,
        patience=d.step_patience,
        t_min=d.step_min,
        t_max=d.step_max,
        max_evaluations=max_evaluations,
    )
    return refine_search(model, state, subset, direction, scale, score, compute, refine_rounds)


def refine_search(
    model: nn.Module,
    state: StepSearch,
    subset: ParameterSubset,
    direction: Tensor,
    scale: float,
    score: ValidationScore,
    compute: ComputeUsed,
    rounds: int,
) -> ScheduleOutcome:
    """Refine a bracketed search of the *unedited* ``model`` ``rounds`` times; return the edited
    copy at its best multiplier."""
    d = EDIT_DEFAULTS
    evaluate = _scorer(model, subset, direction, scale, score, compute)
    refine(state, evaluate, growth=d.step_growth, rounds=rounds, t_min=d.step_min, t_max=d.step_max)
    alpha = state.best * scale
    return ScheduleOutcome(
        model=subset.apply(model, direction, alpha=alpha),
        alpha=alpha,
        best_score=state.best_score,
        search=state,
    )


def describe_outcome(outcome: ScheduleOutcome) -> dict[str, Any]:
    """The schedule fields of an :class:`~geninf.edit.EditRecord`."""
    return {
        "steps": outcome.steps,
        "gamma": outcome.gamma,
        "validation_score": outcome.best_score,
        "schedule_scores": outcome.scores,
        "step_search": outcome.search.to_dict() if outcome.search is not None else None,
    }
