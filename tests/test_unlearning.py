"""Forgetting individual examples (issue 14): forget sets, unlearning metrics, the unlearning
baselines (reproducible per seed, counted in example gradients), the saliency criterion, and
the ``--forget`` specs of the command line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geninf.bench.datasets import Splits
from geninf.bench.unlearning_metrics import (
    ForgetValidation,
    average_gap,
    forget_divergence,
    membership_features,
    mia_efficacy,
    unlearning_metrics,
)
from geninf.edit import (
    check_forget_indices,
    random_forget_indices,
    relabel,
    remove,
    source_forget_indices,
    split_forget,
)
from geninf.edit.unlearning import random_wrong_labels
from geninf.errors import DataError, InputError
from geninf.report.jobs.inputs import parse_forget
from geninf.selection import select_with_summary


class Identity(nn.Module):
    """A 'classifier' whose logits are its inputs (hand-computable metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.0 * self.w


def _logits(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# --------------------------------------------------------------------------- forget sets
def test_random_forget_indices_seeded_sorted_and_sized() -> None:
    a = random_forget_indices(1000, 0.01, seed=3)
    assert a.numel() == 10 and torch.equal(a, torch.sort(a).values)
    assert torch.equal(a, random_forget_indices(1000, 0.01, seed=3))
    assert not torch.equal(a, random_forget_indices(1000, 0.01, seed=4))
    assert random_forget_indices(1000, 0.1, seed=0).unique().numel() == 100
    assert random_forget_indices(10, 0.001, seed=0).numel() == 1  # at least one
    assert random_forget_indices(10, 0.99, seed=0).numel() == 9  # something retained


@pytest.mark.parametrize("fraction", [0, 0.0, -0.5, 1, 1.0, 2.0, math.nan, "0.1", None])
def test_random_forget_fraction_out_of_range(fraction) -> None:
    with pytest.raises(InputError, match="strictly between 0 and 1") as info:
        random_forget_indices(100, fraction, seed=0)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("indices", "fragment"),
    [
        ([3, 1, 3], "index 3 appears 2 times"),
        ([0, 10], "index 10 is outside [0, 9]"),
        ([-1], "index -1 is outside"),
        (torch.tensor([0.5]), "0.5 is not an integer index"),
        ([], "no index given"),
        (list(range(10)), "every training example would be forgotten"),
        (["a"], "expected a sequence of integer indices"),
    ],
)
def test_check_forget_indices_refuses(indices, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        check_forget_indices(indices, 10)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_split_forget_and_sources() -> None:
    x, y = torch.arange(12.0)[:, None], torch.arange(12)
    retain, forget = split_forget((x, y), [7, 2])
    assert forget[1].tolist() == [2, 7]
    assert retain[1].tolist() == [0, 1, 3, 4, 5, 6, 8, 9, 10, 11]
    sources = torch.tensor([0, 1, 2, 3] * 3)  # 3 copies of 4 sources
    idx = source_forget_indices(sources, 2, seed=0)
    chosen = set(sources[idx].tolist())
    assert len(chosen) == 2 and idx.numel() == 6
    expected = torch.nonzero(torch.isin(sources, torch.tensor(sorted(chosen)))).flatten()
    assert torch.equal(idx, expected)
    assert torch.equal(idx, source_forget_indices(sources, 2, seed=0))
    with pytest.raises(InputError, match=r"num_sources must be an integer in \[1, 3\]"):
        source_forget_indices(sources, 4, seed=0)


def _splits(m: int = 50) -> Splits:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(m, 3, generator=g), torch.arange(m) % 3
    return Splits((x, y), (x[:5], y[:5]), (x[:5], y[:5]), 3, (3,), "toy", ("a", "b", "c"))


def test_parse_forget_random_is_seeded_by_the_seed() -> None:
    s = _splits()
    a = parse_forget("random:0.1", s, seed=1)
    assert a.indices.numel() == 5 and a.retain[1].numel() == 45
    assert torch.equal(a.indices, parse_forget("random:0.1", s, seed=1).indices)
    assert torch.equal(a.indices, random_forget_indices(50, 0.1, seed=1))
    assert not torch.equal(a.indices, parse_forget("random:0.1", s, seed=2).indices)
    assert a.forget_class is None
    assert parse_forget("class:1", s).forget_class == 1


@pytest.mark.parametrize(
    ("spec", "content", "fragment"),
    [
        ("random:0", None, "strictly between 0 and 1, got 0.0"),
        ("random:1", None, "strictly between 0 and 1, got 1.0"),
        ("random:-0.2", None, "strictly between 0 and 1, got -0.2"),
        ("random:x", None, "needs a fraction 0 < F < 1"),
        ("class:x", None, "needs an integer"),
        ("sources:3", None, "has no source of each example"),
        ("bogus:1", None, "--forget must be class:C, indices:FILE, random:FRACTION or sources:K"),
        ("indices:", "1 2 1", "index 1 appears twice"),
        ("indices:", "1 99", "index 99 is outside [0, 49]"),
        ("indices:", "1, x", "'x' is not an integer index"),
        ("indices:", "3.0", "'3.0' is not an integer index"),
    ],
)
def test_parse_forget_refuses(tmp_path: Path, spec: str, content, fragment: str) -> None:
    if content is not None:
        path = tmp_path / "f.txt"
        path.write_text(content)
        spec += str(path)
    with pytest.raises(InputError) as info:
        parse_forget(spec, _splits(), seed=0)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- metrics
def test_membership_features_by_hand() -> None:
    z = _logits([[0.0, 0.0], [math.log(3.0), 0.0]])
    y = torch.tensor([0, 1])
    got = membership_features(
        Identity().double(), (z, y), ("confidence", "entropy", "loss", "correct")
    )
    # row 0: p = (1/2, 1/2), a tie: argmax picks class 0 (correct); row 1: p = (3/4, 1/4), y = 1
    h1 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = [[0.5, math.log(2.0), math.log(2.0), 1.0], [0.25, h1, math.log(4.0), 0.0]]
    torch.testing.assert_close(torch.from_numpy(got), torch.tensor(expected, dtype=torch.float64))


def test_unlearning_metrics_by_hand() -> None:
    model = Identity().double()
    retain = (_logits([[2, 0], [0, 2], [2, 0], [0, 2]]), torch.tensor([0, 1, 1, 1]))  # 3 of 4
    forget = (_logits([[3, 0], [0, 3]]), torch.tensor([1, 1]))  # 1 of 2 right
    test = (_logits([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]]), torch.tensor([0, 1, 1, 1, 1]))
    m = unlearning_metrics(model, retain, forget, test)
    assert m["UA"] == pytest.approx(50.0)
    assert m["RA"] == pytest.approx(75.0)
    assert m["TA"] == pytest.approx(60.0)
    loss_forget = (F.softplus(torch.tensor(-3.0)) + F.softplus(torch.tensor(3.0))) / 2
    assert m["forget_loss"] == pytest.approx(float(loss_forget))
    assert 0.0 <= m["MIA"] <= 100.0


def test_average_gap_by_hand() -> None:
    a = {"UA": 10.0, "RA": 90.0, "TA": 80.0, "MIA": 20.0}
    b = {"UA": 14.0, "RA": 92.0, "TA": 80.0, "MIA": 30.0}
    assert average_gap(a, b) == pytest.approx((4 + 2 + 0 + 10) / 4)
    with pytest.raises(InputError, match="missing"):
        average_gap({"UA": 1.0}, b)


def test_forget_divergence_by_hand() -> None:
    forget = (_logits([[0.0, 0.0], [math.log(3.0), 0.0]]), torch.tensor([0, 0]))
    edited = Identity().double()

    class Shifted(Identity):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x) + 0.0 * self.w  # uniform predictions

    d = forget_divergence(edited, Shifted().double(), forget)
    # reference q = (1/2, 1/2) on both; model p = (1/2, 1/2) and (3/4, 1/4)
    kl1 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert d["kl"] == pytest.approx(kl1 / 2)
    # losses: model (log 2, log 4/3), reference (log 2, log 2); sorted W1
    w1 = (abs(math.log(4 / 3) - math.log(2)) + abs(math.log(2) - math.log(2))) / 2
    assert d["loss_w1"] == pytest.approx(w1)
    assert d["loss"] == pytest.approx([math.log(2), math.log(4 / 3)])


def test_mia_efficacy_threshold_by_hand() -> None:
    """Members confident (p_y ≈ 0.98), non-members not (p_y ≈ 0.27): a forget set with one
    confident and three unconfident examples is 75% 'non-member'."""
    model = Identity().double()
    high, low = [4.0, 0.0], [-1.0, 0.0]
    retain = (_logits([high] * 20), torch.zeros(20, dtype=torch.long))
    test = (_logits([low] * 20), torch.zeros(20, dtype=torch.long))
    forget = (_logits([high, low, low, low]), torch.zeros(4, dtype=torch.long))
    assert mia_efficacy(model, retain, forget, test) == pytest.approx(75.0)


def _fit(x: torch.Tensor, y: torch.Tensor, steps: int = 400, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # test-local: the model initialization only
    net = nn.Sequential(nn.Linear(x.shape[1], 128), nn.Tanh(), nn.Linear(128, 4)).double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def test_mia_separates_a_model_that_saw_the_forget_set() -> None:
    """Random labels: only memorization fits them. A model trained on R ∪ F is confident on F
    (members, MIA ≈ 0); one trained on R alone treats F like test data (MIA high)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(180, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (180,), generator=g)
    retain, forget, test = (x[:100], y[:100]), (x[100:130], y[100:130]), (x[130:], y[130:])
    saw = _fit(x[:130], y[:130])
    never = _fit(*retain)
    mia_saw = unlearning_metrics(saw, retain, forget, test)["MIA"]
    mia_never = unlearning_metrics(never, retain, forget, test)["MIA"]
    # a never-seen example still gets its random label right (and confidently) about 1 time in
    # 4, and then looks like a member: MIA ≈ 75% is the ceiling here
    assert mia_saw <= 10.0 and mia_never >= 60.0, (mia_saw, mia_never)

    features = ("confidence", "entropy", "correct")
    for net in (saw, never):  # one forward pass per set gives the same attack as mia_efficacy
        got = unlearning_metrics(net, retain, forget, test, features=features, seed=3)["MIA"]
        assert got == mia_efficacy(net, retain, forget, test, features=features, seed=3)


def test_forget_validation_score_by_hand() -> None:
    model = Identity().double()
    val = (_logits([[1, 0], [1, 0], [0, 1], [0, 1]]), torch.tensor([0, 0, 0, 1]))  # 3/4
    forget = (_logits([[1, 0], [1, 0]]), torch.tensor([0, 0]))  # 2/2
    score = ForgetValidation(val, forget, loss_weight=0.5)
    d = score.details(model)
    lv = (3 * F.softplus(torch.tensor(-1.0)) + F.softplus(torch.tensor(1.0))) / 4
    lf = F.softplus(torch.tensor(-1.0))
    expected = 0.75 - 0.25 - 0.5 * abs(float(lf - lv))
    assert d["score"] == pytest.approx(expected) and score(model) == pytest.approx(expected)
    assert score.describe()["num_forget"] == 2


# --------------------------------------------------------------------------- baselines
NEW = ["random_label", "l1_sparse", "scrub", "salun"]


def _problem():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(74, 5, generator=g, dtype=torch.float64)  # 64 retained: 4 batches of 16
    y = torch.randint(0, 3, (74,), generator=g)
    torch.manual_seed(0)  # test-local: the model initialization only
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()
    return net, (x[10:], y[10:]), (x[:10], y[:10])


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("method", [*NEW, "finetune", "gradient_ascent"])
def test_baselines_reproducible_per_seed(method: str) -> None:
    net, retain, forget = _problem()
    before = _params(net)
    kw = dict(method=method, budget=1500, train_batch_size=16)
    a = remove(net, None, retain, forget, seed=5, **kw)
    b = remove(net, None, retain, forget, seed=5, **kw)
    c = remove(net, None, retain, forget, seed=6, **kw)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert any(
        not torch.equal(p, q)
        for p, q in zip(a.model.parameters(), c.model.parameters(), strict=True)
    )
    for p, q in zip(before, net.parameters(), strict=True):  # the input model is untouched
        assert torch.equal(p, q)
    assert a.record.method == method and a.record.update_norm > 0


@pytest.mark.parametrize(
    ("method", "per_step"),
    [("random_label", 10 + 16), ("salun", 10 + 16), ("l1_sparse", 16), ("scrub", None)],
)
def test_baselines_counted_in_example_gradients(method: str, per_step) -> None:
    net, retain, forget = _problem()
    budget = 1000
    res = remove(net, None, retain, forget, method=method, budget=budget, train_batch_size=16)
    c = res.record.compute
    setup = 10 if method == "salun" else 0  # the saliency mask: one gradient over F
    assert c.budget == budget and c.budget_source == "given"
    assert c.example_gradients == c.gradient_examples <= budget
    if per_step is not None:
        assert c.example_gradients == setup + c.optimizer_steps * per_step
        assert budget - c.example_gradients < per_step
    else:  # scrub: forget batches of 10 alternate with retained batches of 16, then 16s
        assert c.forward_examples == c.example_gradients  # one teacher forward per example
        assert budget - c.example_gradients < 16
    assert res.record.extra["examples_used"] == c.example_gradients


def test_baseline_budget_defaults_to_gif_cost() -> None:
    net, retain, forget = _problem()
    res = remove(net, None, retain, forget, method="scrub", train_batch_size=16, damping=0.1)
    c = res.record.compute
    assert c.budget_source == "gif" and c.budget > 0 and c.example_gradients <= c.budget


def test_budget_below_one_step_is_refused() -> None:
    net, retain, forget = _problem()
    with pytest.raises(InputError, match="smaller than the first step of random_label"):
        remove(net, None, retain, forget, method="random_label", budget=20, train_batch_size=16)


def test_random_wrong_labels() -> None:
    y = torch.arange(200) % 5
    g = torch.Generator().manual_seed(0)
    z = random_wrong_labels(y, 5, g)
    assert bool((z != y).all()) and set(z.tolist()) <= set(range(5))
    assert set((z - y).remainder(5).tolist()) == {1, 2, 3, 4}
    with pytest.raises(InputError, match="at least 2 classes"):
        random_wrong_labels(y, 1, g)


def test_random_label_needs_class_targets() -> None:
    net, retain, forget = _problem()
    bad = (forget[0], forget[1].double())
    with pytest.raises(DataError, match="integer targets"):
        remove(net, None, retain, bad, method="random_label", budget=500)


def test_salun_moves_only_the_salient_half() -> None:
    net, retain, forget = _problem()
    res = remove(net, None, retain, forget, method="salun", budget=2000, train_batch_size=16)
    moved = sum(
        int((p != q).sum()) for p, q in zip(net.parameters(), res.model.parameters(), strict=True)
    )
    total = sum(p.numel() for p in net.parameters())
    assert 0 < moved <= math.ceil(total / 2)


def test_unlearning_baselines_are_removal_only() -> None:
    net, retain, _ = _problem()
    for method in NEW:
        with pytest.raises(InputError, match="defined for removal only"):
            relabel(net, None, retain, (torch.tensor([0]), torch.tensor([1])), method=method)


# --------------------------------------------------------------------------- saliency criterion
def test_saliency_selects_the_largest_parameter_gradients_per_layer() -> None:
    net, _, forget = _problem()
    subset, summary = select_with_summary(net, None, forget, criterion="saliency", ratio=0.25)
    loss = F.cross_entropy(net(forget[0]), forget[1])
    grads = torch.autograd.grad(loss, list(net.parameters()))
    masks = subset.masks()
    names = [n for n, _ in net.named_parameters()]
    for layer in ("0", "2"):
        w, b = names.index(f"{layer}.weight"), names.index(f"{layer}.bias")
        flat = torch.cat([grads[w].reshape(-1), grads[b]]).abs()
        k = int(0.25 * flat.numel())
        chosen = torch.cat([masks[f"{layer}.weight"].reshape(-1), masks[f"{layer}.bias"]])
        assert int(chosen.sum()) == k
        assert set(torch.nonzero(chosen).flatten().tolist()) == set(
            torch.topk(flat, k).indices.tolist()
        )
    assert all("saliency" in row.rule for row in summary.layers)
