"""Class removal and label correction at scale: GIF with a Hessian sample against retraining.

    python benchmarks/scale_removal.py [--task remove|relabel] [--sizes 5000,20000,60000]
        [--models small_cnn] [--width 0.5] [--seeds 0,1,2] [--epochs 8]
        [--hessian-examples 1000] [--val-examples 2000] [--flip-fraction 0.4]
        [--methods gif,projecting,finetune] [--device cpu|cuda] [--out FILE] [--partial FILE]

Data: ``mnist-aug:N`` (the 5,000 embedded MNIST images and seeded deformed copies, split by
source image, so no test image is a copy of a training image). Tasks:

- ``remove`` (default): remove class 8. Score F1 = 2(1 − s)t/((1 − s) + t), s = accuracy on the
  removed training examples, t = test accuracy on the other classes; validation:
  :class:`geninf.ClassRemovalValidation`.
- ``relabel``: a seeded ``--flip-fraction`` of the class-8 training images carry the label 3
  (a systematic labelling error) when the model is trained; the edit (``geninf.relabel``) gives
  them their true label back. Score = the harmonic mean of the accuracy on the flipped training
  images against their true labels ("restored") and the test accuracy on every class; validation:
  :class:`geninf.edit.LabelChangeValidation` (validation accuracy and accuracy on the changed
  examples with their new labels).

Per task, size, model and seed:

- train the model for ``--epochs`` epochs (Adam, batch 128) on the training set (with the
  flipped labels for ``relabel``); its score is ``unedited``;
- **retrain** from scratch on the edited training set (without class 8, or with the labels
  corrected) for the same epochs, recording after every epoch the test score and the training
  time so far (the evaluation time excluded): the full retraining's time and score, and the time
  at which retraining first reaches GIF's score ("retrain to GIF's F1");
- **gif** with the library defaults, ``hessian_examples`` examples for H and a validation
  subsample of ``--val-examples`` examples for the damping and step searches;
- **projecting** at the same settings, and **finetune** given GIF's example-gradient budget.

Times are measured in the same process, one after the other; the ratios are the numbers to
read. ``--partial`` appends every finished row as a JSON line (a run cut short keeps them);
``--from-partial`` summarizes such a file (or the rows of a result JSON). Below the table, for
two sizes or more: straight-line fits of retraining's and GIF's time against n and the sizes
where they cross at 1× and 10× (extrapolated).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import emit, versions
from _outputs import claim, write_text

import geninf
from geninf import ClassRemovalValidation
from geninf.bench import build_model, evaluate, load_dataset, train_model
from geninf.data import stratified_sample
from geninf.edit import LabelChangeValidation
from geninf.edit.validation import f1_score
from geninf.objective import SupervisedObjective

FORGET = 8
FLIP_TO = 3  # the wrong label the relabel task gives part of class FORGET
TRAIN = {"batch_size": 128, "lr": 1e-3, "weight_decay": 1e-4}
SCORE = {
    "remove": "F1 = harmonic mean of forgetting (1 − accuracy on the removed training images of "
    f"class {FORGET}) and test accuracy on the other classes",
    "relabel": "F1 = harmonic mean of the accuracy on the flipped training images against their "
    "true labels (restored) and the test accuracy on every class",
}


def accuracy(model, x, y) -> float:
    return evaluate(model, x, y, batch_size=2048)["acc"] / 100.0


def f1_of(model, forget, test) -> tuple[float, float, float]:
    other = test[1] != FORGET
    s = accuracy(model, *forget)
    t = accuracy(model, test[0][other], test[1][other])
    return f1_score(s, t), s, t


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to(data, device):
    return tuple(t.to(device) for t in data)


class Removal:
    """Remove class ``FORGET``: train on everything, retrain on the rest."""

    def __init__(self, splits, seed: int, val, device):
        x, y = splits.train
        keep = y != FORGET
        self.train_set, self.edited_set = (x, y), (x[keep], y[keep])
        self.forget, self.test = (x[~keep], y[~keep]), splits.test
        self.retain_dev, self.forget_dev = _to(self.edited_set, device), _to(self.forget, device)
        self.validation = ClassRemovalValidation(val, FORGET)
        self.hessian_pool = int(keep.sum())

    def score(self, model) -> tuple[float, dict]:
        f1, s, t = f1_of(model, self.forget, self.test)
        return f1, {"self_acc": s, "test_acc": t}

    def edit(self, model, obj, method: str, **kw):
        return geninf.remove(model, obj, self.retain_dev, self.forget_dev, method=method, **kw)


class Relabel:
    """Correct labels: a seeded share of class ``FORGET`` trained as ``FLIP_TO``, put back."""

    def __init__(self, splits, seed: int, val, device, fraction: float):
        x, y = splits.train
        members = torch.nonzero(y == FORGET).flatten()
        g = torch.Generator().manual_seed(20_000 + seed)
        pick = torch.randperm(members.numel(), generator=g)[: round(fraction * members.numel())]
        self.idx = members[pick].sort().values
        noisy = y.clone()
        noisy[self.idx] = FLIP_TO
        self.train_set, self.edited_set = (x, noisy), (x, y)
        self.flipped, self.test = (x[self.idx], y[self.idx]), splits.test
        self.data_dev = _to(self.train_set, device)
        self.changes_dev = (self.idx.to(device), y[self.idx].to(device))
        self.validation = LabelChangeValidation(val, self.flipped)
        self.hessian_pool = int(y.numel())

    def score(self, model) -> tuple[float, dict]:
        restored, t = accuracy(model, *self.flipped), accuracy(model, *self.test)
        return f1_score(1.0 - restored, t), {"restored": restored, "test_acc": t}

    def edit(self, model, obj, method: str, **kw):
        return geninf.relabel(model, obj, self.data_dev, self.changes_dev, method=method, **kw)


def make_task(name: str, splits, seed: int, a, device):
    gen = torch.Generator().manual_seed(seed)
    vi = stratified_sample(splits.validation[1], min(a.val_examples, len(splits.validation[1])),
                           generator=gen)  # fmt: skip
    val = (splits.validation[0][vi], splits.validation[1][vi])
    if name == "remove":
        return Removal(splits, seed, val, device)
    return Relabel(splits, seed, val, device, a.flip_fraction)


def run_row(size: int, model_name: str, seed: int, a, device) -> dict:
    splits = load_dataset(f"mnist-aug:{size}", seed=seed)
    task = make_task(a.task, splits, seed, a, device)

    def build():
        return build_model(model_name, input_shape=splits.input_shape, num_classes=10,
                           width=a.width, seed=seed)  # fmt: skip

    original = train_model(build(), task.train_set, epochs=a.epochs, seed=seed, progress=False,
                           device=device, **TRAIN).model  # fmt: skip

    def track(epoch, model):
        return {"test_f1": task.score(model)[0]}

    sync(device)
    re = train_model(build(), task.edited_set, epochs=a.epochs, seed=seed, progress=False,
                     device=device, on_epoch=track, **TRAIN)  # fmt: skip
    curve = [(h["seconds"], h["test_f1"]) for h in re.history]
    f1, parts = task.score(original)
    row = {"task": a.task, "size": size, "train": int(len(splits.train[1])), "model": model_name,
           "seed": seed, "edited": int(len(splits.train[1]) - len(task.edited_set[1]))
           if a.task == "remove" else int(task.idx.numel()),
           "unedited": {"f1": f1, **parts},
           "retrain": {"time": re.wall_time, "f1": curve[-1][1], "curve": curve}}  # fmt: skip
    obj = SupervisedObjective(weight_decay=TRAIN["weight_decay"])
    gif_cost = None
    for method in a.methods.split(","):
        kw = {"validation": task.validation, "seed": seed, "batch_size": 500}
        if method == "finetune":
            kw["budget"] = gif_cost
            kw["train_batch_size"] = TRAIN["batch_size"]
        else:
            kw["hessian_examples"] = min(a.hessian_examples, task.hessian_pool)
        sync(device)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = task.edit(original, obj, method, **kw)
        sync(device)
        elapsed = time.perf_counter() - t0
        f1, parts = task.score(res.model)
        rec = res.record
        if method == "gif":
            gif_cost = rec.compute.example_gradients
        row[method] = {"time": elapsed, "f1": f1, **parts,
                       "example_gradients": rec.compute.example_gradients,
                       "hvps": rec.compute.hvps, "hessian_examples": kw.get("hessian_examples"),
                       "validation_evaluations": rec.compute.validation_evaluations}  # fmt: skip
    if "gif" in row:
        reached = [sec for sec, f in curve if f >= row["gif"]["f1"]]
        row["retrain_to_gif_f1"] = reached[0] if reached else None
        row["speedup_full"] = row["retrain"]["time"] / row["gif"]["time"]
        row["speedup_to_gif_f1"] = (reached[0] / row["gif"]["time"]) if reached else None
    return row


def summarize(rows: list[dict], methods: list[str]) -> str:
    others = [m for m in methods if m != "gif"]
    head = ("| task | model | n train | unedited F1 | retrain time (s) | retrain F1 | "
            "retrain to GIF's F1 (s) | GIF time (s) | GIF F1 | GIF products | "
            "full retrain ÷ GIF | retrain to GIF's F1 ÷ GIF |"
            + "".join(f" {m} F1 | {m} time ÷ GIF |" for m in others))  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    keys = dict.fromkeys((r.get("task", "remove"), r["model"], r["size"]) for r in rows)
    for key in keys:
        g = [r for r in rows if (r.get("task", "remove"), r["model"], r["size"]) == key]

        def ms(get, g=g):
            v = [get(r) for r in g if get(r) is not None]
            return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "—"

        cells = [
            ms(lambda r: r.get("unedited", {}).get("f1")),
            ms(lambda r: r["retrain"]["time"]), ms(lambda r: r["retrain"]["f1"]),
            ms(lambda r: r.get("retrain_to_gif_f1")), ms(lambda r: r.get("gif", {}).get("time")),
            ms(lambda r: r.get("gif", {}).get("f1")), ms(lambda r: r.get("gif", {}).get("hvps")),
            ms(lambda r: r.get("speedup_full")), ms(lambda r: r.get("speedup_to_gif_f1")),
        ]  # fmt: skip
        for m in others:
            cells += [ms(lambda r, m=m: r.get(m, {}).get("f1")),
                      ms(lambda r, m=m: r[m]["time"] / r["gif"]["time"]
                         if m in r and "gif" in r else None)]  # fmt: skip
        lines.append(f"| {key[0]} | {key[1]} | {g[0]['train']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines + crossover_lines(rows))


def crossover_lines(rows: list[dict]) -> list[str]:
    """Per task and model with GIF at two sizes or more: straight lines (least squares over the
    per-size mean times) for retraining's and GIF's time against the training-set size, and the
    sizes where the lines put full retraining ÷ GIF at 1 and at 10 — an extrapolation."""
    out = []
    for task, model in dict.fromkeys((r.get("task", "remove"), r["model"]) for r in rows):
        g = [r for r in rows if (r.get("task", "remove"), r["model"]) == (task, model)
             and "gif" in r]  # fmt: skip
        sizes = sorted({r["train"] for r in g})
        if len(sizes) < 2:
            continue
        n = np.array(sizes, dtype=float)
        fit = {k: np.polyfit(n, [np.mean([r[k]["time"] for r in g if r["train"] == v])
                                 for v in sizes], 1) for k in ("retrain", "gif")}  # fmt: skip
        retrain, gif = fit["retrain"], fit["gif"]
        at1, at10 = (_where_ratio(retrain, gif, k) for k in (1, 10))
        out.append(f"\n{task} · {model}: retraining {1e3 * retrain[0]:.2f} ms per training "
                   f"image, GIF {1e3 * gif[0]:.3f} ms (lines through the mean times at "
                   f"{len(sizes)} sizes); full retrain ÷ GIF = 1 at n train ≈ {at1}, = 10 at ≈ "
                   f"{at10} (extrapolated beyond the sizes measured).")  # fmt: skip
    return out


def _where_ratio(retrain: np.ndarray, gif: np.ndarray, ratio: float) -> str:
    """The n where the line ``retrain`` (slope, intercept) is ``ratio`` times the line ``gif``."""
    (a, b), (c, d) = retrain, gif
    x = (ratio * d - b) / (a - ratio * c) if a != ratio * c else float("nan")
    return f"{x:,.0f}" if x > 0 else "never on these lines"


def read_rows(path: Path) -> tuple[list[dict], dict | None]:
    """The rows of a ``--partial`` JSON-lines file, or of a result JSON this script wrote with
    the command, configuration and versions of the run that measured them (None for a
    JSON-lines file)."""
    text = path.read_text()
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("rows"), list):
        source = whole.get("measured_by") or {
            k: whole.get(k) for k in ("command", "config", "versions")
        }
        return whole["rows"], source
    return [json.loads(x) for x in text.splitlines() if x.strip()], None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=sorted(SCORE), default="remove")
    p.add_argument("--sizes", default="5000,20000,60000")
    p.add_argument("--models", default="small_cnn")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--hessian-examples", type=int, default=1000)
    p.add_argument("--val-examples", type=int, default=2000)
    p.add_argument(
        "--flip-fraction",
        type=float,
        default=0.4,
        help="relabel: share of the class-8 training images labelled 3",
    )
    p.add_argument("--methods", default="gif,projecting,finetune")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--out",
        help="default benchmarks/results/scale_removal.json (remove) or "
        "scale_relabel.json (relabel)",
    )
    p.add_argument("--partial", help="append each finished row to this JSON-lines file")
    p.add_argument(
        "--from-partial", help="summarize the rows of this JSON-lines file or result JSON"
    )
    a = p.parse_args(argv)
    name = "scale_removal" if a.task == "remove" else "scale_relabel"
    a.out = a.out or f"benchmarks/results/{name}.json"
    claim(a.out, Path(a.out).with_suffix(".md"))
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    methods = a.methods.split(",")
    if a.from_partial:
        rows, measured_by = read_rows(Path(a.from_partial))
    else:
        rows, measured_by = [], None
        for model_name in a.models.split(","):
            for size in (int(v) for v in a.sizes.split(",")):
                for seed in (int(v) for v in a.seeds.split(",")):
                    rows.append(run_row(size, model_name, seed, a, device))
                    print(json.dumps({k: rows[-1].get(k) for k in ("model", "size", "seed",
                          "speedup_full")}), file=sys.stderr, flush=True)  # fmt: skip
                    if a.partial:
                        with open(a.partial, "a") as f:
                            f.write(json.dumps(rows[-1]) + "\n")
    md = f"Score ({a.task}): {SCORE[a.task]}.\n\n" + summarize(rows, methods)
    print(md, file=sys.stderr)
    config = {k: v for k, v in vars(a).items() if k not in ("out", "partial", "from_partial")}
    command = "python benchmarks/scale_removal.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    result = {"benchmark": "scale_removal", "command": command, "config": config,
              "versions": versions(), "device": str(device), "rows": rows, "table": md}  # fmt: skip
    if measured_by:
        result["measured_by"] = measured_by
    emit(result, a.out)
    write_text(Path(a.out).with_suffix(".md"), md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
