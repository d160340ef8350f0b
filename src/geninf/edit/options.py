"""Keyword options of :func:`geninf.edit.remove` and :func:`geninf.edit.relabel`, validated."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..defaults import EDIT_DEFAULTS
from ..errors import InputError
from ..linalg.curvature import DEFAULT_HVP_METHOD, HVPMethod
from .damping import parse_path

__all__ = ["EditOptions", "parse_options"]


@dataclass(frozen=True)
class EditOptions:
    """The ``**options`` of the editing functions.

    Attributes:
        batch_size: examples per batch when gradients and Hessian products stream over tensor
            data (None: the library default).
        hvp_method: an :class:`~geninf.linalg.HVPMethod` value.
        curvature: ``"hessian"`` or ``"gauss_newton"`` (influence methods).
        solver_options: keyword options for a solver given by name.
        check_determinism: refuse train-mode dropout/batch norm and shuffling loaders.
        max_examples: cap on the examples a selection criterion looks at.
        exclude_normalization: never select normalization-layer parameters.
        gammas: the step norms γ the ``"paper"`` schedule tries.
        max_steps: the largest step count k the ``"paper"`` schedule tries.
        optimizer: ``"adam"`` or ``"sgd"`` (baselines).
        lr: the baselines' learning rate.
        unlearning_options: hyper-parameters of the unlearning baselines (``l1_strength``,
            ``salun_fraction``, ``scrub_alpha``, ``scrub_temperature``, ``scrub_max_fraction``;
            see :mod:`geninf.edit.unlearning`); None: their defaults.
        train_batch_size: the baselines' mini-batch size.
        checkpoints: with the ``"paper"`` or ``"search"`` schedule, how many evenly spaced
            checkpoints of a baseline run are scored on validation.
        damping_path: the relative dampings ρ (λ = ρ·‖H‖₂) that ``damping="auto"`` tries.
        max_evaluations: the cap on validation evaluations of one step search.
        hessian_examples: the size of a stratified, seeded sample of the Hessian data (the
            retained data for removal, the data as trained for a label change) over which H is
            computed; None uses all of it. The counts of the Newton scale r/(m − r) stay those of
            the full data.
        forget_examples: the size k of a stratified, seeded sample of the examples removed
            (``remove``) or changed (``relabel``) over which the gradient g is computed; None
            (or k = r) uses all r of them. The summed gradient is estimated by the sample mean
            times r (unbiased for a one-class forget set; see :mod:`geninf.edit.plans` for the
            bias of rounded class quotas and the variance), so the Newton scale keeps the full
            counts. The parameter selection and the step search then see the sample's direction.
            More than r is refused.
        iterations: Newton steps of iterated GIF (influence methods with a validation score):
            after the first edit, re-linearize at the edited point — the gradient of the edited
            training objective there, the same H — and search a step along the new direction;
            stop when the validation score stops improving. 1: the plain one-step edit.
    """

    batch_size: int | None = None
    hvp_method: str = DEFAULT_HVP_METHOD.value
    curvature: str = "hessian"
    solver_options: dict[str, Any] | None = None
    check_determinism: bool = True
    max_examples: int | None = None
    exclude_normalization: bool = False
    gammas: tuple[float, ...] = (0.03, 0.1, 0.3)
    max_steps: int = 30
    optimizer: str = "adam"
    lr: float = 1e-3
    train_batch_size: int = 64
    checkpoints: int = 20
    damping_path: tuple[float, ...] = EDIT_DEFAULTS.damping_path
    max_evaluations: int = 24
    hessian_examples: int | None = None
    forget_examples: int | None = None
    iterations: int = 1
    unlearning_options: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_options(options: dict[str, Any]) -> EditOptions:
    """Validate ``**options`` into :class:`EditOptions`.

    Raises:
        InputError: an unknown option or a bad value.
    """
    known = [f.name for f in fields(EditOptions)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(
            f"unknown option(s) {', '.join(unknown)}; the editing options are: {', '.join(known)}"
        )
    o = dict(options)
    _positive_int(o, "batch_size", allow_none=True)
    _positive_int(o, "max_examples", allow_none=True)
    _positive_int(o, "max_steps")
    _positive_int(o, "train_batch_size")
    _positive_int(o, "checkpoints")
    _positive_int(o, "max_evaluations")
    _positive_int(o, "iterations")
    _positive_int(o, "hessian_examples", allow_none=True)
    _positive_int(o, "forget_examples", allow_none=True)
    if "damping_path" in o:
        o["damping_path"] = parse_path(o["damping_path"])
    if "hvp_method" in o:
        o["hvp_method"] = _choice("hvp_method", o["hvp_method"], [m.value for m in HVPMethod])
    if "curvature" in o:
        o["curvature"] = _choice("curvature", o["curvature"], ["hessian", "gauss_newton"])
    if "optimizer" in o:
        o["optimizer"] = _choice("optimizer", o["optimizer"], ["adam", "sgd"])
    if "lr" in o:
        o["lr"] = _positive_float("lr", o["lr"])
    if "gammas" in o:
        o["gammas"] = _gammas(o["gammas"])
    for name in ("check_determinism", "exclude_normalization"):
        if name in o and not isinstance(o[name], bool):
            raise InputError(f"option {name} must be True or False, got {o[name]!r}")
    if o.get("solver_options") is not None and not isinstance(o["solver_options"], dict):
        raise InputError(f"solver_options must be a dict, got {type(o['solver_options']).__name__}")
    if o.get("unlearning_options") is not None:
        from .unlearning import check_unlearning_options

        o["unlearning_options"] = check_unlearning_options(o["unlearning_options"])
    return EditOptions(**o)


def _positive_int(o: dict[str, Any], name: str, *, allow_none: bool = False) -> None:
    if name not in o or (o[name] is None and allow_none):
        return
    v = o[name]
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise InputError(
            f"option {name} must be a positive int{' or None' if allow_none else ''}, got {v!r}"
        )
    o[name] = int(v)


def _positive_float(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
        raise InputError(f"option {name} must be a positive number, got {v!r}")
    return float(v)


def _choice(name: str, v: Any, choices: list[str]) -> str:
    v = getattr(v, "value", v)
    if v not in choices:
        raise InputError(f"option {name} must be one of {', '.join(choices)}; got {v!r}")
    return str(v)


def _gammas(v: Any) -> tuple[float, ...]:
    if isinstance(v, numbers.Real):
        v = (v,)
    try:
        values = tuple(_positive_float("gammas", g) for g in v)
    except TypeError:
        raise InputError(
            f"option gammas must be a sequence of positive numbers, got {v!r}"
        ) from None
    if not values:
        raise InputError("option gammas is empty; give at least one step norm, e.g. (0.1,)")
    return values
