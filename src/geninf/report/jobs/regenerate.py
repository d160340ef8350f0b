"""``geninf report RUN_DIR``: redraw a run's plots and rewrite its report from ``results.json``.

Figures that need the models (Grad-CAM, scored images) are kept as the run drew them; every file
is rewritten atomically, so an interrupted regeneration leaves the previous report in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import InputError
from ..content import make_plots, write_report
from ..rundir import atomic_write_json, atomic_write_text, read_json
from .common import _order

__all__ = ["regenerate_report"]

_MODEL_FIGURES = ("plots/gradcam.png", "plots/top_examples.png")


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
