"""Backdoor recovery (the authors' table, method.md §6): relabel or remove the poisoned examples.

A fraction ``poison_rate`` of the training images (drawn once, with ``data_seed``) gets the
checkerboard trigger and label ``target_label``; the model trained on them is then repaired,
knowing which examples were poisoned, in two ways:

- **relabel**: :func:`geninf.edit.relabel` with ``changes = (poisoned indices, true labels)``
  (the images keep their trigger) — methods gif, freezing, projecting, original, finetune;
  reference: retraining on the corrected labels;
- **remove**: :func:`geninf.edit.remove` of the poisoned examples — the same methods plus
  second_order; reference: retraining on the clean examples.

The ``paper`` schedule is steered by :class:`BackdoorValidation` on the *validation* split (its
images with the trigger stamped); the test split is read only after each edit, for
:func:`~geninf.bench.backdoor_metrics` on held-out triggered test images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ...edit import Schedule, f1_score, relabel, remove
from ...errors import InputError
from ...selection import Criterion
from ..backdoor import (
    Poisoned,
    Trigger,
    apply_trigger,
    backdoor_metrics,
    badnets_patch,
    checkerboard_trigger,
    poison,
)
from ..datasets import Splits
from ..metrics import distance_to_reference, predict_logits
from .common import (
    ExperimentConfig,
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

__all__ = ["BackdoorConfig", "BackdoorResult", "BackdoorValidation", "run_backdoor"]

RELABEL_METHODS = ("gif", "freezing", "projecting", "original", "finetune")
REMOVE_METHODS = ("gif", "freezing", "projecting", "original", "second_order", "finetune")

#: the authors' notebook (MNIST, TinyNet, 10% poisoned, MR 5%, Highest-k outputs):
#: clean acc / relabel acc / attack success over all triggered images (%)
PAPER_BACKDOOR = {
    "gif": (98.26, 95.38, 11.48),
    "freezing": (91.05, 88.76, 16.15),
    "projecting": (95.78, 92.30, 11.77),
    "original": (97.84, 93.25, 14.22),
    "second_order": (98.23, 86.30, 21.75),
    "retrain": (99.96, 99.98, 9.40),
}


class BackdoorValidation:
    """Validation score for backdoor recovery: F1 of relabel accuracy and clean accuracy.

    On the validation split: ``c`` = accuracy on the clean images, ``r`` = accuracy (true labels)
    on the images of the classes other than ``target_label`` with the trigger stamped; the score
    is the harmonic mean ``2rc / (r + c)`` (:func:`~geninf.edit.f1_score` with ``s = 1 − r``).

    Args:
        data: the validation split ``(inputs, targets)`` — never the test split.
        trigger: the backdoor trigger (in the data's scale).
        target_label: the backdoor's label.
    """

    def __init__(self, data: tuple[Tensor, Tensor], trigger: Trigger, target_label: int):
        x, y = data
        others = y != int(target_label)
        if not bool(others.any()):
            raise InputError(
                f"the validation split has no image of a class other than {target_label}"
            )
        self.clean = (x, y)
        self.triggered = (apply_trigger(x[others], trigger), y[others])
        self.target_label = int(target_label)

    def accuracies(self, model: nn.Module) -> tuple[float, float]:
        """``(relabel acc, clean acc)`` on the validation split, as fractions."""
        out = []
        for x, y in (self.triggered, self.clean):
            pred = predict_logits(model, x).argmax(dim=1)
            out.append(float((pred == y).double().mean()))
        return out[0], out[1]

    def __call__(self, model: nn.Module) -> float:
        r, c = self.accuracies(model)
        return f1_score(1.0 - r, c)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "backdoor_relabel_clean_f1",
            "target_label": self.target_label,
            "num_clean": len(self.clean[1]),
            "num_triggered": len(self.triggered[1]),
        }


@dataclass(frozen=True)
class BackdoorConfig(ExperimentConfig):
    """Settings of :func:`run_backdoor` (shared ones: :class:`ExperimentConfig`).

    Defaults (sized for a few minutes on 2 CPU cores): mnist5k with 1,000 of its 3,500 training
    images (a stratified sample; validation and test splits whole), the paper's TinyNet at width
    0.5 (16/32/64/128 channels), 40 epochs, 10% poisoned; 10 LSMR/CG iterations per solve; the
    ``paper`` schedule only, with step norms γ ∈ {0.1, 0.3} (the authors' table was made with
    it; add ``"newton"`` to ``schedules`` for the raw update).

    Attributes:
        poison_rate: fraction of the training images poisoned (drawn with ``data_seed``).
        target_label: the label poisoned images get.
        trigger: ``"checkerboard"`` (the paper's) or ``"badnets"``.
        ratio: modification ratio of gif / freezing / projecting.
        criterion: their selection criterion (the authors': Highest-k outputs).
        extra_gif_criteria: further criteria run with GIF only (extra rows, e.g.
            ``"gif (highest_gradients)"``).
        recoveries: ``relabel`` and/or ``remove``.
        methods: methods to run (second_order runs for removal only).
        schedules: ``newton`` and/or ``paper``.
    """

    data: str = "mnist5k"
    model: str = "tinynet"
    width: float = 0.5
    epochs: int = 40
    max_train: int | None = 1000
    gammas: tuple[float, ...] = (0.1, 0.3)
    poison_rate: float = 0.1
    target_label: int = 4
    trigger: str = "checkerboard"
    ratio: float = 0.05
    criterion: str = "highest_outputs"
    extra_gif_criteria: tuple[str, ...] = ("highest_gradients",)
    recoveries: tuple[str, ...] = ("relabel", "remove")
    methods: tuple[str, ...] = REMOVE_METHODS
    schedules: tuple[str, ...] = ("paper",)

    def validate(self) -> None:
        super().validate()
        object.__setattr__(self, "ratio", check_ratios("ratio", self.ratio)[0])
        object.__setattr__(self, "criterion", Criterion.parse(self.criterion).value)
        extra = tuple(Criterion.parse(c).value for c in self.extra_gif_criteria)
        five = ("highest_outputs", "highest_gradients", "lowest_outputs", "lowest_gradients")
        check_choices("extra_gif_criteria", extra or five, (*five, "random"))
        object.__setattr__(self, "extra_gif_criteria", extra)
        rec = check_choices("recoveries", self.recoveries, ["relabel", "remove"])
        object.__setattr__(self, "recoveries", rec)
        object.__setattr__(self, "methods", check_choices("methods", self.methods, REMOVE_METHODS))
        schedules = check_choices("schedules", self.schedules, [s.value for s in Schedule])
        object.__setattr__(self, "schedules", schedules)
        check_choices("trigger", (self.trigger,), ["checkerboard", "badnets"])
        if not 0.0 < float(self.poison_rate) < 1.0:
            raise InputError(f"poison_rate must be in (0, 1), got {self.poison_rate!r}")
        if isinstance(self.target_label, bool) or not isinstance(self.target_label, int):
            raise InputError(f"target_label must be an int, got {self.target_label!r}")


class BackdoorResult(ExperimentResult):
    """Result of :func:`run_backdoor`."""

    def _rows(self, schedule: str | None) -> list[tuple[list[str], dict[str, Any]]]:
        return [
            ([s["arm"]["recovery"] or "—", _label(s["arm"], self.config)], s["metrics"])
            for s in self.summaries
            if s["arm"]["schedule"] == schedule
        ]

    def markdown(self) -> str:
        cfg = self.config
        cols = [
            Column("clean_acc", "clean acc (%)"),
            Column("attack_success", "attack success (%)"),
            Column("attack_success_all", "attack success, all triggered (%)"),
            Column("relabel_acc", "relabel acc (%)"),
            Column("f1", "F1", 4),
            Column("agreement", "agree w/ retrain, triggered (%)"),
            Column("wall_time", "time (s)"),
            Column("example_gradients", "compute (10³ ex-grads)", 1, 1e-3),
        ]
        parts = [
            f"# Backdoor recovery: {cfg['model']} (width {cfg['width']}) on {cfg['data']}, "
            f"{100 * cfg['poison_rate']:g}% poisoned with the {cfg['trigger']} trigger → label "
            f"{cfg['target_label']}",
            "",
            f"Test split (held-out) metrics after each edit. Subset methods at "
            f"{100 * cfg['ratio']:g}% with `{cfg['criterion']}`; finetune gets the compute of the "
            f"GIF run (same seed, recovery and schedule). `attack success` counts triggered test "
            f"images of the other classes predicted {cfg['target_label']}; `all triggered` counts "
            f"every triggered image (the authors' convention, floor ≈ share of class "
            f"{cfg['target_label']}). Agreement with the retrained model of the same recovery, "
            "on the triggered test images.",
            "",
            "## References (no edit)",
            "",
            markdown_table(self._rows(None), ["recovery", "model"], cols),
            "",
        ]
        for schedule in cfg["schedules"]:
            what = (
                "raw one-shot update"
                if schedule == "newton"
                else "γ and step count chosen on the triggered validation split"
            )
            parts += [
                f"## {schedule} schedule ({what})",
                "",
                markdown_table(self._rows(schedule), ["recovery", "method"], cols),
                "",
            ]
        ref = self.extra.get("paper_backdoor_mnist_tinynet", {})
        parts += ["## The authors' numbers (MNIST, TinyNet, MR 5%, their test-tuned schedule)", ""]
        parts += ["| method | clean acc | relabel acc | attack success, all triggered |"]
        parts += ["|---|---|---|---|"]
        parts += [f"| {m} | {c:.2f} | {r:.2f} | {a:.2f} |" for m, (c, r, a) in ref.items()]
        parts += ["", std_label(len(self.seeds), self.seeds)]
        return "\n".join(parts)

    def plot(self, out_dir: Path) -> list[Path]:
        paths = []
        arms = [s["arm"] for s in self.summaries if s["arm"]["schedule"] is not None]
        labels = list(dict.fromkeys(_label(a, self.config) for a in arms))
        for metric, ylabel, name in (
            ("attack_success", "attack success (%)", "attack_success.png"),
            ("clean_acc", "clean acc (%)", "clean_acc.png"),
        ):
            series, refs = {}, {}
            for rec in self.config["recoveries"]:
                for schedule in self.config["schedules"]:
                    found = {
                        _label(s["arm"], self.config): s["metrics"][metric]
                        for s in self.summaries
                        if s["arm"]["recovery"] == rec and s["arm"]["schedule"] == schedule
                    }
                    series[f"{rec}, {schedule}"] = (
                        [found.get(k, {}).get("mean") for k in labels],
                        [found.get(k, {}).get("std") for k in labels],
                    )
            for s in self.summaries:
                if s["arm"]["schedule"] is None:
                    refs[s["arm"]["method"]] = s["metrics"][metric]["mean"]
            title = (
                f"Backdoor recovery, {self.config['model']} on {self.config['data']}; "
                f"mean ± std over {len(self.seeds)} seeds"
            )
            kw = {"ylabel": ylabel, "title": title, "hlines": refs, "zoom": metric == "clean_acc"}
            paths.append(bar_plot(out_dir / name, labels, series, **kw))
        return paths


def _trigger(config: BackdoorConfig, splits: Splits) -> Trigger:
    make = checkerboard_trigger if config.trigger == "checkerboard" else badnets_patch
    return make(splits.input_shape).normalized(splits.normalization)


def _evaluate(model, splits, trigger, target, reference, triggered_inputs) -> dict[str, Any]:
    """Held-out metrics (called only after the edit that made ``model`` returned)."""
    metrics = backdoor_metrics(model, splits.test, trigger, target)
    if reference is not None:
        d = distance_to_reference(model, reference, triggered_inputs)
        metrics["agreement"], metrics["kl"] = d["agreement"], d["kl"]
    return metrics


def _edit(
    config, recovery, job, model, objective, poisoned: Poisoned, schedule, score, seed, budget
):
    method, criterion = job
    settings = {"method": method, "schedule": schedule, "seed": seed, "ratio": config.ratio}
    settings["criterion"] = criterion or config.criterion
    if method == "finetune":
        settings["budget"] = budget
    kw = {**edit_kwargs(config, **settings), "validation": score}
    if recovery == "relabel":
        changes = (poisoned.indices, poisoned.original_labels)
        return quiet_edit(relabel, model, objective, poisoned.train, changes, **kw)
    return quiet_edit(remove, model, objective, poisoned.retain_data, poisoned.forget_data, **kw)


def _jobs(config: BackdoorConfig, recovery: str) -> list[tuple[str, str | None]]:
    """(method, criterion) in run order; GIF with ``config.criterion`` first (the budget)."""
    methods = RELABEL_METHODS if recovery == "relabel" else REMOVE_METHODS
    jobs: list[tuple[str, str | None]] = []
    for m in (m for m in methods if m in config.methods):
        if m in ("gif", "freezing", "projecting"):
            jobs.append((m, config.criterion))
            if m == "gif":
                jobs += [(m, c) for c in config.extra_gif_criteria if c != config.criterion]
        else:
            jobs.append((m, None))
    return jobs


def _label(arm: dict[str, Any], config: dict[str, Any]) -> str:
    crit = arm.get("criterion")
    return arm["method"] if crit in (None, config["criterion"]) else f"{arm['method']} ({crit})"


def _one_seed(
    config: BackdoorConfig, splits: Splits, poisoned: Poisoned, trigger: Trigger, seed: int
) -> list[dict[str, Any]]:
    target = config.target_label
    model = trained(config, splits, poisoned.train, seed, "poisoned")
    references = {
        "relabel": trained(config, splits, poisoned.relabeled_train, seed, "retrain-relabeled"),
        "remove": trained(config, splits, poisoned.retain_data, seed, "retrain-clean"),
    }
    score = BackdoorValidation(splits.validation, trigger, target)
    objective = objective_of(config)
    runs = []

    def triggered_inputs() -> Tensor:  # read only while evaluating
        x, y = splits.test
        return apply_trigger(x[y != target], trigger)

    refs = [(None, "poisoned model", model)]
    names = {"relabel": "retrain (relabeled)", "remove": "retrain (removed)"}
    refs += [(r, names[r], references[r]) for r in config.recoveries]
    for recovery, name, t in refs:
        metrics = _evaluate(t.model, splits, trigger, target, None, None)
        metrics.update(t.reference_metrics())
        arm = {"recovery": recovery, "method": name, "criterion": None, "schedule": None}
        runs.append({"seed": seed, "arm": arm, "metrics": metrics, "record": None})
    for schedule in config.schedules:
        for recovery in config.recoveries:
            budget = None
            for job in _jobs(config, recovery):
                args = (recovery, job, model.model, objective, poisoned, schedule, score, seed)
                res = _edit(config, *args, budget)
                if job == ("gif", config.criterion):
                    budget = res.record.compute.example_gradients
                ref = references[recovery].model
                metrics = _evaluate(res.model, splits, trigger, target, ref, triggered_inputs())
                metrics.update(record_summary(res.record))
                arm = {"recovery": recovery, "method": job[0], "criterion": job[1]}
                arm["schedule"] = schedule
                record = res.record.to_dict()
                runs.append({"seed": seed, "arm": arm, "metrics": metrics, "record": record})
    return runs


def run_backdoor(config: BackdoorConfig | None = None) -> BackdoorResult:
    """Run the backdoor-recovery experiment (module docstring) over ``config.seeds``."""
    config = config or BackdoorConfig()
    start = time.perf_counter()
    splits = load_splits(config)
    if not 0 <= config.target_label < splits.num_classes:
        raise InputError(
            f"target_label must be in 0..{splits.num_classes - 1}, got {config.target_label}"
        )
    trigger = _trigger(config, splits)
    poisoned = poison(
        splits.train,
        rate=config.poison_rate,
        target_label=config.target_label,
        trigger=trigger,
        seed=config.data_seed,
    )
    runs: list[dict[str, Any]] = []
    for seed in config.seeds:
        runs += _one_seed(config, splits, poisoned, trigger, seed)
    changed = int((poisoned.original_labels != config.target_label).sum())
    return BackdoorResult(
        name="backdoor",
        config=config.to_dict(),
        seeds=list(config.seeds),
        versions=versions(),
        runs=runs,
        summaries=group_summaries(runs),
        extra={
            "splits": splits.sizes,
            "num_poisoned": int(poisoned.indices.numel()),
            "num_label_changed": changed,
            "trigger_pixels": int(trigger.mask.sum()),
            "paper_backdoor_mnist_tinynet": PAPER_BACKDOOR,
            "paper_columns": ["clean_acc", "relabel_acc", "attack_success_all"],
        },
        wall_time=time.perf_counter() - start,
    )
