"""What every solver shares: results, diagnostics, input checks, progress and cost accounting.

A solver takes a :class:`~geninf.linalg.LinearOperator` A (rows × cols) and a right-hand side b
(length rows) and returns x (length cols) in a :class:`SolveResult`.

Problem kinds and the residual convention (the one place it is defined):

- ``"linear"`` — A is square and the solver solves ``A x = b``. Reported residual:
  ``‖b − A x‖ / ‖b‖``.
- ``"least_squares"`` — the solver minimizes ``‖A x − b‖`` (A rectangular, or a solver that
  always works on the least-squares problem: ``lsmr``, ``neumann_normal``, CG on the normal
  equations, a dense solve of a singular matrix). Reported residual: the normal-equation residual
  ``‖Aᵀ(b − A x)‖ / ‖Aᵀ b‖``, which tends to 0 at every least-squares solution (``‖b − A x‖``
  does not when b is outside the range of A). With ``LSMRSolver(damp=λ)`` it is the residual of
  the damped normal equations, ``‖Aᵀ(b − A x) − λ² x‖ / ‖Aᵀ b‖``.

Edge cases: b = 0 gives x = 0, residual 0, converged, and no product is spent. For least
squares, ``Aᵀ b = 0`` gives the min-norm solution x = 0 (residual 0). Norms are Euclidean.

``diagnostics.products`` counts the curvature products the solve triggered on A
(``A.num_products`` after − before): for a Hessian operator, Hessian-vector products. It includes
the products of any final residual check, which every iterative solver does on its returned x.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import ConvergenceWarning, InputError, NonFiniteError
from ..linalg.base import LinearOperator, MatrixOperator

__all__ = ["SolverName", "SolverDiagnostics", "SolveResult", "Solver"]

Problem = Literal["linear", "least_squares"]


class SolverName(str, Enum):
    """Names accepted by :func:`geninf.solvers.get_solver`.

    Members:
        AUTO: dense when small, else CG (symmetric) with an LSMR fallback, or LSMR.
        DENSE: materialize A and solve directly (reference; small problems only).
        CG: conjugate gradients (symmetric positive definite A; CGNR otherwise).
        LISSA: Koh & Liang's stochastic/deterministic Neumann recursion for ``(A + d·s·I)⁻¹ b``.
        NEUMANN_NORMAL: the GIF paper's modified LiSSA (truncated Landweber, normal equations).
        LSMR: Krylov least squares (Fong & Saunders 2011); any A, min-norm solution.
    """

    AUTO = "auto"
    DENSE = "dense"
    CG = "cg"
    LISSA = "lissa"
    NEUMANN_NORMAL = "neumann_normal"
    LSMR = "lsmr"


@dataclass
class SolverDiagnostics:
    """How a solve went. See the module docstring for the residual convention.

    Attributes:
        solver: name of the solver that produced x.
        problem: ``"linear"`` or ``"least_squares"`` (decides which residual is reported).
        iterations: iterations run (all of them, including those of discarded restarts).
        products: curvature products spent on A, final residual check included.
        residual: final relative residual of the returned x.
        converged: whether the stopping criterion was met (False when stopped by an iteration cap,
            negative curvature, or for a truncated series).
        scale: the scale used by ``lissa`` (s) and ``neumann_normal`` (the final c); else None.
        restarts: restarts (``neumann_normal``: divergences; ``cg``/``lsmr``: residual
            replacements after the recurrence residual drifted from the true one).
        residual_history: relative residual per iteration (solver-specific where noted).
        products_history: ``products`` at the moment each ``residual_history`` entry was known.
        wall_time: seconds.
        message: a human-readable account of how the solve ended.
        negative_curvature: True when CG met ``pᵀAp ≤ 0`` (A indefinite or singular).
    """

    solver: str
    problem: Problem
    iterations: int = 0
    products: int = 0
    residual: float = 0.0
    converged: bool = False
    scale: float | None = None
    restarts: int = 0
    residual_history: list[float] = field(default_factory=list)
    products_history: list[int] = field(default_factory=list)
    wall_time: float = 0.0
    message: str = ""
    negative_curvature: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become None)."""
        return {k: _json_safe(v) for k, v in asdict(self).items()}

    def warn_if_unconverged(self, where: str = "", stacklevel: int = 2) -> None:
        """Issue a :class:`~geninf.errors.ConvergenceWarning` if the solve stopped early.

        Args:
            where: a prefix of the message naming the computation (``"second_order: "``).
            stacklevel: as ``warnings.warn`` would take it in the caller of this method.
        """
        if not self.converged:
            warnings.warn(
                f"{where}{self.solver} stopped after {self.iterations} iterations at relative "
                f"residual {self.residual:.3g} without converging "
                f"({self.message or 'iteration limit'})",
                ConvergenceWarning,
                stacklevel=stacklevel + 1,
            )


@dataclass
class SolveResult:
    """The solution x (length ``A.shape[1]``) and how it was obtained."""

    x: Tensor
    diagnostics: SolverDiagnostics


class Monitor:
    """Per-solve bookkeeping: product counter, residual history and the optional progress bar."""

    def __init__(self, A: LinearOperator, name: str, progress: bool):
        self.A = A
        self.name = name
        self.progress = bool(progress)
        self.start_products = A.num_products
        self.residuals: list[float] = []
        self.products_seen: list[int] = []
        self._bar: Any = None

    @property
    def products(self) -> int:
        return self.A.num_products - self.start_products

    def set_total(self, total: int | None) -> None:
        if self.progress and self._bar is None:
            self._bar = tqdm(total=total, desc=self.name, leave=False)

    def record(self, residual: float, *, advance: int = 1) -> None:
        """Append one history entry (and move the bar ``advance`` steps)."""
        self.residuals.append(float(residual))
        self.products_seen.append(self.products)
        if self._bar is not None:
            self._bar.update(advance)
            self._bar.set_postfix(residual=f"{residual:.3e}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Solver(ABC):
    """Base class: validates the inputs, handles b = 0, times the solve and counts products.

    Subclasses set :attr:`name` and implement :meth:`_solve`, which returns ``(x, fields)`` where
    ``fields`` are :class:`SolverDiagnostics` fields (``problem`` at least).
    """

    name: ClassVar[str]
    #: whether the solver accepts a rectangular A (least squares)
    rectangular: ClassVar[bool] = True

    def solve(
        self,
        A: LinearOperator | Tensor,
        b: Tensor,
        *,
        x0: Tensor | None = None,
        progress: bool = False,
    ) -> SolveResult:
        """Solve for x (see the class docstring for the problem solved).

        Args:
            A: the operator (a 2-D tensor is wrapped in a MatrixOperator).
            b: right-hand side, 1-D of length ``A.shape[0]``, same dtype and device as A.
            x0: initial guess, 1-D of length ``A.shape[1]`` (default zero).
            progress: show a tqdm bar with the current residual.

        Raises:
            InputError: bad operator, shapes, dtype or device.
            NonFiniteError: b, x0 or a product contains NaN/inf.
        """
        A = _as_operator(A)
        b = _check_rhs(A, b, "b", A.shape[0])
        if x0 is not None:
            x0 = _check_rhs(A, x0, "x0", A.shape[1])
        rows, cols = A.shape
        if not self.rectangular and rows != cols:
            raise InputError(
                f"{type(self).__name__} needs a square operator, got shape {A.shape}; "
                "use solver='lsmr' or 'neumann_normal' for least squares"
            )
        start = time.perf_counter()
        if float(torch.linalg.vector_norm(b)) == 0.0:
            diag = SolverDiagnostics(
                solver=self.name,
                problem=self._problem_for_zero(A),
                converged=True,
                message="b = 0: the solution is x = 0",
            )
            diag.wall_time = time.perf_counter() - start
            return SolveResult(torch.zeros(cols, dtype=b.dtype, device=b.device), diag)
        mon = Monitor(A, self.name, progress)
        try:
            x, fields = self._solve(A, b, x0, mon)
        finally:
            mon.close()
        fields.setdefault("solver", self.name)
        fields.setdefault("residual_history", mon.residuals)
        fields.setdefault("products_history", mon.products_seen)
        fields["products"] = mon.products
        fields["wall_time"] = time.perf_counter() - start
        return SolveResult(x, SolverDiagnostics(**fields))

    def _problem_for_zero(self, A: LinearOperator) -> Problem:
        return "linear" if A.shape[0] == A.shape[1] else "least_squares"

    @abstractmethod
    def _solve(
        self, A: LinearOperator, b: Tensor, x0: Tensor | None, mon: Monitor
    ) -> tuple[Tensor, dict[str, Any]]: ...

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


# ---------------------------------------------------------------------------------------- helpers
def norm(v: Tensor) -> float:
    """‖v‖₂ as a Python float."""
    return float(torch.linalg.vector_norm(v))


def relative(num: float, den: float) -> float:
    """num / den, or num itself when den = 0 (then the problem's scale is 0)."""
    return num / den if den > 0 else num


def check_float(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    strict: bool = False,
    high: float | None = None,
    allow_none: bool = False,
) -> float | None:
    """Validate a real option: ``low ≤ value`` (``<`` when ``strict``) and ``value < high``."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if ok and high is not None:
        ok = value < high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if strict else '>='} {low:g}")
        if high is not None:
            bounds.append(f"< {high:g}")
        need = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
        raise InputError(
            f"{owner}: {name} must be {need}{' or None' if allow_none else ''}, got {value!r}"
        )
    return float(value)


def check_int(
    owner: str, name: str, value: Any, *, low: int = 0, allow_none: bool = False
) -> int | None:
    """Validate an integer option ``value ≥ low``."""
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise InputError(
            f"{owner}: {name} must be an integer >= {low}"
            f"{' or None' if allow_none else ''}, got {value!r}"
        )
    return int(value)


def check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Validate a string option."""
    value = getattr(value, "value", value)
    if value not in choices:
        raise InputError(f"{owner}: {name} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def default_max_iter(A: LinearOperator, cap: int = 1000) -> int:
    """10 × the number of unknowns, at most ``cap``."""
    return max(1, min(10 * min(A.shape), cap))


def _as_operator(A: Any) -> LinearOperator:
    if isinstance(A, LinearOperator):
        return A
    if isinstance(A, Tensor):
        return MatrixOperator(A)
    raise InputError(f"A must be a LinearOperator or a 2-D tensor, got {type(A).__name__}")


def _check_rhs(A: LinearOperator, v: Any, what: str, n: int) -> Tensor:
    if not isinstance(v, Tensor) or v.dim() != 1 or v.shape[0] != n:
        got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        raise InputError(
            f"{what} must be a 1-D tensor of length {n} for an operator of shape "
            f"{A.shape}, got {got}"
        )
    if v.dtype != A.dtype:
        raise InputError(
            f"{what} has dtype {v.dtype} but the operator works in {A.dtype}; "
            f"convert it with .to({A.dtype})"
        )
    if not _same_device(v.device, A.device):
        raise InputError(
            f"{what} is on {v.device} but the operator is on {A.device}; "
            f"move it with .to('{A.device}')"
        )
    if not bool(torch.isfinite(v).all()):
        raise NonFiniteError(f"{what} contains NaN or infinity")
    return v


def _same_device(a: Any, b: Any) -> bool:
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    return a.index is None or b.index is None or a.index == b.index


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_json_safe(u) for u in v]
    return v
