"""Cost of one Hessian-vector product, and of one H_{:,J}ᵀH_{:,J} product, ÷ one gradient.

    python benchmarks/hvp_cost.py [--out FILE.json] [--repeats 3] [--quick] [--device cpu|cuda]
        [--methods reverse,...] [--examples 1000]

Each ratio is measured in one run on the same data (best of ``--repeats``), batch size 250 for
the MLP and CNN (1,000 embedded examples), 128 random CIFAR-shaped images for VGG-11 and
ResNet-18 (width multiplier ``--width``, 0.25 by default so that a run takes minutes on 2 CPU
cores). For cached methods the one-off set-up (building graphs or the linearization) is reported
separately as ``setup_over_grad``. J is a seeded random 5% of the parameters.

``--device cuda`` runs every model and batch on the GPU and synchronizes before each clock
reading (the ratios are then the GPU's); ``--methods`` restricts the HVP methods and
``--examples`` the number of embedded examples (tests use both to stay fast).
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

CPU = torch.device("cpu")


def synced(fn, device):
    """``fn`` followed by a device synchronization (a no-op on the CPU)."""
    if device.type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


def measure(net, data, batch_size, repeats, methods, device=CPU):
    net = net.to(device)
    data = tuple(t.to(device) for t in data)
    fm = FunctionalModel(net.eval(), None)
    t_grad = best_time(synced(lambda: fm.gradient(data, batch_size=batch_size), device), repeats)
    n = fm.num_params
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    subset = ParameterSubset.from_flat_indices(net, perm[: max(1, n // 20)])
    v = torch.randn(n, generator=torch.Generator().manual_seed(1)).to(device)
    row = {"params": n, "examples": len(data[0]), "grad_seconds": round(t_grad, 4), "methods": {}}
    for method in methods:
        H = HessianOperator(net, None, data, method=method, batch_size=batch_size)
        t0 = time.perf_counter()
        synced(lambda H=H: H.matvec(v), device)()  # the first product includes any set-up
        first = time.perf_counter() - t0
        t_hvp = best_time(synced(lambda H=H: H.matvec(v), device), repeats)
        N = NormalOperator(ColumnSubsetOperator(H, subset))
        norm = synced(lambda N=N: N.matvec(v[: len(subset)]), device)
        t_norm = best_time(norm, max(2, repeats // 2))
        row["methods"][method] = {
            "hvp_over_grad": round(t_hvp / t_grad, 3),
            "normal_product_over_grad": round(t_norm / t_grad, 3),
            "setup_over_grad": round(max(first - t_hvp, 0.0) / t_grad, 3),
        }
        del H, N
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--quick", action="store_true", help="MLP and CNN only")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--methods", help="comma-separated HVP methods (default: all)")
    ap.add_argument("--examples", type=int, default=1000, help="embedded examples (MLP, CNN)")
    args = ap.parse_args(argv)
    claim(args.out)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    all_methods = args.methods.split(",") if args.methods else [m.value for m in HVPMethod]
    no_linearize = [m for m in all_methods if m != "linearize"]  # its set-up is minutes here
    batch = min(250, args.examples)
    splits, digits = embedded("digits", args.examples, flatten=True)
    results = {
        "mlp_digits": measure(
            model("mlp", splits.input_shape), digits, batch, args.repeats, all_methods, device
        )
    }
    splits, mnist = embedded("mnist5k", args.examples)
    results["small_cnn_mnist5k"] = measure(
        model("small_cnn", splits.input_shape), mnist, batch, args.repeats, all_methods, device
    )
    if not args.quick:
        cifar = cifar_shaped(128)
        for name in ("vgg11", "resnet18"):
            net = model(name, (3, 32, 32), width=args.width)
            results[f"{name}_w{args.width}_cifar_shaped"] = measure(
                net, cifar, 64, args.repeats, no_linearize, device
            )
    emit({"benchmark": "hvp_cost", "device": str(device), "config": vars(args),
          "versions": versions(), "results": results}, args.out)  # fmt: skip


if __name__ == "__main__":
    main()
