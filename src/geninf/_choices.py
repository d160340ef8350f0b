"""The one parser of geninf's string options (``str`` Enums), shared by every layer."""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from .errors import InputError

__all__ = ["parse_choice"]

E = TypeVar("E", bound=Enum)


def parse_choice(cls: type[E], value: Any, what: str, *, any_case: bool = True) -> E:
    """The member of ``cls`` that ``value`` names: a member, or its string value.

    Args:
        cls: the Enum of the option.
        value: a member of ``cls`` or its value.
        what: the option's name in the message (``"edit method"``).
        any_case: accept the string with surrounding spaces and in any case; otherwise it must
            be the value exactly.

    Raises:
        InputError: ``value`` names no member; the message lists the valid values.
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls(value.strip().lower() if any_case else value)
        except ValueError:
            pass
    valid = ", ".join(repr(m.value) for m in cls)
    raise InputError(f"unknown {what} {value!r}; choose one of {valid}")
