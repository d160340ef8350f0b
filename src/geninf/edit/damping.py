"""Scale-free damping for edits: λ relative to the curvature's own scale, chosen on validation.

An absolute λ means different things for losses of different scale: multiplying the loss by c
multiplies H by c, and λ = 10⁻³ is then strong regularization for one model and none for
another. geninf therefore expresses damping *relative* to an estimate of ‖H‖₂, the largest
absolute eigenvalue of the curvature, obtained by power iteration::

    v₀ ~ N(0, I) (seeded),   v_{i+1} = H v_i / ‖H v_i‖,   ŝ = ‖H v_K‖       (K products)
    λ = ρ · ŝ

ŝ is a lower bound of ‖H‖₂ that is within a few percent after K = 10 products on the project's
models; ρ is what the user (or the validation score) chooses, and it is invariant to the loss
scale (Proposition 3.1 of the paper for GIF's direction). The damped operator is H + λI for
every influence method, as in :mod:`geninf.influence`.

A :class:`DampingSpec` is one of

- ``"auto"``: with a validation score, ρ is chosen from a geometric path (largest first, each
  solve warm-started from the previous solution) by the score of the scheduled edit; without
  one, ρ = the documented fallback (:data:`geninf.defaults.EDIT_DEFAULTS`);
- ``"rel:ρ"`` (or ``"relative:ρ"``, ``DampingSpec.relative(ρ)``): λ = ρ·ŝ;
- a number λ ≥ 0 (or ``DampingSpec.absolute(λ)``): λ as given, no scale estimate.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..defaults import EDIT_DEFAULTS
from ..errors import InputError
from ..linalg.base import LinearOperator

__all__ = ["DampingSpec", "curvature_scale", "parse_damping", "parse_path"]

_RELATIVE = ("rel:", "relative:")


@dataclass(frozen=True)
class DampingSpec:
    """How an edit damps its curvature.

    Attributes:
        mode: ``"absolute"``, ``"relative"`` or ``"auto"``.
        value: λ (absolute), ρ (relative), or None (auto).
    """

    mode: str
    value: float | None = None

    @classmethod
    def absolute(cls, value: float) -> DampingSpec:
        """λ as given."""
        return cls("absolute", _non_negative("damping", value))

    @classmethod
    def relative(cls, value: float) -> DampingSpec:
        """λ = ``value`` · ‖H‖₂ (estimated)."""
        return cls("relative", _non_negative("relative damping", value))

    @classmethod
    def auto(cls) -> DampingSpec:
        """ρ chosen on validation (or the fallback without validation)."""
        return cls("auto")

    @property
    def needs_scale(self) -> bool:
        """True when λ depends on the curvature scale estimate."""
        return self.mode != "absolute"

    def describe(self) -> str:
        """The spec as the command line spells it."""
        if self.mode == "auto":
            return "auto"
        if self.mode == "relative":
            return f"rel:{self.value:g}"
        return f"{self.value:g}"


def parse_damping(value: Any) -> DampingSpec:
    """A :class:`DampingSpec` from ``"auto"``, ``"rel:ρ"``, a number λ ≥ 0, or a spec.

    Raises:
        InputError: anything else (a negative or non-finite number, an unknown string).
    """
    if isinstance(value, DampingSpec):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return DampingSpec.auto()
        for prefix in _RELATIVE:
            if text.startswith(prefix):
                return DampingSpec.relative(_number(text[len(prefix) :], value))
        return DampingSpec.absolute(_number(text, value))
    return DampingSpec.absolute(value)


def parse_path(value: Any) -> tuple[float, ...]:
    """The relative damping path, as a tuple sorted largest first (positive, finite, distinct).

    Raises:
        InputError: an empty path, or an entry that is not a positive finite number.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value,)
    try:
        items = list(value)
    except TypeError:
        raise InputError(
            f"damping_path must be a sequence of positive numbers, got {value!r}"
        ) from None
    if not items:
        raise InputError(
            "damping_path is empty; give at least one relative damping, e.g. (1e-2,), or pass "
            "a fixed damping instead of damping='auto'"
        )
    out = []
    for item in items:
        v = _non_negative("damping_path entry", item)
        if v == 0.0:
            raise InputError("damping_path entries must be > 0; use damping=0 for no damping")
        out.append(v)
    return tuple(sorted(set(out), reverse=True))


def curvature_scale(
    H: LinearOperator, *, iterations: int = EDIT_DEFAULTS.scale_iterations, seed: int = 0
) -> tuple[float, int]:
    """Estimate ‖H‖₂ by power iteration (module docstring); return ``(ŝ, products used)``.

    Raises:
        InputError: the curvature is exactly zero along every vector tried.
    """
    n = H.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    v = torch.randn(n, generator=gen, dtype=torch.float64).to(H.dtype).to(H.device)
    v = v / v.norm()
    before = H.num_products
    estimate = 0.0
    for _ in range(int(iterations)):
        w = H.matvec(v)
        estimate = float(w.norm())
        if not estimate > 0.0 or not math.isfinite(estimate):
            break
        v = w / estimate
    used = H.num_products - before
    if not estimate > 0.0 or not math.isfinite(estimate):
        raise InputError(
            f"the curvature's scale estimate is {estimate!r} (H·v is zero or non-finite); "
            "relative damping is undefined here: pass an absolute damping, e.g. damping=1e-3"
        )
    return estimate, used


def _number(text: str, original: Any) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"damping must be 'auto', 'rel:ρ' (λ = ρ·‖H‖) or a number λ >= 0, got {original!r}"
        ) from None


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
