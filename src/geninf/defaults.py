"""The one set of editing defaults, shared by the library, the command line and the demo.

:func:`geninf.edit.remove`, :func:`geninf.edit.relabel`, ``geninf remove``/``relabel``,
``geninf demo`` and the experiment runners all read their defaults from :data:`EDIT_DEFAULTS`;
a test compares them, so they cannot drift apart.

How the values were chosen (README, "Robust defaults"): on the *tuning* problems of
``benchmarks/robustness.py`` only (``--split tune``); the other problems of that suite were run
with the values fixed and are the ones the README reports as unseen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["EDIT_DEFAULTS", "EditDefaults"]


@dataclass(frozen=True)
class EditDefaults:
    """Default settings of an edit.

    Attributes:
        method: the edit method.
        criterion: the parameter-selection criterion.
        ratio: the fraction of each layer selected.
        schedule: ``"auto"``: the step search when a validation score is given, else the
            one-step Newton update.
        damping: ``"auto"``: λ = ρ·‖H‖ with ρ chosen on validation from :attr:`damping_path`,
            or ρ = :attr:`damping_fallback` without validation.
        damping_path: the relative dampings ρ tried by ``damping="auto"`` (largest first).
        damping_fallback: the relative damping used without validation data.
        scale_iterations: power-iteration products that estimate ‖H‖ (the curvature scale).
        solver: the solver name.
        solver_tol: the solver's relative tolerance.
        solver_max_iter: the solver's iteration cap per damping value (a truncated Krylov solve
            regularizes too; each value of the path warm-starts from the previous solution).
        solver_max_dense: ``auto`` materializes systems of at most this many columns (0: never,
            the products of an iterative solve are far fewer than one per column).
        step_growth: the factor between the step multipliers the search tries.
        step_patience: consecutive non-improving multipliers that end the bracketing.
        step_refine: halvings of the growth exponent around the best multiplier.
        step_min: the smallest multiplier of the Newton step the search may try.
        step_max: the largest multiplier of the Newton step the search may try.
    """

    method: str = "gif"
    criterion: str = "highest_gradients"
    ratio: float = 0.1
    schedule: str = "auto"
    damping: str = "auto"
    damping_path: tuple[float, ...] = (1.0, 1e-1, 1e-2, 1e-3, 1e-4)
    damping_fallback: float = 1e-2
    scale_iterations: int = 10
    solver: str = "auto"
    solver_tol: float = 1e-4
    solver_max_iter: int = 10
    solver_max_dense: int = 0
    step_growth: float = 2.0
    step_patience: int = 2
    step_refine: int = 2
    step_min: float = 2.0**-10
    step_max: float = 2.0**16

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every default."""
        return asdict(self)


#: the defaults every entry point uses
EDIT_DEFAULTS = EditDefaults()
