"""Curvature operators: Hessian and Gauss–Newton products streamed over data, and views of them."""

from .base import (
    ColumnSubsetOperator,
    DampedOperator,
    LinearOperator,
    MatrixOperator,
    NormalOperator,
    PrincipalSubmatrixOperator,
)

__all__ = [
    "ColumnSubsetOperator",
    "DampedOperator",
    "LinearOperator",
    "MatrixOperator",
    "NormalOperator",
    "PrincipalSubmatrixOperator",
]

from .curvature import CurvatureOperator, GaussNewtonOperator, HessianOperator, HVPMethod

__all__ += ["CurvatureOperator", "GaussNewtonOperator", "HessianOperator", "HVPMethod"]
