"""Reports of the experiments: ``results.json``, ``table.md`` (mean ± std) and PNG plots.

:func:`write_outputs` saves any :class:`~geninf.bench.experiments.report.ExperimentResult`;
:func:`markdown_table`, :func:`bar_plot` and :func:`line_plot` are the building blocks the
experiments use (and a command-line interface can reuse). Every ``±`` is the *sample* standard
deviation (ddof = 1) over the seeds, and the tables say so (:func:`std_label`). Plots are drawn
with Matplotlib's Agg canvas (no display, no global backend switch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..._atomic import atomic_write
from ...edit.record import json_safe
from ...errors import InputError
from ..metrics import summarize_runs

__all__ = [
    "Column",
    "ExperimentResult",
    "group_summaries",
    "bar_plot",
    "format_mean_std",
    "line_plot",
    "markdown_table",
    "std_label",
    "write_outputs",
]


@dataclass(frozen=True)
class Column:
    """A metric column of a table: ``metric`` in the summaries, shown as ``header``.

    ``scale`` multiplies the values (e.g. 100 for a fraction shown in %), ``digits`` is the number
    of decimals.
    """

    metric: str
    header: str
    digits: int = 2
    scale: float = 1.0


def format_mean_std(mean: float | None, std: float | None, digits: int = 2) -> str:
    """``"97.12 ± 0.35"``; a missing mean is ``"—"``, a missing std (one seed) ``"± n/a"``."""
    if mean is None or not math.isfinite(mean):
        return "—"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f} ± n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def std_label(num_seeds: int, seeds: Sequence[int] | None = None) -> str:
    """The line under every table that says what ``±`` means."""
    which = f" (seeds {', '.join(str(s) for s in seeds)})" if seeds else ""
    return f"Entries are mean ± sample std over {num_seeds} seeds{which}."


def markdown_table(
    rows: Sequence[tuple[Sequence[str], Mapping[str, Mapping[str, float]]]],
    label_headers: Sequence[str],
    columns: Sequence[Column],
) -> str:
    """A Markdown table with label cells then one ``mean ± std`` cell per column.

    Args:
        rows: ``(labels, summary)`` pairs; ``summary`` maps a metric to ``{"mean", "std"}``
            (as :func:`~geninf.bench.summarize_runs` returns).
        label_headers: headers of the label cells.
        columns: the metric columns.
    """
    head = [*label_headers, *(c.header for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for labels, summary in rows:
        cells = list(labels)
        for c in columns:
            s = summary.get(c.metric)
            if s is None:
                cells.append("—")
                continue
            mean, std = s.get("mean"), s.get("std")
            mean = None if mean is None else mean * c.scale
            std = None if std is None else std * c.scale
            cells.append(format_mean_std(mean, std, c.digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- plots
Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def _figure(width: float = 8.0, height: float = 4.5) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def bar_plot(
    path: Path,
    labels: Sequence[str],
    series: Series,
    *,
    ylabel: str,
    title: str,
    hlines: Mapping[str, float] | None = None,
    ylim: tuple[float, float] | None = None,
    zoom: bool = False,
) -> Path:
    """Grouped bars (one group per label, one bar per series) with ±std error bars.

    ``series`` maps a name to ``(means, stds)`` aligned with ``labels``; ``hlines`` draws
    labelled horizontal reference lines (e.g. retraining). ``zoom`` starts the y axis just below
    the lowest bar (minus its std) instead of at 0; reference lines below that are left out.
    """
    fig = _figure(max(8.0, 0.55 * len(labels) * max(1, len(series))), 4.8)
    ax = fig.add_subplot(1, 1, 1)
    k = max(1, len(series))
    width = 0.8 / k
    xs = list(range(len(labels)))
    for i, (name, (means, stds)) in enumerate(series.items()):
        pos = [x - 0.4 + width * (i + 0.5) for x in xs]
        ax.bar(pos, _nan(means), width, yerr=_nan(stds), capsize=2, label=name)
    for j, (name, value) in enumerate((hlines or {}).items()):
        ax.axhline(value, color=f"C{k + j}", linestyle="--", linewidth=1, label=name)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if ylim is None and zoom:
        ylim = _zoom(series, hlines)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _zoom(series: Series, hlines: Mapping[str, float] | None) -> tuple[float, float] | None:
    lows, highs = [], []
    for means, stds in series.values():
        for m, sd in zip(_nan(means), _nan(stds), strict=True):
            if math.isfinite(m):
                lows.append(m - (sd if math.isfinite(sd) else 0.0))
                highs.append(m + (sd if math.isfinite(sd) else 0.0))
    if not lows:
        return None
    top = max(highs + [v for v in (hlines or {}).values() if math.isfinite(v)])
    low = min(lows)
    margin = 0.1 * max(top - low, 1e-3)
    return low - margin, top + margin


def line_plot(
    path: Path,
    x: Sequence[float],
    series: Series,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    hlines: Mapping[str, float] | None = None,
    logx: bool = False,
) -> Path:
    """Lines with ±std bands, one per series (``(means, stds)`` aligned with ``x``)."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, (means, stds)) in enumerate(series.items()):
        m, s = _nan(means), _nan(stds)
        ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label=name, color=f"C{i}")
    for j, (name, value) in enumerate((hlines or {}).items()):
        ax.axhline(value, color=f"C{len(series) + j}", linestyle="--", linewidth=1, label=name)
    if logx:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(list(x))
    ax.set_xticklabels([f"{v:g}" for v in x])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


# ---------------------------------------------------------------------- results
def group_summaries(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean, sample std and count of every metric, per arm, over the runs (seeds) of that arm.

    Each run is ``{"seed": s, "arm": {...}, "metrics": {...}}``; runs with equal ``arm`` dicts
    form a group. Returns ``[{"arm": ..., "n": seeds, "metrics": summarize_runs(...)}]`` in
    first-seen order.
    """
    groups: dict[str, tuple[dict[str, Any], list[Mapping[str, Any]]]] = {}
    for run in runs:
        key = repr(sorted(run["arm"].items()))
        groups.setdefault(key, (dict(run["arm"]), []))[1].append(run["metrics"])
    return [
        {"arm": arm, "n": len(metrics), "metrics": summarize_runs(metrics)}
        for arm, metrics in groups.values()
    ]


@dataclass
class ExperimentResult:
    """What an experiment returns; :func:`~geninf.bench.experiments.write_outputs` saves it.

    Attributes:
        name: the experiment (``"class_removal"``, ``"selection_criteria"``, ``"backdoor"``).
        config: the settings, JSON-ready.
        seeds: the seeds run.
        versions: library versions and thread count.
        runs: one entry per seed and arm: ``{"seed", "arm", "metrics", "record"}`` — the raw
            per-seed metrics (test-split metrics, distances, compute) and the edit record.
        summaries: :func:`group_summaries` of ``runs`` (mean and sample std over seeds).
        extra: experiment-specific results (noise floor, reference numbers, ...).
        wall_time: seconds for the whole experiment.
    """

    name: str
    config: dict[str, Any]
    seeds: list[int]
    versions: dict[str, str]
    runs: list[dict[str, Any]] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    wall_time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (non-finite numbers become None)."""
        return json_safe({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentResult:
        """The result from its ``to_dict()`` (e.g. a ``results.json``), to redraw its report."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary_of(self, **arm: Any) -> dict[str, dict[str, float]]:
        """The metric summaries of the arm whose fields include ``arm``.

        Raises:
            InputError: no arm, or more than one, matches.
        """
        found = [s for s in self.summaries if all(s["arm"].get(k) == v for k, v in arm.items())]
        if len(found) != 1:
            raise InputError(f"{len(found)} arms match {arm}; arms are {self.arms()}")
        return found[0]["metrics"]

    def arms(self) -> list[dict[str, Any]]:
        """The arms, in order."""
        return [s["arm"] for s in self.summaries]

    def markdown(self) -> str:
        """The Markdown report (subclasses)."""
        raise NotImplementedError

    def plot(self, out_dir: Path) -> list[Path]:
        """Write the PNG plots into ``out_dir``; return their paths (subclasses)."""
        raise NotImplementedError


# ---------------------------------------------------------------------- writer
def write_outputs(result: Any, out_dir: str | Path) -> dict[str, Any]:
    """Write ``results.json``, ``table.md`` and the plots of ``result`` into ``out_dir``.

    ``result`` is an :class:`~geninf.bench.experiments.report.ExperimentResult` (``to_dict``,
    ``markdown``, ``plot``). JSON is strict (non-finite numbers are written as null).

    Returns:
        ``{"json": path, "markdown": path, "plots": [paths]}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result.to_dict(), indent=1, allow_nan=False)
    json_path, md_path = out / "results.json", out / "table.md"
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(text + "\n"))
    markdown = result.markdown()
    atomic_write(md_path, lambda tmp: Path(tmp).write_text(markdown + "\n"))
    plots = result.plot(out)
    return {"json": json_path, "markdown": md_path, "plots": plots}
