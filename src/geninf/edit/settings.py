"""Validation of the arguments shared by :func:`~geninf.edit.remove` and ``relabel``."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .._seed import check_seed
from ..errors import InputError
from ..params.subset import ParameterSubset
from .damping import DampingSpec, parse_damping
from .options import EditOptions, parse_options
from .record import EditMethod, Schedule
from .validation import ValidationScore, resolve_validation

__all__ = ["SETTING_NAMES", "EditSettings", "check_call", "check_settings"]


@dataclass(frozen=True)
class EditSettings:
    """The validated arguments of an edit."""

    method: EditMethod
    schedule: Schedule
    score: ValidationScore | None
    validation_info: dict[str, Any] | None
    ratio: float
    damping: DampingSpec
    seed: int
    budget: int | None
    subset: ParameterSubset | None
    opts: EditOptions
    progress: bool
    criterion: Any = "highest_gradients"
    solver: Any = "auto"

    def record_options(self) -> dict[str, Any]:
        """Every argument and option, JSON-ready, for the edit record."""
        return {
            "method": self.method.value,
            "schedule": self.schedule.value,
            "criterion": str(getattr(self.criterion, "value", self.criterion)),
            "ratio": self.ratio,
            "solver": self.solver if isinstance(self.solver, str) else repr(self.solver),
            "damping": (
                self.damping.value if self.damping.mode == "absolute" else self.damping.describe()
            ),
            "seed": self.seed,
            "budget": self.budget,
            "subset_given": self.subset is not None,
            **self.opts.to_dict(),
        }


#: the arguments of remove/relabel that :func:`check_settings` validates
SETTING_NAMES = (
    "method",
    "schedule",
    "validation",
    "ratio",
    "damping",
    "seed",
    "budget",
    "subset",
    "options",
    "progress",
    "criterion",
    "solver",
)


def check_call(arguments: Mapping[str, Any]) -> EditSettings:
    """:func:`check_settings` of the arguments of a call of ``remove`` or ``relabel`` (their
    ``locals()``: every name of :data:`SETTING_NAMES`, the ``**options`` as ``options``)."""
    return check_settings(**{name: arguments[name] for name in SETTING_NAMES})


def check_settings(
    *,
    method: Any,
    schedule: Any,
    validation: Any,
    ratio: Any,
    damping: Any,
    seed: Any,
    budget: Any,
    subset: Any,
    options: dict[str, Any],
    progress: Any = False,
    criterion: Any = "highest_gradients",
    solver: Any = "auto",
) -> EditSettings:
    """Validate everything that does not need the data (errors are one-line InputErrors)."""
    opts = parse_options(options)
    the_method = EditMethod.parse(method)
    the_schedule = Schedule.parse(schedule)
    score, info = resolve_validation(validation)
    the_schedule = _schedule(the_schedule, score)
    _check_subset(subset, the_method)
    if the_method is EditMethod.SECOND_ORDER and opts.curvature != "hessian":
        raise InputError(
            "method='second_order' uses the Hessian (H and H_U of method.md §4); drop "
            f"curvature={opts.curvature!r}"
        )
    the_budget = _budget(budget, the_method)
    return EditSettings(
        method=the_method,
        schedule=the_schedule,
        score=score,
        validation_info=info,
        ratio=_ratio(ratio),
        damping=parse_damping(damping),
        seed=_seed(seed),
        budget=the_budget,
        subset=subset,
        opts=opts,
        progress=bool(progress),
        criterion=criterion,
        solver=solver,
    )


def _schedule(the_schedule: Schedule, score: ValidationScore | None) -> Schedule:
    """``auto`` resolved; ``search`` and ``paper`` refused without a validation score."""
    if the_schedule is Schedule.AUTO:
        the_schedule = Schedule.NEWTON if score is None else Schedule.SEARCH
    if the_schedule in (Schedule.PAPER, Schedule.SEARCH) and score is None:
        raise InputError(
            f"schedule={the_schedule.value!r} chooses the step on validation data: pass "
            "validation=ClassRemovalValidation(val_data, forget_class) or a callable "
            "score(model) built on the validation split (never on test data), or use "
            "schedule='newton'"
        )
    return the_schedule


def _check_subset(subset: Any, method: EditMethod) -> None:
    if subset is not None and not isinstance(subset, ParameterSubset):
        raise InputError(
            f"subset must be a ParameterSubset (see geninf.select), got {type(subset).__name__}"
        )
    if subset is not None and not method.uses_subset and not subset.is_all:
        raise InputError(
            f"method={method.value!r} moves every parameter; drop subset= or use "
            "method='gif', 'freezing' or 'projecting' for a subset"
        )


def _budget(budget: Any, method: EditMethod) -> int | None:
    if budget is None:
        return None
    if not method.is_baseline:
        raise InputError(
            f"budget applies to method='finetune' or 'gradient_ascent' only, not "
            f"{method.value!r}; drop budget="
        )
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 1:
        raise InputError(
            f"budget must be a positive int (example-gradient evaluations), got {budget!r}"
        )
    return int(budget)


def _ratio(ratio: Any) -> float:
    if isinstance(ratio, Tensor) and ratio.numel() == 1:
        ratio = ratio.item()
    ok = isinstance(ratio, numbers.Real) and not isinstance(ratio, bool)
    if not ok or not 0.0 < float(ratio) <= 1.0:
        raise InputError(
            f"ratio must be in (0, 1] (the fraction of each layer to select), got {ratio!r}; "
            "e.g. ratio=0.05 selects 5% of every layer"
        )
    return float(ratio)


def _seed(seed: Any) -> int:
    return check_seed(seed)
