"""Influence estimators against dense float64 algebra, closed forms and exact retraining."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geninf import ConvergenceWarning, InputError, ParameterSubset
from geninf.influence import influence, label_change_gradient, removal_scale
from geninf.params import ParameterLayout

from .conftest import make_problem

TOL = dict(rtol=1e-6, atol=1e-10)


def _subsets(model):
    n = ParameterSubset.all(model).num_total
    last = [name for name, _ in model.named_parameters()][-2]
    g = torch.Generator().manual_seed(0)
    return {
        "all": ParameterSubset.all(model),
        "one_tensor": ParameterSubset.from_names(model, [last]),
        "scattered": ParameterSubset.from_flat_indices(
            model, torch.randperm(n, generator=g)[: max(2, n // 4)]
        ),
    }


def _references(H, g, J):
    Hinv_g = torch.linalg.solve(H, g)
    return {
        "original": Hinv_g,
        "gif": torch.linalg.lstsq(H[:, J], g.unsqueeze(1), driver="gelsd").solution.squeeze(1),
        "freezing": torch.linalg.solve(H[J][:, J], g[J]),
        "projecting": Hinv_g[J],
    }


@pytest.mark.parametrize("name", ["linreg", "mlp", "cnn"])
@pytest.mark.parametrize("which", ["all", "one_tensor", "scattered"])
@pytest.mark.parametrize("solver", ["dense", "lsmr"])
def test_estimators_match_dense_algebra(name, which, solver):
    p = make_problem(name)
    damping = 0.05  # keeps the MLP/CNN Hessians positive definite and well conditioned
    H = p.dense_hessian() + damping * torch.eye(p.flat_params().numel(), dtype=torch.float64)
    g = p.dense_gradient()
    subset = _subsets(p.model)[which]
    refs = _references(H, g, subset.flat_indices)
    opts = {"tol": 1e-10} if solver == "lsmr" else {}
    for method, ref in refs.items():
        sub = None if method == "original" else subset
        res = influence(
            p.model,
            p.loss_fn,
            p.train,
            p.target,
            method=method,
            subset=sub,
            solver=solver,
            damping=damping,
            solver_options=opts,
        )
        torch.testing.assert_close(res.delta, ref, **TOL)
        assert res.delta.shape == (len(res.subset),)


@pytest.mark.parametrize("solver", ["cg", "auto"])
def test_krylov_solvers_on_square_systems(solver):
    p = make_problem("cnn")
    damping = 0.2  # λ_min(H) ≈ -0.16: CG needs H + λI positive definite
    H = p.dense_hessian() + damping * torch.eye(p.flat_params().numel(), dtype=torch.float64)
    g = p.dense_gradient()
    subset = _subsets(p.model)["scattered"]
    J = subset.flat_indices
    refs = _references(H, g, J)
    for method in ("original", "freezing", "projecting", "gif"):
        res = influence(
            p.model,
            p.loss_fn,
            p.train,
            p.target,
            method=method,
            subset=None if method == "original" else subset,
            solver=solver,
            damping=damping,
            solver_options={"tol": 1e-10},
        )
        torch.testing.assert_close(res.delta, refs[method], **TOL)


def test_undamped_indefinite_hessian_with_auto_solver():
    p = make_problem("mlp")
    H, g = p.dense_hessian(), p.dense_gradient()
    assert torch.linalg.eigvalsh(H).min() < 0  # a real non-convex case
    subset = _subsets(p.model)["scattered"]
    ref = _references(H, g, subset.flat_indices)["gif"]
    res = influence(
        p.model,
        p.loss_fn,
        p.train,
        p.target,
        method="gif",
        subset=subset,
        solver="auto",
        solver_options={"max_dense": 0, "tol": 1e-10},
    )
    torch.testing.assert_close(res.delta, ref, **TOL)
    assert res.diagnostics.converged


def test_gif_with_all_parameters_equals_original(problem):
    kw = dict(solver="dense", damping=0.05)
    gif = influence(
        problem.model, problem.loss_fn, problem.train, problem.target, method="gif", **kw
    )
    orig = influence(
        problem.model, problem.loss_fn, problem.train, problem.target, method="original", **kw
    )
    torch.testing.assert_close(gif.delta, orig.delta, **TOL)


# --- the paper's Fig. 2 toy: linear regression on x in R^5 with bias, GIF on two weights ------


def _toy():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = x @ torch.randn(5, 1, generator=g, dtype=torch.float64) + 0.3 * torch.randn(
        30, 1, generator=g, dtype=torch.float64
    )
    X = torch.cat([x, torch.ones(30, 1, dtype=torch.float64)], 1)
    theta = torch.linalg.lstsq(X, y).solution.squeeze(1)  # exact optimum on all data
    model = nn.Linear(5, 1).double()
    with torch.no_grad():
        model.weight.copy_(theta[:5].unsqueeze(0))
        model.bias.copy_(theta[5:])
    return model, x, y, X


def test_fig2_toy_closed_forms():
    model, x, y, X = _toy()
    removed = torch.arange(4)  # remove four data points
    keep = torch.arange(4, 30)
    m, r = 30, 4
    XR, XU = X[keep], X[removed]
    theta = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()])
    H_R = 2.0 / (m - r) * XR.T @ XR  # Hessian of the mean squared error over R
    g_U = 2.0 / r * XU.T @ (XU @ theta - y[removed].squeeze(1))  # gradient of the mean over U
    subset = ParameterSubset.from_flat_indices(model, [0, 1])  # θ1, θ2
    J = subset.flat_indices
    scale = removal_scale(m, r)
    closed = {
        "gif": torch.linalg.solve(H_R[:, J].T @ H_R[:, J], H_R[:, J].T @ g_U),
        "freezing": torch.linalg.solve(H_R[J][:, J], g_U[J]),
        "projecting": torch.linalg.solve(H_R, g_U)[J],
        "original": torch.linalg.solve(H_R, g_U),
    }
    retain, forget = (x[keep], y[keep]), (x[removed], y[removed])
    for method, ref in closed.items():
        res = influence(
            model,
            F.mse_loss,
            retain,
            forget,
            method=method,
            subset=None if method == "original" else subset,
            solver="dense",
        )
        torch.testing.assert_close(res.delta, ref, **TOL)

    # quadratic loss: the Newton step with all parameters lands exactly on the retrained optimum
    retrained = torch.linalg.lstsq(XR, y[keep]).solution.squeeze(1)
    torch.testing.assert_close(theta + scale * closed["original"], retrained, **TOL)
    # freezing = exact retraining of θ1, θ2 with the other parameters fixed
    rest = torch.tensor([2, 3, 4, 5])
    resid = y[keep].squeeze(1) - XR[:, rest] @ theta[rest]
    frozen_fit = torch.linalg.lstsq(XR[:, J], resid.unsqueeze(1)).solution.squeeze(1)
    torch.testing.assert_close(theta[J] + scale * closed["freezing"], frozen_fit, **TOL)

    # GIF minimizes the norm of the whole retained-risk gradient over moves of θ1, θ2
    def grad_norm(delta_J):
        th = theta.clone()
        th[J] += delta_J
        return float((2.0 / (m - r) * XR.T @ (XR @ th - y[keep].squeeze(1))).norm())

    best = grad_norm(scale * closed["gif"])
    assert best < grad_norm(scale * closed["freezing"])
    assert best < grad_norm(scale * closed["projecting"])
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        assert best <= grad_norm(
            scale * closed["gif"] + 1e-3 * torch.randn(2, generator=gen, dtype=torch.float64)
        )


def test_removal_update_applies_to_a_copy():
    model, x, y, _ = _toy()
    before = model.weight.detach().clone()
    subset = ParameterSubset.from_flat_indices(model, [0, 1])
    res = influence(
        model, F.mse_loss, (x[4:], y[4:]), (x[:4], y[:4]), subset=subset, solver="dense"
    )
    edited = res.apply(model, removal_scale(30, 4))
    torch.testing.assert_close(model.weight.detach(), before, rtol=0, atol=0)
    diff = ParameterLayout.from_model(edited).flatten(
        dict(edited.named_parameters())
    ) - ParameterLayout.from_model(model).flatten(dict(model.named_parameters()))
    torch.testing.assert_close(diff.detach()[:2], removal_scale(30, 4) * res.delta)
    assert float(diff.detach()[2:].abs().max()) == 0.0


def test_label_change_gradient_matches_dense():
    p = make_problem("mlp")
    x, y = p.train
    idx = torch.tensor([3, 10, 11])
    new_y = (y[idx] + 1) % 3
    got = label_change_gradient(p.model, p.loss_fn, (x[idx], y[idx]), (x[idx], new_y), 60)
    expected = 3 / 60 * (p.dense_gradient((x[idx], y[idx])) - p.dense_gradient((x[idx], new_y)))
    torch.testing.assert_close(got, expected, **TOL)
    # the label-change update of a convex model: one Newton step toward the relabeled optimum
    res = influence(
        p.model, p.loss_fn, p.train, gradient=got, method="original", solver="dense", damping=0.05
    )
    H = p.dense_hessian() + 0.05 * torch.eye(51, dtype=torch.float64)
    torch.testing.assert_close(res.delta, torch.linalg.solve(H, expected), **TOL)


def test_paper_neumann_solver_runs_through_influence():
    model, x, y, _ = _toy()
    subset = ParameterSubset.from_flat_indices(model, [0, 1])
    res = influence(
        model,
        F.mse_loss,
        (x[4:] * 3, y[4:]),
        (x[:4], y[:4]),
        subset=subset,
        solver="neumann_normal",
        solver_options={"max_iter": 400},
    )
    assert res.diagnostics.restarts >= 1  # λ_max(H_JᵀH_J) > 2 at c = 1: rescaled
    assert res.diagnostics.scale == pytest.approx(1.0 + 3.0 * res.diagnostics.restarts)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="magic"), "unknown influence method"),
        (dict(method="original", subset="S"), "subset must be a ParameterSubset"),
        (dict(damping=-1.0), "damping"),
        (dict(curvature="fisher"), "unknown curvature"),
        (dict(solver="nope"), "nope"),
        (dict(gradient=torch.zeros(3)), "exactly one"),
    ],
)
def test_bad_inputs(kwargs, match):
    p = make_problem("mlp")
    with pytest.raises(InputError, match=match):
        influence(p.model, p.loss_fn, p.train, p.target, **kwargs)


def test_original_refuses_a_strict_subset_and_bad_gradient():
    p = make_problem("mlp")
    s = ParameterSubset.from_flat_indices(p.model, [0, 1])
    with pytest.raises(InputError, match="moves every parameter"):
        influence(p.model, p.loss_fn, p.train, p.target, method="original", subset=s)
    with pytest.raises(InputError, match="length 51"):
        influence(p.model, p.loss_fn, p.train, gradient=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(InputError, match="remove at least one"):
        removal_scale(10, 10)


def test_non_convergence_warns():
    p = make_problem("cnn")  # λ_min(H) ≈ -0.16: undamped CG meets negative curvature
    with pytest.warns(ConvergenceWarning, match="negative curvature"):
        res = influence(p.model, p.loss_fn, p.train, p.target, method="original", solver="cg")
    assert not res.diagnostics.converged and res.diagnostics.negative_curvature
