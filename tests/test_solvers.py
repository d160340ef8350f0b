"""Solvers against dense float64 references (torch.linalg, numpy/scipy) on fixed-seed problems."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from geninf.errors import (
    InputError,
    ModelTooLargeError,
    NonFiniteError,
    SolverDivergenceError,
)
from geninf.influence import influence
from geninf.linalg import ColumnSubsetOperator, DampedOperator, MatrixOperator
from geninf.params import ParameterLayout, ParameterSubset
from geninf.solvers import (
    AutoSolver,
    CGSolver,
    DenseSolver,
    LiSSASolver,
    LSMRSolver,
    NeumannNormalSolver,
    SolveResult,
    SolverName,
    get_solver,
)

from .conftest import make_problem

F64 = torch.float64


# ------------------------------------------------------------------------------------ problems
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _orth(n: int, g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return q


def _sym(eigs: torch.Tensor, seed: int) -> torch.Tensor:
    q = _orth(len(eigs), _gen(seed))
    return (q * eigs) @ q.T


def _rect(m: int, n: int, sv: torch.Tensor, seed: int) -> torch.Tensor:
    g = _gen(seed)
    u, v = _orth(m, g)[:, : len(sv)], _orth(n, g)[:, : len(sv)]
    return (u * sv) @ v.T


def _vec(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, generator=_gen(seed), dtype=F64)


def spd(n: int = 30, cond: float = 1e3) -> torch.Tensor:
    return _sym(torch.logspace(0, math.log10(cond), n, dtype=F64), seed=1)


def indefinite(n: int = 30, negative: int = 4) -> torch.Tensor:
    pos = torch.linspace(0.5, 5.0, n - negative, dtype=F64)
    return _sym(torch.cat([pos, -torch.linspace(0.5, 2.0, negative, dtype=F64)]), seed=2)


def rank_deficient(m: int = 50, n: int = 30, rank: int = 20) -> torch.Tensor:
    return _rect(m, n, torch.logspace(0, -1, rank, dtype=F64), seed=3)


def kappa100(m: int = 60, n: int = 30) -> torch.Tensor:
    return _rect(m, n, torch.logspace(0, -2, n, dtype=F64), seed=4)


def gif_operator() -> tuple[ColumnSubsetOperator, torch.Tensor]:
    """H symmetric indefinite 40×40 (Hessian-like) and J = 7 of its columns."""
    eigs = torch.cat([torch.linspace(0.2, 4.0, 34, dtype=F64), -torch.linspace(0.1, 0.5, 6)])
    H = _sym(eigs.to(F64), seed=5)
    idx = torch.tensor([1, 5, 8, 17, 22, 30, 39])
    subset = ParameterSubset(ParameterLayout(names=("w",), shapes=((40,),)), idx)
    return ColumnSubsetOperator(MatrixOperator(H), subset), H[:, idx]


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x - ref) / torch.linalg.vector_norm(ref))


def normal_residual(M: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(M.T @ (b - M @ x)) / torch.linalg.vector_norm(M.T @ b))


CASES = {
    "spd": (spd, 30),
    "indefinite": (indefinite, 30),
    "rank_deficient": (rank_deficient, 50),
}


def reference(M: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.pinv(M, rtol=1e-10) @ b


# -------------------------------------------------------------------------------------- dense
@pytest.mark.parametrize("case", sorted(CASES))
def test_dense_matches_reference(case):
    make, m = CASES[case]
    M, b = make(), _vec(m, 10)
    res = DenseSolver().solve(MatrixOperator(M), b)
    assert rel_err(res.x, reference(M, b)) <= 1e-10
    square = M.shape[0] == M.shape[1]
    assert res.diagnostics.problem == ("linear" if square else "least_squares")
    assert res.diagnostics.converged and res.diagnostics.residual <= 1e-12
    assert res.diagnostics.products == 0  # MatrixOperator.to_dense is free


def test_dense_singular_square_falls_back_to_min_norm():
    eigs = torch.cat([torch.linspace(1.0, 3.0, 20, dtype=F64), torch.zeros(10, dtype=F64)])
    M, b = _sym(eigs, seed=6), _vec(30, 11)
    res = DenseSolver().solve(MatrixOperator(M), b)
    assert res.diagnostics.problem == "least_squares"
    assert "rank 20" in res.diagnostics.message
    assert_close(res.x, reference(M, b), rtol=1e-8, atol=1e-10)
    assert res.diagnostics.residual == pytest.approx(normal_residual(M, res.x, b), abs=1e-14)


def test_dense_svd_path_matches_gelsd():
    from geninf.solvers.dense import _min_norm_lstsq  # the branch taken on GPUs

    M, b = rank_deficient(), _vec(50, 9)
    x_svd, rank_svd = _min_norm_lstsq(M, b, 1e-12, svd=True)
    x_lapack, rank_lapack = _min_norm_lstsq(M, b, 1e-12, svd=False)
    assert rank_svd == rank_lapack == 20
    assert_close(x_svd, x_lapack, rtol=1e-10, atol=1e-12)
    assert rel_err(x_svd, reference(M, b)) <= 1e-10


def test_dense_gif_and_size_limit():
    A, M = gif_operator()
    b = _vec(40, 12)
    res = DenseSolver().solve(A, b)
    assert rel_err(res.x, reference(M, b)) <= 1e-10
    assert res.diagnostics.products == 7  # one product per column
    with pytest.raises(ModelTooLargeError):
        DenseSolver(max_size=6).solve(A, b)


# ----------------------------------------------------------------------------------------- cg
def test_cg_spd_matches_solve_and_counts_products():
    M, b = spd(), _vec(30, 13)
    A = MatrixOperator(M)
    res = CGSolver(tol=1e-12).solve(A, b)
    d = res.diagnostics
    assert rel_err(res.x, torch.linalg.solve(M, b)) <= 1e-6
    assert d.converged and d.problem == "linear" and not d.negative_curvature
    assert d.products == A.num_products == d.iterations + 1 + d.restarts  # + final check(s)
    true = float(torch.linalg.vector_norm(b - M @ res.x) / torch.linalg.vector_norm(b))
    assert d.residual == pytest.approx(true, rel=1e-12)
    assert d.residual <= 1e-12
    assert len(d.residual_history) == d.iterations == len(d.products_history)


def test_cg_x0_and_loose_tol():
    M, b = spd(), _vec(30, 14)
    exact = torch.linalg.solve(M, b)
    res = CGSolver(tol=1e-12).solve(MatrixOperator(M), b, x0=exact + 1e-3 * _vec(30, 15))
    assert rel_err(res.x, exact) <= 1e-6
    loose = CGSolver(tol=1e-2, max_iter=3).solve(MatrixOperator(M), b)
    assert loose.diagnostics.iterations == 3 and not loose.diagnostics.converged
    assert "max_iter=3" in loose.diagnostics.message


def test_cgnr_rectangular_min_norm():
    M, b = rank_deficient(), _vec(50, 16)
    A = MatrixOperator(M)
    res = CGSolver(tol=1e-12).solve(A, b)
    d = res.diagnostics
    assert d.problem == "least_squares" and d.converged
    assert rel_err(res.x, reference(M, b)) <= 1e-6
    assert d.products == 1 + 2 * d.iterations + 2 * (1 + d.restarts)
    assert d.residual == pytest.approx(normal_residual(M, res.x, b), rel=1e-10)


def test_cg_negative_curvature_detected():
    M, b = indefinite(), _vec(30, 18)
    res = CGSolver(tol=1e-10).solve(MatrixOperator(M), b)
    d = res.diagnostics
    assert d.negative_curvature and not d.converged
    assert "negative curvature: H is indefinite, add damping or use lsmr" in d.message
    assert 2 <= d.iterations < 30  # met after a few positive-curvature steps
    # the same matrix made positive definite by damping: no negative curvature
    damped = CGSolver(tol=1e-10).solve(MatrixOperator(M).damped(2.5), b).diagnostics
    assert damped.converged and not damped.negative_curvature


# -------------------------------------------------------------------------------------- lissa
def test_lissa_converges_to_documented_fixed_point():
    M, b = _sym(torch.linspace(1.0, 10.0, 20, dtype=F64), seed=7), _vec(20, 18)
    scale, damping = 10.0, 0.01
    A = MatrixOperator(M)
    res = LiSSASolver(scale=scale, damping=damping, depth=400).solve(A, b)
    fixed_point = torch.linalg.solve(M + damping * scale * torch.eye(20, dtype=F64), b)
    assert_close(res.x, fixed_point, rtol=1e-10, atol=1e-12)
    d = res.diagnostics
    assert d.products == 400 + 1 and d.iterations == 400 and d.scale == scale
    true = float(torch.linalg.vector_norm(b - M @ res.x) / torch.linalg.vector_norm(b))
    assert d.residual == pytest.approx(true, rel=1e-10)
    assert not d.converged  # no tol: a fixed-depth series
    # starting at the fixed point (h_0 = scale·x0) stays there
    warm = LiSSASolver(scale=scale, damping=damping, depth=3).solve(A, b, x0=fixed_point)
    assert_close(warm.x, fixed_point, rtol=1e-12, atol=1e-14)
    # the same with early stopping
    early = LiSSASolver(scale=scale, damping=damping, depth=400, tol=1e-8).solve(A, b)
    assert early.diagnostics.converged and early.diagnostics.iterations < 400
    assert rel_err(early.x, fixed_point) <= 1e-6


def test_lissa_truncated_series_formula():
    M, b = _sym(torch.linspace(1.0, 10.0, 20, dtype=F64), seed=7), _vec(20, 19)
    s, d, depth = 8.0, 0.05, 5
    res = LiSSASolver(scale=s, damping=d, depth=depth).solve(MatrixOperator(M), b)
    step = (1 - d) * torch.eye(20, dtype=F64) - M / s
    terms = [torch.linalg.matrix_power(step, i) @ b for i in range(depth + 1)]
    assert_close(res.x, sum(terms) / s, rtol=1e-12, atol=1e-14)


def test_lissa_diverges_with_small_scale():
    M, b = _sym(torch.linspace(1.0, 10.0, 20, dtype=F64), seed=7), _vec(20, 20)
    with pytest.raises(SolverDivergenceError, match="larger scale"):
        LiSSASolver(scale=1.0, depth=1000).solve(MatrixOperator(M), b)
    with pytest.raises(InputError, match="square"):
        LiSSASolver().solve(MatrixOperator(rank_deficient()), _vec(50, 1))


class BatchedMatrixOperator(MatrixOperator):
    """A = mean of batch matrices, with single-batch products."""

    def __init__(self, batches: list[torch.Tensor]):
        super().__init__(torch.stack(batches).mean(0), symmetric=True)
        self.batches = batches

    @property
    def num_batches(self) -> int:
        return len(self.batches)

    def batch_matvec(self, v: torch.Tensor, index: int) -> torch.Tensor:
        self._count += 1
        return self.batches[index] @ v


def test_lissa_stochastic_uses_seeded_batches():
    base = _sym(torch.linspace(1.0, 5.0, 10, dtype=F64), seed=8)
    batches = [base + 0.3 * _sym(_vec(10, 30 + i), seed=40 + i) for i in range(4)]
    A, b = BatchedMatrixOperator(batches), _vec(10, 21)
    s, d, depth, repeats, seed = 10.0, 0.01, 30, 2, 3
    res = LiSSASolver(
        scale=s, damping=d, depth=depth, repeats=repeats, stochastic=True, seed=seed
    ).solve(A, b)
    gen, total = torch.Generator().manual_seed(seed), torch.zeros(10, dtype=F64)
    for _ in range(repeats):
        h = b.clone()
        for i in torch.randint(4, (depth,), generator=gen).tolist():
            h = b + (1 - d) * h - batches[i] @ h / s
        total += h
    assert_close(res.x, total / (repeats * s), rtol=1e-12, atol=1e-14)
    assert res.diagnostics.products == repeats * depth + 1
    other = LiSSASolver(
        scale=s, damping=d, depth=depth, repeats=repeats, stochastic=True, seed=seed + 1
    ).solve(A, b)
    assert rel_err(other.x, res.x) > 1e-6
    with pytest.raises(InputError, match="batch_matvec"):
        LiSSASolver(stochastic=True).solve(MatrixOperator(base), b)


def test_damped_operator_batch_products_add_the_damping():
    batches = [_sym(_vec(6, 50 + i), seed=60 + i) for i in range(3)]
    A, v, lam = BatchedMatrixOperator(batches), _vec(6, 70), 0.3
    damped = A.damped(lam)
    assert isinstance(damped, DampedOperator) and damped.num_batches == 3
    for i in range(3):
        assert torch.equal(damped.batch_matvec(v, i), A.batch_matvec(v, i) + lam * v)
    assert damped.num_products == A.num_products == 6
    plain = MatrixOperator(batches[0]).damped(lam)
    assert plain.num_batches is None
    with pytest.raises(InputError, match="batch_matvec"):
        plain.batch_matvec(v, 0)
    with pytest.raises(InputError, match="batch_matvec"):  # lissa says so before any product
        LiSSASolver(stochastic=True).solve(plain, v)


def test_command_line_iteration_cap_per_solver():
    """--max-iter is lissa's depth, every other iterative solver's max_iter; dense (no
    iterations, no tolerance) ignores --max-iter and --tol. Each result builds its solver."""
    from geninf.report.jobs.common import solver_options

    assert solver_options("lissa", 7, 1e-3) == {"depth": 7, "tol": 1e-3}
    assert solver_options("dense", 7, 1e-3) is None
    assert solver_options("auto", None, None) is None
    for name in ("auto", "cg", "lsmr", "neumann_normal"):
        assert solver_options(name, 7, None) == {"max_iter": 7}
    for name in SolverName:
        get_solver(name.value, **(solver_options(name.value, 7, 1e-3) or {}))
    assert get_solver("lissa", **solver_options("lissa", 7, None)).depth == 7


@pytest.mark.filterwarnings("ignore::geninf.errors.ConvergenceWarning")  # a fixed depth
def test_stochastic_lissa_with_damping_through_influence():
    """influence(solver="lissa", damping=λ, stochastic=True) runs on single-batch products of
    H + λI and lands near the dense solution (loosely: it is stochastic)."""
    p, lam = make_problem("linreg"), 0.1
    H = p.dense_hessian() + lam * torch.eye(p.flat_params().numel(), dtype=F64)
    ref = torch.linalg.solve(H, p.dense_gradient())
    opts = {"stochastic": True, "depth": 300, "repeats": 4, "scale": 20.0, "seed": 0}
    res = influence(
        p.model,
        p.loss_fn,
        p.train,
        p.target,
        method="original",
        solver="lissa",
        damping=lam,
        batch_size=10,
        solver_options=opts,
    )
    assert rel_err(res.delta, ref) < 0.2


# ------------------------------------------------------------------------------------ neumann
def _truncated_landweber(M: torch.Tensor, b: torch.Tensor, c: float, k: int) -> torch.Tensor:
    atb = M.T @ b
    x = atb / c**2
    for _ in range(k):
        x = atb / c**2 + x - M.T @ (M @ x) / c**2
    return x


def test_neumann_paper_mode_restarts_and_truncated_series():
    M = _rect(30, 10, torch.linspace(10.0, 1.0, 10, dtype=F64), seed=9)  # λ_max(AᵀA) = 100
    b = _vec(30, 22)
    A = MatrixOperator(M)
    res = NeumannNormalSolver(scale=1.0, scale_step=3.0, max_iter=60).solve(A, b)
    d = res.diagnostics
    assert d.restarts >= 1
    assert d.scale == pytest.approx(1.0 + 3.0 * d.restarts)
    assert_close(res.x, _truncated_landweber(M, b, d.scale, 60), rtol=1e-10, atol=1e-12)
    assert d.products == A.num_products == 1 + 2 * d.iterations + 2
    assert not d.converged and "truncated" in d.message
    assert d.residual == pytest.approx(normal_residual(M, res.x, b), rel=1e-10)
    assert d.residual_history[-1] == pytest.approx(d.residual, rel=1e-10)


def test_neumann_no_divergence_counts_products():
    M = _rect(30, 10, torch.linspace(1.0, 0.5, 10, dtype=F64), seed=9)  # λ_max = 1: c = 1 fine
    b = _vec(30, 23)
    res = NeumannNormalSolver(max_iter=25).solve(MatrixOperator(M), b)
    d = res.diagnostics
    assert d.restarts == 0 and d.scale == 1.0 and d.iterations == 25
    assert d.products == 1 + 2 * 25 + 2
    assert_close(res.x, _truncated_landweber(M, b, 1.0, 25), rtol=1e-12, atol=1e-14)
    # free residual: history[k] is the normal residual of the previous iterate I_{k−1}
    assert d.residual_history[1] == pytest.approx(
        normal_residual(M, _truncated_landweber(M, b, 1.0, 1), b), rel=1e-10
    )


def test_neumann_x0_at_solution_stays():
    M = _rect(30, 10, torch.linspace(1.0, 0.5, 10, dtype=F64), seed=9)
    b = _vec(30, 36)
    exact = torch.linalg.lstsq(M, b.unsqueeze(1)).solution.squeeze(1)
    res = NeumannNormalSolver(max_iter=5).solve(MatrixOperator(M), b, x0=exact)
    assert_close(res.x, exact, rtol=1e-10, atol=1e-12)
    d = res.diagnostics
    assert d.converged and d.iterations == 1  # the step is already below tol·√k
    assert d.products == 1 + 2 + 2 * d.iterations + 2  # Aᵀb, AᵀA x0, iterations, check


def test_neumann_restart_cap_raises():
    M = _rect(30, 10, torch.linspace(10.0, 1.0, 10, dtype=F64), seed=9)
    solver = NeumannNormalSolver(scale=1.0, scale_step=0.5, max_restarts=2, max_iter=50)
    with pytest.raises(SolverDivergenceError, match=r"diverged 3 times.*scale=.*lsmr"):
        solver.solve(MatrixOperator(M), _vec(30, 24))


def test_neumann_auto_scale_converges_on_gif_problem():
    A, M = gif_operator()
    b = _vec(40, 25)
    res = NeumannNormalSolver(scale_mode="auto", max_iter=100_000, residual_tol=1e-12).solve(A, b)
    d = res.diagnostics
    assert d.converged and d.restarts == 0
    lam = float(torch.linalg.eigvalsh(M.T @ M).max())
    assert d.scale**2 == pytest.approx(lam, rel=1e-2)
    assert d.products == 1 + 2 * 20 + 2 * d.iterations + 2
    assert rel_err(res.x, reference(M, b)) <= 1e-6


# --------------------------------------------------------------------------------------- lsmr
@pytest.mark.parametrize("case", sorted(CASES))
def test_lsmr_min_norm_solution(case):
    make, m = CASES[case]
    M, b = make(), _vec(m, 26)
    A = MatrixOperator(M)
    res = LSMRSolver(tol=1e-12).solve(A, b)
    d = res.diagnostics
    assert d.converged and d.problem == "least_squares"
    assert rel_err(res.x, reference(M, b)) <= 1e-6
    assert d.products == A.num_products == 1 + 2 * d.iterations + 2
    assert d.residual == pytest.approx(normal_residual(M, res.x, b), rel=1e-10)
    hist = torch.tensor(d.residual_history)
    assert bool((hist[1:] <= hist[:-1] * (1 + 1e-10)).all())  # ‖Aᵀr_k‖ is monotone


def test_lsmr_gif_and_scipy_agree():
    scipy_lsmr = pytest.importorskip("scipy.sparse.linalg").lsmr
    A, M = gif_operator()
    b = _vec(40, 27)
    res = LSMRSolver(tol=1e-12).solve(A, b)
    ref = scipy_lsmr(M.numpy(), b.numpy(), atol=1e-14, btol=1e-14, maxiter=500)[0]
    assert_close(res.x, torch.from_numpy(np.asarray(ref)), rtol=1e-8, atol=1e-10)
    assert rel_err(res.x, reference(M, b)) <= 1e-6


def test_lsmr_damped_and_x0():
    M, b = kappa100(), _vec(60, 28)
    lam = 0.05
    res = LSMRSolver(tol=1e-12, damp=lam).solve(MatrixOperator(M), b)
    ref = torch.linalg.solve(M.T @ M + lam**2 * torch.eye(30, dtype=F64), M.T @ b)
    assert rel_err(res.x, ref) <= 1e-8
    exact = torch.linalg.lstsq(M, b.unsqueeze(1)).solution.squeeze(1)
    warm = LSMRSolver(tol=1e-12).solve(MatrixOperator(M), b, x0=exact + 0.1 * _vec(30, 29))
    assert rel_err(warm.x, exact) <= 1e-6
    with pytest.raises(InputError, match="x0"):
        LSMRSolver(damp=0.1).solve(MatrixOperator(M), b, x0=exact)


def _products_to(diag, level: float) -> int:
    for r, p in zip(diag.residual_history, diag.products_history, strict=True):
        if r <= level:
            return p
    raise AssertionError(f"{diag.solver} never reached {level}")


def test_lsmr_needs_far_fewer_products_than_neumann():
    M, b = kappa100(), _vec(60, 31)
    lsmr = LSMRSolver(tol=1e-6).solve(MatrixOperator(M), b).diagnostics
    neu = (
        NeumannNormalSolver(scale_mode="auto", residual_tol=1e-6, max_iter=400_000)
        .solve(MatrixOperator(M), b)
        .diagnostics
    )
    assert lsmr.converged and neu.converged
    p_lsmr, p_neu = _products_to(lsmr, 1e-6), _products_to(neu, 1e-6)
    assert 10 * p_lsmr <= p_neu, (p_lsmr, p_neu)


# --------------------------------------------------------------------------------------- auto
def test_auto_choices_and_fallback():
    M, b = spd(), _vec(30, 32)
    small = AutoSolver().solve(MatrixOperator(M), b)
    assert small.diagnostics.solver == "dense" and small.diagnostics.message.startswith("auto")
    cg = AutoSolver(tol=1e-12, max_dense=0).solve(MatrixOperator(M), b)
    assert cg.diagnostics.solver == "cg"
    assert rel_err(cg.x, torch.linalg.solve(M, b)) <= 1e-6

    Mi, bi = indefinite(), _vec(30, 33)
    A = MatrixOperator(Mi)
    res = AutoSolver(tol=1e-12, max_dense=0).solve(A, bi)
    d = res.diagnostics
    assert d.solver == "lsmr" and "fell back to lsmr" in d.message and d.negative_curvature
    assert d.converged and rel_err(res.x, torch.linalg.solve(Mi, bi)) <= 1e-6
    cg_alone = CGSolver(tol=1e-12).solve(MatrixOperator(Mi), bi).diagnostics
    lsmr_alone = LSMRSolver(tol=1e-12).solve(MatrixOperator(Mi), bi).diagnostics
    assert d.products == A.num_products == cg_alone.products + lsmr_alone.products
    assert d.products_history[-1] == d.products - 2  # the last LSMR estimate, before its check

    Mr, br = rank_deficient(), _vec(50, 34)
    rect = AutoSolver(tol=1e-12, max_dense=0).solve(MatrixOperator(Mr), br)
    assert rect.diagnostics.solver == "lsmr"
    assert rel_err(rect.x, reference(Mr, br)) <= 1e-6


# ------------------------------------------------------------------------- common behaviour
ALL = [m.value for m in SolverName]


@pytest.mark.parametrize("name", ALL)
def test_zero_rhs(name):
    A = MatrixOperator(spd(10))
    res = get_solver(name).solve(A, torch.zeros(10, dtype=F64))
    assert isinstance(res, SolveResult)
    assert_close(res.x, torch.zeros(10, dtype=F64), rtol=0, atol=0)
    d = res.diagnostics
    assert d.converged and d.residual == 0.0 and d.products == 0 == A.num_products


@pytest.mark.parametrize("name", ALL)
def test_wrong_inputs_raise(name):
    A = MatrixOperator(spd(10))
    solver = get_solver(name)
    with pytest.raises(InputError, match="length 10"):
        solver.solve(A, torch.ones(9, dtype=F64))
    with pytest.raises(InputError, match="length 10"):
        solver.solve(A, torch.ones(10, dtype=F64), x0=torch.ones(11, dtype=F64))
    with pytest.raises(InputError, match="dtype"):
        solver.solve(A, torch.ones(10, dtype=torch.float32))
    with pytest.raises(NonFiniteError):
        solver.solve(A, torch.full((10,), float("nan"), dtype=F64))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("dense", {"max_size": 0}),
        ("dense", {"rcond": -1.0}),
        ("cg", {"tol": 0.0}),
        ("cg", {"max_iter": 2.5}),
        ("lissa", {"scale": -1.0}),
        ("lissa", {"depth": 0}),
        ("lissa", {"stochastic": "yes"}),
        ("lissa", {"tol": float("nan")}),
        ("neumann_normal", {"scale_mode": "fast"}),
        ("neumann_normal", {"scale_step": 0}),
        ("neumann_normal", {"max_restarts": -1}),
        ("lsmr", {"damp": -0.1}),
        ("lsmr", {"max_iter": True}),
        ("auto", {"max_dense": -1}),
        ("cg", {"nope": 1}),
    ],
)
def test_bad_options_raise(name, options):
    with pytest.raises(InputError, match=next(iter(options))):
        get_solver(name, **options)


def test_get_solver_names_and_instances():
    with pytest.raises(InputError, match="valid names: auto, dense, cg, lissa"):
        get_solver("newton")
    solver = LSMRSolver(tol=1e-3)
    assert get_solver(solver) is solver
    with pytest.raises(InputError):
        get_solver(solver, tol=1e-4)
    assert isinstance(get_solver(SolverName.NEUMANN_NORMAL), NeumannNormalSolver)
    assert get_solver("CG", tol=1e-3).tol == 1e-3


def test_diagnostics_to_json_and_progress():
    M, b = kappa100(), _vec(60, 35)
    res = LSMRSolver(tol=1e-8).solve(MatrixOperator(M), b, progress=True)
    quiet = LSMRSolver(tol=1e-8).solve(MatrixOperator(M), b)
    assert_close(res.x, quiet.x, rtol=0, atol=0)
    payload = json.loads(json.dumps(res.diagnostics.to_dict(), allow_nan=False))
    assert payload["solver"] == "lsmr" and payload["products"] == res.diagnostics.products
    assert payload["residual_history"] == res.diagnostics.residual_history
