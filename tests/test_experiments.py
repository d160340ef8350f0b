"""The experiments (geninf.bench.experiments): tiny end-to-end runs, artefacts, protocol."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import statistics
from collections import Counter
from pathlib import Path

import pytest
import torch

from geninf import InputError
from geninf.bench.experiments import (
    BackdoorConfig,
    BackdoorValidation,
    ClassRemovalConfig,
    ClassRemovalResult,
    SelectionConfig,
    run_backdoor,
    run_class_removal,
    run_selection_criteria,
    write_outputs,
)
from geninf.bench.experiments import backdoor as backdoor_module
from geninf.bench.experiments import class_removal as class_removal_module
from geninf.bench.experiments.report import format_mean_std, markdown_table

imread = pytest.importorskip("matplotlib.image").imread  # matplotlib comes with mlxtend

TINY = dict(
    seeds=(0, 1),
    data="digits",
    model="mlp",
    width=0.25,
    epochs=3,
    solver_options={"max_iter": 4, "max_dense": 0},
    damping="rel:0.01",  # one solve per edit: the runners' mechanics, not the damping path
    gammas=(0.1, 0.3),
    max_steps=4,
)


def tiny_class_removal(**kw) -> ClassRemovalConfig:
    base = dict(methods=("gif", "original", "finetune"), ratios=(0.05,), noise_floor=True)
    return ClassRemovalConfig(**{**TINY, **base, **kw})


def tiny_selection(**kw) -> SelectionConfig:
    base = dict(criteria=("highest_outputs", "random"), ratios=(0.05, 0.3))
    return SelectionConfig(**{**TINY, **base, **kw})


def tiny_backdoor(**kw) -> BackdoorConfig:
    base = dict(
        methods=("gif", "second_order"),
        extra_gif_criteria=("random",),
        schedules=("paper",),
        max_train=None,
        epochs=4,
        width=0.5,
    )
    return BackdoorConfig(**{**TINY, **base, **kw})


# ------------------------------------------------------------------ artefacts
def check_artefacts(result, out: Path) -> dict:
    paths = write_outputs(result, out)
    data = json.loads(paths["json"].read_text())  # strict JSON: NaN would not parse back as such
    assert data["seeds"] == [0, 1] and data["config"]["seeds"] == [0, 1]
    assert {"geninf", "torch", "numpy", "python"} <= set(data["versions"])
    assert data["runs"] and data["summaries"] and data["wall_time"] > 0
    md = paths["markdown"].read_text()
    assert " ± " in md and "sample std over 2 seeds" in md
    assert paths["plots"]
    for png in paths["plots"]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert float(image[..., :3].std()) > 0  # not a blank canvas
    check_summaries(data)
    return data


def check_summaries(data: dict) -> None:
    """Every summary is the mean and sample std of the per-seed values of its arm."""
    for s in data["summaries"]:
        runs = [r for r in data["runs"] if r["arm"] == s["arm"]]
        assert len(runs) == s["n"] == 2
        for metric, summary in s["metrics"].items():
            values = [r["metrics"][metric] for r in runs]
            assert summary["mean"] == pytest.approx(statistics.mean(values), rel=1e-12, abs=1e-12)
            assert summary["std"] == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-12)
            assert summary["n"] == 2


def test_class_removal_end_to_end(tmp_path):
    config = tiny_class_removal(cache_dir=str(tmp_path / "cache"))
    result = run_class_removal(config)
    data = check_artefacts(result, tmp_path / "out")
    assert ClassRemovalResult.from_dict(data).markdown() == result.markdown()  # redrawable
    arms = {(a["method"], a["schedule"]) for a in result.arms()}
    assert arms == {
        ("original model", None),
        ("retrain", None),
        ("retrain (other seed)", None),
        *((m, s) for m in ("gif", "original", "finetune") for s in ("newton", "paper")),
    }
    retrain = result.summary_of(method="retrain")
    assert retrain["self_acc"]["mean"] == 0.0 and retrain["agreement"]["mean"] == 100.0
    paper = result.summary_of(method="gif", schedule="paper")
    original = result.summary_of(method="original model")
    assert paper["self_acc"]["mean"] < original["self_acc"]["mean"]  # the class was forgotten
    # baselines spend the GIF run's measured compute (same seed and schedule)
    for seed in (0, 1):
        for schedule in ("newton", "paper"):
            by = {
                r["arm"]["method"]: r
                for r in data["runs"]
                if r["seed"] == seed and r["arm"]["schedule"] == schedule
            }
            gif = by["gif"]["record"]["compute"]["example_gradients"]
            ft = by["finetune"]["record"]["compute"]
            assert ft["budget"] == gif and ft["budget_source"] == "given"
            assert by["gif"]["record"]["validation"]["kind"] == "class_removal_f1"
    # models are cached: a second run loads them and gives the same numbers
    quick = dict(methods=("gif",), schedules=("newton",), noise_floor=False)
    again = run_class_removal(dataclasses.replace(config, **quick))
    a = again.summary_of(method="gif", schedule="newton")["test_acc"]["mean"]
    assert a == result.summary_of(method="gif", schedule="newton")["test_acc"]["mean"]


def test_selection_criteria_end_to_end(tmp_path):
    result = run_selection_criteria(tiny_selection())
    check_artefacts(result, tmp_path)
    for crit in ("highest_outputs", "random"):
        for r in (0.05, 0.3):
            m = result.summary_of(method="gif", criterion=crit, ratio=r, schedule="paper")
            assert m["selected_fraction"]["mean"] == pytest.approx(r, abs=0.02)
    assert result.summary_of(method="original", schedule="paper")["selected_fraction"]["mean"] == 1
    md = (tmp_path / "table.md").read_text()
    assert "| highest_outputs |" in md and "| 5% | 30% |" in md


def test_backdoor_end_to_end(tmp_path):
    result = run_backdoor(tiny_backdoor())
    check_artefacts(result, tmp_path)
    poisoned = result.summary_of(method="poisoned model")
    assert poisoned["attack_success"]["mean"] > 50  # the backdoor took
    arms = {(a["recovery"], a["method"], a["criterion"]) for a in result.arms() if a["schedule"]}
    assert arms == {
        *((r, "gif", c) for r in ("relabel", "remove") for c in ("highest_outputs", "random")),
        ("remove", "second_order", None),
    }
    assert "| relabel | gif (random) |" in (tmp_path / "table.md").read_text()
    relabeled = result.summary_of(
        recovery="relabel", method="gif", criterion="highest_outputs", schedule="paper"
    )
    assert relabeled["attack_success"]["mean"] < poisoned["attack_success"]["mean"]
    assert result.extra["num_poisoned"] == 125  # 10% of digits' 1,259 training images
    run = next(r for r in result.runs if r["arm"]["schedule"] == "paper")
    assert run["record"]["validation"]["kind"] == "backdoor_relabel_clean_f1"
    assert run["record"]["subset"]["selection"]["criterion"] == "highest_outputs"


def test_backdoor_validation_scores_relabel_and_clean_accuracy():
    x = torch.zeros(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 1])
    x[:, 0, 0, 0] = y.float()  # the label, written in a corner the trigger leaves alone
    trigger = backdoor_module.checkerboard_trigger((1, 8, 8))

    class Oracle(torch.nn.Module):  # right on clean images, predicts 1 on triggered ones
        def forward(self, inp):
            triggered = inp[:, 0, -1, -1] == 1.0
            out = torch.nn.functional.one_hot(inp[:, 0, 0, 0].long(), 3).float()
            out[triggered] = torch.tensor([0.0, 1.0, 0.0])
            return out

    score = BackdoorValidation((x, y), trigger, target_label=1)
    assert score.accuracies(Oracle()) == (0.0, 1.0)  # the two non-target images are hit
    assert score(Oracle()) == 0.0 and score.describe()["num_triggered"] == 2


# ------------------------------------------------------------------ protocol: test split
class _TestSplit(torch.Tensor):
    """A tensor of the test split; every torch operation on it is counted by phase."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        COUNTS[(PHASE[-1], cls.kind)] += 1
        return super().__torch_function__(func, types, args, kwargs or {})

    kind = "test"


class _ValidationSplit(_TestSplit):
    kind = "validation"


COUNTS: Counter = Counter()
PHASE = ["evaluate"]


def _phase(name, fn):
    def wrapped(*args, **kwargs):
        PHASE.append(name)
        try:
            return fn(*args, **kwargs)
        finally:
            PHASE.pop()

    return wrapped


@pytest.mark.parametrize("experiment", ["class_removal", "backdoor"])
def test_the_test_split_is_read_only_after_editing(monkeypatch, experiment):
    module = class_removal_module if experiment == "class_removal" else backdoor_module
    load = module.load_splits

    def guarded_splits(config):
        s = load(config)
        mark = lambda data, cls: tuple(t.as_subclass(cls) for t in data)  # noqa: E731
        return dataclasses.replace(
            s, test=mark(s.test, _TestSplit), validation=mark(s.validation, _ValidationSplit)
        )

    monkeypatch.setattr(module, "load_splits", guarded_splits)
    monkeypatch.setattr(module, "trained", _phase("train", module.trained))
    for name in ("remove", "relabel"):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, _phase("edit", getattr(module, name)))
    COUNTS.clear()
    if experiment == "class_removal":
        run_class_removal(tiny_class_removal(seeds=(0,), methods=("gif", "finetune")))
    else:
        run_backdoor(tiny_backdoor(seeds=(0,), recoveries=("relabel",), methods=("gif",)))
    assert COUNTS[("edit", "validation")] > 0  # the paper schedule scored on validation
    assert COUNTS[("edit", "test")] == 0 and COUNTS[("train", "test")] == 0
    assert COUNTS[("evaluate", "test")] > 0  # reported after the edits


# ------------------------------------------------------------------ configs and reports
@pytest.mark.parametrize(
    "make, kw, match",
    [
        (tiny_class_removal, {"ratios": (5,)}, "fractions in"),
        (tiny_class_removal, {"methods": ("gif", "magic")}, "unknown methods"),
        (tiny_class_removal, {"seeds": ()}, "seeds is empty"),
        (tiny_class_removal, {"seeds": (0, 0)}, "distinct"),
        (tiny_class_removal, {"budget_ratio": 0.3}, "budget_ratio"),
        (tiny_class_removal, {"schedules": ("cosine",)}, "unknown schedules"),
        (tiny_class_removal, {"epochs": 0}, "epochs must be an int >= 1"),
        (tiny_class_removal, {"damping": -1.0}, "damping must be a finite number >= 0"),
        (tiny_selection, {"criteria": ("best",)}, "unknown criteria"),
        (tiny_backdoor, {"poison_rate": 1.5}, "poison_rate"),
        (tiny_backdoor, {"recoveries": ("forget",)}, "unknown recoveries"),
        (tiny_backdoor, {"trigger": "star"}, "unknown trigger"),
        (tiny_backdoor, {"extra_gif_criteria": ("all",)}, "unknown extra_gif_criteria"),
    ],
)
def test_configs_are_validated(make, kw, match):
    with pytest.raises(InputError, match=match):
        make(**kw)


def test_config_round_trips_to_json():
    config = tiny_class_removal(ratios=[0.3, 0.05])
    assert config.ratios == (0.3, 0.05) and isinstance(config.seeds, tuple)
    d = json.loads(json.dumps(config.to_dict(), allow_nan=False))
    assert d["ratios"] == [0.3, 0.05] and d["forget_class"] == 8
    assert dataclasses.replace(config, **{"seeds": (3,)}).seeds == (3,)


def test_markdown_table_formats_mean_and_std():
    assert format_mean_std(97.123, 0.349) == "97.12 ± 0.35"
    assert format_mean_std(1.0, math.nan) == "1.00 ± n/a" and format_mean_std(None, 1.0) == "—"
    from geninf.bench.experiments.report import Column

    rows = [(["gif"], {"f1": {"mean": 0.5, "std": 0.01}, "acc": {"mean": 0.9, "std": 0.0}})]
    table = markdown_table(rows, ["method"], [Column("f1", "F1", 3), Column("acc", "acc", 1, 100)])
    assert table.splitlines() == [
        "| method | F1 | acc |",
        "|---|---|---|",
        "| gif | 0.500 ± 0.010 | 90.0 ± 0.0 |",
    ]


def test_runner_builds_configs_from_flags():
    path = Path(__file__).parents[1] / "benchmarks" / "run_experiments.py"
    spec = importlib.util.spec_from_file_location("run_experiments", path)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    args = runner.parse_args(["all", "--seeds", "3", "--schedules", "paper", "--epochs", "7"])
    cr = runner.make_config("class-removal", args)
    assert cr.seeds == (0, 1, 2) and cr.schedules == ("paper",) and cr.epochs == 7
    bd = runner.make_config("backdoor", runner.parse_args(["backdoor", "--quick"]))
    assert bd.seeds == (0, 1) and bd.data == "mnist5k"
    big = runner.make_config("class-removal", runner.parse_args(["all", "--data", "cifar10:/x"]))
    assert (big.model, big.normalize) == ("vgg11", True)
    with pytest.raises(InputError):
        runner.make_config("selection", runner.parse_args(["selection", "--seeds", "0"]))
