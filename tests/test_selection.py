"""Tests for geninf.selection (method.md §5): budgets, rankings, rules per layer type, hygiene."""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from geninf.data import as_batches
from geninf.errors import DataError, DeterminismError, InputError, SubsetError
from geninf.functional import FunctionalModel
from geninf.objective import Objective
from geninf.params import ParameterSubset
from geninf.selection import (
    Criterion,
    SelectionSummary,
    layer_groups,
    select,
    select_with_summary,
)
from geninf.selection.statistics import collect_scores

RANKING = ["highest_outputs", "highest_gradients", "lowest_outputs", "lowest_gradients"]
BUDGETED = [*RANKING, "random"]


class MeanOutput(Objective):
    """ℓ_i = mean of the model's output for example i (so ∂ℓ/∂output is known by hand)."""

    def loss(self, forward, batch):
        out = forward(batch[0])
        return out.reshape(out.shape[0], -1).mean(1).mean()


class Boom(Objective):
    def loss(self, forward, batch):
        forward(batch[0])
        raise RuntimeError("boom")


def _hooks_empty(model: nn.Module) -> bool:
    attrs = (
        "_forward_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called",
        "_forward_pre_hooks",
        "_forward_pre_hooks_with_kwargs",
        "_backward_hooks",
        "_backward_pre_hooks",
    )
    return all(not getattr(m, a, {}) for m in model.modules() for a in attrs)


def _budgets_by_module(model: nn.Module, ratio: float) -> dict[str, int]:
    """Independent budget: int(ratio · (weight.numel + bias.numel)) per parameterized module."""
    out = {}
    for name, m in model.named_modules():
        n = sum(p.numel() for p in m.parameters(recurse=False))
        if n:
            out[name] = int(ratio * n)
    return out


def _selected_by_module(subset: ParameterSubset) -> dict[str, int]:
    counts: Counter = Counter()
    for pname, row in subset.summary().items():
        counts[pname.rpartition(".")[0]] += row["selected"]
    return dict(counts)


# ---------------------------------------------------------------- models
def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).eval()


def _cnn_bn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3), nn.Flatten(), nn.Linear(6 * 4 * 4, 3),
    ).eval()  # fmt: skip


def _grouped() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 8, 3, groups=2, padding=1),
        nn.Conv2d(8, 8, 3, groups=8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3),
    ).eval()  # fmt: skip


def _deconv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.ConvTranspose2d(4, 6, 3, groups=2), nn.GroupNorm(2, 6),
        nn.Tanh(), nn.Flatten(), nn.Linear(6 * 6 * 6, 3),
    ).eval()  # fmt: skip


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 11, dim: int = 8):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(0.1 * torch.randn(5, dim))
        self.ln = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, 16), nn.GELU(), nn.Linear(16, dim))
        self.head = nn.Linear(dim, 3)

    def forward(self, tokens):
        h = self.ln(self.emb(tokens) + self.pos[: tokens.shape[1]])
        a, _ = self.attn(h, h, h)
        h = h + a
        return self.head((h + self.ff(h)).mean(1))


def _transformer() -> nn.Module:
    torch.manual_seed(0)
    return TinyTransformer().eval()


def _encoder_layer() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), nn.Flatten(), nn.Linear(40, 3)
    ).eval()


def _data_for(name: str, n: int = 12):
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (n,), generator=g)
    if name == "transformer":
        return torch.randint(0, 11, (n, 5), generator=g), y
    if name == "encoder_layer":
        return torch.randn(n, 5, 8, generator=g), y
    if name == "mlp":
        return torch.randn(n, 5, generator=g), y
    return torch.randn(n, 2, 6, 6, generator=g), y


MODELS = {
    "mlp": _mlp,
    "cnn_bn": _cnn_bn,
    "grouped": _grouped,
    "deconv": _deconv,
    "transformer": _transformer,
    "encoder_layer": _encoder_layer,
}


# ---------------------------------------------------------------- budgets
def _shapes_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 6, 3, groups=2), nn.GroupNorm(2, 6),
        nn.Flatten(), nn.Linear(6 * 6 * 6, 5), nn.Linear(5, 3, bias=False),
    ).eval()  # fmt: skip


@pytest.mark.parametrize("criterion", ["highest_outputs", "lowest_gradients", "random"])
@pytest.mark.parametrize("ratio", [0.01, 0.05, 0.1, 0.29, 1 / 3, 0.77, 1.0])
def test_per_layer_budget_is_int_ratio_times_layer_size(criterion, ratio):
    model = _shapes_model()
    data = (torch.randn(6, 3, 6, 6), torch.randint(0, 3, (6,)))
    subset, summary = select_with_summary(
        model, None, data, criterion=criterion, ratio=ratio, seed=0
    )
    expected = _budgets_by_module(model, ratio)
    got = _selected_by_module(subset)
    assert {k: got.get(k, 0) for k in expected} == expected
    assert {x.name: x.selected for x in summary.layers} == expected
    assert len(subset) == sum(expected.values()) == summary.selected


def test_budget_rounding_to_zero_selects_nothing_there_and_empty_selection_raises():
    model = _shapes_model()
    data = (torch.randn(4, 3, 6, 6), torch.randint(0, 3, (4,)))
    # 0.005: the Linear (1085 elements) gets 5, the others (<= 114) get 0
    subset, summary = select_with_summary(model, None, data, criterion="random", ratio=0.005)
    assert {x.name: x.selected for x in summary.layers} == {"0": 0, "1": 0, "2": 0, "4": 5, "5": 0}
    with pytest.raises(SubsetError, match=r"rounds down to 0.*use ratio >= 0\.000922"):
        select(model, None, data, criterion="highest_outputs", ratio=1e-4)


# ---------------------------------------------------------------- hand-built rankings
def _known_outputs_model() -> nn.Module:
    """l1 outputs are exactly c = [0.5, -3, 1, 2] for inputs with x[:, 0] = 1; l2 = [0.5, 2]."""
    l1, l2 = nn.Linear(3, 4), nn.Linear(4, 2)
    with torch.no_grad():
        l1.weight.zero_()
        l1.weight[:, 0] = torch.tensor([0.5, -3.0, 1.0, 2.0])
        l1.bias.zero_()
        l2.weight.zero_()
        l2.weight[0, 0] = 1.0
        l2.bias.copy_(torch.tensor([0.0, 2.0]))
    return nn.Sequential(l1, l2).eval()


def _rows_selected(mask: torch.Tensor) -> list[int]:
    return [i for i in range(mask.shape[0]) if bool(mask[i].all())]


@pytest.mark.parametrize(
    "criterion, expected",
    [
        ("highest_outputs", {0.25: [1], 0.5: [1, 3], 0.75: [1, 2, 3]}),
        ("lowest_outputs", {0.25: [0], 0.5: [0, 2], 0.75: [0, 2, 3]}),
    ],
)
def test_outputs_criteria_pick_known_units_in_rank_order(criterion, expected):
    model = _known_outputs_model()
    x = torch.cat([torch.ones(9, 1), torch.randn(9, 2)], 1)
    for ratio, units in expected.items():
        subset = select(model, MeanOutput(), (x,), criterion=criterion, ratio=ratio, seed=0)
        m = subset.masks()
        assert _rows_selected(m["0.weight"]) == units
        assert torch.nonzero(m["0.bias"]).flatten().tolist() == units
        assert int(m["0.weight"].sum()) == 3 * len(units)


def test_remainder_is_a_random_part_of_the_next_units_weights():
    model = _known_outputs_model()
    x = torch.cat([torch.ones(9, 1), torch.randn(9, 2)], 1)
    # l1: budget int(0.375 · 16) = 6 = unit 1 (4) + 2 weights of unit 3 (next by |output|)
    # l2: budget int(0.375 · 10) = 3 = 3 of the 4 weights of unit 1 (|2| > |0.5|), no bias
    seen = set()
    for seed in range(6):
        m = select(model, MeanOutput(), (x,), criterion="highest_outputs", ratio=0.375,
                   seed=seed).masks()  # fmt: skip
        assert m["0.weight"][1].all() and m["0.bias"].tolist() == [False, True, False, False]
        assert int(m["0.weight"][3].sum()) == 2 and int(m["0.weight"].sum()) == 5
        assert int(m["1.weight"][1].sum()) == 3 and not m["1.weight"][0].any()
        assert not m["1.bias"].any()
        seen.add(tuple(m["0.weight"][3].tolist()))
    assert len(seen) > 1  # the partial unit's elements are drawn at random


def _known_gradients_model() -> tuple[nn.Module, torch.Tensor]:
    """Linear model h = W1 x + b1, out = v·h: ∂ℓ/∂h_j = v_j = [1, 0.1, -5, 2] for every example."""
    torch.manual_seed(0)
    l1, l2 = nn.Linear(3, 4), nn.Linear(4, 1)
    with torch.no_grad():
        l2.weight.copy_(torch.tensor([[1.0, 0.1, -5.0, 2.0]]))
    return nn.Sequential(l1, l2).eval(), torch.randn(10, 3)


@pytest.mark.parametrize(
    "criterion, expected",
    [
        ("highest_gradients", {0.25: [2], 0.5: [2, 3], 0.75: [0, 2, 3]}),
        ("lowest_gradients", {0.25: [1], 0.5: [0, 1], 0.75: [0, 1, 3]}),
    ],
)
def test_gradient_criteria_pick_known_units_in_rank_order(criterion, expected):
    model, x = _known_gradients_model()
    for ratio, units in expected.items():
        m = select(model, MeanOutput(), (x,), criterion=criterion, ratio=ratio, seed=0).masks()
        assert _rows_selected(m["0.weight"]) == units
        assert torch.nonzero(m["0.bias"]).flatten().tolist() == units


def _onehot_unit_case(kind: str):
    """A layer whose output per unit is its bias (weights zero), and the unit's elements."""
    if kind == "conv_grouped":
        layer, x = nn.Conv2d(4, 6, 3, groups=2), torch.randn(3, 4, 5, 5)
        elems = lambda c, m: m["weight"][c].all() and int(m["weight"].sum()) == 18  # noqa: E731
    elif kind == "conv_depthwise":
        layer, x = nn.Conv2d(4, 4, 3, groups=4), torch.randn(3, 4, 5, 5)
        elems = lambda c, m: m["weight"][c].all() and int(m["weight"].sum()) == 9  # noqa: E731
    elif kind == "conv_transpose_grouped":
        layer, x = nn.ConvTranspose2d(4, 6, 3, groups=2), torch.randn(3, 4, 3, 3)

        def elems(c, m):  # weight (in=4, out/G=3, 3, 3); channel c = g·3 + j
            g, j = divmod(c, 3)
            return m["weight"][2 * g : 2 * g + 2, j].all() and int(m["weight"].sum()) == 18

    elif kind == "conv1d_transpose":
        layer, x = nn.ConvTranspose1d(3, 5, 2), torch.randn(3, 3, 4)
        elems = lambda c, m: m["weight"][:, c].all() and int(m["weight"].sum()) == 6  # noqa: E731
    elif kind == "batchnorm":
        layer, x = nn.BatchNorm2d(5).eval(), torch.randn(3, 5, 2, 2)
        elems = lambda c, m: m["weight"][c] and int(m["weight"].sum()) == 1  # noqa: E731
    elif kind == "layernorm":
        layer, x = nn.LayerNorm((2, 3)), torch.randn(3, 4, 2, 3)
        elems = lambda c, m: m["weight"].view(-1)[c] and int(m["weight"].sum()) == 1  # noqa: E731
    else:
        layer, x = nn.InstanceNorm1d(4, affine=True).eval(), torch.randn(3, 4, 6)
        elems = lambda c, m: m["weight"][c] and int(m["weight"].sum()) == 1  # noqa: E731
    return layer, x, elems


@pytest.mark.parametrize(
    "kind",
    ["conv_grouped", "conv_depthwise", "conv_transpose_grouped", "conv1d_transpose",
     "batchnorm", "layernorm", "instancenorm"],
)  # fmt: skip
def test_unit_of_each_layer_type_is_its_weight_slice_plus_bias(kind):
    layer, x, elems = _onehot_unit_case(kind)
    units = layer.bias.numel()
    bias = torch.linspace(0.1, 0.9, units)
    top, bottom = units // 2, 1
    bias[top], bias[bottom] = -4.0, 0.01
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(bias.view_as(layer.bias))
    numel = layer.weight.numel() + layer.bias.numel()
    ratio = (numel / units + 0.5) / numel  # budget = exactly one unit
    for criterion, unit in (("highest_outputs", top), ("lowest_outputs", bottom)):
        subset = select(layer, MeanOutput(), (x,), criterion=criterion, ratio=ratio)
        m = {k.rpartition(".")[2]: v for k, v in subset.masks().items()}
        assert elems(unit, m), (criterion, unit)
        assert torch.nonzero(m["bias"].reshape(-1)).flatten().tolist() == [unit]


def test_embedding_rows_ranked_by_use_and_norm():
    emb = nn.Embedding(6, 2)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor([[1.0, 0], [3, 0], [0, 0.5], [2, 0], [0, 1], [9, 9]]))
    # lookups per example: token 0: 2, 1: 1, 2: 4, 3: 1, 4: 0, 5: 0 → use·‖row‖ = 2, 3, 2, 2, 0, 0
    tokens = torch.tensor([[0, 0, 1, 2, 2, 2, 2, 3]] * 3)
    ratio = 2.5 / 12  # one row
    m = select(emb, MeanOutput(), (tokens,), criterion="highest_outputs", ratio=ratio).masks()
    assert _rows_selected(m["weight"]) == [1]
    m = select(emb, MeanOutput(), (tokens,), criterion="lowest_outputs", ratio=ratio).masks()
    assert _rows_selected(m["weight"]) == [4]  # unused; tie with 5 broken by index


# ---------------------------------------------------------------- statistics vs autograd
def _scores(model, data, gradients, batch_size=7, objective=None):
    fm = FunctionalModel(model, objective)
    pairs, _ = collect_scores(
        fm, layer_groups(model), as_batches(data, batch_size), gradients=gradients
    )
    return {g.name: s for g, s in pairs}


def test_mlp_and_cnn_statistics_match_an_autograd_reference():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    net = net.double().eval()
    x, y = torch.randn(17, 2, 6, 6, dtype=torch.float64), torch.randint(0, 3, (17,))
    conv, lin = net[0], net[3]
    h1 = conv(x)
    h2 = lin(torch.tanh(h1).flatten(1))
    h1.retain_grad()
    h2.retain_grad()
    F.cross_entropy(h2, y, reduction="sum").backward()
    n, p = 17, 16
    ref_out = {"0": h1.mean((0, 2, 3)).abs(), "3": h2.mean(0).abs()}
    ref_grad = {"0": (h1.grad.sum((0, 2, 3)) / (n * p)).abs(), "3": (h2.grad.sum(0) / n).abs()}
    net.zero_grad(set_to_none=True)
    assert_close(_scores(net, (x, y), False), {k: v.detach() for k, v in ref_out.items()})
    assert_close(_scores(net, (x, y), True), ref_grad)


class EmbAttn(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 6)
        self.attn = nn.MultiheadAttention(6, 2, batch_first=True)
        self.head = nn.Linear(6, 3)

    def forward(self, tokens):
        h = self.emb(tokens)
        a, _ = self.attn(h, h, h)
        return self.head(a.mean(1))


def test_embedding_and_attention_statistics_match_a_manual_reference():
    torch.manual_seed(0)
    model = EmbAttn().double().eval()
    tokens, y = torch.randint(0, 7, (9, 4)), torch.randint(0, 3, (9,))
    b, t, e, h, d = 9, 4, 6, 2, 3
    w = model.emb.weight.detach().clone().requires_grad_(True)
    x = F.embedding(tokens, w)
    wi, bi = model.attn.in_proj_weight, model.attn.in_proj_bias
    q, k, v = (F.linear(x, wi[i * e : (i + 1) * e], bi[i * e : (i + 1) * e]) for i in range(3))
    for z in (q, k, v):
        z.retain_grad()

    def heads(z):
        return z.view(b, t, h, d).transpose(1, 2)

    att = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(d), -1)
    o = (att @ heads(v)).transpose(1, 2).reshape(b, t, e)
    out = model.attn.out_proj(o)
    out.retain_grad()
    assert_close(out, model.attn(x, x, x)[0])
    F.cross_entropy(model.head(out.mean(1)), y, reduction="sum").backward()
    model.zero_grad(set_to_none=True)
    use = torch.bincount(tokens.flatten(), minlength=7) / b
    ref_out = {
        "emb": use * w.detach().norm(dim=1),
        "attn": torch.cat([z.mean((0, 1)) for z in (q, k, v)]).abs().detach(),
        "attn.out_proj": out.mean((0, 1)).abs().detach(),
    }
    ref_grad = {
        "emb": (w.grad / b).norm(dim=1),
        "attn": torch.cat([z.grad.sum((0, 1)) for z in (q, k, v)]).abs() / (b * t),
        "attn.out_proj": out.grad.sum((0, 1)).abs() / (b * t),
    }
    for gradients, ref in ((False, ref_out), (True, ref_grad)):
        got = _scores(model, (tokens, y), gradients, batch_size=4)
        assert_close({k: got[k] for k in ref}, ref)


def test_max_examples_uses_the_first_examples_and_batching_does_not_matter():
    model = _mlp().double()
    x, y = torch.randn(30, 5, dtype=torch.float64), torch.randint(0, 3, (30,))
    for criterion in ("highest_outputs", "highest_gradients"):
        kw = dict(criterion=criterion, ratio=0.3, seed=0)
        a, sa = select_with_summary(model, None, (x, y), max_examples=11, batch_size=4, **kw)
        b = select(model, None, (x[:11], y[:11]), batch_size=100, **kw)
        assert a == b and sa.num_examples == 11
        assert select(model, None, (x, y), batch_size=7, **kw) == select(
            model, None, (x, y), batch_size=30, **kw
        )


def test_shared_module_statistics_pool_all_of_its_calls():
    torch.manual_seed(0)
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.Tanh(), shared).double().eval()
    x = torch.randn(10, 4, dtype=torch.float64)
    h1 = shared(x)
    h2 = shared(torch.tanh(h1))
    ref = torch.cat([h1, h2]).mean(0).abs().detach()
    scores = _scores(model, (x,), False, batch_size=3, objective=MeanOutput())
    assert list(scores) == ["0"]  # one group, both calls counted
    assert_close(scores["0"], ref)


class DictObjective(Objective):
    def loss(self, forward, batch):
        return F.cross_entropy(forward(batch["x"]), batch["y"])


def test_dict_batches_and_max_examples():
    model = _mlp()
    x, y = _data_for("mlp", 20)
    batches = [{"x": x[i : i + 6], "y": y[i : i + 6]} for i in range(0, 20, 6)]
    kw = dict(criterion="highest_gradients", ratio=0.3, seed=0)
    a, summary = select_with_summary(model, DictObjective(), batches, max_examples=9, **kw)
    assert summary.num_examples == 9
    assert a == select(model, None, (x[:9], y[:9]), **kw)


# ---------------------------------------------------------------- random, RNG, hygiene
def test_random_is_reproducible_by_seed_and_differs_across_seeds():
    model = _cnn_bn()
    state = torch.get_rng_state()
    a = select(model, None, None, criterion="random", ratio=0.2, seed=3)
    assert a == select(model, None, None, criterion="random", ratio=0.2, seed=3)
    assert a != select(model, None, None, criterion="random", ratio=0.2, seed=4)
    _, summary = select_with_summary(model, None, None, criterion="random", ratio=0.2)
    again = select(model, None, None, criterion="random", ratio=0.2, seed=summary.seed)
    assert again == select(model, None, None, criterion="random", ratio=0.2, seed=summary.seed)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was not used


@pytest.mark.parametrize("name", list(MODELS))
def test_every_criterion_works_and_leaves_the_model_untouched(name):
    model = MODELS[name]()
    data = _data_for(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no layer may fall back (every hook must fire)
        for criterion in BUDGETED:
            subset, summary = select_with_summary(
                model, None, data, criterion=criterion, ratio=0.1, seed=0, batch_size=5
            )
            groups = layer_groups(model)
            assert len(subset) == sum(int(0.1 * g.numel) for g in groups) == summary.selected
            assert all("fallback" not in x.rule for x in summary.layers)
    assert _hooks_empty(model)
    assert all(p.grad is None for p in model.parameters())
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.get_rng_state(), rng)


def test_train_mode_without_stochastic_layers_is_kept():
    model = _mlp().train()
    x, y = _data_for("mlp")
    select(model, None, (x, y), criterion="highest_gradients", ratio=0.5)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("criterion", ["highest_outputs", "highest_gradients"])
def test_hooks_are_removed_after_an_exception(criterion):
    model = _transformer()
    data = _data_for("transformer")
    with pytest.raises(RuntimeError, match="boom"):
        select(model, Boom(), data, criterion=criterion, ratio=0.1)
    assert _hooks_empty(model)

    class Breaks(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom in forward")

    net = nn.Sequential(nn.Linear(5, 4), Breaks(), nn.Linear(4, 3))
    with pytest.raises(RuntimeError, match="boom in forward"):
        select(net, None, _data_for("mlp"), criterion=criterion, ratio=0.1)
    assert _hooks_empty(net)
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["cnn_bn", "transformer"])
def test_selection_on_cuda_matches_cpu(name):
    model = MODELS[name]().double()
    data = _data_for(name)  # stays on the CPU: batches follow the parameters' device
    gpu_model = copy.deepcopy(model).cuda()
    for criterion in BUDGETED:
        kw = dict(criterion=criterion, ratio=0.2, seed=0)
        assert select(gpu_model, None, data, **kw) == select(model, None, data, **kw)


# ---------------------------------------------------------------- coverage of parameters
class Scale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(dim))
        self.offset = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return x * self.gain + self.offset


class GatedLinear(nn.Linear):
    def __init__(self, n):
        super().__init__(n, n)
        self.gate = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return super().forward(x) * self.gate


class Zoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.emb = nn.Embedding(10, 6)
        self.bag = nn.EmbeddingBag(10, 6, mode="mean")
        self.kproj, self.vproj = nn.Linear(6, 4), nn.Linear(6, 5)
        self.attn = nn.MultiheadAttention(6, 2, kdim=4, vdim=5, add_bias_kv=True,
                                          batch_first=True)  # fmt: skip
        self.rms = nn.RMSNorm(6)
        self.lstm = nn.LSTM(6, 6, batch_first=True)
        self.shared = nn.Linear(6, 6)
        self.prelu = nn.PReLU(6)
        self.custom = Scale(6)
        self.frozen = nn.Linear(6, 6)
        self.frozen.weight.requires_grad_(False)
        self.conv = nn.Conv1d(6, 4, 3, padding=1)
        self.inorm = nn.InstanceNorm1d(4, affine=True)
        self.deconv = nn.ConvTranspose1d(4, 6, 3, padding=1, groups=2)
        self.gated = GatedLinear(6)
        self.bil = nn.Bilinear(6, 6, 1)
        self.head = nn.Linear(6, 10)
        self.head.weight = self.emb.weight  # tied

    def forward(self, tokens):
        h = self.emb(tokens) * self.scale + self.bag(tokens).unsqueeze(1)
        a, _ = self.attn(h, self.kproj(h), self.vproj(h))
        h, _ = self.lstm(self.rms(h + a))
        h = self.shared(self.prelu(self.shared(h).transpose(1, 2)).transpose(1, 2))
        h = self.frozen(self.custom(h))
        h = h + self.deconv(self.inorm(self.conv(h.transpose(1, 2)))).transpose(1, 2)
        pooled = self.gated(h).mean(1)
        return self.head(pooled)[:, :3] + self.bil(pooled, pooled)


def _unit_ids(member) -> torch.Tensor:
    ids = torch.arange(member.first_unit, member.first_unit + member.num_units)
    return member.spread(ids).expand(member.shape).reshape(-1)


def test_every_trainable_parameter_is_covered_by_exactly_one_rule():
    torch.manual_seed(0)
    model = Zoo().eval()
    extra = nn.ModuleList([nn.Conv3d(2, 4, 2, groups=2), nn.ConvTranspose3d(2, 4, 2),
                           nn.InstanceNorm2d(3, affine=True), nn.BatchNorm1d(3)])  # fmt: skip
    for m in (model, extra):
        groups = layer_groups(m)
        names = Counter(n for g in groups for n in g.param_names)
        trainable = [n for n, p in m.named_parameters() if p.requires_grad]
        assert names == Counter(trainable)
        for g in groups:  # units partition each group's elements
            counts = torch.zeros(g.num_units, dtype=torch.long)
            for member in g.members:
                counts += torch.bincount(_unit_ids(member), minlength=g.num_units)
            assert torch.equal(counts, g.unit_sizes())
            assert g.numel == sum(math.prod(m_.shape) for m_ in g.members)
    names = Counter(n for g in layer_groups(model) for n in g.param_names)
    rules = {(g.name, g.rule) for g in layer_groups(model)}
    assert {("(root)", "elements"), ("lstm", "elements"), ("prelu", "elements")} <= rules
    assert ("attn", "q/k/v projection rows") in rules
    assert ("attn", "elements (other parameters)") in rules  # bias_k, bias_v
    assert ("gated", "output rows") in rules and ("gated", "elements (other parameters)") in rules
    assert {("rms", "normalized elements"), ("inorm", "channels"), ("bag", "token rows")} <= rules
    head = [g for g in layer_groups(model) if g.name == "head"][0]
    assert head.param_names == ("head.bias",)  # the tied weight belongs to emb
    assert "frozen.weight" not in names and "shared.weight" in names


def test_zoo_selects_without_fallback_and_shared_module_counts_once():
    torch.manual_seed(0)
    model = Zoo().eval()
    tokens, y = torch.randint(0, 10, (8, 5)), torch.randint(0, 3, (8,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for criterion in BUDGETED:
            subset, summary = select_with_summary(
                model, None, (tokens, y), criterion=criterion, ratio=0.25, seed=1
            )
            assert [x.name for x in summary.layers].count("shared") == 1
            assert summary.total == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert _hooks_empty(model) and all(p.grad is None for p in model.parameters())


def test_module_not_called_falls_back_to_elements_with_a_warning():
    torch.manual_seed(0)

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(5, 3), nn.Linear(5, 4)

        def forward(self, x):
            return self.used(x)

    model = Unused().eval()
    x, y = _data_for("mlp")
    with pytest.warns(UserWarning, match="not called"):
        subset, summary = select_with_summary(
            model, None, (x, y), criterion="highest_outputs", ratio=0.25
        )
    row = [r for r in summary.layers if r.name == "unused"][0]
    assert "fallback" in row.rule and row.selected == int(0.25 * 24)
    m = subset.masks()
    values = torch.cat([model.unused.weight.flatten(), model.unused.bias]).abs()
    chosen = torch.cat([m["unused.weight"].flatten(), m["unused.bias"]])
    assert values[chosen].min() >= values[~chosen].max()  # largest |θ| elements


# ---------------------------------------------------------------- options
def test_exclude_normalization_selects_nothing_in_norm_layers():
    model = _cnn_bn()
    data = _data_for("cnn_bn")
    for criterion in [*BUDGETED, "all"]:
        _, summary = select_with_summary(
            model, None, data, criterion=criterion, ratio=0.5, exclude_normalization=True
        )
        row = [x for x in summary.layers if x.module_type == "BatchNorm2d"][0]
        assert row.selected == 0 and row.rule == "excluded (normalization)"
        assert summary.selected > 0


def test_explicit_criteria_match_parameter_subset_constructors():
    model = _cnn_bn()
    assert select(model, criterion="all") == ParameterSubset.all(model)
    assert select(model, criterion=Criterion.BY_NAMES, names=["5.weight"]) == (
        ParameterSubset.from_names(model, ["5.weight"])
    )
    assert select(model, criterion="by_modules", modules=["0", model[3]], ratio=0.1) == (
        ParameterSubset.from_modules(model, [model[0], model[3]])
    )


def test_summary_serializes_and_formats():
    model = _transformer()
    _, summary = select_with_summary(
        model, None, _data_for("transformer"), criterion="highest_gradients", ratio=0.05, seed=0
    )
    assert isinstance(summary, SelectionSummary)
    d = json.loads(json.dumps(summary.to_dict()))
    assert d["criterion"] == "highest_gradients" and d["num_examples"] == 12
    assert {x["name"] for x in d["layers"]} >= {"emb", "ln", "attn", "attn.out_proj", "head"}
    table = summary.format_table()
    assert "attn.out_proj" in table and "total" in table


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_bad_ratio_is_refused(ratio):
    with pytest.raises(InputError, match="ratio"):
        select(_mlp(), None, _data_for("mlp"), criterion="highest_outputs", ratio=ratio)


def test_clear_errors_for_bad_inputs():
    model, data = _mlp(), _data_for("mlp")
    with pytest.raises(DataError, match="empty"):
        select(model, None, (torch.empty(0, 5), torch.empty(0)), criterion="random", ratio=0.1)
    with pytest.raises(DataError, match="no batch"):
        select(model, None, [], criterion="highest_gradients", ratio=0.1)
    with pytest.raises(DataError, match="pass the examples"):
        select(model, None, None, criterion="lowest_outputs", ratio=0.1)
    with pytest.raises(SubsetError, match="no parameter that requires grad"):
        select(nn.ReLU(), None, data, criterion="highest_outputs", ratio=0.1)
    frozen = _mlp().requires_grad_(False)
    with pytest.raises(SubsetError, match="no parameter"):
        select(frozen, None, data, criterion="random", ratio=0.1)
    with pytest.raises(InputError, match="uninitialized"):
        select(nn.LazyLinear(3), criterion="random", ratio=0.5)
    with pytest.raises(InputError, match="unknown selection criterion 'largest'.*'random'"):
        select(model, None, data, criterion="largest", ratio=0.1)
    with pytest.raises(InputError, match="needs names"):
        select(model, criterion="by_names")
    with pytest.raises(InputError, match="needs modules"):
        select(model, criterion="by_modules")
    with pytest.raises(InputError, match="by_names' only"):
        select(model, None, data, criterion="random", ratio=0.1, names=["0.weight"])
    with pytest.raises(InputError, match="max_examples"):
        select(model, None, data, criterion="highest_outputs", ratio=0.1, max_examples=0)
    with pytest.raises(InputError, match="seed"):
        select(model, None, data, criterion="random", ratio=0.1, seed="1")
    with pytest.raises(DeterminismError, match="eval"):
        select(_cnn_bn().train(), None, _data_for("cnn_bn"), criterion="highest_outputs",
               ratio=0.1)  # fmt: skip
