"""Cost of one Hessian-vector product, and of one H_{:,J}ᵀH_{:,J} product, ÷ one gradient.

    python benchmarks/hvp_cost.py [--out FILE.json] [--repeats 3] [--quick]

Each ratio is measured in one run on the same data (best of ``--repeats``), batch size 250 for
the MLP and CNN (1,000 embedded examples), 128 random CIFAR-shaped images for VGG-11 and
ResNet-18 (width multiplier ``--width``, 0.25 by default so that a run takes minutes on 2 CPU
cores). For cached methods the one-off set-up (building graphs or the linearization) is reported
separately as ``setup_over_grad``. J is a seeded random 5% of the parameters.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import best_time, cifar_shaped, embedded, emit, model, versions
from _outputs import claim

from geninf import ParameterSubset
from geninf.functional import FunctionalModel
from geninf.linalg import ColumnSubsetOperator, HessianOperator, HVPMethod, NormalOperator


def measure(net, data, batch_size, repeats, methods):
    fm = FunctionalModel(net.eval(), None)
    t_grad = best_time(lambda: fm.gradient(data, batch_size=batch_size), repeats)
    n = fm.num_params
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    subset = ParameterSubset.from_flat_indices(net, perm[: max(1, n // 20)])
    v = torch.randn(n, generator=torch.Generator().manual_seed(1))
    row = {"params": n, "examples": len(data[0]), "grad_seconds": round(t_grad, 4), "methods": {}}
    for method in methods:
        H = HessianOperator(net, None, data, method=method, batch_size=batch_size)
        t0 = time.perf_counter()
        H.matvec(v)  # the first product includes any set-up
        first = time.perf_counter() - t0
        t_hvp = best_time(lambda H=H: H.matvec(v), repeats)
        N = NormalOperator(ColumnSubsetOperator(H, subset))
        t_norm = best_time(lambda N=N: N.matvec(v[: len(subset)]), max(2, repeats // 2))
        row["methods"][method] = {
            "hvp_over_grad": round(t_hvp / t_grad, 3),
            "normal_product_over_grad": round(t_norm / t_grad, 3),
            "setup_over_grad": round(max(first - t_hvp, 0.0) / t_grad, 3),
        }
        del H, N
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--quick", action="store_true", help="MLP and CNN only")
    args = ap.parse_args()
    claim(args.out)
    all_methods = [m.value for m in HVPMethod]
    no_linearize = [m for m in all_methods if m != "linearize"]  # its set-up is minutes here
    splits, digits = embedded("digits", 1000, flatten=True)
    results = {
        "mlp_digits": measure(
            model("mlp", splits.input_shape), digits, 250, args.repeats, all_methods
        )
    }
    splits, mnist = embedded("mnist5k", 1000)
    results["small_cnn_mnist5k"] = measure(
        model("small_cnn", splits.input_shape), mnist, 250, args.repeats, all_methods
    )
    if not args.quick:
        cifar = cifar_shaped(128)
        for name in ("vgg11", "resnet18"):
            results[f"{name}_w{args.width}_cifar_shaped"] = measure(
                model(name, (3, 32, 32), width=args.width), cifar, 64, args.repeats, no_linearize
            )
    emit({"benchmark": "hvp_cost", "versions": versions(), "results": results}, args.out)


if __name__ == "__main__":
    main()
