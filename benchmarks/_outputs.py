"""Where the benchmark scripts may write: never over a file that the benchmark suite did not write.

The rule (issue 16). Every folder the suite writes into holds ``bench-outputs.json``, the sorted
names of the files the suite wrote there. A script writes ``FOLDER/NAME`` only if

- FOLDER is not the filesystem root, the home folder, the current folder or a parent of it;
- ``FOLDER/bench-outputs.json`` is absent or a plain file in the format below, and
- ``FOLDER/NAME`` does not exist, or is a plain file (not a link, not a folder) listed there.

Scripts check every output before they start (:func:`claim`), so a refusal costs nothing, and
again at each write. A refusal is one line on stderr and exit status 2. Nothing is ever deleted;
a file is replaced atomically (a temporary file in the same folder, then ``os.replace``).
Standard library only, so that ``run_all.py`` stays light.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, NoReturn

MANIFEST = "bench-outputs.json"
FORMAT = "geninf-bench-outputs/1"
_ABOUT = "files the geninf benchmark scripts wrote in this folder; they replace only these"


def refuse(message: str) -> NoReturn:
    """Print one line on stderr and exit with status 2."""
    print(f"error: {message}; choose another --out", file=sys.stderr)
    raise SystemExit(2)


def _special(folder: Path) -> str | None:
    """What makes ``folder`` no place for benchmark outputs (None: nothing)."""
    real, cwd = folder.resolve(), Path.cwd().resolve()
    if real == Path(real.anchor):
        return "the filesystem root"
    if real == Path.home().resolve():
        return "the home folder"
    if real == cwd:
        return "the current folder"
    if real in cwd.parents:
        return "a parent of the current folder"
    return None


def check_folder(folder: str | Path) -> Path:
    """``folder`` if the suite may write into it (or below it); refuse otherwise."""
    folder = Path(folder)
    where = _special(folder)
    if where:
        refuse(f"{folder} is {where} ({folder.resolve()}), not a folder for benchmark outputs")
    if os.path.lexists(folder) and not folder.is_dir():
        refuse(f"{folder} exists and is not a folder")
    return folder


def listed(folder: str | Path) -> set[str]:
    """The names in ``folder/bench-outputs.json`` (empty if absent); refuse a foreign one."""
    manifest = Path(folder) / MANIFEST
    if not os.path.lexists(manifest):
        return set()
    bad = f"{manifest} is not the benchmark suite's list of its outputs"
    if manifest.is_symlink() or not manifest.is_file():
        refuse(bad)
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        refuse(bad)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        refuse(bad)
    files = data.get("files")
    if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
        refuse(bad)
    return set(files)


def check(path: str | Path) -> Path:
    """``path`` if the suite may write it now (see the module's rule); refuse otherwise."""
    path = Path(path)
    if path.name == MANIFEST:
        refuse(f"{path} is the benchmark suite's own list of outputs")
    if os.path.lexists(path):
        if path.is_symlink():
            refuse(f"{path} is a link; the benchmarks replace only plain files they wrote")
        if not path.is_file():
            refuse(f"{path} exists and is not a file")
        if path.name not in listed(path.parent):
            refuse(
                f"{path} exists and the benchmark suite did not write it "
                f"(it is not listed in {path.parent / MANIFEST})"
            )
    check_folder(path.parent)
    return path


def claim(*paths: str | Path | None) -> list[Path]:
    """Check every output of a run before it starts (None entries are skipped)."""
    return [check(p) for p in paths if p]


def record(paths: Iterable[str | Path]) -> None:
    """Add written ``paths`` to the lists of their folders (for files written by other code)."""
    by_folder: dict[Path, set[str]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.parent, set()).add(p.name)
    for folder, names in by_folder.items():
        known = listed(folder)
        if not names <= known:
            _write_list(folder, known | names)


def _write_list(folder: Path, names: set[str]) -> None:
    data = {"format": FORMAT, "about": _ABOUT, "files": sorted(names)}
    text = json.dumps(data, indent=1) + "\n"
    _replace(folder / MANIFEST, lambda tmp: Path(tmp).write_text(text))


def _replace(path: Path, write: Callable[[str], Any]) -> None:
    """Write ``path`` through a temporary file in its folder (same suffix), then replace it."""
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix
    )
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_with(path: str | Path, write: Callable[[str], Any]) -> Path:
    """Check ``path``, list it, and write it atomically with ``write(temporary_path)``."""
    path = check(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record([path])
    _replace(path, write)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` under the rule; return the path."""
    return write_with(path, lambda tmp: Path(tmp).write_text(text))


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig(path, **kwargs)`` under the rule; return the path."""
    return write_with(path, lambda tmp: fig.savefig(tmp, **kwargs))


def open_log(path: str | Path) -> IO[str]:
    """Open ``path`` for writing a log under the rule (streamed, so not atomic)."""
    path = check(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record([path])
    return open(path, "w")
