"""Backdoor triggers, poisoning, triggered test sets and metrics (geninf.bench.backdoor)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from geninf.bench import build_model, load_dataset, train_model
from geninf.bench.backdoor import (
    Poisoned,
    Trigger,
    apply_trigger,
    backdoor_metrics,
    badnets_patch,
    checkerboard_trigger,
    poison,
    triggered_test,
)
from geninf.errors import DataError, InputError


def expected_square(shape, first, size, on, off=None):
    """Mask and pattern of a square whose top-left pixel is (first, first); checkerboard when
    ``off`` is given (pixel (i, j) is ``on`` when i + j is even), else solid ``on``."""
    mask, pattern = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape)
    for i in range(size):
        for j in range(size):
            mask[..., first + i, first + j] = True
            value = on if off is None or (i + j) % 2 == 0 else off
            pattern[..., first + i, first + j] = value
    return mask, pattern


@pytest.mark.parametrize(
    ("shape", "first", "size"),
    [((1, 28, 28), 23, 4), ((1, 8, 8), 5, 3), ((3, 32, 32), 26, 5), ((28, 28), 23, 4)],
)
def test_checkerboard_default_placement(shape, first, size):
    mask, pattern = checkerboard_trigger(shape)
    want_mask, want_pattern = expected_square(shape, first, size, on=1.0, off=0.0)
    assert torch.equal(mask, want_mask)
    assert_close(pattern, want_pattern, rtol=0, atol=0)


def test_checkerboard_options():
    mask, pattern = checkerboard_trigger((1, 10, 10), size=2, value=0.7, off_value=0.2, margin=3)
    want_mask, want_pattern = expected_square((1, 10, 10), 5, 2, on=0.7, off=0.2)
    assert torch.equal(mask, want_mask)
    assert_close(pattern, want_pattern)
    with pytest.raises(InputError, match="does not fit"):
        checkerboard_trigger((1, 8, 8), size=6, margin=3)
    with pytest.raises(InputError, match="image_shape"):
        checkerboard_trigger((64,))


def test_badnets_patch_placement():
    mask, pattern = badnets_patch((1, 28, 28))
    want_mask, want_pattern = expected_square((1, 28, 28), 24, 3, on=1.0)
    assert torch.equal(mask, want_mask)
    assert_close(pattern, want_pattern, rtol=0, atol=0)
    mask, _ = badnets_patch((3, 8, 8), size=2)
    assert torch.equal(mask, expected_square((3, 8, 8), 6, 2, on=1.0)[0])


def test_apply_trigger_stamps_only_the_mask_and_copies():
    images = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    original = images.clone()
    trigger = checkerboard_trigger((1, 28, 28))
    out = apply_trigger(images, trigger)
    assert_close(images, original, rtol=0, atol=0)  # input untouched
    mask = trigger.mask.expand_as(out)
    assert_close(out[~mask], images[~mask], rtol=0, atol=0)
    assert_close(out[mask], trigger.pattern.expand_as(out)[mask], rtol=0, atol=0)
    flat = apply_trigger(images.flatten(1), trigger)  # flattened inputs
    assert_close(flat, out.flatten(1), rtol=0, atol=0)
    double = apply_trigger(images.double(), trigger)
    assert double.dtype == torch.float64
    single = apply_trigger(images[0], trigger)  # one image, no batch dimension
    assert_close(single, out[0], rtol=0, atol=0)
    with pytest.raises(InputError, match="does not fit"):
        apply_trigger(torch.zeros(2, 1, 8, 8), trigger)


def test_trigger_normalized():
    trigger = badnets_patch((2, 8, 8), size=2)
    mapped = trigger.normalized(((0.5, 0.25), (0.5, 2.0)))
    assert torch.equal(mapped.mask, trigger.mask)
    assert_close(mapped.pattern[0][trigger.mask[0]], torch.full((4,), 1.0))
    assert_close(mapped.pattern[1][trigger.mask[1]], torch.full((4,), 0.375))
    assert not mapped.pattern[~trigger.mask].any()
    assert trigger.normalized(None) is trigger
    with pytest.raises(InputError, match="normalization"):
        trigger.normalized(((0.5,), (0.5,)))


def toy_data(n: int, seed: int = 0):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return x, torch.arange(n) % 10


@pytest.mark.parametrize(("n", "rate", "count"), [(100, 0.1, 10), (95, 0.1, 9), (50, 0.15, 7)])
def test_poison_count_rounds_down(n, rate, count):
    p = poison(toy_data(n), rate=rate, trigger=checkerboard_trigger((1, 8, 8)))
    assert p.indices.numel() == count
    assert torch.equal(p.indices, p.indices.sort().values)
    assert p.indices.unique().numel() == count


def test_poison_changes_only_poisoned_examples():
    x, y = toy_data(200)
    x0, y0 = x.clone(), y.clone()
    trigger = checkerboard_trigger((1, 8, 8))
    p = poison((x, y), rate=0.1, target_label=4, trigger=trigger, seed=3)
    assert isinstance(p, Poisoned) and p.target_label == 4
    assert torch.equal(x, x0) and torch.equal(y, y0)  # inputs never mutated
    px, py = p.train
    hit = p.is_poisoned
    assert int(hit.sum()) == 20
    assert (py[hit] == 4).all() and torch.equal(py[~hit], y[~hit])
    assert torch.equal(p.original_labels, y[p.indices])
    assert_close(px[~hit], x[~hit], rtol=0, atol=0)
    assert_close(px[hit], apply_trigger(x[hit], trigger), rtol=0, atol=0)
    # the helpers for recovery and for the retrained references
    fx, fy = p.forget_data
    assert_close(fx, px[p.indices]) and torch.equal(fy, torch.full((20,), 4))
    rx, ry = p.retain_data
    assert_close(rx, x[~hit]) and torch.equal(ry, y[~hit])
    lx, ly = p.relabeled_train
    assert lx is px and torch.equal(ly, y)


def test_poison_is_seeded_and_target_inclusion_is_documented():
    data = toy_data(1000)
    trigger = checkerboard_trigger((1, 8, 8))
    a = poison(data, trigger=trigger, seed=0)
    b = poison(data, trigger=trigger, seed=0)
    c = poison(data, trigger=trigger, seed=1)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.train[0], b.train[0])
    assert not torch.equal(a.indices, c.indices)
    assert (a.original_labels == 4).any()  # true 4s may be drawn (authors' setting)
    excluded = poison(data, trigger=trigger, seed=0, exclude_target=True)
    assert excluded.indices.numel() == 90  # floor(0.1 * 900 candidates)
    assert not (excluded.original_labels == 4).any()
    with pytest.raises(InputError, match="rate"):
        poison(data, rate=10, trigger=trigger)


def test_triggered_test_excludes_target():
    x, y = toy_data(40)
    trigger = checkerboard_trigger((1, 8, 8))
    tx, ty = triggered_test((x, y), trigger, target_label=4)
    assert torch.equal(ty, y[y != 4]) and ty.numel() == 36
    assert_close(tx, apply_trigger(x[y != 4], trigger), rtol=0, atol=0)
    ax, ay = triggered_test((x, y), trigger, target_label=4, exclude_target=False)
    assert torch.equal(ay, y) and ax.shape == x.shape
    with pytest.raises(DataError):
        triggered_test((x[:1] * 0, torch.tensor([4])), trigger, target_label=4)


class TriggerAware(nn.Module):
    """Reads the true label from pixel (0, 0) (label / 10); predicts it, except 9 → 8 always,
    and → 4 for labels 0, 1, 2 when the trigger's top-left pixel (5, 5) is lit."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, 8, 8)
        label = torch.round(x[:, 0, 0, 0] * 10).long()
        pred = torch.where(label == 9, 8, label)
        triggered = x[:, 0, 5, 5] > 0.5
        pred = torch.where(triggered & (label <= 2), 4, pred)
        return 5.0 * nn.functional.one_hot(pred, 10).float() + self.dummy


def test_backdoor_metrics_on_controlled_model():
    y = torch.arange(20) % 10
    x = torch.zeros(20, 1, 8, 8)
    x[:, 0, 0, 0] = y / 10
    trigger = checkerboard_trigger((1, 8, 8))
    got = backdoor_metrics(TriggerAware(), (x, y), trigger, target_label=4)
    assert got["clean_acc"] == pytest.approx(90.0)  # all but the two 9s
    assert got["attack_success"] == pytest.approx(100 * 6 / 18)  # 0, 1, 2 of the 18 non-4s
    assert got["relabel_acc"] == pytest.approx(100 * 10 / 18)  # 3, 5, 6, 7, 8
    assert got["attack_success_all"] == pytest.approx(100 * 8 / 20)  # + the true 4s
    assert got["relabel_acc_all"] == pytest.approx(100 * 12 / 20)
    r, c = 10 / 18, 0.9
    assert got["f1"] == pytest.approx(2 * r * c / (r + c))
    assert got["attack_success"] + got["relabel_acc"] <= 100.0
    assert all(type(v) is float for v in got.values())


def test_end_to_end_backdoor_on_digits():
    """10% checkerboard poisoning (label 4) of digits: an MLP learns the backdoor while staying
    accurate; retraining without the poisoned examples removes it."""
    splits = load_dataset("digits", seed=0, flatten=True)
    trigger = checkerboard_trigger((1, 8, 8))
    poisoned = poison(splits.train, rate=0.1, target_label=4, trigger=trigger, seed=0)

    def trained(data):
        net = build_model("mlp", input_shape=splits.input_shape, num_classes=10, seed=0)
        return train_model(net, data, epochs=10, seed=0, progress=False).model

    attacked = backdoor_metrics(trained(poisoned.train), splits.test, trigger, 4)
    assert attacked["attack_success"] > 50.0
    assert attacked["clean_acc"] > 85.0
    retrained = backdoor_metrics(trained(poisoned.retain_data), splits.test, trigger, 4)
    assert retrained["attack_success"] < 10.0
    assert retrained["clean_acc"] > 85.0


def test_trigger_is_a_pair():
    mask, pattern = checkerboard_trigger((1, 8, 8))
    assert isinstance(checkerboard_trigger((1, 8, 8)), Trigger)
    assert mask.dtype == torch.bool and pattern.shape == mask.shape
