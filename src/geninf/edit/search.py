"""The ``search`` schedule: a bracketing search for the step along an edit direction.

The candidate edits are θ_J + t·s·x for multipliers t > 0 of the Newton update s·x (s the
theoretical scale of :mod:`geninf.edit.schedules`). With growth factor q (default 2):

1. **bracket**: score t = 1, then t = q, q², … while the score improves; stop after ``patience``
   consecutive multipliers that do not beat the best (ties do not count as improvements, so the
   smallest multiplier of a plateau is kept). If t = 1 stayed the best, go down instead:
   t = 1/q, 1/q², … with the same rule.
2. **refine** (``refine`` rounds): try the best t times q^(±1/2), then q^(±1/4), …; keep the best.
3. **edge check**: the search is *saturated* when the best multiplier is the largest (or
   smallest) one tried and the bracketing stopped there because it hit ``t_max`` (``t_min``) or the
   evaluation cap, not because the score fell. Then a larger (smaller) step might still be better:
   :class:`~geninf.errors.EditWarning` is issued and ``saturated`` is recorded.

Every score call is one validation evaluation; the total is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StepSearch", "bracket", "refine"]


@dataclass
class StepSearch:
    """The multipliers a search tried and what it chose.

    Attributes:
        tried: ``{t: score}`` in the order tried.
        best: the chosen multiplier t.
        best_score: its score.
        saturated: ``"upper"``/``"lower"`` when the best is on an edge the search could not pass,
            else None.
    """

    tried: dict[float, float] = field(default_factory=dict)
    best: float = 1.0
    best_score: float = -math.inf
    saturated: str | None = None

    @property
    def evaluations(self) -> int:
        """Score calls made."""
        return len(self.tried)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (multipliers sorted ascending)."""
        pairs = sorted(self.tried.items())
        return {
            "multipliers": [t for t, _ in pairs],
            "scores": [v for _, v in pairs],
            "best": self.best,
            "best_score": self.best_score,
            "saturated": self.saturated,
            "evaluations": self.evaluations,
        }


def _try(state: StepSearch, score: Callable[[float], float], t: float) -> bool:
    """Score t (once); return True when it beats the best so far."""
    if t in state.tried:
        return False
    value = float(score(t))
    state.tried[t] = value
    if value > state.best_score:
        state.best, state.best_score = t, value
        return True
    return False


def bracket(
    score: Callable[[float], float],
    *,
    growth: float,
    patience: int,
    t_min: float,
    t_max: float,
    max_evaluations: int,
) -> StepSearch:
    """Step 1 of the module docstring: grow (or shrink) t geometrically from 1."""
    state = StepSearch()
    _try(state, score, 1.0)
    capped = {}
    for direction in (growth, 1.0 / growth):
        t, misses, capped[direction > 1] = 1.0, 0, False
        while misses < patience:
            t *= direction
            if not t_min <= t <= t_max or state.evaluations >= max_evaluations:
                capped[direction > 1] = True
                break
            misses = 0 if _try(state, score, t) else misses + 1
        if state.best != 1.0:
            break  # the growth found a better step: no need to go down
    if capped.get(True) and state.best == max(state.tried):
        state.saturated = "upper"
    elif capped.get(False) and state.best == min(state.tried):
        state.saturated = "lower"
    return state


def refine(
    state: StepSearch,
    score: Callable[[float], float],
    *,
    growth: float,
    rounds: int,
    t_min: float,
    t_max: float,
) -> StepSearch:
    """Step 2 of the module docstring: try the best t times growth^(±2^-i), i = 1..rounds."""
    for i in range(1, rounds + 1):
        factor = growth ** (0.5**i)
        centre = state.best
        for t in (centre * factor, centre / factor):
            if t_min <= t <= t_max:
                _try(state, score, t)
    if state.saturated == "upper" and state.best < max(state.tried):
        state.saturated = None
    if state.saturated == "lower" and state.best > min(state.tried):
        state.saturated = None
    return state
