"""Run directories: every output appears whole or not at all; nothing is overwritten by accident.

A :class:`RunDir` writes into a hidden staging directory next to the destination
(``.NAME.staging-XXXX``) and renames it into place on :meth:`RunDir.commit`, so an interrupted
run (an error, Ctrl-C, a full disk) leaves no half-written run directory behind: the staging
directory is removed and the destination is untouched. An existing destination is refused unless
``force=True``; with ``force`` the old directory is moved aside, the new one renamed in, and only
then is the old one deleted. A destination that holds one of the run's inputs (a checkpoint, a
file of indices) is always refused: inputs are never overwritten.

Single files that are rewritten in place (``geninf report`` regenerating ``report.md``) go
through :func:`atomic_write`: a temporary file in the same directory and ``os.replace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = [
    "RunDir",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "read_json",
    "versions",
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


class RunDir:
    """An output directory written through a staging directory (see the module docstring).

    Use it as a context manager: the run is committed when the block ends normally and discarded
    when it raises::

        with RunDir("runs/r1") as run:
            run.write_json("results.json", {...})

    Args:
        path: the destination directory.
        force: replace an existing destination.
        inputs: files the run reads; a destination that contains one is refused.
        enabled: False makes every write a no-op (the other ranks under ``torchrun``).

    Raises:
        InputError: the destination exists (without ``force``), is a file, holds an input,
            cannot be created, or its name is not UTF-8 text (a report could not name it).
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
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"--out {self.path} exists and is not a directory; choose another")
        if self.path.exists() and not self.force:
            raise InputError(
                f"--out {self.path} already exists; pass --force to replace it or choose "
                "another directory"
            )

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
        old = None
        try:
            if self.path.exists():
                if not self.force:  # appeared while we ran
                    raise InputError(f"--out {self.path} appeared while running; pass --force")
                old = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.old-"))
                os.replace(self.path, old / "previous")
            os.replace(staging, self.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if old is not None and (old / "previous").exists() and not self.path.exists():
                os.replace(old / "previous", self.path)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
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
