"""Solvers for ``A x = b`` and ``min ‖A x − b‖`` on curvature operators known by their products.

Every solver is a class with its options in ``__init__`` and a
``solve(A, b, *, x0=None, progress=False) -> SolveResult`` method; :func:`get_solver` builds one
from a name. The residual convention and cost accounting are defined in :mod:`.base`.

=================  ==========================================================================
name               solves
=================  ==========================================================================
``dense``          materialized A, LU or min-norm least squares (reference, small problems)
``cg``             symmetric positive definite ``A x = b``; CGNR for other A
``lissa``          Koh & Liang's recursion, → ``(A + damping·scale·I)⁻¹ b`` (square A)
``neumann_normal`` the GIF paper's modified LiSSA: truncated Landweber series on ``AᵀA``
``lsmr``           min-norm least squares for any A (Krylov, O(κ) iterations)
``auto``           dense if small, else cg (lsmr on negative curvature), lsmr if rectangular
=================  ==========================================================================

Example:
    >>> import torch
    >>> from geninf.linalg import MatrixOperator
    >>> A = MatrixOperator(torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64))
    >>> result = get_solver("cg", tol=1e-10).solve(A, torch.tensor([1.0, 0.0], dtype=torch.float64))
    >>> [round(v, 6) for v in result.x.tolist()], result.diagnostics.converged
    ([0.4, -0.2], True)
"""

from .auto import AutoSolver, get_solver
from .base import Solver, SolverDiagnostics, SolveResult, SolverName
from .cg import CGSolver
from .dense import DenseSolver
from .lissa import LiSSASolver
from .lsmr import LSMRSolver
from .neumann import NeumannNormalSolver

__all__ = [
    "AutoSolver",
    "CGSolver",
    "DenseSolver",
    "LSMRSolver",
    "LiSSASolver",
    "NeumannNormalSolver",
    "SolveResult",
    "Solver",
    "SolverDiagnostics",
    "SolverName",
    "get_solver",
]
