"""The unlearning baselines' hyper-parameters as the option ``unlearning_options`` (issue 14):
checked with one-line errors, recorded, and each one changes what it says it changes; and the
forgetting benchmark's grid search on validation, with its cost counted."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geninf.bench.unlearning_metrics import ForgetValidation
from geninf.edit import remove
from geninf.edit.unlearning import UNLEARNING_DEFAULTS, check_unlearning_options
from geninf.errors import InputError

from .test_bench_outputs import load
from .test_unlearning import _problem


def _l1(model: nn.Module) -> float:
    return float(sum(p.detach().abs().sum() for p in model.parameters()))


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ([("scrub_alpha", 1.0)], "must be a dict"),
        ({"scrub_beta": 1.0}, "unknown unlearning option(s) scrub_beta; the keys are"),
        ({"salun_fraction": 0.0}, "salun_fraction must be a number in (0, 1], got 0.0"),
        ({"salun_fraction": 1.5}, "salun_fraction must be a number in (0, 1], got 1.5"),
        ({"scrub_alpha": -1}, "scrub_alpha must be a number in [0, ∞), got -1"),
        ({"scrub_temperature": 0}, "scrub_temperature must be a number in (0, ∞), got 0"),
        ({"scrub_max_fraction": 2}, "scrub_max_fraction must be a number in [0, 1], got 2"),
        ({"l1_strength": float("nan")}, "l1_strength must be a number in (0, ∞), got nan"),
        ({"l1_strength": True}, "l1_strength must be a number in (0, ∞), got True"),
    ],
)
def test_bad_unlearning_options_are_refused_in_one_line(options, fragment: str) -> None:
    net, retain, forget = _problem()
    with pytest.raises(InputError) as err:
        remove(net, None, retain, forget, method="scrub", budget=500, unlearning_options=options)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unlearning_options_are_checked_as_floats_and_recorded() -> None:
    assert check_unlearning_options({"scrub_alpha": 0, "salun_fraction": 1}) == {
        "scrub_alpha": 0.0,
        "salun_fraction": 1.0,
    }
    net, retain, forget = _problem()
    kw = dict(budget=640, train_batch_size=16, lr=0.01)
    res = remove(net, None, retain, forget, method="scrub",
                 unlearning_options={"scrub_temperature": 2}, **kw)  # fmt: skip
    assert res.record.options["unlearning_options"] == {"scrub_temperature": 2.0}
    assert res.record.extra["hyperparameters"] == {
        "optimizer": "adam",
        "lr": 0.01,
        "train_batch_size": 16,
        "scrub_alpha": UNLEARNING_DEFAULTS["scrub_alpha"],
        "scrub_temperature": 2.0,
        "scrub_max_fraction": UNLEARNING_DEFAULTS["scrub_max_fraction"],
    }
    ft = remove(net, None, retain, forget, method="finetune", **kw)
    assert ft.record.extra["hyperparameters"] == {"optimizer": "adam", "lr": 0.01,
                                                  "train_batch_size": 16}  # fmt: skip


def test_scrub_without_max_steps_and_distillation_is_finetuning() -> None:
    """α = 0 and no max steps leave SCRUB's min steps on L(B_R): fine-tuning, batch for batch."""
    net, retain, forget = _problem()
    kw = dict(budget=1600, train_batch_size=16, lr=0.01, seed=3)  # 100 whole batches
    off = {"scrub_alpha": 0.0, "scrub_max_fraction": 0.0}
    scrub = remove(net, None, retain, forget, method="scrub", unlearning_options=off, **kw)
    ft = remove(net, None, retain, forget, method="finetune", **kw)
    for p, q in zip(scrub.model.parameters(), ft.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    default = remove(net, None, retain, forget, method="scrub", **kw)
    assert any(
        not torch.equal(p, q)
        for p, q in zip(default.model.parameters(), ft.model.parameters(), strict=True)
    )


def test_salun_fraction_bounds_the_moved_elements() -> None:
    net, retain, forget = _problem()
    total = sum(p.numel() for p in net.parameters())
    for fraction in (0.1, 0.5, 1.0):
        hp = {"salun_fraction": fraction}
        res = remove(net, None, retain, forget, method="salun", budget=2000,
                     train_batch_size=16, unlearning_options=hp)  # fmt: skip
        moved = sum(
            int((p != q).sum())
            for p, q in zip(net.parameters(), res.model.parameters(), strict=True)
        )
        assert math.ceil(fraction * total) // 2 < moved <= math.ceil(fraction * total)


def test_l1_strength_shrinks_the_weights() -> None:
    net, retain, forget = _problem()
    kw = dict(method="l1_sparse", budget=3200, train_batch_size=16, lr=0.01)
    weak = remove(net, None, retain, forget, unlearning_options={"l1_strength": 1e-6}, **kw)
    strong = remove(net, None, retain, forget, unlearning_options={"l1_strength": 0.05}, **kw)
    assert _l1(strong.model) < 0.9 * _l1(weak.model)


# --------------------------------------------------------------------------- the benchmark's grid
def test_benchmark_grid_chooses_on_validation_and_counts_every_point(monkeypatch) -> None:
    bench = load("forget_examples")
    monkeypatch.setitem(bench.GRIDS, "salun", {"lr": (1e-4, 0.05), "salun_fraction": (0.2, 1.0)})
    g = torch.Generator().manual_seed(2)
    net, retain, forget = _problem()
    validation = ForgetValidation(
        (
            torch.randn(30, 5, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (30,), generator=g),
        ),
        forget,
    )
    editor = bench.Editor(net, retain, forget, validation, 0, bench.SETTINGS["digits-mlp"])
    out = editor.tuned("salun", 4000)
    scores = [t["validation_score"] for t in out["grid"]]
    assert len(scores) == 4 and out["example_gradients"] <= 4000
    # each point spends 1000 but less than one step (10 forget + 64 retained examples)
    assert out["example_gradients"] > 4000 - 4 * (10 + 64)
    best = out["grid"][scores.index(max(scores))]["point"]
    assert out["chosen"] == best
    assert validation(out["model"]) == pytest.approx(max(scores))


@pytest.mark.parametrize("method", ["finetune", "random_label", "salun", "scrub"])
def test_every_baseline_scores_the_checkpoints_it_is_asked_for(method: str) -> None:
    """checkpoints=10 spreads 10 validation checkpoints over the budget whatever a step costs
    (a random-label or SalUn step spends a forget and a retain batch; SalUn's mask comes first)."""
    net, retain, forget = _problem()
    res = remove(net, None, retain, forget, method=method, budget=640, train_batch_size=8,
                 lr=0.01, checkpoints=10, validation=lambda m: 0.0)  # fmt: skip
    steps = res.record.schedule_scores["step"]
    assert 10 <= len(steps) <= 11, (method, steps)
