"""Float32 products with a float64 solver state (issue 13, item 3): does precision pay for GIF?

    python benchmarks/precision.py [--specs mnist5k,mnist-aug:20000] [--seeds 0,1,2]
        [--epochs 8] [--hessian-examples 1000] [--val-examples 2000] [--threads 1]
        [--variants default,f32,f64_state,f64] [--out FILE] [--partial FILE]

Per data set and seed the small CNN (width 0.5) is trained in float32 (Adam, batch 128, the
settings of ``scale_removal.py``), then class 8 is removed with GIF at the library defaults
(Hessian on a ``--hessian-examples`` stratified sample of the retained images, damping and step
chosen on a ``--val-examples`` validation subsample) in four variants:

- ``default``: everything float32, the solver by name (``"auto"``: warm starts across the damping
  path) — what a user gets;
- ``f32``: everything float32, the same solver as an instance (no warm starts, as below);
- ``f64_state``: float32 Hessian-vector products, the solver's vectors (x, residuals, Krylov
  basis) in float64 — a wrapper casts each product's input to float32 and its output back;
- ``f64``: the trained model and the data cast to float64 (products and solver in float64).

The instance is ``AutoSolver(tol, max_iter, max_dense)`` at the edit defaults, so the last three
differ in precision only. Per variant: test F1 (as ``scale_removal.py``), the solver's relative
residual and products for the chosen damping, the edit's curvature products and wall time, and
the relative distance of the parameter update from the float64 one (‖Δθ − Δθ_f64‖/‖Δθ_f64‖).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import emit, versions
from _outputs import claim, write_text
from scale_removal import FORGET, TRAIN, f1_of
from torch import Tensor

import geninf
from geninf import ClassRemovalValidation
from geninf.bench import build_model, load_dataset, train_model
from geninf.data import stratified_sample
from geninf.defaults import EDIT_DEFAULTS
from geninf.linalg.base import LinearOperator
from geninf.objective import SupervisedObjective
from geninf.params import ParameterLayout
from geninf.solvers import AutoSolver
from geninf.solvers.base import Solver, SolveResult

VARIANTS = ("default", "f32", "f64_state", "f64")


class CastOperator(LinearOperator):
    """``base`` seen in another dtype: inputs cast to ``base.dtype``, outputs to ``dtype``."""

    def __init__(self, base: LinearOperator, dtype: torch.dtype):
        self.base, self.shape, self.dtype = base, base.shape, dtype
        self.device, self.symmetric = base.device, base.symmetric

    def _matvec(self, v: Tensor) -> Tensor:
        return self.base.matvec(v.to(self.base.dtype)).to(self.dtype)

    def _rmatvec(self, v: Tensor) -> Tensor:
        return self.base.rmatvec(v.to(self.base.dtype)).to(self.dtype)

    @property
    def num_products(self) -> int:
        return self.base.num_products


class Float64State(Solver):
    """Run ``inner`` in float64 on a float32 operator (products stay float32)."""

    name = "float64_state"

    def __init__(self, inner: Solver):
        self.inner = inner

    def solve(self, A, b, *, x0=None, progress=False) -> SolveResult:
        wide = torch.float64
        x0 = None if x0 is None else x0.to(wide)
        res = self.inner.solve(CastOperator(A, wide), b.to(wide), x0=x0, progress=progress)
        return SolveResult(res.x.to(b.dtype), res.diagnostics)

    def _solve(self, A, b, x0, mon):  # pragma: no cover - solve is overridden
        raise NotImplementedError


def flat(model) -> Tensor:
    layout = ParameterLayout.from_model(model)
    return layout.flatten(dict(model.named_parameters())).detach().double()


def run_row(spec: str, seed: int, a) -> dict:
    splits = load_dataset(spec, seed=seed)
    x, y = splits.train
    keep = y != FORGET
    gen = torch.Generator().manual_seed(seed)
    vi = stratified_sample(splits.validation[1], min(a.val_examples, len(splits.validation[1])),
                           generator=gen)  # fmt: skip
    val = (splits.validation[0][vi], splits.validation[1][vi])
    net = build_model("small_cnn", input_shape=splits.input_shape, num_classes=10, width=0.5,
                      seed=seed)  # fmt: skip
    original = train_model(net, (x, y), epochs=a.epochs, seed=seed, progress=False,
                           **TRAIN).model.eval()  # fmt: skip
    obj = SupervisedObjective(weight_decay=TRAIN["weight_decay"])
    row = {"spec": spec, "train": int(len(y)), "seed": seed, "variants": {}}
    deltas = {}
    for variant in a.variants.split(","):
        wide = variant == "f64"
        cast = (lambda t: t.double()) if wide else (lambda t: t)  # noqa: E731
        model = copy.deepcopy(original).double() if wide else original
        inner = AutoSolver(tol=EDIT_DEFAULTS.solver_tol, max_iter=EDIT_DEFAULTS.solver_max_iter,
                           max_dense=EDIT_DEFAULTS.solver_max_dense)  # fmt: skip
        solver = {"default": "auto", "f64_state": Float64State(inner)}.get(variant, inner)
        validation = ClassRemovalValidation((cast(val[0]), val[1]), FORGET)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = geninf.remove(model, obj, (cast(x[keep]), y[keep]), (cast(x[~keep]), y[~keep]),
                                method="gif", solver=solver, validation=validation, seed=seed,
                                batch_size=500, hessian_examples=a.hessian_examples)  # fmt: skip
        elapsed = time.perf_counter() - t0
        f1, s, t = f1_of(res.model, (cast(x[~keep]), y[~keep]), (cast(splits.test[0]),
                                                                 splits.test[1]))  # fmt: skip
        deltas[variant] = flat(res.model) - flat(model)
        rec = res.record
        row["variants"][variant] = {
            "f1": f1, "self_acc": s, "test_acc": t, "time": elapsed,
            "residual": rec.solver.get("residual"), "solver_products": rec.solver.get("products"),
            "solver_iterations": rec.solver.get("iterations"), "hvps": rec.compute.hvps,
            "damping_relative": rec.damping.get("chosen_relative"),
            "step": rec.step_search.get("best") if rec.step_search else None,
            "update_norm": float(deltas[variant].norm()),
        }  # fmt: skip
    ref = deltas.get("f64")
    for variant in deltas if ref is not None else ():
        dist = float((deltas[variant] - ref).norm() / ref.norm())
        row["variants"][variant]["update_distance_to_f64"] = dist
    return row


def summarize(rows: list[dict]) -> str:
    cols = [("F1", "f1", ".4f"), ("solver residual", "residual", ".2e"), ("solver products",
            "solver_products", ".1f"), ("edit products", "hvps", ".1f"), ("time (s)", "time",
            ".1f"), ("‖Δθ − Δθ_f64‖/‖Δθ_f64‖", "update_distance_to_f64", ".1e")]  # fmt: skip
    head = "| data | n train | variant | " + " | ".join(c[0] for c in cols) + " |"
    lines = [head, "|" + "---|" * (3 + len(cols))]
    for spec in dict.fromkeys(r["spec"] for r in rows):
        g = [r for r in rows if r["spec"] == spec]
        for variant in [v for v in VARIANTS if v in g[0]["variants"]]:
            cells = []
            for _, key, nd in cols:
                v = [r["variants"][variant].get(key) for r in g]
                v = [x for x in v if x is not None]
                spread = f" ± {np.std(v):{nd}}" if len(v) > 1 else ""  # one seed: its value
                cells.append(f"{np.mean(v):{nd}}{spread}" if v else "—")
            lines.append(f"| {spec} | {g[0]['train']:,} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--specs", default="mnist5k,mnist-aug:20000")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--hessian-examples", type=int, default=1000)
    p.add_argument("--val-examples", type=int, default=2000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", default="benchmarks/results/precision.json")
    p.add_argument("--partial", help="append each finished row to this JSON-lines file")
    p.add_argument("--from-partial", help="summarize the rows of this JSON-lines file")
    a = p.parse_args(argv)
    claim(a.out, Path(a.out).with_suffix(".md"))
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.from_partial:
        rows = [json.loads(x) for x in Path(a.from_partial).read_text().splitlines() if x.strip()]
    else:
        rows = []
        for spec in a.specs.split(","):
            for seed in (int(v) for v in a.seeds.split(",")):
                rows.append(run_row(spec, seed, a))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                if a.partial:
                    with open(a.partial, "a") as f:
                        f.write(json.dumps(rows[-1]) + "\n")
    md = summarize(rows)
    print(md, file=sys.stderr)
    config = {k: v for k, v in vars(a).items() if k not in ("out", "partial", "from_partial")}
    command = "python benchmarks/precision.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    result = {"benchmark": "precision", "command": command, "config": config,
              "versions": versions(), "rows": rows, "table": md}  # fmt: skip
    emit(result, a.out)
    write_text(Path(a.out).with_suffix(".md"), md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
