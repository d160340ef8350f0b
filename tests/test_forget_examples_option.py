"""``forget_examples=``: g over a stratified, seeded sample of the examples removed or changed,
the counts of the update staying the full ones — checked against the update computed by hand
from the same sample with a dense float64 Hessian on a tiny model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from geninf import InputError
from geninf.data import stratified_sample
from geninf.edit import relabel, remove

from .test_robust_edit import _blobs, flat  # the tiny float64 3-class problem

KW = {"method": "original", "damping": 0.1, "solver": "dense"}


def _loss_of_flat(net: nn.Module):
    """θ ↦ mean cross-entropy over (x, y) as a function of the flat parameter vector."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]

    def loss(theta, x, y):
        params, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = theta[i : i + shape.numel()].view(shape)
            i += shape.numel()
        return F.cross_entropy(functional_call(net, params, (x,)), y)

    return loss


def _by_hand(net, hessian_data, rhs, lam=0.1):
    """(H + λI)⁻¹ rhs with H the dense Hessian of the mean loss over ``hessian_data``."""
    loss, theta = _loss_of_flat(net), flat(net)
    H = torch.autograd.functional.hessian(lambda t: loss(t, *hessian_data), theta)
    return torch.linalg.solve(H + lam * torch.eye(theta.numel(), dtype=H.dtype), rhs)


def _grad(net, data):
    loss, theta = _loss_of_flat(net), flat(net).requires_grad_(True)
    return torch.autograd.grad(loss(theta, *data), theta)[0]


def _removal_split(net, x, y):
    """Forget: every example of class 2 and one in four of class 1 (two classes, 40 + 10)."""
    forget = (y == 2) | ((y == 1) & (torch.arange(len(y)) % 4 == 1))
    return (x[~forget], y[~forget]), (x[forget], y[forget])


def test_removal_with_a_forget_sample_equals_the_update_by_hand():
    net, x, y = _blobs()
    retain, forget = _removal_split(net, x, y)
    r, m = len(forget[1]), len(y)
    res = remove(net, None, retain, forget, forget_examples=20, **KW)
    idx = stratified_sample(forget[1], 20, generator=torch.Generator().manual_seed(0))
    assert torch.bincount(forget[1][idx], minlength=3).tolist() == [0, 4, 16]  # 10:40 of 20
    g_sample = _grad(net, (forget[0][idx], forget[1][idx]))  # the sample mean gradient
    expected = (r / (m - r)) * _by_hand(net, retain, g_sample)  # Newton scale: full counts
    torch.testing.assert_close(flat(res.model) - flat(net), expected, rtol=1e-7, atol=1e-10)
    rec = res.record
    assert (rec.num_train, rec.num_edited, rec.options["forget_examples"]) == (m, r, 20)
    assert rec.extra["forget_sample"] == {"examples": 20, "of": r}
    assert rec.scale == pytest.approx(r / (m - r))
    n = flat(net).numel()  # g over the 20 sampled examples; n dense products over the retained
    assert rec.compute.example_gradients == 20 + 2 * n * (m - r)


def test_relabel_with_a_forget_sample_scales_the_sample_sum_to_every_change():
    net, x, y = _blobs()
    changed = torch.nonzero(y != 0).flatten()[::2]  # 40 changes, classes 1 and 2
    new = (y[changed] + 1) % 3
    res = relabel(net, None, (x, y), (changed, new), forget_examples=10, **KW)
    pick = stratified_sample(y[changed], 10, generator=torch.Generator().manual_seed(0))
    idx = changed[pick]
    m, r, k = len(y), len(changed), 10
    diff = _grad(net, (x[idx], y[idx])) - _grad(net, (x[idx], new[pick]))  # means over k
    rhs = (r / k) * (k / m) * diff  # (r/k) · (1/m) Σ_sample [∇ℓ(z) − ∇ℓ(z')]
    expected = _by_hand(net, (x, y), rhs)
    torch.testing.assert_close(flat(res.model) - flat(net), expected, rtol=1e-7, atol=1e-10)
    rec = res.record
    assert (rec.num_edited, rec.extra["forget_sample"]) == (r, {"examples": k, "of": r})


def test_the_sample_is_reproducible_per_seed_and_moves_with_it():
    net, x, y = _blobs()
    retain, forget = _removal_split(net, x, y)
    a = remove(net, None, retain, forget, forget_examples=12, **KW)
    b = remove(net, None, retain, forget, forget_examples=12, **KW)
    c = remove(net, None, retain, forget, forget_examples=12, seed=1, **KW)
    torch.testing.assert_close(flat(a.model), flat(b.model), rtol=0, atol=0)
    assert not torch.allclose(flat(a.model), flat(c.model))


@pytest.mark.parametrize("op", ["remove", "relabel"])
def test_every_example_is_the_full_data_update(op):
    net, x, y = _blobs()
    if op == "remove":
        retain, forget = _removal_split(net, x, y)
        full = remove(net, None, retain, forget, **KW)
        same = remove(net, None, retain, forget, forget_examples=len(forget[1]), **KW)
    else:
        changed = torch.nonzero(y == 1).flatten()
        changes = (changed, torch.zeros_like(changed))
        full = relabel(net, None, (x, y), changes, **KW)
        same = relabel(net, None, (x, y), changes, forget_examples=len(changed), **KW)
    torch.testing.assert_close(flat(same.model), flat(full.model), rtol=0, atol=0)
    assert "forget_sample" not in same.record.extra


@pytest.mark.parametrize(
    "value, message",
    [
        (51, "forget_examples=51 is more than the 50 examples to remove or change"),
        (0, "option forget_examples must be a positive int or None, got 0"),
        (2.5, "option forget_examples must be a positive int or None, got 2.5"),
        (True, "option forget_examples must be a positive int or None, got True"),
    ],
)
def test_bad_forget_examples_are_refused_in_one_line(value, message):
    net, x, y = _blobs()
    retain, forget = _removal_split(net, x, y)
    with pytest.raises(InputError, match=message) as err:
        remove(net, None, retain, forget, forget_examples=value, **KW)
    assert "\n" not in str(err.value)


def test_a_forget_sample_needs_tensor_data_with_class_targets():
    net, x, y = _blobs()
    retain, forget = _removal_split(net, x, y)
    soft = (forget[0], F.one_hot(forget[1], 3).double())
    with pytest.raises(InputError, match="forget_examples needs the data as an"):
        remove(net, nn.MSELoss(), retain, soft, forget_examples=5, **KW)
