"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

A file written through :func:`atomic_write` appears whole or not at all: an error, Ctrl-C or a
full disk leaves the previous file (or none) in place and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = [
    "PathLike",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "dumps_json",
    "read_json",
]

PathLike = str | os.PathLike[str]


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary file is removed if ``write`` fails (an error, a full disk, Ctrl-C); ``path``
    is then unchanged. An :class:`OSError` of the temporary file is raised again naming ``path``
    (the temporary name means nothing to the user).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        if exc.errno is not None and exc.filename in (None, tmp):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        _discard(tmp)
        raise
    return path


def _discard(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically.

    A lone surrogate in ``text`` (a path given as bytes that are not UTF-8, decoded by Python
    with ``surrogateescape``) is written as its escape (``\\udce9``), so the file stays UTF-8.
    """
    return atomic_write(
        path,
        lambda tmp: Path(tmp).write_text(text, encoding="utf-8", errors="backslashreplace"),
    )


def dumps_json(obj: Any) -> str:
    """Strict JSON (no NaN or infinity), indented, with a final newline."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically."""
    return atomic_write_text(path, dumps_json(obj))


def read_json(path: PathLike, what: str = "file") -> Any:
    """Read a JSON file; a missing or malformed file is an :class:`InputError` (one line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path} is not valid JSON: {exc}") from None
