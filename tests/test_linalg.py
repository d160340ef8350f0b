"""Curvature operators against dense float64 Hessians, finite differences and closed forms."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev
from torch.utils.data import DataLoader, TensorDataset

from geninf import (
    DataError,
    DeterminismError,
    InputError,
    NonFiniteError,
    Objective,
    ObjectiveError,
    ParameterSubset,
    SupervisedObjective,
)
from geninf.errors import ModelTooLargeError
from geninf.linalg import (
    ColumnSubsetOperator,
    GaussNewtonOperator,
    HessianOperator,
    HVPMethod,
    MatrixOperator,
    NormalOperator,
    PrincipalSubmatrixOperator,
)

from .conftest import make_problem

METHODS = [m.value for m in HVPMethod]


# linearize is refused with mse_loss (see test_linearize_refuses_mse)
CASES = [
    (p, m) for p in ("linreg", "mlp", "cnn") for m in METHODS if (p, m) != ("linreg", "linearize")
]


@pytest.mark.parametrize("name, method", CASES)
def test_hvp_matches_dense_hessian(name, method):
    problem = make_problem(name)
    H_ref = problem.dense_hessian()
    H = HessianOperator(problem.model, problem.loss_fn, problem.train, method=method, batch_size=7)
    g = torch.Generator().manual_seed(1)
    for _ in range(2):  # cached methods: reuse after the first product
        v = torch.randn(H.shape[0], generator=g, dtype=torch.float64)
        torch.testing.assert_close(H.matvec(v), H_ref @ v, rtol=1e-10, atol=1e-12)
    assert H.num_products == 2


def test_dense_materialization_matches_reference(problem):
    H = HessianOperator(problem.model, problem.loss_fn, problem.train, batch_size=11)
    torch.testing.assert_close(H.to_dense(), problem.dense_hessian(), rtol=1e-10, atol=1e-12)


def test_hvp_matches_finite_differences():
    p = make_problem("mlp")
    H = HessianOperator(p.model, p.loss_fn, p.train)
    theta = p.flat_params()
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    eps = 1e-5

    def grad_at(th):
        th = th.clone().requires_grad_(True)
        return torch.autograd.grad(p.mean_loss(th, p.train), th)[0]

    fd = (grad_at(theta + eps * v) - grad_at(theta - eps * v)) / (2 * eps)
    torch.testing.assert_close(H.matvec(v), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_batch_size_invariance(method):
    p = make_problem("cnn")
    v = torch.randn(p.flat_params().numel(), dtype=torch.float64)
    results = [
        HessianOperator(p.model, p.loss_fn, p.train, method=method, batch_size=b).matvec(v)
        for b in (1, 4, 30)
    ]
    for r in results[1:]:
        torch.testing.assert_close(r, results[0], rtol=1e-10, atol=1e-12)


def test_dataloader_and_dict_batches_agree():
    p = make_problem("mlp")
    v = torch.randn(p.flat_params().numel(), dtype=torch.float64)
    ref = HessianOperator(p.model, p.loss_fn, p.train).matvec(v)
    loader = DataLoader(TensorDataset(*p.train), batch_size=13, shuffle=False)
    torch.testing.assert_close(HessianOperator(p.model, p.loss_fn, loader).matvec(v), ref)
    dicts = [{"x": p.train[0][i : i + 9], "y": p.train[1][i : i + 9]} for i in range(0, 60, 9)]

    class DictObjective(Objective):
        def loss(self, forward, batch):
            return F.cross_entropy(forward(batch["x"]), batch["y"])

    torch.testing.assert_close(HessianOperator(p.model, DictObjective(), dicts).matvec(v), ref)
    obj = SupervisedObjective(F.cross_entropy, input_key="x", target_key="y")
    torch.testing.assert_close(HessianOperator(p.model, obj, dicts).matvec(v), ref)


def test_weight_decay_adds_identity():
    p = make_problem("mlp")
    v = torch.randn(p.flat_params().numel(), dtype=torch.float64)
    plain = HessianOperator(p.model, p.loss_fn, p.train).matvec(v)
    reg = HessianOperator(p.model, SupervisedObjective(p.loss_fn, weight_decay=0.3), p.train)
    torch.testing.assert_close(reg.matvec(v), plain + 0.3 * v)
    damped = HessianOperator(p.model, p.loss_fn, p.train).damped(0.3)
    torch.testing.assert_close(damped.matvec(v), plain + 0.3 * v)


def test_gauss_newton_matches_dense(problem):
    model, (x, y) = problem.model, problem.train
    lay = problem.layout
    theta = problem.flat_params()

    def outputs(th):
        return functional_call(model, lay.unflatten(th), (x,)).reshape(-1)

    J = jacrev(outputs)(theta)  # [N*C, n]
    out = outputs(theta).detach()

    def out_loss(o):
        return problem.loss_fn(o.reshape(x.shape[0], -1), y)

    from torch.func import hessian

    G_ref = J.T @ hessian(out_loss)(out) @ J
    G = GaussNewtonOperator(model, problem.loss_fn, problem.train, batch_size=8)
    torch.testing.assert_close(G.to_dense(), G_ref, rtol=1e-9, atol=1e-12)
    assert torch.linalg.eigvalsh(G_ref).min() > -1e-10  # PSD, unlike the Hessian
    if problem.name == "linreg":  # linear model: Gauss-Newton = Hessian
        torch.testing.assert_close(G_ref, problem.dense_hessian())


def test_gauss_newton_needs_split_objective():
    p = make_problem("mlp")

    class Opaque(Objective):
        def loss(self, forward, batch):
            return F.cross_entropy(forward(batch[0]), batch[1])

    with pytest.raises(ObjectiveError, match="Gauss-Newton"):
        GaussNewtonOperator(p.model, Opaque(), p.train)


def test_subset_views_match_dense_blocks():
    p = make_problem("mlp")
    H_ref = p.dense_hessian()
    H = HessianOperator(p.model, p.loss_fn, p.train)
    s = ParameterSubset.from_flat_indices(p.model, [0, 5, 17, 40, 50])
    J = s.flat_indices
    A = ColumnSubsetOperator(H, s)
    torch.testing.assert_close(A.to_dense(), H_ref[:, J])
    y = torch.randn(H.shape[0], dtype=torch.float64)
    torch.testing.assert_close(A.rmatvec(y), H_ref[:, J].T @ y)
    torch.testing.assert_close(PrincipalSubmatrixOperator(H, s).to_dense(), H_ref[J][:, J])
    N = NormalOperator(A)
    torch.testing.assert_close(N.to_dense(), H_ref[:, J].T @ H_ref[:, J])
    before = H.num_products
    N.matvec(torch.ones(5, dtype=torch.float64))
    assert H.num_products - before == 2  # H_{:,J}ᵀ H_{:,J} v costs two HVPs


def test_operator_never_mutates_model():
    p = make_problem("cnn")
    snapshot = copy.deepcopy(p.model.state_dict())
    H = HessianOperator(p.model, p.loss_fn, p.train, method="reverse_cached")
    H.matvec(torch.ones(H.shape[0], dtype=torch.float64))
    GaussNewtonOperator(p.model, p.loss_fn, p.train).matvec(
        torch.ones(H.shape[0], dtype=torch.float64)
    )
    for k, v in p.model.state_dict().items():
        torch.testing.assert_close(v, snapshot[k], rtol=0, atol=0)
    assert all(q.grad is None for q in p.model.parameters())
    assert not p.model.training or True


def test_determinism_checks():
    x, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    with pytest.raises(DeterminismError, match="model.eval"):
        HessianOperator(model, None, (x, y))
    model.eval()
    HessianOperator(model, None, (x, y))  # fine in eval mode
    bn = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    with pytest.raises(DeterminismError, match="1"):
        HessianOperator(bn, None, (x, y))
    shuffled = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True)
    with pytest.raises(DeterminismError, match="shuffle=False"):
        HessianOperator(model, None, shuffled)
    HessianOperator(bn, None, (x, y), check_determinism=False)  # explicit opt-out


def test_bad_inputs():
    p = make_problem("mlp")
    with pytest.raises(InputError, match="unknown HVP method"):
        HessianOperator(p.model, p.loss_fn, p.train, method="magic")
    with pytest.raises(DataError, match="one-shot iterator"):
        HessianOperator(p.model, p.loss_fn, (b for b in [p.train]))
    with pytest.raises(DataError, match="same first dimension"):
        HessianOperator(p.model, p.loss_fn, (p.train[0], p.train[1][:5]))
    with pytest.raises(DataError, match="empty"):
        HessianOperator(p.model, p.loss_fn, (p.train[0][:0], p.train[1][:0]))
    H = HessianOperator(p.model, p.loss_fn, p.train)
    with pytest.raises(InputError, match="length 51"):
        H.matvec(torch.ones(3, dtype=torch.float64))
    with pytest.raises(ModelTooLargeError, match="iterative solver"):
        H.to_dense(max_size=10)
    bad = (p.train[0].clone(), p.train[1])
    bad[0][3, 1] = float("nan")
    with pytest.raises(NonFiniteError):
        HessianOperator(p.model, p.loss_fn, bad).matvec(torch.ones(51, dtype=torch.float64))


def test_matrix_operator_counts_and_transposes():
    M = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    op = MatrixOperator(M)
    torch.testing.assert_close(op.matvec(torch.ones(3, dtype=torch.float64)), M.sum(1))
    torch.testing.assert_close(op.rmatvec(torch.ones(2, dtype=torch.float64)), M.sum(0))
    assert op.num_products == 2 and not op.symmetric
    with pytest.raises(InputError, match="square"):
        op.damped(1.0)


def test_linearize_refuses_mse():
    p = make_problem("linreg")
    with pytest.raises(InputError, match="reverse_cached"):
        HessianOperator(p.model, p.loss_fn, p.train, method="linearize")


def test_partial_cache_equals_full_cache():
    p = make_problem("mlp")
    v = torch.randn(p.flat_params().numel(), dtype=torch.float64)
    full = HessianOperator(p.model, p.loss_fn, p.train, batch_size=5, max_cached_batches=None)
    part = HessianOperator(p.model, p.loss_fn, p.train, batch_size=5, max_cached_batches=3)
    for _ in range(2):
        torch.testing.assert_close(part.matvec(v), full.matvec(v), rtol=1e-12, atol=1e-14)
    assert len(part._cache) == 3 and len(full._cache) == 12
