"""ParameterSubset: constructors, flat order, gather/scatter/apply and errors."""

import pytest
import torch
from torch import nn

from geninf import ParameterSubset, SubsetError
from geninf.params import ParameterLayout


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    m[0].bias.requires_grad_(False)  # frozen parameters are not part of θ
    return m


def test_layout_order_and_offsets():
    m = _model()
    lay = ParameterLayout.from_model(m)
    assert lay.names == ("0.weight", "2.weight", "2.bias")
    assert lay.offsets == (0, 12, 20, 22)
    flat = lay.flatten(dict(m.named_parameters()))
    torch.testing.assert_close(flat[:12], m[0].weight.reshape(-1))
    torch.testing.assert_close(lay.unflatten(flat)["2.bias"], m[2].bias)


def test_constructors_agree():
    m = _model()
    by_name = ParameterSubset.from_names(m, ["2.weight", "2.bias"])
    by_module = ParameterSubset.from_modules(m, [m[2]])
    by_module_name = ParameterSubset.from_modules(m, "2")
    masks = {"2.weight": torch.ones(2, 4, dtype=torch.bool), "2.bias": torch.ones(2, dtype=bool)}
    by_mask = ParameterSubset.from_masks(m, masks)
    by_idx = ParameterSubset.from_flat_indices(m, list(range(21, 11, -1)))
    assert by_name == by_module == by_module_name == by_mask == by_idx
    assert by_name.flat_indices.tolist() == list(range(12, 22))
    assert len(ParameterSubset.all(m)) == 22


def test_flat_indices_sorted_and_immutable():
    m = _model()
    s = ParameterSubset.from_flat_indices(m, [5, 1, 20])
    assert s.flat_indices.tolist() == [1, 5, 20]
    s.flat_indices[0] = 7
    assert s.flat_indices.tolist() == [1, 5, 20]


def test_gather_scatter_apply_roundtrip():
    m = _model()
    s = ParameterSubset.from_flat_indices(m, [0, 13, 21])
    flat = ParameterLayout.from_model(m).flatten(dict(m.named_parameters())).detach()
    g = s.gather(m)
    torch.testing.assert_close(g, flat[[0, 13, 21]])
    torch.testing.assert_close(s.gather(flat), g)
    delta = torch.tensor([1.0, 2.0, 3.0])
    parts = s.scatter(delta)
    assert parts["0.weight"][0, 0] == 1.0 and parts["2.weight"][0, 1] == 2.0
    assert parts["2.bias"][1] == 3.0
    assert sum(float(p.abs().sum()) for p in parts.values()) == 6.0
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    edited = s.apply(m, delta)
    for n, p in m.named_parameters():  # the original is untouched
        torch.testing.assert_close(p.detach(), before[n])
    torch.testing.assert_close(s.gather(edited), g + delta)
    new_flat = ParameterLayout.from_model(edited).flatten(dict(edited.named_parameters()))
    torch.testing.assert_close(new_flat.detach(), flat + s.scatter_flat(delta))
    same = s.apply(m, delta, inplace=True, alpha=-1.0)
    assert same is m
    torch.testing.assert_close(s.gather(m), g - delta)


def test_summary_and_masks():
    m = _model()
    s = ParameterSubset.from_flat_indices(m, [0, 1, 21])
    summ = s.summary()
    assert summ["0.weight"] == {"selected": 2, "total": 12, "fraction": 2 / 12}
    assert summ["2.weight"]["selected"] == 0
    assert s.names() == ["0.weight", "2.bias"]
    assert int(s.masks()["0.weight"].sum()) == 2


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda m: ParameterSubset.from_flat_indices(m, []), "empty"),
        (lambda m: ParameterSubset.from_flat_indices(m, [22]), "out of range"),
        (lambda m: ParameterSubset.from_flat_indices(m, [-1]), "out of range"),
        (lambda m: ParameterSubset.from_flat_indices(m, [3, 3]), "duplicate"),
        (lambda m: ParameterSubset.from_flat_indices(m, [0.5]), "integers"),
        (lambda m: ParameterSubset.from_names(m, ["nope"]), "no trainable parameter named"),
        (lambda m: ParameterSubset.from_names(m, ["0.bias"]), "no trainable parameter named"),
        (lambda m: ParameterSubset.from_names(m, []), "no parameter names"),
        (lambda m: ParameterSubset.from_modules(m, ["9"]), "no submodule"),
        (lambda m: ParameterSubset.from_modules(m, [nn.Linear(2, 2)]), "no trainable"),
        (lambda m: ParameterSubset.from_masks(m, {"2.bias": torch.ones(3, dtype=bool)}), "shape"),
        (lambda m: ParameterSubset.from_masks(m, {"2.bias": torch.ones(2)}), "bool"),
        (lambda m: ParameterSubset.from_masks(m, {"2.bias": torch.zeros(2, dtype=bool)}), "empty"),
        (lambda m: ParameterSubset.all(nn.ReLU()), "no parameter"),
    ],
)
def test_bad_subsets_raise(build, match):
    with pytest.raises(SubsetError, match=match):
        build(_model())


def test_wrong_model_and_delta_raise():
    m = _model()
    s = ParameterSubset.from_flat_indices(m, [0, 1])
    with pytest.raises(SubsetError, match="length 2"):
        s.apply(m, torch.zeros(3))
    with pytest.raises(SubsetError, match="another model"):
        s.apply(nn.Linear(3, 3), torch.zeros(2))
    with pytest.raises(SubsetError, match="length 22"):
        s.gather(torch.zeros(5))


def test_tied_parameters_counted_once():
    emb = nn.Embedding(5, 3)
    head = nn.Linear(3, 5, bias=False)
    head.weight = emb.weight
    m = nn.Sequential(emb, head)
    assert ParameterSubset.all(m).num_total == 15
    assert ParameterSubset.from_modules(m, [head]).flat_indices.tolist() == list(range(15))
