"""Converters of command-line values (argparse ``type=``): each turns one token into a value or
raises :class:`argparse.ArgumentTypeError` with a one-line message.

``--config`` files (:mod:`geninf.cli.config`) may give the options converted by :func:`floats`
and :func:`names` as arrays and those of :func:`key_values` as objects: the converters say so in
their ``config_value`` attribute (``"list"`` or ``"mapping"``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from ..edit.damping import parse_damping
from ..errors import InputError

__all__ = [
    "damping",
    "floats",
    "key_values",
    "names",
    "nonnegative_float",
    "positive_float",
    "positive_int",
    "seed",
    "threads",
]


def damping(text: str) -> str | float:
    """--damping: 'auto', 'rel:ρ' or a number λ >= 0 (checked like the library does)."""
    try:
        spec = parse_damping(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return spec.value if spec.mode == "absolute" else spec.describe()  # type: ignore[return-value]


def floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def key_values(text: str) -> dict[str, float]:
    """KEY=VALUE,... with numeric values (the keys are checked by the library)."""
    out: dict[str, float] = {}
    for item in (v.strip() for v in text.split(",")):
        key, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not item or not sep or not key.strip() or number is None:
            raise argparse.ArgumentTypeError(
                f"expected KEY=NUMBER pairs separated by commas, e.g. scrub_alpha=0.5, got {text!r}"
            )
        out[key.strip()] = number
    return out


def names(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def seed(text: str) -> int:
    """An integer seed in torch's range (:func:`geninf._seed.check_seed`)."""
    from .._seed import SEED_RANGE, check_seed

    try:
        return check_seed(int(text))
    except (ValueError, InputError):
        lo, hi = SEED_RANGE
        raise argparse.ArgumentTypeError(
            f"expected an integer in [{lo}, {hi}] (a torch seed), got {text!r}"
        ) from None


def threads(text: str) -> int:
    """A thread count in ``[1, MAX_THREADS]`` (:func:`geninf.report.jobs.common.check_threads`)."""
    from ..report.jobs.common import MAX_THREADS, check_threads

    try:
        return check_threads(int(text))
    except (ValueError, InputError):
        raise argparse.ArgumentTypeError(
            f"expected a number of threads in [1, {MAX_THREADS}], got {text!r}"
        ) from None


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _bounded_float(text, "> 0", "a positive number", lambda v: v > 0)


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    return _bounded_float(text, ">= 0", "a number >= 0", lambda v: v >= 0)


def _bounded_float(text: str, bound: str, what: str, ok: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
    return value


floats.config_value = "list"  # type: ignore[attr-defined]
names.config_value = "list"  # type: ignore[attr-defined]
key_values.config_value = "mapping"  # type: ignore[attr-defined]
