"""geninf.scoring against dense float64 formulas and exact leave-one-out retraining."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from geninf import ConvergenceWarning, InputError, ParameterSubset, SupervisedObjective
from geninf.errors import (
    DataError,
    GenInfError,
    ModelTooLargeError,
    NonFiniteError,
    SubsetError,
)
from geninf.linalg import HessianOperator
from geninf.scoring import (
    load_scores,
    per_example_gradients,
    plot_query_top_examples,
    score,
    self_influence,
    top_k,
    write_scores_csv,
    write_scores_json,
)
from geninf.scoring.materialize import dense_columns

from .conftest import make_problem

TOL = dict(rtol=1e-7, atol=1e-11)
DAMPING = 0.05  # keeps the tiny MLP/CNN Hessians positive definite


def _per_example(p, data):
    x, y = data
    return torch.stack([p.dense_gradient((x[i : i + 1], y[i : i + 1])) for i in range(len(x))])


def _subset(model, fraction=4, seed=0):
    n = ParameterSubset.all(model).num_total
    g = torch.Generator().manual_seed(seed)
    return ParameterSubset.from_flat_indices(
        model, torch.randperm(n, generator=g)[: max(2, n // fraction)]
    )


def _dense_references(p, J):
    """The documented formulas, with the dense Hessian and per-example gradients."""
    n = p.flat_params().numel()
    H = p.dense_hessian() + DAMPING * torch.eye(n, dtype=torch.float64)
    Gt, Gq = _per_example(p, p.train), _per_example(p, p.target)
    m = len(p.train[0])
    Hinv_Gt = torch.linalg.solve(H, Gt.T)
    gif_x = torch.linalg.lstsq(H[:, J], Gt.T, driver="gelsd").solution  # x_i = H_{:,J}⁺ g_i
    return {
        "original": Gq @ Hinv_Gt / m,
        "gif": Gq[:, J] @ gif_x / m,
        "freezing": Gq[:, J] @ torch.linalg.solve(H[J][:, J], Gt[:, J].T) / m,
        "projecting": Gq[:, J] @ Hinv_Gt[J] / m,
        "grad_dot": Gq @ Gt.T / m,
    }


@pytest.mark.parametrize("name", ["linreg", "mlp", "cnn"])
def test_scores_match_dense_formulas(name):
    """The factorize-once dense path (batched Hessian columns, eigh / SVD)."""
    p = make_problem(name)
    subset = _subset(p.model)
    refs = _dense_references(p, subset.flat_indices)
    for method, ref in refs.items():
        got = score(
            p.model,
            p.loss_fn,
            p.train,
            p.target,
            method=method,
            subset=subset if method in ("gif", "freezing", "projecting") else None,
            solver="dense",
            damping=DAMPING,
            query_block=3,
            batch_size=16,
        )
        assert got.shape == (len(p.target[0]), len(p.train[0]))
        assert_close(got, ref, rtol=1e-6, atol=1e-10, msg=f"{name} {method}")


@pytest.mark.parametrize("name", ["linreg", "mlp"])
def test_iterative_solves_match_dense_formulas(name):
    """One LSMR solve per query on the operator of each method (k × n for gif)."""
    p = make_problem(name)
    p.target = (p.target[0][:2], p.target[1][:2])
    subset = _subset(p.model)
    refs = _dense_references(p, subset.flat_indices)
    for method, ref in refs.items():
        got = score(
            p.model,
            p.loss_fn,
            p.train,
            p.target,
            method=method,
            subset=subset if method in ("gif", "freezing", "projecting") else None,
            solver="lsmr",
            solver_options={"tol": 1e-11, "max_iter": 400},
            damping=DAMPING,
        )
        assert_close(got, ref, rtol=1e-6, atol=1e-10, msg=f"{name} {method}")


def test_gif_with_every_parameter_equals_original():
    p = make_problem("mlp")
    kw = dict(solver="dense", damping=DAMPING)
    gif = score(p.model, p.loss_fn, p.train, p.target, method="gif", **kw)
    orig = score(p.model, p.loss_fn, p.train, p.target, method="original", **kw)
    assert_close(gif, orig, **TOL)


def test_self_influence_is_the_diagonal_and_matches_dense():
    p = make_problem("cnn")
    subset = _subset(p.model)
    p.target = p.train
    refs = _dense_references(p, subset.flat_indices)
    for method, ref in refs.items():
        part = subset if method in ("gif", "freezing", "projecting") else None
        kw = dict(method=method, subset=part, solver="dense", damping=DAMPING, batch_size=7)
        si = self_influence(p.model, p.loss_fn, p.train, **kw)
        assert si.shape == (len(p.train[0]),)
        assert_close(si, ref.diagonal(), rtol=1e-6, atol=1e-10, msg=method)
        if method in ("gif", "grad_dot"):
            full = score(p.model, p.loss_fn, p.train, p.train, **kw)
            assert_close(si, full.diagonal(), **TOL)


def test_self_influence_of_a_slice_with_an_iterative_solver():
    """A part of the training set (num_train = m, H on all of it), solved by LSMR."""
    p = make_problem("mlp")
    subset = _subset(p.model)
    part = (p.train[0][:4], p.train[1][:4])
    kw = dict(subset=subset, damping=0.1, hessian_data=p.train, num_train=60)
    dense = self_influence(p.model, p.loss_fn, p.train, subset=subset, solver="dense", damping=0.1)
    lsmr = self_influence(
        p.model, p.loss_fn, part, solver="lsmr", solver_options={"tol": 1e-11}, **kw
    )  # fmt: skip
    assert_close(lsmr, dense[:4], rtol=1e-6, atol=1e-10)


# ------------------------------------------------------------------- leave-one-out retraining
def _logistic_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(48, 4, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logits = 1.5 * x @ w + 0.7 * torch.randn(48, 3, generator=g, dtype=torch.float64)
    y = logits.argmax(1)
    torch.manual_seed(seed)
    model = nn.Linear(4, 3).double()
    return model, (x[:40], y[:40]), (x[40:], y[40:])


def _newton_fit(risk, theta, free=None, iters=50):
    """Exact minimizer by Newton's method (only the coordinates ``free`` move if given)."""
    for _ in range(iters):
        th = theta.detach().requires_grad_(True)
        (gvec,) = torch.autograd.grad(risk(th), th)
        H = torch.autograd.functional.hessian(risk, theta, vectorize=True)
        if free is not None:
            step = torch.zeros_like(theta)
            step[free] = torch.linalg.solve(H[free][:, free], gvec[free])
        else:
            step = torch.linalg.solve(H, gvec)
        theta = (theta - step).detach()
        if float(step.norm()) < 1e-13:
            break
    return theta


def _loo_setup(free=None):
    """ℓ2-regularized multinomial logistic regression (nn.Linear(4, 3), float64): θ̂ and the
    exact change of 8 query losses when each of the 40 training examples is removed."""
    model, train, queries = _logistic_problem()
    wd = 0.05

    def logits(th, x):  # nn.Linear's flat layout: weight [3, 4] row-major, then bias [3]
        return x @ th[:12].reshape(3, 4).T + th[12:]

    def risk(data):
        x, y = data
        return lambda th: F.cross_entropy(logits(th, x), y) + 0.5 * wd * (th @ th)

    def query_losses(th):
        return F.cross_entropy(logits(th, queries[0]), queries[1], reduction="none")

    theta0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    theta = _newton_fit(risk(train), theta0)
    torch.nn.utils.vector_to_parameters(theta, model.parameters())
    base = query_losses(theta)
    x, y = train
    actual = torch.empty(len(queries[0]), len(x), dtype=torch.float64)
    for i in range(len(x)):
        keep = torch.arange(len(x)) != i
        actual[:, i] = query_losses(_newton_fit(risk((x[keep], y[keep])), theta, free)) - base
    objective = SupervisedObjective(F.cross_entropy, weight_decay=wd)
    return model, objective, train, queries, actual


def _pearson(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


def test_leave_one_out_logistic_regression_original():
    model, objective, train, queries, actual = _loo_setup()
    # the regularizer is part of every training example's loss, not of the query measurement
    pred = score(
        model, objective, train, queries, method="original", solver="dense",
        query_objective=F.cross_entropy,
    )  # fmt: skip
    assert _pearson(pred, actual) >= 0.95
    slope = float((pred * actual).sum() / (pred * pred).sum())
    assert 0.8 < slope < 1.6  # same sign and scale (first order underestimates a little)
    gif_all = score(model, objective, train, queries, method="gif", solver="lsmr",
                    solver_options={"tol": 1e-12}, query_objective=F.cross_entropy)  # fmt: skip
    assert_close(gif_all, pred, rtol=1e-6, atol=1e-10)


def test_leave_one_out_logistic_regression_freezing_matches_restricted_retraining():
    free = torch.tensor([0, 1, 2, 3, 12])  # first weight row and first bias
    model, objective, train, queries, actual = _loo_setup(free=free)
    subset = ParameterSubset.from_flat_indices(model, free)
    pred = score(
        model, objective, train, queries, method="freezing", subset=subset, solver="dense",
        query_objective=F.cross_entropy,
    )  # fmt: skip
    assert _pearson(pred, actual) >= 0.95


# ----------------------------------------------------------------------- streaming to disk
def test_streamed_output_equals_in_memory(tmp_path):
    p = make_problem("mlp")
    kw = dict(method="gif", subset=_subset(p.model), solver="dense", damping=DAMPING)
    ref = score(p.model, p.loss_fn, p.train, p.train, query_block=8, **kw)
    out = tmp_path / "sub" / "scores.npy"
    # rows written in 8 chunks, training gradients recomputed for every chunk (max_memory=1)
    got = score(
        p.model, p.loss_fn, p.train, p.train, out=out, query_block=8, max_memory=1, **kw
    )  # fmt: skip
    assert_close(got, ref, rtol=0, atol=0)
    assert sorted(f.name for f in out.parent.iterdir()) == ["scores.npy", "scores.npy.json"]
    meta = json.loads((out.parent / "scores.npy.json").read_text())
    assert (
        meta["method"] == "gif" and meta["shape"] == [60, 60] and "positive" in meta["convention"]
    )
    assert_close(load_scores(out), ref, rtol=0, atol=0)
    got[0, 0] = 123.0  # copy-on-write: the file keeps its value
    assert float(load_scores(out)[0, 0]) == float(ref[0, 0])
    # other chunk sizes change only the rounding of the final products
    one_block = score(p.model, p.loss_fn, p.train, p.train, query_block=64, **kw)
    assert_close(got[1:], one_block[1:], rtol=1e-12, atol=1e-15)


def test_matrix_over_max_memory_streams_to_a_temporary_file():
    p = make_problem("linreg")
    ref = score(p.model, p.loss_fn, p.train, p.target, method="grad_dot")
    with pytest.warns(ResourceWarning, match="streaming it to"):
        got = score(p.model, p.loss_fn, p.train, p.target, method="grad_dot", max_memory=10)
    assert_close(got, ref, rtol=0, atol=0)


def test_failed_run_leaves_no_file(tmp_path):
    p = make_problem("linreg")
    x, y = p.target
    bad_queries = [(x, y), (x.clone().fill_(float("nan")), y)]
    out = tmp_path / "scores.npy"
    with pytest.raises(NonFiniteError):
        score(p.model, p.loss_fn, p.train, bad_queries, method="grad_dot", out=out)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- per-example gradients
@pytest.mark.parametrize("name", ["linreg", "mlp", "cnn"])
def test_vmap_per_example_gradients_equal_a_loop(name):
    p = make_problem(name)
    objective = SupervisedObjective(p.loss_fn, weight_decay=0.3)
    vm = torch.cat(list(per_example_gradients(p.model, objective, p.train, batch_size=7)))
    loop = torch.cat(
        list(per_example_gradients(p.model, objective, p.train, batch_size=7, strategy="loop"))
    )
    ref = _per_example(p, p.train) + 0.3 * p.flat_params()  # the regularizer's gradient
    assert_close(vm, loop, **TOL)
    assert_close(vm, ref, **TOL)


class _ItemModel(nn.Module):
    """A forward pass vmap cannot trace (data-dependent Python control flow)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        out = self.lin(x)
        return out * 2.0 if float(x.sum()) > 1e9 else out


def test_untraceable_model_falls_back_to_a_loop():
    torch.manual_seed(0)
    model = _ItemModel().double()
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    with pytest.warns(RuntimeWarning, match="falling back"):
        got = torch.cat(list(per_example_gradients(model, None, (x, y))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = torch.cat(list(per_example_gradients(model, None, (x, y), strategy="loop")))
    assert_close(got, ref, rtol=0, atol=0)


# ------------------------------------------------------------------------- pieces and API
def test_batched_columns_equal_operator_products():
    p = make_problem("mlp")
    H = HessianOperator(p.model, p.loss_fn, p.train, batch_size=16).damped(0.3)
    subset = _subset(p.model, fraction=4)
    M, cols = dense_columns(H, subset, 4096, chunk=5)
    ref = torch.stack([H.matvec(subset.scatter_flat(e)) for e in torch.eye(len(subset)).double()])
    assert cols == len(subset)
    assert_close(M, ref.T, **TOL)


def test_gauss_newton_curvature_dense_and_iterative_agree():
    p = make_problem("mlp")
    queries = (p.target[0][:3], p.target[1][:3])
    kw = dict(method="original", curvature="gauss_newton", damping=0.1)
    dense = score(p.model, p.loss_fn, p.train, queries, solver="dense", **kw)
    lsmr = score(p.model, p.loss_fn, p.train, queries, solver="cg",
                 solver_options={"tol": 1e-12}, **kw)  # fmt: skip
    assert_close(lsmr, dense, rtol=1e-6, atol=1e-10)


def test_random_scores_are_seeded_and_blockwise_stable():
    p = make_problem("linreg")
    a = score(p.model, p.loss_fn, p.train, p.target, method="random", seed=3, query_block=1)
    b = score(p.model, p.loss_fn, p.train, p.target, method="random", seed=3, query_block=64)
    c = score(p.model, p.loss_fn, p.train, p.target, method="random", seed=4)
    assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    si = self_influence(p.model, p.loss_fn, p.train, method="random", seed=3)
    assert si.shape == (40,) and torch.equal(
        si, self_influence(p.model, p.loss_fn, p.train, method="random", seed=3)
    )


def test_model_is_left_untouched():
    p = make_problem("mlp")
    before = {k: v.clone() for k, v in p.model.state_dict().items()}
    score(p.model, p.loss_fn, p.train, p.target, method="gif", subset=_subset(p.model),
          solver="dense", damping=DAMPING)  # fmt: skip
    for k, v in p.model.state_dict().items():
        assert torch.equal(v, before[k])


def test_top_k_matches_sorting():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(7, 30, generator=g, dtype=torch.float64)
    best = top_k(s, 4, block_rows=3)
    order = s.argsort(dim=1, descending=True)
    assert torch.equal(best.helpful, order[:, :4])
    assert torch.equal(best.harmful, s.argsort(dim=1)[:, :4])
    assert_close(best.helpful_scores, s.gather(1, order[:, :4]), rtol=0, atol=0)
    assert (best.harmful_scores[:, 0] == s.min(dim=1).values).all()
    one = top_k(s[2], 5)
    assert torch.equal(one.helpful, order[2, :5])
    assert top_k(np.asarray(s), 1).helpful.shape == (7, 1)


def test_convergence_warning_when_solves_stop_early():
    p = make_problem("mlp")
    with pytest.warns(ConvergenceWarning, match="solves stopped before converging"):
        score(p.model, p.loss_fn, p.train, p.target, method="original", solver="lsmr",
              solver_options={"max_iter": 1}, damping=DAMPING)  # fmt: skip


# ------------------------------------------------------------------------------ writers
def test_writers(tmp_path):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 10, generator=g, dtype=torch.float64)
    wide = write_scores_csv(tmp_path / "wide.csv", s, train_ids=[f"t{i}" for i in range(10)])
    lines = wide.read_text().splitlines()
    assert lines[0].split(",")[:3] == ["query", "t0", "t1"] and len(lines) == 4
    assert float(lines[2].split(",")[4]) == pytest.approx(float(s[1, 3]), rel=1e-8)
    long = write_scores_csv(tmp_path / "long.csv", s, k=2, query_ids=["a", "b", "c"])
    rows = long.read_text().splitlines()
    assert rows[0] == "query,kind,rank,train,score" and len(rows) == 1 + 3 * 2 * 2
    assert rows[1].startswith(f"a,helpful,1,{int(s[0].argmax())},")
    doc = json.loads(write_scores_json(tmp_path / "s.json", s, k=3).read_text())
    assert doc["queries"][1]["harmful"][0]["train"] == int(s[1].argmin())
    assert "positive" in doc["convention"] and len(doc["queries"][2]["helpful"]) == 3
    full = json.loads(write_scores_json(tmp_path / "f.json", s, k=None).read_text())
    assert_close(torch.tensor(full["scores"], dtype=torch.float64), s, rtol=1e-12, atol=0)
    with pytest.raises(InputError, match="query_ids has 2 entries"):
        write_scores_csv(tmp_path / "x.csv", s, query_ids=[1, 2])


def test_plot_query_top_examples(tmp_path):
    pytest.importorskip("matplotlib")
    g = torch.Generator().manual_seed(0)
    train_images, query_images = torch.rand(12, 64, generator=g), torch.rand(3, 1, 8, 8)
    s = torch.randn(3, 12, generator=g)
    path = plot_query_top_examples(
        tmp_path / "top.png", query_images, train_images, s, k=2,
        train_labels=torch.arange(12) % 3, query_labels=[0, 1, 2], class_names=["a", "b", "c"],
    )  # fmt: skip
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="12 columns"):
        plot_query_top_examples(tmp_path / "x.png", query_images, train_images[:5], s)


# --------------------------------------------------------------------------- bad inputs
def _call(p, **kw):
    args = dict(method="original")
    args.update(kw)
    return score(p.model, p.loss_fn, p.train, p.target, **args)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "tracin"}, InputError, "unknown scoring method 'tracin'"),
        ({"damping": -1.0}, InputError, "damping must be a non-negative number"),
        ({"num_train": 3}, InputError, "num_train"),
        ({"query_block": 0}, InputError, "query_block must be a positive integer"),
        ({"out": "scores.csv"}, InputError, "out must name a .npy file"),
        ({"subset": "all"}, InputError, "subset must be a ParameterSubset"),
        ({"solver": "dense", "solver_options": {"max_size": 3}}, ModelTooLargeError, "max_size"),
        ({"solver": "newton"}, InputError, "unknown solver"),
    ],
)
def test_bad_inputs_give_one_line_errors(kwargs, error, match):
    p = make_problem("mlp")
    with pytest.raises(error, match=match) as info:
        _call(p, **kwargs)
    assert "\n" not in str(info.value) and isinstance(info.value, GenInfError)


def test_more_bad_inputs():
    p = make_problem("mlp")
    part = _subset(p.model)
    for method in ("original", "grad_dot"):
        with pytest.raises(InputError, match="uses every parameter"):
            _call(p, method=method, subset=part)
    with pytest.raises(SubsetError):
        _call(p, method="gif", subset=_subset(make_problem("linreg").model))
    with pytest.raises(DataError):
        score(p.model, p.loss_fn, p.train, "not data")
    with pytest.raises(InputError, match="gradient strategy"):
        next(per_example_gradients(p.model, p.loss_fn, p.train, strategy="jac"))
    with pytest.raises(InputError, match="k must be an integer between 1 and 5"):
        top_k(torch.zeros(2, 5), 6)
    with pytest.raises(InputError, match="1-D or 2-D float"):
        top_k(torch.zeros(2, 3, 4), 1)
    with pytest.raises(InputError, match="seed must be a non-negative integer"):
        _call(p, method="random", seed=-1)
