"""Influence estimators: the linear systems behind the original and generalized influence functions.

Conventions — stated once, here. Let H be the Hessian of the mean loss over ``hessian_data``
(plus ``damping``·I), g the gradient of the mean loss over ``target_data`` and J the parameter
subset. Each method returns the solution x of its system *as written*, with no sign flip:

==============  =================================  ==========================================
method          x                                  x is indexed by
==============  =================================  ==========================================
``original``    H⁻¹ g                              all n parameters
``gif``         argmin_x ‖H_{:,J} x − g‖₂ (min-norm)  J  (paper Eq. 6 without its minus sign)
``freezing``    H_JJ⁻¹ g_J                         J
``projecting``  [H⁻¹ g]_J                          J
==============  =================================  ==========================================

Turning x into an edit (method.md §2–3):

- **Removing** a set U of r of the m training examples (Newton form): take ``hessian_data`` = the
  retained examples R, ``target_data`` = U; then ``θ_J ← θ_J + r/(m − r) · x``
  (:func:`removal_scale`). With ``hessian_data`` = all m examples this is the plain first-order
  influence function.
- **Changing labels** z_i → z'_i for i ∈ W: pass ``gradient=label_change_gradient(...)``, which is
  already (1/m) Σ_W [∇ℓ(z_i) − ∇ℓ(z'_i)], with ``hessian_data`` = the training set; then
  ``θ_J ← θ_J + x``.
- Up-weighting U by ε changes the optimum by dθ/dε = −|U|·x with g the mean over U.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from .._choices import parse_choice
from ..errors import InputError
from ..functional import FunctionalModel
from ..linalg.base import (
    ColumnSubsetOperator,
    LinearOperator,
    MatrixOperator,
    PrincipalSubmatrixOperator,
)
from ..linalg.curvature import DEFAULT_HVP_METHOD, GaussNewtonOperator, HessianOperator
from ..params.subset import ParameterSubset, resolve_subset
from ..solvers import SolverDiagnostics, SolveResult, get_solver
from ..solvers.auto import AutoSolver
from ..solvers.dense import DenseSolver

__all__ = [
    "InfluenceMethod",
    "InfluenceResult",
    "InfluenceSystem",
    "influence",
    "influence_system",
    "label_change_gradient",
    "removal_scale",
]


class InfluenceMethod(str, Enum):
    """Which linear system to solve (see the module docstring)."""

    ORIGINAL = "original"
    GIF = "gif"
    FREEZING = "freezing"
    PROJECTING = "projecting"


@dataclass
class InfluenceResult:
    """The solution of an influence system and how it was obtained.

    Attributes:
        delta: x, a 1-D tensor ordered like ``subset.flat_indices``.
        subset: the parameters ``delta`` refers to (all of them for ``original``).
        method: the estimator.
        diagnostics: the solver's diagnostics (products, residual, convergence...).
        gradient_norm: ‖g‖₂ of the right-hand side.
        wall_time: seconds, gradient pass and solve together.
    """

    delta: Tensor
    subset: ParameterSubset
    method: InfluenceMethod
    diagnostics: SolverDiagnostics
    gradient_norm: float
    wall_time: float
    extra: dict[str, Any] = field(default_factory=dict)

    def apply(self, model: nn.Module, scale: float = 1.0, *, inplace: bool = False) -> nn.Module:
        """Return ``model`` with θ_J ← θ_J + scale · delta (a copy unless ``inplace``)."""
        return self.subset.apply(model, self.delta, alpha=scale, inplace=inplace)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the tensor)."""
        return {
            "method": self.method.value,
            "subset_size": len(self.subset),
            "num_params": self.subset.num_total,
            "delta_norm": float(self.delta.norm()),
            "gradient_norm": self.gradient_norm,
            "wall_time": self.wall_time,
            "diagnostics": self.diagnostics.to_dict(),
            **self.extra,
        }


def influence(
    model: nn.Module,
    objective: Any,
    hessian_data: Any,
    target_data: Any = None,
    *,
    method: InfluenceMethod | str = InfluenceMethod.GIF,
    subset: ParameterSubset | None = None,
    solver: Any = "auto",
    damping: float = 0.0,
    curvature: str = "hessian",
    hvp_method: str = DEFAULT_HVP_METHOD.value,
    gradient: Tensor | None = None,
    batch_size: int | None = None,
    solver_options: dict[str, Any] | None = None,
    progress: bool = False,
    check_determinism: bool = True,
) -> InfluenceResult:
    """Solve the influence system of ``method`` (see the module docstring for the maths).

    Args:
        model: the trained model (never modified).
        objective: None (cross-entropy), ``loss_fn(outputs, targets)``, or an Objective.
        hessian_data: data whose mean-loss Hessian is H (the retained data for removal).
        target_data: data whose mean-loss gradient is g (the removed data). Give either this or
            ``gradient``.
        method: ``"gif"``, ``"original"``, ``"freezing"`` or ``"projecting"``.
        subset: the parameters J that may move; None means all of them.
        solver: a solver name (``auto``, ``dense``, ``cg``, ``lissa``, ``neumann_normal``,
            ``lsmr``) or a solver instance; ``auto`` converges to relative residual 1e-6.
        damping: λ ≥ 0 added to H (needed for indefinite Hessians with CG/LiSSA).
        curvature: ``"hessian"`` or ``"gauss_newton"``.
        hvp_method: see :class:`~geninf.linalg.HVPMethod`.
        gradient: an explicit flat right-hand side g of length n (e.g. from
            :func:`label_change_gradient`).
        batch_size: batch size for tensor-tuple data.
        solver_options: keyword options for a solver given by name.
        progress: show a progress bar for the solve.
        check_determinism: refuse train-mode dropout/batch-norm and shuffling loaders.

    Returns:
        An :class:`InfluenceResult`; ``result.delta`` is x.
    """
    start = time.perf_counter()
    check_damping(damping)
    system = influence_system(
        model,
        objective,
        hessian_data,
        target_data,
        method=method,
        subset=subset,
        curvature=curvature,
        hvp_method=hvp_method,
        gradient=gradient,
        batch_size=batch_size,
        check_determinism=check_determinism,
    )
    return system.solve(
        damping,
        solver=solver,
        solver_options=solver_options,
        progress=progress,
        start=start,
    )


@dataclass
class InfluenceSystem:
    """The pieces of an influence system, built once and solved for any damping λ.

    Built by :func:`influence_system`; :meth:`solve` returns what :func:`influence` returns.
    Solving the same system for several λ (a damping path) reuses the gradient pass and the
    curvature operator's set-up, and can warm-start each solve from the previous solution.

    Attributes:
        method: the estimator.
        subset: J (all parameters for ``original``).
        curvature: H without damping (an operator on all n parameters).
        gradient: g, the flat right-hand side of length n.
        curvature_name: ``"hessian"`` or ``"gauss_newton"``.
        hvp_method: the HVP method of the Hessian operator.
    """

    method: InfluenceMethod
    subset: ParameterSubset
    curvature: LinearOperator
    gradient: Tensor
    curvature_name: str = "hessian"
    hvp_method: str = DEFAULT_HVP_METHOD.value
    _dense: Tensor | None = field(default=None, repr=False)
    # projecting: the full solution of the last solve (its warm start; ``x0`` is the subset's)
    _full_x: Tensor | None = field(default=None, repr=False)

    def solve(
        self,
        damping: float = 0.0,
        *,
        solver: Any = "auto",
        solver_options: dict[str, Any] | None = None,
        x0: Tensor | None = None,
        progress: bool = False,
        start: float | None = None,
        cache_dense: bool = False,
    ) -> InfluenceResult:
        """Solve the system of :attr:`method` with H + ``damping``·I (warm start ``x0``, a
        previous ``delta``; ``projecting`` solves on all parameters, so it warm-starts from the
        full solution of its previous solve instead, as ``original`` does).

        With ``cache_dense`` and a solver that would materialize the system (``dense``, or
        ``auto`` on few enough columns), the undamped matrix is materialized once and reused
        for every later damping: λ only adds to its diagonal entries.
        """
        start = time.perf_counter() if start is None else start
        damping = check_damping(damping)
        H = self.curvature.damped(damping)
        the_solver = get_solver(solver, **(solver_options or {}))
        dense = self._dense_system(the_solver, damping) if cache_dense else None
        if dense is not None:
            res, delta = self._solve_dense(dense, progress)
        else:
            res, delta = self._solve_operator(the_solver, H, x0, progress)
        res.diagnostics.warn_if_unconverged(stacklevel=3)
        return InfluenceResult(
            delta=delta.detach(),
            subset=self.subset,
            method=self.method,
            diagnostics=res.diagnostics,
            gradient_norm=float(self.gradient.norm()),
            wall_time=time.perf_counter() - start,
            extra={
                "damping": float(damping),
                "curvature": self.curvature_name,
                "hvp_method": self.hvp_method,
            },
        )

    def _solve_operator(
        self, solver: Any, H: LinearOperator, x0: Tensor | None, progress: bool
    ) -> tuple[SolveResult, Tensor]:
        """Solve the system of :attr:`method` on the damped operator H; return x too."""
        method, subset, g = self.method, self.subset, self.gradient
        if method is InfluenceMethod.GIF:
            res = solver.solve(ColumnSubsetOperator(H, subset), g, x0=x0, progress=progress)
            return res, res.x
        if method is InfluenceMethod.FREEZING:
            A = PrincipalSubmatrixOperator(H, subset)
            res = solver.solve(A, subset.gather(g), x0=x0, progress=progress)
            return res, res.x
        if method is InfluenceMethod.ORIGINAL:
            res = solver.solve(H, g, x0=x0, progress=progress)
            return res, res.x
        full_x0 = self._full_x if x0 is not None else None
        res = solver.solve(H, g, x0=full_x0, progress=progress)
        self._full_x = res.x.detach()
        return res, subset.gather(res.x)

    def _solve_dense(self, dense: MatrixOperator, progress: bool) -> tuple[SolveResult, Tensor]:
        """Solve with the cached damped matrix of :meth:`_dense_system`; return x too."""
        method, subset, g = self.method, self.subset, self.gradient
        rhs = subset.gather(g) if method is InfluenceMethod.FREEZING else g
        res = DenseSolver(max_size=dense.shape[1]).solve(dense, rhs, progress=progress)
        return res, (res.x if method is not InfluenceMethod.PROJECTING else subset.gather(res.x))

    def _dense_system(self, solver: Any, damping: float) -> MatrixOperator | None:
        """The damped system as a matrix, materialized once (None if the solver is iterative)."""
        if isinstance(solver, AutoSolver):
            limit = solver.max_dense
        elif isinstance(solver, DenseSolver):
            limit = solver.max_size
        else:
            return None
        if self._dense is None:
            if self.method is InfluenceMethod.GIF:
                base: LinearOperator = ColumnSubsetOperator(self.curvature, self.subset)
            elif self.method is InfluenceMethod.FREEZING:
                base = PrincipalSubmatrixOperator(self.curvature, self.subset)
            else:
                base = self.curvature
            if base.shape[1] > limit:
                return None
            self._dense = base.to_dense(max_size=limit)
        M = self._dense.clone()
        cols = torch.arange(M.shape[1], device=M.device)
        rows = self.subset.indices_on(M.device) if self.method is InfluenceMethod.GIF else cols
        M[rows, cols] += damping
        return MatrixOperator(M, symmetric=self.method is not InfluenceMethod.GIF)


def influence_system(
    model: nn.Module,
    objective: Any,
    hessian_data: Any,
    target_data: Any = None,
    *,
    method: InfluenceMethod | str = InfluenceMethod.GIF,
    subset: ParameterSubset | None = None,
    curvature: str = "hessian",
    hvp_method: str = DEFAULT_HVP_METHOD.value,
    gradient: Tensor | None = None,
    batch_size: int | None = None,
    check_determinism: bool = True,
) -> InfluenceSystem:
    """Build the system of :func:`influence` (same arguments) without solving it.

    The gradient g is computed here (one pass over ``target_data``); H is an operator whose
    products stream over ``hessian_data`` when the system is solved.
    """
    method = parse_choice(InfluenceMethod, method, "influence method", any_case=False)
    fmodel = FunctionalModel(model, objective, check_determinism=check_determinism)
    subset = resolve_subset(
        model, subset,
        whole_model_method=method.value if method is InfluenceMethod.ORIGINAL else None,
    )  # fmt: skip
    g = _right_hand_side(fmodel, target_data, gradient, batch_size)
    H = _curvature(fmodel, hessian_data, curvature, hvp_method, batch_size, check_determinism)
    return InfluenceSystem(method, subset, H, g, curvature, hvp_method)


def check_damping(damping: Any) -> float:
    """``damping`` as a float, or an InputError unless it is a finite number ≥ 0."""
    ok = isinstance(damping, int | float) and not isinstance(damping, bool)
    if not (ok and damping >= 0.0 and math.isfinite(damping)):
        raise InputError(f"damping must be a non-negative number, got {damping!r}")
    return float(damping)


def removal_scale(num_train: int, num_removed: int) -> float:
    """r / (m − r): the factor that turns x into the Newton removal update (module docstring)."""
    if not 0 < num_removed < num_train:
        raise InputError(
            f"cannot remove {num_removed} of {num_train} examples; remove at least one and "
            "keep at least one"
        )
    return num_removed / (num_train - num_removed)


def label_change_gradient(
    model: nn.Module,
    objective: Any,
    old_data: Any,
    new_data: Any,
    num_train: int,
    *,
    batch_size: int | None = None,
) -> Tensor:
    """(1/m) Σ_W [∇ℓ(z_i) − ∇ℓ(z'_i)] for the changed examples (old and new versions, same order).

    ``old_data`` and ``new_data`` hold the r changed examples before and after the change; m is
    ``num_train``. Pass the result as ``gradient=`` to :func:`influence`; x is then the update.
    """
    fm = FunctionalModel(model, objective)
    old = fm.batches(old_data, batch_size, name="old data")
    new = fm.batches(new_data, batch_size, name="new data")
    r_old = sum(n for _, n in fm.iter_weighted(old))
    r_new = sum(n for _, n in fm.iter_weighted(new))
    if r_old != r_new:
        raise InputError(
            f"old_data has {r_old} examples but new_data has {r_new}; give both versions of "
            "every changed example"
        )
    if num_train < r_old:
        raise InputError(f"num_train={num_train} is smaller than the {r_old} changed examples")
    diff = fm.gradient(old) - fm.gradient(new)
    return diff * (r_old / num_train)


def _right_hand_side(
    fmodel: FunctionalModel, target_data: Any, gradient: Tensor | None, batch_size: int | None
) -> Tensor:
    if (target_data is None) == (gradient is None):
        raise InputError("give exactly one of target_data (data whose gradient is g) or gradient")
    if gradient is None:
        return fmodel.gradient(target_data, batch_size=batch_size)
    if not isinstance(gradient, Tensor) or gradient.shape != (fmodel.num_params,):
        shape = tuple(gradient.shape) if isinstance(gradient, Tensor) else type(gradient).__name__
        raise InputError(
            f"gradient must be a flat tensor of length {fmodel.num_params}, got {shape}"
        )
    if not torch.isfinite(gradient).all():
        from ..errors import NonFiniteError

        raise NonFiniteError("the given gradient has NaN/inf entries")
    return gradient.to(device=fmodel.device, dtype=fmodel.dtype)


def _curvature(
    fmodel: FunctionalModel,
    data: Any,
    curvature: str,
    hvp_method: str,
    batch_size: int | None,
    check_determinism: bool,
) -> LinearOperator:
    if curvature == "hessian":
        return HessianOperator(
            fmodel,
            None,
            data,
            method=hvp_method,
            batch_size=batch_size,
            check_determinism=check_determinism,
        )
    if curvature in ("gauss_newton", "ggn"):
        return GaussNewtonOperator(
            fmodel, None, data, batch_size=batch_size, check_determinism=check_determinism
        )
    raise InputError(f"unknown curvature {curvature!r}; choose 'hessian' or 'gauss_newton'")
