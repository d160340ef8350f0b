"""Cost of one Hessian-vector product, and of one H_{:,J}ᵀH_{:,J} product, ÷ one gradient.

    python benchmarks/hvp_cost.py [--out FILE.json] [--examples 1000] [--repeats 5]

Each ratio is measured in one run on the same data, batch size 250 (best of ``--repeats``).
For cached methods the one-off set-up (building the graphs / linearization) is reported
separately as ``setup_over_grad``.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import SmallCNN, best_time, digits, emit, mlp, mnist5k, versions

from geninf import ParameterSubset
from geninf.functional import FunctionalModel
from geninf.linalg import ColumnSubsetOperator, HessianOperator, HVPMethod, NormalOperator


def measure(name, model, data, repeats):
    torch.manual_seed(0)
    fm = FunctionalModel(model.eval(), None)
    t_grad = best_time(lambda: fm.gradient(data, batch_size=250), repeats)
    n = fm.num_params
    subset = ParameterSubset.from_flat_indices(
        model, torch.randperm(n, generator=torch.Generator().manual_seed(0))[: max(1, n // 20)]
    )
    v = torch.randn(n, generator=torch.Generator().manual_seed(1))
    row = {"params": n, "examples": len(data[0]), "grad_s": t_grad, "methods": {}}
    for method in HVPMethod:
        H = HessianOperator(model, None, data, method=method, batch_size=250)
        t0 = time.perf_counter()
        H.matvec(v)  # first product includes any set-up
        first = time.perf_counter() - t0
        t_hvp = best_time(lambda H=H: H.matvec(v), repeats)
        N = NormalOperator(ColumnSubsetOperator(H, subset))
        t_norm = best_time(lambda N=N: N.matvec(v[: len(subset)]), max(2, repeats // 2))
        row["methods"][method.value] = {
            "hvp_over_grad": round(t_hvp / t_grad, 3),
            "normal_product_over_grad": round(t_norm / t_grad, 3),
            "setup_over_grad": round(max(first - t_hvp, 0.0) / t_grad, 3),
        }
        del H, N
    return name, row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    results = dict(
        [
            measure("mlp_digits", mlp(), digits(args.examples), args.repeats),
            measure("small_cnn_mnist", SmallCNN(), mnist5k(args.examples), args.repeats),
        ]
    )
    emit({"benchmark": "hvp_cost", "versions": versions(), "results": results}, args.out)


if __name__ == "__main__":
    main()
