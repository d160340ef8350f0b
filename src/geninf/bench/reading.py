"""How a failure to read a data file becomes one :class:`~geninf.errors.DataError`.

Shared by the readers of the standard file sets (:mod:`geninf.bench.datasets_files`), the
restricted unpickler (:mod:`geninf.bench.safe_pickle`) and the readers of a user's own data
(:mod:`geninf.bench.user_data`, :mod:`geninf.bench.user_folder`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["Malformed", "brief", "describe", "int_labels", "reading"]


def brief(exc: BaseException, limit: int = 160) -> str:
    """``exc`` as one short line: its type and the start of its message."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    kind = type(exc).__name__
    if type(exc).__module__ not in ("builtins", __name__):
        kind = f"{type(exc).__module__}.{kind}"  # zlib.error, not error
    return f"{kind}: {text}" if text else kind


class Malformed(Exception):
    """A data file does not hold what it should; the message says what is wrong (no path)."""


@contextlib.contextmanager
def reading(source: str, what: str, advice: str) -> Iterator[None]:
    """Turn any failure to parse ``source`` into one :class:`DataError` naming the file.

    A :class:`Malformed` keeps its message; any other exception (a corrupt file makes parsers
    raise almost anything: ``LookupError``, ``zlib.error``, ``SystemError``…) is summarized.
    :class:`DataError` passes through unchanged; ``MemoryError`` and ``KeyboardInterrupt`` are
    not data errors and are not caught.
    """
    try:
        yield
    except (DataError, MemoryError):
        raise
    except Malformed as exc:
        raise DataError(f"{source} is not {what} ({exc}); {advice}") from None
    except Exception as exc:
        raise DataError(f"{source} is not {what} ({brief(exc)}); {advice}") from exc


def describe(value: Any) -> str:
    """What ``value`` is, for an error message: ``None``, ``a list of 3 items``, an array's shape
    and type."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and type {value.dtype}"
    if isinstance(value, list | tuple | dict):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def int_labels(values: Any, n: int, low: int, high: int, what: str) -> np.ndarray:
    """``values`` (a list or a 1-D integer array of ``n`` labels in ``low..high``) as int64.

    Raises:
        Malformed: anything else (None, text, floats, huge numbers, the wrong count).
    """
    if isinstance(values, np.ndarray):
        ok = values.ndim == 1 and values.dtype.kind in "iu"
    elif isinstance(values, list | tuple):
        ok = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values)
    else:
        ok = False
    if not ok or len(values) != n:
        raise Malformed(f"{what} must be {n} integers in {low}..{high}, got {describe(values)}")
    if n and (min(values) < low or max(values) > high):
        raise Malformed(
            f"{what} must be {n} integers in {low}..{high}, got values from {min(values)} to "
            f"{max(values)}"
        )
    return np.asarray(values).astype(np.int64)
