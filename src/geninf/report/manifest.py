"""The run marker: ``geninf-run.json`` lists every file a run wrote, with its SHA-256.

``--force`` replaces only a directory geninf made (see :mod:`geninf.report.rundir`): one whose
marker (format ``geninf-run/1``) is valid and lists, with the same content, everything the
directory holds. This module writes and reads the marker and finds what a directory holds that
its marker does not list (:func:`foreign_entries`, :func:`replace_refusal`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .._files import sha256_file
from .atomic import PathLike, atomic_write_json

__all__ = [
    "MARKER",
    "RUN_FORMAT",
    "foreign_entries",
    "read_marker",
    "replace_refusal",
    "write_marker",
]


# -------------------------------------------------------------------------- run marker
#: The file that marks a directory as a geninf run; it lists every file the run wrote.
MARKER = "geninf-run.json"
#: The marker's format; a directory whose marker has another format is never replaced.
RUN_FORMAT = "geninf-run/1"
#: How many foreign entries a refusal names.
_SHOWN = 3


def _files(folder: Path) -> Iterator[tuple[str, Path]]:
    """Every regular file under ``folder`` (links not followed) but the marker, sorted."""
    for top, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(top) / name
            rel = path.relative_to(folder).as_posix()
            if rel != MARKER and path.is_file() and not path.is_symlink():
                yield rel, path


def write_marker(
    folder: PathLike,
    files: dict[str, str] | None = None,
    rewritten: Callable[[str], bool] | None = None,
) -> None:
    """Write the marker of ``folder``, listing the SHA-256 of every file in it; or, given the
    marker's ``files``, those entries that ``rewritten`` rejects (as they were) and the files
    now in ``folder`` that it accepts (their new digests) — a file that geninf did not write is
    never added."""
    folder = Path(folder)
    if files is None or rewritten is None:
        listed = {rel: sha256_file(path) for rel, path in _files(folder)}
    else:
        listed = {rel: h for rel, h in files.items() if not rewritten(rel)}
        listed.update({rel: sha256_file(path) for rel, path in _files(folder) if rewritten(rel)})
    marker = {"format": RUN_FORMAT, "files": dict(sorted(listed.items()))}
    atomic_write_json(folder / MARKER, marker)


def read_marker(folder: PathLike) -> dict[str, str] | None:
    """The files (``{relative path: sha256}``) the marker of ``folder`` lists; None when
    ``folder`` has no valid marker (none, a link, malformed, another format)."""
    path = Path(folder) / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if data.get("format") != RUN_FORMAT or not isinstance(files, dict):
        return None
    return files if all(isinstance(v, str) for v in files.values()) else None


def foreign_entries(
    folder: PathLike,
    files: dict[str, str],
    *,
    limit: int | None = None,
    only: Callable[[str], bool] | None = None,
) -> list[str]:
    """What ``folder`` holds that ``files`` does not list with the same content, sorted: a file
    not listed (``name``), a listed file since changed (``name (changed)``), a link, a special
    file, or a folder holding no listed file (``name/``, not descended).

    Args:
        folder: the directory to inspect (links in it are not followed).
        files: the marker's ``{relative path: sha256}``.
        limit: stop after this many entries.
        only: consider only the relative paths it accepts.
    """
    folder = Path(folder)
    parents = {p.as_posix() for rel in files for p in Path(rel).parents}
    found: list[str] = []
    for top, dirs, names in os.walk(folder):
        rel_top = Path(top).relative_to(folder)
        kept = []
        for name in sorted(dirs):
            rel = (rel_top / name).as_posix()
            if rel in parents and not (Path(top) / name).is_symlink():
                kept.append(name)
            elif only is None or only(rel):
                found.append(f"{rel}/")
        dirs[:] = kept
        for name in sorted(names):
            rel, path = (rel_top / name).as_posix(), Path(top) / name
            if rel == MARKER or (only is not None and not only(rel)):
                continue
            if path.is_symlink() or not path.is_file() or rel not in files:
                found.append(rel)
            elif sha256_file(path) != files[rel]:
                found.append(f"{rel} (changed)")
        if limit is not None and len(found) >= limit:
            return sorted(found)[:limit]
    return sorted(found)


def _names(entries: list[str]) -> str:
    shown = ", ".join(entries[:_SHOWN])
    return shown + (", …" if len(entries) > _SHOWN else "")


def replace_refusal(path: Path) -> str | None:
    """Why the existing directory ``path`` may not be replaced, or None: it is a geninf run."""
    tail = "geninf replaces only a run directory it made, even with --force: choose a new --out"
    files = read_marker(path)
    if files is None:
        if (path / "config.json").is_file() and (path / "results.json").is_file():
            return (
                f"--out {path} is a run of an older geninf (it has no {MARKER}), which geninf "
                "does not replace: delete it by hand or choose a new --out"
            )
        held = foreign_entries(path, {}, limit=_SHOWN + 1)
        if not held:
            return (
                f"--out {path} is an empty directory geninf did not make; remove it (rmdir) or "
                "choose a new --out"
            )
        return f"--out {path} is not a geninf run directory (it holds {_names(held)}); {tail}"
    held = foreign_entries(path, files, limit=_SHOWN + 1)
    if held:
        return f"--out {path} holds files geninf did not write: {_names(held)}; {tail}"
    return None
