"""Metrics of geninf.bench.metrics against hand-computed values on models with known outputs."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from geninf.bench import Splits
from geninf.bench.metrics import (
    class_removal_metrics,
    distance_to_reference,
    f1_score,
    mean_std,
    per_class_histogram,
    predict_logits,
    summarize_runs,
)
from geninf.errors import DataError, InputError

LOG8 = math.log(8.0)


class Lookup(nn.Module):
    """Logits looked up by example id: the input ``[N, 1]`` holds the id as a float."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].long()]


def lookup_predicting(predictions: list[int], num_classes: int = 3) -> Lookup:
    """Row ``i`` = ``log 8`` at ``predictions[i]``, 0 elsewhere: p = 0.8 there, 0.1 at the others
    (for 3 classes)."""
    table = torch.zeros(len(predictions), num_classes)
    table[torch.arange(len(predictions)), torch.tensor(predictions)] = LOG8
    return Lookup(table)


def ids(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).unsqueeze(1)


def labels(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


# Ids 0-5 are test examples (labels 0 0 1 1 2 2), ids 6-9 training examples (labels 2 2 2 0).
PREDICTIONS = [0, 1, 1, 1, 2, 0, 2, 0, 1, 0]


@pytest.fixture
def toy_splits() -> Splits:
    empty = (torch.empty(0, 1), torch.empty(0, dtype=torch.int64))
    return Splits(
        train=(ids(6, 7, 8, 9), labels(2, 2, 2, 0)),
        validation=empty,
        test=(ids(0, 1, 2, 3, 4, 5), labels(0, 0, 1, 1, 2, 2)),
        num_classes=3,
        input_shape=(1,),
        name="toy",
        class_names=("a", "b", "c"),
    )


RIGHT, WRONG = -math.log(0.8), -math.log(0.1)


def test_class_removal_metrics_hand_computed(toy_splits):
    model = lookup_predicting(PREDICTIONS)
    got = class_removal_metrics(model, toy_splits, forget_class=2)
    # other-class test ids 0-3: right, wrong, right, right
    assert got["test_acc"] == pytest.approx(75.0)
    assert got["test_loss"] == pytest.approx((3 * RIGHT + WRONG) / 4)
    # removed training ids 6-8 (class 2): right, wrong, wrong
    assert got["self_acc"] == pytest.approx(100.0 / 3)
    assert got["self_loss"] == pytest.approx((RIGHT + 2 * WRONG) / 3)
    # class-2 test ids 4, 5: right, wrong
    assert got["self_test_acc"] == pytest.approx(50.0)
    assert got["self_test_loss"] == pytest.approx((RIGHT + WRONG) / 2)
    assert got["f1"] == pytest.approx(12 / 17)  # 2·(2/3)·(3/4) / (2/3 + 3/4)
    assert got["f1_test"] == pytest.approx(0.6)  # 2·(1/2)·(3/4) / (1/2 + 3/4)
    assert all(type(v) is float for v in got.values())


def test_class_removal_metrics_explicit_forget_set_and_batching(toy_splits):
    model = lookup_predicting(PREDICTIONS)
    got = class_removal_metrics(model, toy_splits, 2, forget_train=(ids(6, 7), labels(2, 2)))
    assert got["self_acc"] == pytest.approx(50.0)
    assert got["f1"] == pytest.approx(2 * 0.5 * 0.75 / 1.25)
    small = class_removal_metrics(model, toy_splits, 2, batch_size=1)
    assert small == pytest.approx(class_removal_metrics(model, toy_splits, 2))


def test_class_removal_metrics_leaves_model_alone(toy_splits):
    model = lookup_predicting(PREDICTIONS).train()
    before = copy.deepcopy(model.state_dict())
    class_removal_metrics(model, toy_splits, 2)
    assert model.training
    assert_close(model.state_dict()["table"], before["table"], rtol=0, atol=0)


def test_class_removal_metrics_errors(toy_splits):
    model = lookup_predicting(PREDICTIONS)
    with pytest.raises(InputError, match="forget_class"):
        class_removal_metrics(model, toy_splits, 3)
    with pytest.raises(DataError, match="forget set is empty"):
        class_removal_metrics(model, toy_splits, 1)  # no training example of class 1
    with pytest.raises(InputError, match="Splits"):
        class_removal_metrics(model, toy_splits.test, 2)


@pytest.mark.parametrize(
    ("s", "t", "expected"),
    [
        (0.0, 1.0, 1.0),
        (1.0, 0.0, 0.0),  # 0/0 by the formula: defined as 0
        (1.0, 1.0, 0.0),
        (0.0, 0.0, 0.0),
        (0.5, 0.5, 0.5),
        (0.2, 0.6, 2 * 0.8 * 0.6 / 1.4),
        (0.0026, 0.9013, 2 * 0.9974 * 0.9013 / (0.9974 + 0.9013)),
    ],
)
def test_f1_closed_form(s, t, expected):
    assert f1_score(s, t) == pytest.approx(expected, abs=1e-15)


def test_f1_rejects_percentages():
    with pytest.raises(InputError, match="fraction"):
        f1_score(0.5, 90.0)
    with pytest.raises(InputError, match="fraction"):
        f1_score(float("nan"), 0.5)


def _probabilities(table: torch.Tensor) -> np.ndarray:
    logits = table.detach().double().numpy()
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_distance_to_reference_identical_models():
    model = Lookup(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)))
    got = distance_to_reference(model, copy.deepcopy(model), ids(0, 1, 2, 3, 4))
    assert got == {"agreement": 100.0, "kl": 0.0, "param_distance": 0.0}


def test_distance_to_reference_hand_computed():
    reference = Lookup(torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]]))
    model = Lookup(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]]))
    data = (ids(0, 1, 2, 2), labels(0, 0, 0, 0))
    got = distance_to_reference(model, reference, data)
    # argmax: ref 0 1 2 2, model 0 0 2 2
    assert got["agreement"] == pytest.approx(75.0)
    p, q = _probabilities(reference.table)[[0, 1, 2, 2]], _probabilities(model.table)[[0, 1, 2, 2]]
    kl_ref_model = float(np.mean(np.sum(p * np.log(p / q), axis=1)))
    kl_model_ref = float(np.mean(np.sum(q * np.log(q / p), axis=1)))
    assert got["kl"] == pytest.approx(kl_ref_model, rel=1e-12)
    assert got["kl"] > 0 and abs(kl_ref_model - kl_model_ref) > 1e-3  # the direction matters
    diff = np.linalg.norm(model.table.detach().numpy() - reference.table.detach().numpy())
    assert got["param_distance"] == pytest.approx(diff / math.sqrt(4 + 1 + 9), rel=1e-6)
    swapped = distance_to_reference(reference, model, ids(0, 1, 2, 2))
    assert swapped["kl"] == pytest.approx(kl_model_ref, rel=1e-12)
    assert distance_to_reference(model, reference, data, batch_size=1) == pytest.approx(got)


def test_distance_to_reference_ignores_frozen_parameters():
    reference = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model = copy.deepcopy(reference)
    for p in (*model[0].parameters(), *reference[0].parameters()):
        p.requires_grad_(False)
    with torch.no_grad():
        model[0].weight.add_(1.0)  # frozen: not counted
        model[1].bias.add_(0.5)
    trainable = torch.cat([p.detach().flatten() for p in reference[1].parameters()])
    got = distance_to_reference(model, reference, torch.randn(6, 3))
    expected = 0.5 * math.sqrt(2) / float(trainable.norm())
    assert got["param_distance"] == pytest.approx(expected, rel=1e-6)


def test_distance_to_reference_rejects_other_architectures():
    with pytest.raises(InputError, match="same architecture"):
        distance_to_reference(nn.Linear(3, 2), nn.Linear(3, 4), torch.randn(2, 3))
    with pytest.raises(InputError, match="same architecture"):
        distance_to_reference(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2)), torch.randn(2, 3))


def test_per_class_histogram_counts_predictions():
    model = lookup_predicting([0, 2, 2, 1, 2], num_classes=4)
    got = per_class_histogram(model, ids(0, 1, 2, 3, 4, 1))
    assert got == {0: 1, 1: 1, 2: 4, 3: 0}
    assert per_class_histogram(model, (ids(0, 1), labels(0, 0)), num_classes=6) == {
        0: 1,
        1: 0,
        2: 1,
        3: 0,
        4: 0,
        5: 0,
    }


def test_predict_logits_restores_mode_and_batches():
    model = nn.Sequential(nn.Linear(3, 5), nn.Dropout(0.5), nn.Linear(5, 2)).train()
    x = torch.randn(7, 3)
    got = predict_logits(model, x, batch_size=2)
    assert model.training and not got.requires_grad
    with torch.no_grad():
        assert_close(got, model.eval()(x))


def test_mean_std_is_sample_std():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    assert std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert std == pytest.approx(math.sqrt(5 / 3))
    mean, std = mean_std([7.0])
    assert mean == 7.0 and math.isnan(std)
    with pytest.raises(InputError):
        mean_std([])


def test_summarize_runs():
    runs = [
        {"acc": 90.0, "f1": 0.9, "method": "gif", "ok": True},
        {"acc": 92.0, "f1": 0.8},
        {"acc": 94.0, "extra": 3},
    ]
    got = summarize_runs(runs)
    assert list(got) == ["acc", "f1", "extra"]
    assert got["acc"] == pytest.approx({"mean": 92.0, "std": 2.0, "n": 3})
    assert got["f1"]["mean"] == pytest.approx(0.85)
    assert got["f1"]["std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert got["f1"]["n"] == 2
    assert got["extra"]["n"] == 1 and math.isnan(got["extra"]["std"])
    with pytest.raises(InputError):
        summarize_runs([])
