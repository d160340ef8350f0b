"""The linear system behind each scoring method: gradients in, influence vectors out.

Every method scores a query z_q against a training example z_i as ``(1/m) · w_qᵀ ∇ℓ(z_i)``
(see :mod:`geninf.scoring.api` for the sign and the scale). This module computes w_q (length n)
from the query gradient g_q = ∇ℓ(z_q), with H the (damped) curvature and J the parameter subset:

==============  ===========================================  =====================================
method          w_q                                          system solved per query
==============  ===========================================  =====================================
``original``    H⁻¹ g_q                                      H w = g_q            (n × n)
``gif``         (H_{:,J}ᵀ)⁺ [g_q]_J  = H_{:,J} (H_{:,J}ᵀH_{:,J})⁺ [g_q]_J
                                                             min-norm w with [H w]_J = [g_q]_J
                                                             (k × n, underdetermined)
``freezing``    P_Jᵀ H_JJ⁻¹ [g_q]_J                          H_JJ t = [g_q]_J     (k × k)
``projecting``  H⁻¹ P_Jᵀ [g_q]_J                             H w = P_Jᵀ[g_q]_J    (n × n)
``grad_dot``    g_q (H replaced by the identity)             none
==============  ===========================================  =====================================

Solvers. With a dense solver (``solver="dense"``, or ``"auto"`` when the system has at most
``max_dense`` unknowns — n for original/projecting, k for gif/freezing) the matrix is
materialized **once** (n curvature products for H, k for H_{:,J} or H_JJ) and factorized once — an
eigendecomposition of the symmetric H or H_JJ, a thin SVD of H_{:,J} — and every block of
right-hand sides is then a pair of matrix products. Singular values at most
``rcond · σ_max`` are treated as zero (the min-norm least-squares solution, as
:class:`~geninf.solvers.DenseSolver` returns; ``rcond`` defaults to ``eps(dtype) · n``). Any
other solver runs one solve per right-hand side on the operator of the last column, e.g. LSMR
on the k × n GIF system (two curvature products per iteration).
"""

from __future__ import annotations

import time
import warnings
from enum import Enum
from typing import Any

import torch
from torch import Tensor

from .._choices import parse_choice
from ..errors import ConvergenceWarning, InputError, ModelTooLargeError
from ..functional import FunctionalModel
from ..linalg.base import ColumnSubsetOperator, LinearOperator, PrincipalSubmatrixOperator
from ..linalg.curvature import GaussNewtonOperator, HessianOperator
from ..params.subset import ParameterSubset
from ..solvers import AutoSolver, DenseSolver, Solver, SolverDiagnostics
from .materialize import dense_columns

__all__ = ["ScoreMethod", "InfluenceVectors"]


class ScoreMethod(str, Enum):
    """How training examples are scored (see :func:`geninf.scoring.score`).

    Members:
        GIF: generalized influence — only the parameters J move (method.md §3).
        ORIGINAL: Koh & Liang's influence function, every parameter moves.
        FREEZING: the parameters outside J are treated as constants (H_JJ).
        PROJECTING: the full-parameter solution, then only J kept.
        GRAD_DOT: gradient dot product (TracIn at the final checkpoint): H replaced by I.
        RANDOM: seeded random scores, a baseline.
    """

    GIF = "gif"
    ORIGINAL = "original"
    FREEZING = "freezing"
    PROJECTING = "projecting"
    GRAD_DOT = "grad_dot"
    RANDOM = "random"

    @property
    def uses_curvature(self) -> bool:
        return self not in (ScoreMethod.GRAD_DOT, ScoreMethod.RANDOM)

    @property
    def uses_subset(self) -> bool:
        return self in (ScoreMethod.GIF, ScoreMethod.FREEZING, ScoreMethod.PROJECTING)


def parse_method(method: Any) -> ScoreMethod:
    return parse_choice(ScoreMethod, method, "scoring method", any_case=False)


def build_curvature(
    fm: FunctionalModel,
    data: Any,
    *,
    curvature: str,
    hvp_method: str,
    batch_size: int | None,
    check_determinism: bool,
    damping: float,
) -> LinearOperator:
    """H + λI, the curvature of the mean loss over ``data``."""
    if curvature == "hessian":
        H: LinearOperator = HessianOperator(
            fm, None, data, method=hvp_method, batch_size=batch_size,
            check_determinism=check_determinism,
        )  # fmt: skip
    elif curvature in ("gauss_newton", "ggn"):
        H = GaussNewtonOperator(
            fm, None, data, batch_size=batch_size, check_determinism=check_determinism
        )
    else:
        raise InputError(f"unknown curvature {curvature!r}; choose 'hessian' or 'gauss_newton'")
    return H.damped(float(damping))


class InfluenceVectors:
    """Maps gradients ``G`` ([B, n]) to influence vectors ``W`` ([B, n]), one method's system.

    Args:
        method: a :class:`ScoreMethod` other than ``random``.
        curvature: the damped curvature operator H (None for ``grad_dot``).
        subset: the parameters J (all of them for ``original`` and ``grad_dot``).
        solver: a :class:`~geninf.solvers.Solver` instance.
        progress: progress bars for iterative solves.

    Attributes:
        diagnostics: one :class:`~geninf.solvers.SolverDiagnostics` per iterative solve.
        setup_products: curvature products spent materializing the dense matrix.
        dense: whether the dense, factorize-once path is used.
    """

    def __init__(
        self,
        method: ScoreMethod,
        curvature: LinearOperator | None,
        subset: ParameterSubset,
        solver: Solver,
        *,
        progress: bool = False,
    ):
        if method is ScoreMethod.RANDOM:
            raise InputError("random scores need no influence vectors")
        if method.uses_curvature and curvature is None:
            raise InputError(f"method {method.value!r} needs a curvature operator")
        self.method = method
        self.H = curvature
        self.subset = subset
        self.solver = solver
        self.progress = progress
        self.diagnostics: list[SolverDiagnostics] = []
        self.setup_products = 0
        self.setup_time = 0.0
        self._idx = subset.indices_on(curvature.device if curvature is not None else "cpu")
        self._factor: _DenseFactor | None = None
        self._operator: LinearOperator | None = None
        self.dense = method.uses_curvature and self._dense_options() is not None

    @property
    def unknowns(self) -> int:
        """Unknowns of the system: n for original/projecting, k for gif/freezing."""
        if self.method in (ScoreMethod.GIF, ScoreMethod.FREEZING):
            return len(self.subset)
        return self.subset.num_total

    def __call__(self, G: Tensor) -> Tensor:
        """Influence vectors for the rows of ``G`` (gradients, [B, n])."""
        if self.method is ScoreMethod.GRAD_DOT:
            return G
        idx = self._idx.to(G.device)
        if self.method is ScoreMethod.ORIGINAL:
            rhs = G
        elif self.method is ScoreMethod.PROJECTING:  # P_Jᵀ [g]_J: zero outside J
            rhs = torch.zeros_like(G).index_copy_(1, idx, G.index_select(1, idx))
        else:
            rhs = G.index_select(1, idx)
        if self.dense:
            if self._factor is None:
                self._factorize()
            assert self._factor is not None
            out = self._factor.apply(rhs.T).T
        else:
            out = torch.stack([self._solve_one(c) for c in rhs])
        if self.method is ScoreMethod.FREEZING:
            full = torch.zeros_like(G)
            full.index_copy_(1, idx, out)
            return full
        return out

    def prepare(self) -> None:
        """Materialize and factorize the dense system now (a no-op otherwise).

        Under ``torch.distributed`` the curvature products are collective, so every rank must
        factorize at the same point; call this on every rank before work is split by rank.
        """
        if self.dense and self._factor is None:
            self._factorize()

    @property
    def local(self) -> bool:
        """Whether a call needs no curvature product (hence no collective): gradient dot
        products, or the dense path once :meth:`prepare` has factorized."""
        return not self.method.uses_curvature or (self.dense and self._factor is not None)

    def summary(self) -> dict[str, Any]:
        """Cost and convergence of the solves so far (JSON-ready)."""
        unconverged = sum(not d.converged for d in self.diagnostics)
        return {
            "method": self.method.value,
            "dense": self.dense,
            "unknowns": self.unknowns,
            "setup_products": self.setup_products,
            "setup_time": self.setup_time,
            "solves": len(self.diagnostics),
            "solve_products": sum(d.products for d in self.diagnostics),
            "unconverged": unconverged,
            "max_residual": max((d.residual for d in self.diagnostics), default=0.0),
        }

    def warn_unconverged(self, stacklevel: int = 3) -> None:
        """One :class:`~geninf.errors.ConvergenceWarning` if any solve stopped early."""
        bad = [d for d in self.diagnostics if not d.converged]
        if bad:
            worst = max(bad, key=lambda d: d.residual)
            warnings.warn(
                f"{len(bad)} of {len(self.diagnostics)} {worst.solver} solves stopped before "
                f"converging (worst relative residual {worst.residual:.3g}); the scores are "
                "approximate: raise max_iter, add damping or use solver='dense'",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )

    # ---------------------------------------------------------------------- internals
    def _dense_options(self) -> tuple[int, float | None] | None:
        s = self.solver
        if isinstance(s, DenseSolver):
            if self.unknowns > s.max_size:
                raise ModelTooLargeError(
                    f"solver='dense' would materialize a system with {self.unknowns} unknowns, "
                    f"more than max_size={s.max_size}; use solver='cg' or 'lsmr', or a subset"
                )
            return s.max_size, s.rcond
        if isinstance(s, AutoSolver) and self.unknowns <= s.max_dense:
            return s.max_dense, None
        return None

    def _factorize(self) -> None:
        options = self._dense_options()
        assert options is not None and self.H is not None
        max_size, rcond = options
        start = time.perf_counter()
        if self.method in (ScoreMethod.GIF, ScoreMethod.FREEZING):
            cols = self.subset
        else:
            cols = ParameterSubset(self.subset.layout, torch.arange(self.subset.num_total))
        M, self.setup_products = dense_columns(self.H, cols, max_size)
        if self.method is ScoreMethod.GIF:
            self._factor = _DenseFactor.transposed_pinv(M, rcond)
        elif self.method is ScoreMethod.FREEZING:
            J = self.subset.indices_on(M.device)
            self._factor = _DenseFactor.symmetric_pinv(M.index_select(0, J), rcond)
        else:
            self._factor = _DenseFactor.symmetric_pinv(M, rcond)
        self.setup_time = time.perf_counter() - start

    def _system(self) -> LinearOperator:
        H = self.H
        assert H is not None
        if self._operator is None:
            if self.method is ScoreMethod.GIF:
                self._operator = _TransposedOperator(ColumnSubsetOperator(H, self.subset))
            elif self.method is ScoreMethod.FREEZING:
                self._operator = PrincipalSubmatrixOperator(H, self.subset)
            else:
                self._operator = H
        return self._operator

    def _solve_one(self, b: Tensor) -> Tensor:
        res = self.solver.solve(self._system(), b.contiguous(), progress=self.progress)
        self.diagnostics.append(res.diagnostics)
        return res.x


class _DenseFactor:
    """A pseudo-inverse factorized once and applied to blocks of right-hand sides."""

    def __init__(self, left: Tensor, inv: Tensor, right: Tensor, rank: int):
        self.left, self.inv, self.right, self.rank = left, inv, right, rank

    def apply(self, B: Tensor) -> Tensor:
        """X = pinv · B for B of shape [rows, b]."""
        return self.left @ (self.inv.unsqueeze(1) * (self.right @ B.to(self.left.dtype)))

    @classmethod
    def symmetric_pinv(cls, M: Tensor, rcond: float | None) -> _DenseFactor:
        """M⁺ for a symmetric M (eigenvalues |λ| ≤ rcond·max|λ| dropped)."""
        M = 0.5 * (M + M.T)
        evals, Q = torch.linalg.eigh(M)
        inv, rank = _inverse_values(evals, rcond, M.shape[0])
        return cls(Q, inv, Q.T.contiguous(), rank)

    @classmethod
    def transposed_pinv(cls, A: Tensor, rcond: float | None) -> _DenseFactor:
        """(Aᵀ)⁺ = U S⁻¹ Vᵀ for A = U S Vᵀ (n × k): the min-norm solution of Aᵀ w = c."""
        U, S, Vh = torch.linalg.svd(A, full_matrices=False)
        inv, rank = _inverse_values(S, rcond, max(A.shape))
        return cls(U, inv, Vh, rank)


def _inverse_values(values: Tensor, rcond: float | None, size: int) -> tuple[Tensor, int]:
    cut = rcond if rcond is not None else torch.finfo(values.dtype).eps * size
    scale = values.abs().max() if values.numel() else values.new_zeros(())
    keep = values.abs() > cut * scale
    safe = torch.where(keep, values, torch.ones_like(values))
    return torch.where(keep, 1.0 / safe, torch.zeros_like(values)), int(keep.sum())


class _TransposedOperator(LinearOperator):
    """Aᵀ of an operator A, through A's rmatvec/matvec (used for the k × n GIF system)."""

    def __init__(self, base: LinearOperator):
        self.base = base
        self.shape = (base.shape[1], base.shape[0])
        self.dtype = base.dtype
        self.device = base.device

    @property
    def num_products(self) -> int:
        return self.base.num_products

    def _matvec(self, v: Tensor) -> Tensor:
        return self.base.rmatvec(v)

    def _rmatvec(self, v: Tensor) -> Tensor:
        return self.base.matvec(v)
