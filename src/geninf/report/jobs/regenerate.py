"""``geninf report RUN_DIR``: redraw a run's plots and rewrite its report from ``results.json``.

Figures that need the models (Grad-CAM, scored images) are kept as the run drew them; every file
is rewritten atomically, so an interrupted regeneration leaves the previous report in place. Only
a run directory with geninf's marker is regenerated, and only if each file ``report`` rewrites is
one geninf wrote, unchanged; the marker then records the new files.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..content import make_plots, write_report
from ..rundir import (
    MARKER,
    atomic_write_json,
    atomic_write_text,
    foreign_entries,
    read_json,
    read_marker,
    write_marker,
)
from .common import _order

__all__ = ["regenerate_report"]

_MODEL_FIGURES = ("plots/gradcam.png", "plots/top_examples.png")
#: What ``geninf report`` may rewrite in a run directory.
_REWRITES = re.compile(r"^(report\.md|report\.html|table\.md|results\.json|plots(/.*)?)$")


def regenerate_report(run_dir: str) -> dict[str, Any]:
    """Rewrite ``report.md`` / ``report.html`` (and the plots) of ``run_dir``; return its
    results (the content of ``results.json``)."""
    root = Path(run_dir).expanduser()
    if not root.exists():
        raise InputError(f"run directory {run_dir} does not exist")
    if not root.is_dir() or not (root / "config.json").is_file():
        what = "a file" if not root.is_dir() else "no config.json in it"
        raise InputError(
            f"{str(run_dir)!r} is not a run directory ({what}); give the directory a train, "
            "remove, relabel, score or bench run wrote (its --out)"
        )
    config = read_json(root / "config.json", "config file")
    results = read_json(root / "results.json", "results file")
    if not isinstance(config, dict) or not isinstance(results, dict):
        raise InputError(f"{run_dir}: config.json and results.json must hold JSON objects")
    files = _own_files(root, run_dir)
    try:
        results = _regenerate(root, config, results)
    except BaseException:
        with contextlib.suppress(OSError):  # the files rewritten before the fault stay geninf's
            write_marker(root, files, _rewritten)
        raise
    write_marker(root, files, _rewritten)
    return results


def _rewritten(rel: str) -> bool:
    """Whether ``geninf report`` may rewrite the file (or folder) ``rel`` of a run."""
    return _REWRITES.match(rel) is not None


def _own_files(root: Path, run_dir: str) -> dict[str, str]:
    """The run's marker; refuse a run without one, or whose files that ``report`` rewrites are
    not all geninf's, unchanged (report never changes a file geninf did not write)."""
    files = read_marker(root)
    if files is None:
        raise InputError(
            f"{run_dir} has no {MARKER}: it is a run of an older geninf (or not a run), whose "
            "files geninf does not rewrite; rerun the command that made it"
        )
    foreign = foreign_entries(root, files, limit=4, only=_rewritten)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
        raise InputError(
            f"{run_dir} holds files that report would rewrite but geninf did not write: {shown}; "
            "move them out of the run directory, then run geninf report again"
        )
    return files


def _regenerate(root: Path, config: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """Redraw the plots and rewrite the report files of the checked run ``root``."""
    if config.get("kind") == "bench":
        from .bench import experiment_result

        result = experiment_result(results)
        plots = [str(Path(p).relative_to(root)) for p in result.plot(root)]
        markdown = result.markdown()
        atomic_write_text(root / "table.md", markdown + "\n")
        view = {
            "title": f"geninf {config.get('command', 'bench')}",
            "plots": plots,
            "warnings": config.get("warnings") or [],
        }
        write_report(root, config, view, markdown=markdown)
        return results
    made, notes = make_plots(results, root)
    kept = [p for p in results.get("plots") or [] if p in _MODEL_FIGURES and (root / p).is_file()]
    plots = _order(made + kept)
    if plots != results.get("plots"):
        results["plots"] = plots
        atomic_write_json(root / "results.json", results)
    write_report(root, config, {**results, "notes": list(results.get("notes") or []) + notes})
    return results
