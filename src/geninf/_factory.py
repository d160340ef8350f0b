"""Resolving a user's ``package.module:factory`` name, shared by models and data."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .errors import InputError

__all__ = ["resolve_factory"]


def resolve_factory(spec: str, what: str) -> Callable[..., Any]:
    """The callable that ``spec`` names: ``package.module:name`` (``name`` may be dotted).

    Args:
        spec: the name, e.g. ``"mypkg.nets:build"``.
        what: what the factory makes, for messages (``"model"``, ``"data"``).

    Raises:
        InputError: ``spec`` is not of that form, its module cannot be imported, has no such
            attribute, or the attribute is not callable.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"a {what} factory must be written 'package.module:factory', got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(
            f"cannot import module {module_name!r} for {what} {spec!r}: {exc}; put its package "
            "on PYTHONPATH"
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"module {module_name!r} has no attribute {attr!r} ({what} {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"{what} {spec!r} is a {type(obj).__name__}, not a function to call")
    return obj
