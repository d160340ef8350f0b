"""Hessian-vector products each solver needs to reach a relative residual, on trained models.

    python benchmarks/solver_cost.py [--out FILE.json] [--quick] [--models mlp,cnn] [--epochs N]

Problem: GIF for removing one class (class 8) — min ‖H_R[:,J] x − g_U‖ with H_R the Hessian over
retained training examples, g_U the mean gradient of the removed ones, J a seeded random 5% of
the parameters, no damping, float64. Models: the tanh MLP on digits (H over 300 retained
examples) and the small CNN on the embedded MNIST sample (H over 200 retained examples), trained
with seeded Adam. Residual = ‖Aᵀ(b − A x)‖/‖Aᵀb‖ (the least-squares
residual). For every solver the products to first reach 1e-3 and 1e-6 are read off its
residual history (null = not reached within the cap).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from _common import emit, versions
from _outputs import claim

from geninf import ParameterSubset
from geninf.bench.datasets import load_dataset
from geninf.bench.models import build_model
from geninf.bench.training import evaluate, train_model
from geninf.linalg import ColumnSubsetOperator, HessianOperator
from geninf.solvers import get_solver


def first_reach(diag, level):
    for res, prods in zip(diag.residual_history, diag.products_history, strict=False):
        if res is not None and res <= level:
            return prods
    return None


def setting(name, spec, model_name, epochs, hess_examples, flatten, dtype):
    splits = load_dataset(spec, seed=0, flatten=flatten)
    model = build_model(
        model_name, input_shape=splits.input_shape, num_classes=splits.num_classes, seed=0
    )
    model = train_model(model, splits, epochs=epochs, seed=0, progress=False).model.eval()
    model = model.to(dtype)
    x, y = splits.train
    x = x.to(dtype)
    keep = y != 8
    retain = (x[keep][:hess_examples], y[keep][:hess_examples])
    forget = (x[~keep], y[~keep])
    tx, ty = splits.test
    return name, model, retain, forget, evaluate(model, tx.to(dtype), ty)["acc"]


def run(name, model, retain, forget, acc, caps):
    from geninf.functional import FunctionalModel

    g = FunctionalModel(model).gradient(forget)
    n = g.numel()
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: n // 20]
    subset = ParameterSubset.from_flat_indices(model, idx)
    H = HessianOperator(model, None, retain)
    A = ColumnSubsetOperator(H, subset)
    solvers = {
        "neumann_normal (paper: c=1, step 3, tol 1e-9)": get_solver(
            "neumann_normal", max_iter=caps["paper"]
        ),
        "neumann_normal (tuned: c² = λ_max, stop at 1e-6)": get_solver(
            "neumann_normal", scale_mode="auto", residual_tol=1e-6, max_iter=caps["neumann"]
        ),
        "lsmr": get_solver("lsmr", tol=1e-6, max_iter=caps["krylov"]),
        "cg (normal equations)": get_solver("cg", tol=1e-6, max_iter=caps["krylov"]),
    }
    out = {
        "params": n,
        "subset": len(subset),
        "hessian_examples": len(retain[0]),
        "test_acc": acc,
        "solvers": {},
    }
    for label, solver in solvers.items():
        t = time.perf_counter()
        d = solver.solve(A, g).diagnostics
        print(
            f"{name}: {label}: {d.products} products, residual {d.residual:.2e}, "
            f"{time.perf_counter() - t:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        out["solvers"][label] = {
            "products_to_1e-3": first_reach(d, 1e-3),
            "products_to_1e-6": first_reach(d, 1e-6),
            "products_total": d.products,
            "final_residual": d.residual,
            "converged": d.converged,
            "scale": d.scale,
            "restarts": d.restarts,
            "seconds": round(time.perf_counter() - t, 2),
        }
    s = out["solvers"]
    tuned, lsmr = s["neumann_normal (tuned: c² = λ_max, stop at 1e-6)"], s["lsmr"]
    if lsmr["products_to_1e-6"]:
        base = tuned["products_to_1e-6"] or tuned["products_total"]
        out["neumann_over_lsmr_at_1e-6"] = {
            "ratio": round(base / lsmr["products_to_1e-6"], 1),
            "lower_bound": tuned["products_to_1e-6"] is None,
        }
    return name, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true", help="small caps, for a smoke run")
    ap.add_argument("--models", default="mlp,cnn", help="comma list of: mlp, cnn")
    ap.add_argument(
        "--neumann-cap",
        type=int,
        default=None,
        help="iteration cap of the tuned series (default 4000 MLP, 2000 CNN)",
    )
    ap.add_argument("--paper-cap", type=int, default=None, help="iterations, paper settings")
    ap.add_argument("--krylov-cap", type=int, default=None, help="iterations of lsmr and cg")
    ap.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float64",
        help="float64 (default) so that 1e-6 is above the rounding floor",
    )
    ap.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default 30 MLP, 5 CNN)"
    )
    args = ap.parse_args()
    claim(args.out)
    dtype = getattr(torch, args.dtype)
    settings = {
        "mlp": (
            ("mlp_digits", "digits", "mlp", 30, 300, True),
            {"paper": 1000, "neumann": 4000, "krylov": 1000},
        ),
        "cnn": (
            ("small_cnn_mnist5k", "mnist5k", "small_cnn", 5, 200, False),
            {"paper": 1000, "neumann": 2000, "krylov": 1000},
        ),
    }
    quick = {"paper": 50, "neumann": 200, "krylov": 100}
    torch.manual_seed(0)
    results, caps = {}, {}
    for key in args.models.split(","):
        cfg, cap = settings[key]
        cap = dict(quick if args.quick else cap)
        for key_, value in (
            ("neumann", args.neumann_cap),
            ("paper", args.paper_cap),
            ("krylov", args.krylov_cap),
        ):
            if value:
                cap[key_] = value
        if args.epochs is not None:
            cfg = (*cfg[:3], args.epochs, *cfg[4:])
        name, *rest = setting(*cfg, dtype)
        caps[name] = cap
        results.update([run(name, *rest, cap)])
        if args.out:  # keep what is done so far, model by model
            emit(
                {
                    "benchmark": "solver_cost",
                    "dtype": args.dtype,
                    "caps_iterations": caps,
                    "versions": versions(),
                    "results": results,
                    "partial": True,
                },
                args.out,
            )
    emit(
        {
            "benchmark": "solver_cost",
            "dtype": args.dtype,
            "caps_iterations": caps,
            "versions": versions(),
            "results": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
