"""`AutoSolver` (picks a solver from the operator's size and structure) and :func:`get_solver`."""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor

from ..errors import InputError
from ..linalg.base import LinearOperator
from .base import Monitor, Solver, SolveResult, SolverName, check_float, check_int
from .cg import CGSolver
from .dense import DenseSolver
from .lissa import LiSSASolver
from .lsmr import LSMRSolver
from .neumann import NeumannNormalSolver

__all__ = ["AutoSolver", "get_solver"]


class AutoSolver(Solver):
    """Choose the solver from A:

    1. ``A.shape[1] ≤ max_dense``: :class:`DenseSolver` (exact; materializing costs
       ``A.shape[1]`` products).
    2. square and symmetric: :class:`CGSolver`; if CG meets negative curvature (A indefinite),
       :class:`LSMRSolver` takes over from scratch — the message records it and
       ``products``/``iterations``/histories cover both runs.
    3. otherwise (rectangular, e.g. GIF's H_{:,J}, or non-symmetric): :class:`LSMRSolver`.

    ``diagnostics.solver`` names the solver whose x is returned; the message starts with
    ``"auto: "`` and says why.

    Args:
        tol: tolerance passed to CG / LSMR.
        max_dense: largest number of columns solved densely.
        max_iter: iteration cap passed to CG / LSMR (None: their defaults).
    """

    name = "auto"

    def __init__(self, tol: float = 1e-6, max_dense: int = 1024, max_iter: int | None = None):
        self.tol = check_float("AutoSolver", "tol", tol, low=0.0, strict=True)
        self.max_dense = check_int("AutoSolver", "max_dense", max_dense, low=0)
        self.max_iter = check_int("AutoSolver", "max_iter", max_iter, low=1, allow_none=True)

    def _solve(
        self, A: LinearOperator, b: Tensor, x0: Tensor | None, mon: Monitor
    ) -> tuple[Tensor, dict[str, Any]]:
        rows, cols = A.shape
        if cols <= self.max_dense:
            dense = DenseSolver(max_size=self.max_dense).solve(A, b, x0=x0)
            return _merge([dense], f"auto: dense ({cols} <= max_dense={self.max_dense} columns)")
        if rows == cols and A.symmetric:
            first = CGSolver(tol=self.tol, max_iter=self.max_iter).solve(
                A, b, x0=x0, progress=mon.progress
            )
            if not first.diagnostics.negative_curvature:
                return _merge([first], "auto: cg (square symmetric operator)")
            second = LSMRSolver(tol=self.tol, max_iter=self.max_iter).solve(
                A, b, x0=x0, progress=mon.progress
            )
            return _merge(
                [first, second],
                f"auto: cg stopped after {first.diagnostics.iterations} iterations with "
                f"negative curvature (A is indefinite); fell back to lsmr",
            )
        return _merge(
            [
                LSMRSolver(tol=self.tol, max_iter=self.max_iter).solve(
                    A, b, x0=x0, progress=mon.progress
                )
            ],
            "auto: lsmr (rectangular or non-symmetric operator)",
        )


def _merge(results: list[SolveResult], why: str) -> tuple[Tensor, dict[str, Any]]:
    """Diagnostics of the last run, with iterations and histories accumulated over all runs."""
    last = results[-1].diagnostics
    residuals: list[float] = []
    products: list[int] = []
    offset = 0
    for res in results:
        d = res.diagnostics
        residuals += d.residual_history
        products += [p + offset for p in d.products_history]
        offset += d.products
    fields = dict(
        solver=last.solver,
        problem=last.problem,
        iterations=sum(r.diagnostics.iterations for r in results),
        residual=last.residual,
        converged=last.converged,
        scale=last.scale,
        restarts=sum(r.diagnostics.restarts for r in results),
        residual_history=residuals,
        products_history=products,
        message=f"{why}: {last.message}",
        negative_curvature=any(r.diagnostics.negative_curvature for r in results),
    )
    return results[-1].x, fields


_REGISTRY: dict[SolverName, type[Solver]] = {
    SolverName.AUTO: AutoSolver,
    SolverName.DENSE: DenseSolver,
    SolverName.CG: CGSolver,
    SolverName.LISSA: LiSSASolver,
    SolverName.NEUMANN_NORMAL: NeumannNormalSolver,
    SolverName.LSMR: LSMRSolver,
}


def get_solver(spec: str | SolverName | Solver = "auto", **options: Any) -> Solver:
    """A solver from a name (a :class:`SolverName` member or its string) and options.

    A :class:`Solver` instance is returned as is (options are then refused).

    Example:
        >>> get_solver("lsmr", tol=1e-8)
        LSMRSolver(tol=1e-08, max_iter=None, damp=0.0)

    Raises:
        InputError: unknown name or option.
    """
    if isinstance(spec, Solver):
        if options:
            raise InputError(
                f"options {sorted(options)} cannot be applied to an existing "
                f"{type(spec).__name__}; pass a solver name instead"
            )
        return spec
    valid = ", ".join(m.value for m in SolverName)
    if isinstance(spec, SolverName):
        name = spec
    elif isinstance(spec, str):
        try:
            name = SolverName(spec.strip().lower())
        except ValueError:
            raise InputError(f"unknown solver {spec!r}; valid names: {valid}") from None
    else:
        raise InputError(f"solver must be a name ({valid}) or a Solver, got {type(spec).__name__}")
    cls = _REGISTRY[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(
            f"solver {name.value!r} has no option(s) {', '.join(unknown)}; its "
            f"options are: {', '.join(accepted)}"
        )
    return cls(**options)
