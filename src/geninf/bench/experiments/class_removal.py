"""Class removal (paper Table 1): remove every training example of one class, every method.

Per seed: train the model on the training split, retrain it from scratch without the class
(same seed: the reference) and with another seed (the retrain-vs-retrain noise floor), then edit
with every method — ``gif``, ``freezing``, ``projecting`` at each modification ratio, ``original``
and ``second_order`` on every parameter, ``finetune`` and ``gradient_ascent`` at the compute a
GIF run spent — under each schedule: ``newton`` (the raw one-shot update) and ``paper`` (step
norm and count chosen by :class:`~geninf.edit.ClassRemovalValidation` on the validation split).
Each edited model is evaluated on the test split after its edit returned:
:func:`~geninf.bench.class_removal_metrics` and :func:`~geninf.bench.distance_to_reference`
against the retrained model.

Example:
    >>> from geninf.bench.experiments import ClassRemovalConfig, run_class_removal
    >>> config = ClassRemovalConfig(seeds=(0, 1), epochs=5, methods=("gif",), ratios=(0.05,))
    >>> result = run_class_removal(config)  # doctest: +SKIP
    >>> result.summary_of(method="gif", schedule="paper")["f1"]["mean"]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ...edit import ClassRemovalValidation, EditMethod, Schedule, remove
from ...errors import InputError
from ...selection import Criterion
from ..datasets import Splits
from ..metrics import class_removal_metrics, distance_to_reference
from .common import (
    ExperimentConfig,
    Trained,
    check_choices,
    check_ratios,
    edit_kwargs,
    load_splits,
    objective_of,
    quiet_edit,
    record_summary,
    trained,
    versions,
)
from .report import Column, ExperimentResult, bar_plot, group_summaries, markdown_table, std_label

__all__ = ["ClassRemovalConfig", "ClassRemovalResult", "run_class_removal"]

SUBSET_METHODS = ("gif", "freezing", "projecting")
FULL_METHODS = ("original", "second_order")
BASELINES = ("finetune", "gradient_ascent")
#: the noise-floor retraining uses seed + NOISE_SEED_OFFSET
NOISE_SEED_OFFSET = 1000

#: paper Table 1 (CIFAR-10, VGG-11, class 8, MR 5%; mean of 10 runs): test acc, self acc, F1
PAPER_TABLE1 = {
    "gif": (90.13, 0.26, 0.9469),
    "freezing": (89.24, 0.41, 0.9412),
    "projecting": (87.95, 0.72, 0.9326),
    "original": (86.06, 1.29, 0.9194),
    "second_order": (84.34, 2.63, 0.9038),
    "retrain": (91.79, 0.00, 0.9572),
}


@dataclass(frozen=True)
class ClassRemovalConfig(ExperimentConfig):
    """Settings of :func:`run_class_removal` (the shared ones: :class:`ExperimentConfig`).

    Defaults: digits, the 64-128-64-10 tanh MLP (17k parameters), 40 epochs, 5 seeds.

    Attributes:
        forget_class: the class whose training examples are removed.
        methods: which of gif, freezing, projecting, original, second_order, finetune,
            gradient_ascent to run.
        ratios: modification ratios (fractions of each layer) of gif / freezing / projecting.
        schedules: ``newton`` and/or ``paper``.
        criterion: the selection criterion of the subset methods.
        budget_ratio: the GIF ratio whose measured compute (same seed and schedule) is the
            budget of finetune / gradient_ascent; None: the first of ``ratios``.
        noise_floor: also retrain with another seed and report retrain vs retrain.
    """

    forget_class: int = 8
    methods: tuple[str, ...] = SUBSET_METHODS + FULL_METHODS + BASELINES
    ratios: tuple[float, ...] = (0.05, 0.15, 0.30)
    schedules: tuple[str, ...] = ("newton", "paper")
    criterion: str = "highest_outputs"
    budget_ratio: float | None = None
    noise_floor: bool = True

    def validate(self) -> None:
        super().validate()
        object.__setattr__(self, "methods", check_choices("methods", self.methods, _ALL_METHODS))
        object.__setattr__(self, "ratios", check_ratios("ratios", self.ratios))
        schedules = check_choices("schedules", self.schedules, [s.value for s in Schedule])
        object.__setattr__(self, "schedules", schedules)
        object.__setattr__(self, "criterion", Criterion.parse(self.criterion).value)
        if isinstance(self.forget_class, bool) or not isinstance(self.forget_class, int):
            raise InputError(f"forget_class must be an int, got {self.forget_class!r}")
        if self.budget_ratio is not None and self.budget_ratio not in self.ratios:
            raise InputError(
                f"budget_ratio={self.budget_ratio} is not one of ratios={self.ratios}: the "
                "baselines' budget is the compute of a GIF run at that ratio"
            )

    @property
    def baseline_budget_ratio(self) -> float:
        return self.ratios[0] if self.budget_ratio is None else float(self.budget_ratio)


_ALL_METHODS = [m.value for m in EditMethod]


class ClassRemovalResult(ExperimentResult):
    """Result of :func:`run_class_removal`: per-seed runs, summaries, tables and plots."""

    def _rows(self, schedule: str | None) -> list[tuple[list[str], dict[str, Any]]]:
        rows = []
        for s in self.summaries:
            arm = s["arm"]
            if arm["schedule"] == schedule:
                rows.append(([_label(arm)], s["metrics"]))
        return rows

    def markdown(self) -> str:
        cfg = self.config
        n = len(self.seeds)
        cols = [
            Column("test_acc", "test acc (%)"),
            Column("self_acc", "self acc train (%)"),
            Column("self_test_acc", "self acc test (%)"),
            Column("f1", "F1", 4),
            Column("agreement", "agree w/ retrain (%)"),
            Column("kl", "KL to retrain", 3),
            Column("wall_time", "time (s)"),
            Column("example_gradients", "compute (10³ ex-grads)", 1, 1e-3),
        ]
        parts = [
            f"# Class removal: class {cfg['forget_class']} from {cfg['model']} on {cfg['data']}",
            "",
            f"Test split metrics after each edit. Subset methods use criterion "
            f"`{cfg['criterion']}`; finetune / gradient_ascent get the compute of the GIF run at "
            f"{100 * self.extra['budget_ratio']:g}% (same seed and schedule). Damping "
            f"{cfg['damping']}, solver `{cfg['solver']}` {cfg['solver_options']}.",
            "",
            "## References (no edit)",
            "",
            markdown_table(self._rows(None), ["model"], cols),
            "",
        ]
        titles = {
            "newton": "newton schedule (raw one-shot update, theoretical scale)",
            "paper": "paper schedule (γ and step count chosen on the validation split)",
        }
        for schedule in cfg["schedules"]:
            parts += [
                f"## {titles[schedule]}",
                "",
                markdown_table(self._rows(schedule), ["method"], cols),
                "",
            ]
        ref = self.extra.get("paper_table1_cifar10_vgg11_mr5", {})
        parts += ["## Paper Table 1 for comparison (CIFAR-10, VGG-11, class 8, MR 5%, 10 runs)", ""]
        parts += ["| method | test acc (%) | self acc (%) | F1 |", "|---|---|---|---|"]
        parts += [f"| {m} | {t:.2f} | {a:.2f} | {f:.4f} |" for m, (t, a, f) in ref.items()]
        parts += [
            "",
            std_label(n, self.seeds),
            "`retrain (other seed)` is the noise floor: retraining with seed + "
            f"{NOISE_SEED_OFFSET}, compared with the retrained model of the same seed. Compute is "
            "in example-gradient evaluations (an HVP over N examples counts 2N).",
        ]
        return "\n".join(parts)

    def plot(self, out_dir: Path) -> list[Path]:
        paths = []
        for metric, ylabel, name in (
            ("f1", "F1 (train self acc)", "f1.png"),
            ("test_acc", "test acc, other classes (%)", "test_acc.png"),
        ):
            labels: list[str] = []
            for s in self.summaries:
                if s["arm"]["schedule"] is not None and _label(s["arm"]) not in labels:
                    labels.append(_label(s["arm"]))
            series = {}
            for schedule in self.config["schedules"]:
                by_label = {
                    _label(s["arm"]): s["metrics"][metric]
                    for s in self.summaries
                    if s["arm"]["schedule"] == schedule
                }
                series[schedule] = (
                    [by_label.get(k, {}).get("mean") for k in labels],
                    [by_label.get(k, {}).get("std") for k in labels],
                )
            ref = {}
            for s in self.summaries:
                if s["arm"]["method"] in ("retrain", "retrain (other seed)"):
                    ref[s["arm"]["method"]] = s["metrics"][metric]["mean"]
            title = (
                f"Removing class {self.config['forget_class']} ({self.config['model']}, "
                f"{self.config['data']}); mean ± std over {len(self.seeds)} seeds"
            )
            kw = {"ylabel": ylabel, "title": title, "hlines": ref, "zoom": True}
            paths.append(bar_plot(out_dir / name, labels, series, **kw))
        return paths


def _label(arm: dict[str, Any]) -> str:
    ratio = arm.get("ratio")
    if arm["method"] in BASELINES:
        return f"{arm['method']} (GIF budget)"
    if ratio is None:
        return arm["method"]
    return f"{arm['method']} {100 * ratio:g}%"


def forget_split(splits: Splits, c: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    x, y = splits.train
    keep = y != c
    if not bool((~keep).any()):
        raise InputError(f"class {c} has no training example in {splits.name}")
    return (x[keep], y[keep]), (x[~keep], y[~keep])


def removal_metrics(model: nn.Module, splits: Splits, c: int, forget, reference: nn.Module) -> dict:
    """Test-split metrics (called only after the edit that made ``model`` returned)."""
    metrics = class_removal_metrics(model, splits, c, forget)
    metrics.update(distance_to_reference(model, reference, splits.test))
    return metrics


def _arms(config: ClassRemovalConfig) -> list[tuple[str, float | None]]:
    """(method, ratio) in run order: subset methods, full methods, then baselines."""
    arms = [(m, r) for m in SUBSET_METHODS if m in config.methods for r in config.ratios]
    arms += [(m, 1.0) for m in FULL_METHODS if m in config.methods]
    arms += [(m, None) for m in BASELINES if m in config.methods]
    return arms


def _one_seed(config: ClassRemovalConfig, splits: Splits, seed: int) -> list[dict[str, Any]]:
    c = config.forget_class
    retain, forget = forget_split(splits, c)
    original = trained(config, splits, splits.train, seed, "original")
    retrained = trained(config, splits, retain, seed, f"retrain-without-{c}")
    refs: list[tuple[str, Trained]] = [("original model", original), ("retrain", retrained)]
    if config.noise_floor:
        other = trained(config, splits, retain, seed + NOISE_SEED_OFFSET, f"retrain-without-{c}")
        refs.append(("retrain (other seed)", other))
    runs = []
    for name, t in refs:
        arm = {"method": name, "ratio": None, "schedule": None}
        runs.append(reference_row(t, splits, c, forget, retrained.model, seed, arm))
    validation = ClassRemovalValidation(splits.validation, c)
    for schedule in config.schedules:
        budget = None
        for method, ratio in _arms(config):
            extra: dict[str, Any] = {}
            if method in SUBSET_METHODS:
                extra = {"ratio": ratio, "criterion": config.criterion}
            elif method in BASELINES:  # without a GIF run here, remove() measures one itself
                extra = {
                    "budget": budget,
                    "ratio": config.baseline_budget_ratio,
                    "criterion": config.criterion,
                }
            arm = {"method": method, "ratio": ratio, "schedule": schedule}
            run = (config, original.model, (retain, forget), splits, c, retrained.model)
            res, row = edit_row(*run, validation, seed, arm, **extra)
            if method == "gif" and ratio == config.baseline_budget_ratio:
                budget = res.record.compute.example_gradients
            runs.append(row)
    return runs


def reference_row(t: Trained, splits, c, forget, reference, seed, arm) -> dict[str, Any]:
    """The run row of a model that was trained, not edited (the original, a retraining)."""
    metrics = removal_metrics(t.model, splits, c, forget, reference)
    metrics.update(t.reference_metrics())
    return {"seed": seed, "arm": arm, "metrics": metrics, "record": None}


def edit_row(
    config: ExperimentConfig,
    original: nn.Module,
    data: tuple[Any, Any],
    splits: Splits,
    c: int,
    reference: nn.Module,
    validation: Any,
    seed: int,
    arm: dict[str, Any],
    **settings: Any,
) -> tuple[Any, dict[str, Any]]:
    """Remove ``data = (retain, forget)`` from ``original`` with :func:`geninf.edit.remove`
    (``arm``'s method and schedule, ``settings`` and the config's edit options); return the
    result and its run row (test metrics against ``reference``, the record's numbers)."""
    retain, forget = data
    kw = edit_kwargs(config, method=arm["method"], schedule=arm["schedule"], seed=seed, **settings)
    res = quiet_edit(
        remove, original, objective_of(config), retain, forget, validation=validation, **kw
    )
    metrics = removal_metrics(res.model, splits, c, forget, reference)
    metrics.update(record_summary(res.record))
    return res, {"seed": seed, "arm": arm, "metrics": metrics, "record": res.record.to_dict()}


def run_class_removal(config: ClassRemovalConfig | None = None) -> ClassRemovalResult:
    """Run the class-removal experiment (module docstring) over ``config.seeds``.

    Returns:
        A :class:`ClassRemovalResult`; ``write_outputs(result, out_dir)`` saves it.
    """
    config = config or ClassRemovalConfig()
    start = time.perf_counter()
    splits = load_splits(config)
    if not 0 <= config.forget_class < splits.num_classes:
        raise InputError(
            f"forget_class must be in 0..{splits.num_classes - 1}, got {config.forget_class}"
        )
    runs: list[dict[str, Any]] = []
    for seed in config.seeds:
        runs += _one_seed(config, splits, seed)
    return ClassRemovalResult(
        name="class_removal",
        config=config.to_dict(),
        seeds=list(config.seeds),
        versions=versions(),
        runs=runs,
        summaries=group_summaries(runs),
        extra={
            "budget_ratio": config.baseline_budget_ratio,
            "splits": splits.sizes,
            "num_forget_train": int((splits.train[1] == config.forget_class).sum()),
            "paper_table1_cifar10_vgg11_mr5": PAPER_TABLE1,
        },
        wall_time=time.perf_counter() - start,
    )
