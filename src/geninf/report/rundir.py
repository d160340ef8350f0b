"""Run directories: every output appears whole or not at all; nothing is overwritten by accident.

A :class:`RunDir` writes into a hidden staging directory next to the destination
(``.NAME.staging-XXXX``) and renames it into place on :meth:`RunDir.commit`, so an interrupted
run (an error, Ctrl-C, a full disk) leaves no half-written run directory behind: the staging
directory is removed and the destination is untouched. An existing destination is refused unless
``force=True``; with ``force`` the old directory is moved aside, the new one renamed in, and only
then is the old one deleted. A destination that holds one of the run's inputs (a checkpoint, a
file of indices) is always refused: inputs are never overwritten.

``force`` replaces only a directory geninf made: every run directory holds a marker,
``geninf-run.json`` (format ``geninf-run/1``), that lists each file the run wrote with its
SHA-256. A destination without a valid marker, or holding anything the marker does not list
with the same content (a file the user added or edited, a link, an empty folder of their own),
is refused even with ``force``, naming what was found; so are the current directory and its
parents, the home directory and its parents, a filesystem root or mount point, the parent of an
input and a symbolic link. Nothing geninf did not write is ever deleted or changed. The marker
is written and checked by :mod:`geninf.report.manifest`.

Single files that are rewritten in place (``geninf report`` regenerating ``report.md``) go
through :func:`atomic_write`: a temporary file in the same directory and ``os.replace``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InputError
from .atomic import (
    PathLike,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    read_json,
)
from .manifest import (
    MARKER,
    RUN_FORMAT,
    foreign_entries,
    read_marker,
    replace_refusal,
    write_marker,
)

__all__ = [
    "MARKER",
    "RUN_FORMAT",
    "RunDir",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "foreign_entries",
    "read_marker",
    "read_json",
    "versions",
    "write_marker",
]


def versions() -> dict[str, str]:
    """Versions of Python, geninf and the libraries a run depends on."""
    import numpy
    import torch

    from .. import __version__

    out = {
        "geninf": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }
    for name in ("safetensors", "matplotlib", "tqdm", "sklearn", "mlxtend"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        out[name] = str(getattr(module, "__version__", "?"))
    return out


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _protected(out: Path) -> str | None:
    """Why the resolved path ``out`` is never replaced, or None."""
    cwd = Path.cwd().resolve()
    try:
        home: Path | None = Path.home().resolve()
    except (RuntimeError, KeyError):
        home = None
    if out == Path(out.anchor) or os.path.ismount(out):
        return "a filesystem root" if out == Path(out.anchor) else "a mount point"
    if out == cwd:
        return "the current directory"
    if _inside(cwd, out):
        return "a parent of the current directory"
    if home is not None and out == home:
        return "your home directory"
    if home is not None and _inside(home, out):
        return "a parent of your home directory"
    return None


class RunDir:
    """An output directory written through a staging directory (see the module docstring).

    Use it as a context manager: the run is committed when the block ends normally and discarded
    when it raises::

        with RunDir("runs/r1") as run:
            run.write_json("results.json", {...})

    Args:
        path: the destination directory.
        force: replace an existing destination, if it is a run directory geninf made and
            holds nothing else (see the module docstring).
        inputs: files the run reads; a destination that contains one is refused.
        enabled: False makes every write a no-op (the other ranks under ``torchrun``).

    Raises:
        InputError: the destination exists (without ``force``), is a file, holds an input,
            cannot be created, or its name is not UTF-8 text (a report could not name it); it
            exists and is not an unchanged run directory of geninf, or is a place geninf never
            replaces (the current or home directory, a parent of either, a root, a link).
    """

    def __init__(
        self,
        path: PathLike,
        *,
        force: bool = False,
        inputs: Iterable[PathLike | None] = (),
        enabled: bool = True,
    ):
        self.path = Path(path).expanduser()
        self.force = bool(force)
        self.enabled = bool(enabled)
        self._check(inputs)
        self.staging: Path | None = None
        if self.enabled:
            self.staging = self._make_staging()

    def _check(self, inputs: Iterable[PathLike | None]) -> None:
        try:
            str(self.path).encode("utf-8")
        except UnicodeEncodeError:
            shown = str(self.path).encode("utf-8", "backslashreplace").decode("utf-8")
            raise InputError(
                f"--out must be a path that can be written as UTF-8 text, and '{shown}' holds a "
                "byte that is not UTF-8; choose another name"
            ) from None
        out = self.path.resolve()
        for item in inputs:
            if item is None:
                continue
            src = Path(item).expanduser().resolve()
            if src == out or _inside(src, out):
                raise InputError(
                    f"--out {self.path} holds the input {item}; write the result to another "
                    "directory (inputs are never overwritten)"
                )
        self._check_place(out)
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"--out {self.path} exists and is not a directory; choose another")
        if self.path.exists():
            self._check_replaceable()
            if not self.force:
                raise InputError(
                    f"--out {self.path} already exists; pass --force to replace it or choose "
                    "another directory"
                )

    def _check_place(self, out: Path) -> None:
        """Refuse a destination that is never replaced: see :func:`_protected`, a link, or a
        name that is no new directory (``.``, ``..``)."""
        why = _protected(out)
        if why is not None:
            raise InputError(
                f"--out {self.path} is {why}, which geninf never replaces (even with --force): "
                "choose a new --out"
            )
        if os.path.islink(self.path):
            raise InputError(
                f"--out {self.path} is a symbolic link (to {os.readlink(self.path)}), which "
                "geninf never replaces: choose a new --out"
            )
        if self.path.name in ("", ".", ".."):
            raise InputError(f"--out {self.path} names no new directory; choose a new --out")

    def _check_replaceable(self, path: Path | None = None) -> None:
        """Refuse an existing destination that is not a run directory geninf made, unchanged
        (``path``: where it is now, if moved aside)."""
        why = replace_refusal(path or self.path)
        if why is not None:
            if path is not None:
                why = why.replace(f"--out {path}", f"--out {self.path}")
            raise InputError(why)

    def _make_staging(self) -> Path:
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{self.path.name}.staging-"))
            os.chmod(staging, 0o755)  # mkdtemp makes it private; a run directory is not
            return staging
        except OSError as exc:
            blocker = next((a for a in self.path.parents if a.exists()), None)
            reason = (
                f"{blocker} is a file, not a directory"
                if blocker is not None and not blocker.is_dir()
                else exc.strerror or str(exc)
            )
            raise InputError(f"cannot create the output directory {self.path}: {reason}") from None

    # ------------------------------------------------------------------------------ writing
    def file(self, name: str) -> Path:
        """The staging path of ``name`` (relative to the run directory), parents created."""
        if self.staging is None:
            raise InputError("this RunDir is disabled or already finished; nothing can be written")
        target = self.staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_text(self, name: str, text: str) -> None:
        """Write a text file into the run (no-op when disabled)."""
        if self.enabled:
            atomic_write_text(self.file(name), text)

    def write_json(self, name: str, obj: Any) -> None:
        """Write strict JSON into the run (no-op when disabled)."""
        if self.enabled:
            atomic_write_json(self.file(name), obj)

    @property
    def root(self) -> Path | None:
        """Where files are being written now (the staging directory), None when disabled."""
        return self.staging

    # ------------------------------------------------------------------------------ finishing
    def commit(self) -> Path:
        """Move the staging directory into place; return the destination."""
        if not self.enabled or self.staging is None:
            return self.path
        staging, self.staging = self.staging, None
        old, checked = None, False
        try:
            write_marker(staging)
            if os.path.lexists(self.path):
                if not self.force:  # appeared while we ran
                    raise InputError(f"--out {self.path} appeared while running; pass --force")
                self._check_place(self.path.resolve())
                self._check_replaceable()
                old = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.old-"))
                os.replace(self.path, old / "previous")
                self._check_replaceable(old / "previous")  # nothing slipped in meanwhile
                checked = True
            os.replace(staging, self.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if old is not None and (old / "previous").exists() and not os.path.lexists(self.path):
                os.replace(old / "previous", self.path)
            raise
        finally:
            if old is not None and checked:
                shutil.rmtree(old, ignore_errors=True)  # only geninf's files, just checked
            elif old is not None:
                with contextlib.suppress(OSError):
                    os.rmdir(old)  # kept (with what it holds) if it could not be put back
        return self.path

    def abort(self) -> None:
        """Discard everything written so far."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
