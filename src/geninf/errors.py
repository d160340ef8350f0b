"""The exceptions geninf raises.

Every error derives from :class:`GenInfError`. Errors about what the caller passed in also derive
from :class:`ValueError`; numerical failures derive from :class:`NumericalError` (an
:class:`ArithmeticError`). Messages say what was expected, what was received and what to do.
"""

from __future__ import annotations

__all__ = [
    "GenInfError",
    "InputError",
    "SubsetError",
    "DataError",
    "ObjectiveError",
    "DeterminismError",
    "ModelTooLargeError",
    "NumericalError",
    "NonFiniteError",
    "SolverDivergenceError",
    "ConvergenceWarning",
    "EditWarning",
]


class GenInfError(Exception):
    """Base class of every exception raised by geninf."""


class InputError(GenInfError, ValueError):
    """An argument has the wrong type, shape or value."""


class SubsetError(InputError):
    """A parameter subset is empty, malformed, or does not match the model."""


class DataError(InputError):
    """A data set is empty, malformed, or cannot be iterated the way geninf needs."""


class ObjectiveError(InputError):
    """An objective does not provide what an operation needs, or returned a bad value."""


class DeterminismError(InputError):
    """Two passes over the same data would not see the same function (dropout, batch norm in
    train mode, a shuffling loader); Hessian products would then be inconsistent."""


class ModelTooLargeError(InputError):
    """A dense (materialized) computation was asked for on too many parameters."""


class NumericalError(GenInfError, ArithmeticError):
    """A computation produced a result that cannot be trusted."""


class NonFiniteError(NumericalError):
    """A loss, gradient or Hessian product contains NaN or infinity."""


class SolverDivergenceError(NumericalError):
    """An iterative solver diverged and could not be brought back (e.g. its restart cap was hit)."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before reaching its tolerance; the result is approximate."""


class EditWarning(UserWarning):
    """An edit that may not have done what was asked: its validation score did not improve on
    the unedited model's, or its step search stopped on the edge of what it searched."""


def brief(exc: BaseException | str, limit: int = 120) -> str:
    """``exc``'s message on one line (whitespace collapsed), cut to ``limit`` characters; the
    exception's type name when the message is empty. For quoting a caught error inside a
    one-line message of geninf's own."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
