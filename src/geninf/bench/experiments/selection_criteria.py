"""Selection criteria (paper Fig. 3): accuracy vs modification ratio for the five criteria.

Per seed: the trained model and its retraining without ``forget_class`` (shared with the class
removal experiment through the cache when the settings agree), then GIF removal of the class with
each criterion (Highest-k / Lowest-k outputs and gradients, Random) at each modification ratio,
plus the original influence function on every parameter as a reference line. The default
schedule is ``paper`` (validation-tuned, as the figure was made); ``newton`` can be added.

Example:
    >>> from geninf.bench.experiments import SelectionConfig, run_selection_criteria
    >>> config = SelectionConfig(seeds=(0, 1), epochs=5, ratios=(0.05,))
    >>> result = run_selection_criteria(config)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...edit import ClassRemovalValidation, Schedule
from ...errors import InputError
from .class_removal import edit_row, forget_split, reference_row
from .common import (
    ExperimentConfig,
    check_choices,
    check_ratios,
    load_splits,
    trained,
    versions,
)
from .report import (
    Column,
    ExperimentResult,
    format_mean_std,
    group_summaries,
    line_plot,
    markdown_table,
    std_label,
)

__all__ = ["SelectionConfig", "SelectionResult", "run_selection_criteria"]

CRITERIA = ("highest_outputs", "highest_gradients", "random", "lowest_outputs", "lowest_gradients")

#: paper Fig. 3 (CIFAR-10, VGG-11, test acc % after removing a class), as read in method.md §6
PAPER_FIG3 = {
    "highest_outputs@5%": 91.47,
    "highest_gradients@5%": 91.50,
    "random": "75–85",
    "lowest": "far lower",
    "original (100%)": 76.13,
}


@dataclass(frozen=True)
class SelectionConfig(ExperimentConfig):
    """Settings of :func:`run_selection_criteria` (shared ones: :class:`ExperimentConfig`).

    Attributes:
        forget_class: the class removed.
        criteria: selection criteria to compare.
        ratios: modification ratios (fractions of each layer).
        schedules: ``paper`` (default) and/or ``newton``.
        include_original: also run the original influence function (100%) as a reference line.
    """

    forget_class: int = 8
    criteria: tuple[str, ...] = CRITERIA
    ratios: tuple[float, ...] = (0.01, 0.05, 0.10, 0.30)
    schedules: tuple[str, ...] = ("paper",)
    include_original: bool = True

    def validate(self) -> None:
        super().validate()
        object.__setattr__(self, "criteria", check_choices("criteria", self.criteria, CRITERIA))
        object.__setattr__(self, "ratios", tuple(sorted(check_ratios("ratios", self.ratios))))
        schedules = check_choices("schedules", self.schedules, [s.value for s in Schedule])
        object.__setattr__(self, "schedules", schedules)
        if isinstance(self.forget_class, bool) or not isinstance(self.forget_class, int):
            raise InputError(f"forget_class must be an int, got {self.forget_class!r}")
        if not isinstance(self.include_original, bool):
            raise InputError(
                f"include_original must be True or False, got {self.include_original!r}"
            )


class SelectionResult(ExperimentResult):
    """Result of :func:`run_selection_criteria`."""

    def _refs(self, schedule: str | None, metric: str) -> dict[str, float]:
        out = {}
        for s in self.summaries:
            arm = s["arm"]
            if arm["criterion"] is None and arm["schedule"] in (None, schedule):
                name = arm["method"] if arm["schedule"] is None else "original IF (100%)"
                out[name] = s["metrics"][metric]["mean"]
        return out

    def _gif(self, criterion: str, ratio: float, schedule: str) -> dict[str, Any]:
        arm = {"method": "gif", "criterion": criterion, "ratio": ratio, "schedule": schedule}
        return self.summary_of(**arm)

    def _pivot(self, schedule: str, metric: str, digits: int, scale: float) -> str:
        """Criteria × ratios table of one metric."""
        ratios = self.config["ratios"]
        rows = [
            ([crit], {f"{r:g}": self._gif(crit, r, schedule)[metric] for r in ratios})
            for crit in self.config["criteria"]
        ]
        cols = [Column(f"{r:g}", f"{100 * r:g}%", digits, scale) for r in ratios]
        return markdown_table(rows, ["criterion"], cols)

    def markdown(self) -> str:
        cfg = self.config
        cols = [
            Column("test_acc", "test acc (%)"),
            Column("self_acc", "self acc train (%)"),
            Column("self_test_acc", "self acc test (%)"),
            Column("f1", "F1", 4),
            Column("wall_time", "time (s)"),
        ]
        parts = [
            f"# Selection criteria: GIF removal of class {cfg['forget_class']} from "
            f"{cfg['model']} on {cfg['data']}",
            "",
        ]
        for schedule in cfg["schedules"]:
            long_rows = [
                ([crit, f"{100 * r:g}%"], self._gif(crit, r, schedule))
                for crit in cfg["criteria"]
                for r in cfg["ratios"]
            ]
            ref_rows = [
                (_ref_labels(s["arm"]), s["metrics"])
                for s in self.summaries
                if s["arm"]["criterion"] is None and s["arm"]["schedule"] in (None, schedule)
            ]
            for metric, what, digits, scale in (
                ("test_acc", "test acc (%, other classes)", 2, 1.0),
                ("f1", "F1 (forgetting the removed training examples vs test acc)", 4, 1.0),
            ):
                parts += [f"## {schedule} schedule: {what} vs modification ratio", ""]
                parts += [self._pivot(schedule, metric, digits, scale), ""]
                refs = "; ".join(
                    f"{labels[0]} {format_mean_std(m[metric]['mean'], m[metric]['std'], digits)}"
                    for labels, m in ref_rows
                )
                parts += [f"References: {refs}", ""]
            parts += [
                f"## {schedule} schedule: all metrics",
                "",
                markdown_table(ref_rows + long_rows, ["criterion", "ratio"], cols),
                "",
            ]
        parts.append(std_label(len(self.seeds), self.seeds))
        return "\n".join(parts)

    def plot(self, out_dir: Path) -> list[Path]:
        cfg = self.config
        x = [100 * r for r in cfg["ratios"]]
        paths = []
        for metric, ylabel in (
            ("test_acc", "test acc, other classes (%)"),
            ("self_acc", "self acc, removed train examples (%)"),
            ("f1", "F1"),
        ):
            for schedule in cfg["schedules"]:
                series = {}
                for crit in cfg["criteria"]:
                    ms = [
                        self.summary_of(method="gif", criterion=crit, ratio=r, schedule=schedule)[
                            metric
                        ]
                        for r in cfg["ratios"]
                    ]
                    series[crit] = ([m["mean"] for m in ms], [m["std"] for m in ms])
                suffix = "" if len(cfg["schedules"]) == 1 else f"_{schedule}"
                paths.append(
                    line_plot(
                        out_dir / f"{metric}_vs_ratio{suffix}.png",
                        x,
                        series,
                        xlabel="modification ratio (% of each layer)",
                        ylabel=ylabel,
                        logx=True,
                        title=f"GIF ({schedule}) removing class {cfg['forget_class']}, "
                        f"{cfg['model']} on {cfg['data']}; mean ± std over {len(self.seeds)} seeds",
                        hlines=self._refs(schedule, metric),
                    )
                )
        return paths


def _ref_labels(arm: dict[str, Any]) -> list[str]:
    if arm["method"] == "original":
        return ["original IF", "100%"]
    return [arm["method"], "—"]


def run_selection_criteria(config: SelectionConfig | None = None) -> SelectionResult:
    """Run the selection-criteria experiment (module docstring) over ``config.seeds``."""
    config = config or SelectionConfig()
    start = time.perf_counter()
    splits = load_splits(config)
    c = config.forget_class
    if not 0 <= c < splits.num_classes:
        raise InputError(f"forget_class must be in 0..{splits.num_classes - 1}, got {c}")
    retain, forget = forget_split(splits, c)
    validation = ClassRemovalValidation(splits.validation, c)
    runs: list[dict[str, Any]] = []
    for seed in config.seeds:
        original = trained(config, splits, splits.train, seed, "original")
        retrained = trained(config, splits, retain, seed, f"retrain-without-{c}")
        for name, t in (("original model", original), ("retrain", retrained)):
            arm = {"method": name, "criterion": None, "ratio": None, "schedule": None}
            runs.append(reference_row(t, splits, c, forget, retrained.model, seed, arm))
        for schedule in config.schedules:
            jobs: list[tuple[str, str | None, float | None]] = [
                ("gif", crit, r) for crit in config.criteria for r in config.ratios
            ]
            if config.include_original:
                jobs.append(("original", None, None))
            for method, crit, ratio in jobs:
                sub = {} if crit is None else {"criterion": crit, "ratio": ratio}
                arm = {"method": method, "criterion": crit, "ratio": ratio, "schedule": schedule}
                run = (config, original.model, (retain, forget), splits, c, retrained.model)
                runs.append(edit_row(*run, validation, seed, arm, **sub)[1])
    return SelectionResult(
        name="selection_criteria",
        config=config.to_dict(),
        seeds=list(config.seeds),
        versions=versions(),
        runs=runs,
        summaries=group_summaries(runs),
        extra={"splits": splits.sizes, "paper_fig3_cifar10_vgg11": PAPER_FIG3},
        wall_time=time.perf_counter() - start,
    )
