"""Curvature products through PyTorch's attention layers, whose fused kernels have no double
backward: checked against central finite differences of the gradient in float64."""

from __future__ import annotations

import torch
from torch import nn

import geninf
from geninf.functional import FunctionalModel
from geninf.linalg import HessianOperator
from geninf.params import ParameterLayout


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(7, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


def _problem():
    torch.manual_seed(0)
    model = TinyEncoder().double().eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 7, (12, 5), generator=g), torch.randint(0, 3, (12,), generator=g)
    return model, (x, y)


def test_hvp_through_a_transformer_encoder_matches_finite_differences():
    model, data = _problem()
    fm = FunctionalModel(model, None)
    n = fm.num_params
    v = torch.randn(n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    layout = ParameterLayout.from_model(model)
    theta = layout.flatten(dict(model.named_parameters())).detach()

    def grad_at(t: torch.Tensor) -> torch.Tensor:
        m = TinyEncoder().double().eval()
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            for name, p in layout.unflatten(t).items():
                dict(m.named_parameters())[name].copy_(p)
        return FunctionalModel(m, None).gradient(data)

    eps = 1e-5
    fd = (grad_at(theta + eps * v) - grad_at(theta - eps * v)) / (2 * eps)
    # forward-mode AD (forward_over_reverse, Gauss-Newton) runs with the encoder's fused fast path
    # switched off (geninf.linalg.curvature.differentiable_attention)
    for method in ("reverse", "reverse_cached", "forward_over_reverse"):
        hv = HessianOperator(model, None, data, method=method).matvec(v)
        torch.testing.assert_close(hv, fd, rtol=1e-6, atol=1e-8)


def test_edit_of_a_transformer_encoder_runs_with_the_defaults():
    model, (x, y) = _problem()
    keep = y != 2
    res = geninf.remove(model, None, (x[keep], y[keep]), (x[~keep], y[~keep]))
    assert res.record.compute.hvps > 0 and res.record.schedule == "newton"


def test_differentiable_attention_changes_the_fast_path_only_inside_its_block():
    from geninf.linalg.curvature import differentiable_attention

    mha = torch.backends.mha
    before = mha.get_fastpath_enabled()
    ctx = differentiable_attention()
    assert mha.get_fastpath_enabled() == before  # nothing happens until the block is entered
    with ctx:
        assert mha.get_fastpath_enabled() is False
    assert mha.get_fastpath_enabled() == before
