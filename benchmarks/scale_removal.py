"""Class removal at scale: GIF with a Hessian sample against retraining, by training-set size.

    python benchmarks/scale_removal.py [--sizes 5000,20000,60000] [--models small_cnn]
        [--seeds 0,1,2] [--epochs 8] [--hessian-examples 1000] [--val-examples 2000]
        [--methods gif,projecting,finetune] [--device cpu|cuda] [--out FILE] [--partial FILE]

Data: ``mnist-aug:N`` (the 5,000 embedded MNIST images and seeded deformed copies, split by
source image, so no test image is a copy of a training image). Per size, model and seed:

- train the model for ``--epochs`` epochs (Adam, batch 128);
- **retrain** from scratch without class 8 for the same epochs, recording after every epoch the
  test F1 and the training time so far (the evaluation time excluded): the full retraining's
  time and F1, and the time at which retraining first reaches GIF's F1 ("retrain to GIF's F1");
- **gif** with the library defaults, ``hessian_examples`` retained examples for H and a
  validation subsample of ``--val-examples`` examples for the damping and step searches;
- **projecting** at the same settings, and **finetune** given GIF's example-gradient budget.

F1 = 2(1 − s)t/((1 − s) + t), s = accuracy on the removed training examples, t = test accuracy
on the other classes. Times are measured in the same process, one after the other; the ratios
are the numbers to read. ``--partial`` appends every finished row as a JSON line (a run cut
short keeps them); ``--from-partial`` summarizes such a file.
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
from geninf.edit.validation import f1_score
from geninf.objective import SupervisedObjective

FORGET = 8
TRAIN = {"batch_size": 128, "lr": 1e-3, "weight_decay": 1e-4}


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


def run_row(size: int, model_name: str, seed: int, a, device) -> dict:
    splits = load_dataset(f"mnist-aug:{size}", seed=seed)
    x, y = splits.train
    keep = y != FORGET
    retain, forget = (x[keep].to(device), y[keep].to(device)), (x[~keep], y[~keep])
    test = splits.test
    gen = torch.Generator().manual_seed(seed)
    vi = stratified_sample(splits.validation[1], min(a.val_examples, len(splits.validation[1])),
                           generator=gen)  # fmt: skip
    validation = ClassRemovalValidation((splits.validation[0][vi], splits.validation[1][vi]),
                                        FORGET)  # fmt: skip

    def build():
        return build_model(model_name, input_shape=splits.input_shape, num_classes=10,
                           width=a.width, seed=seed)  # fmt: skip

    original = train_model(build(), (x, y), epochs=a.epochs, seed=seed, progress=False,
                           device=device, **TRAIN).model  # fmt: skip

    def track(epoch, model):
        return {"test_f1": f1_of(model, forget, test)[0]}

    sync(device)
    re = train_model(build(), (retain[0].cpu(), retain[1].cpu()), epochs=a.epochs, seed=seed,
                     progress=False, device=device, on_epoch=track, **TRAIN)  # fmt: skip
    curve = [(h["seconds"], h["test_f1"]) for h in re.history]
    row = {"size": size, "train": int(len(y)), "model": model_name, "seed": seed,
           "retrain": {"time": re.wall_time, "f1": curve[-1][1], "curve": curve}}  # fmt: skip
    obj = SupervisedObjective(weight_decay=TRAIN["weight_decay"])
    forget_dev = (forget[0].to(device), forget[1].to(device))
    gif_cost = None
    for method in a.methods.split(","):
        kw = {"validation": validation, "seed": seed, "batch_size": 500}
        if method == "finetune":
            kw["budget"] = gif_cost
            kw["train_batch_size"] = TRAIN["batch_size"]
        else:
            kw["hessian_examples"] = min(a.hessian_examples, len(retain[1]))
        sync(device)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = geninf.remove(original, obj, retain, forget_dev, method=method, **kw)
        sync(device)
        elapsed = time.perf_counter() - t0
        f1, s, t = f1_of(res.model, forget, test)
        rec = res.record
        if method == "gif":
            gif_cost = rec.compute.example_gradients
        row[method] = {"time": elapsed, "f1": f1, "self_acc": s, "test_acc": t,
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
    head = ("| model | n train | retrain time (s) | retrain F1 | retrain to GIF's F1 (s) | "
            "GIF time (s) | GIF F1 | GIF products | full retrain ÷ GIF | "
            "retrain to GIF's F1 ÷ GIF | "
            + " | ".join(f"{m} F1" for m in methods if m != "gif") + " |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    keys = dict.fromkeys((r["model"], r["size"]) for r in rows)
    for model, size in keys:
        g = [r for r in rows if (r["model"], r["size"]) == (model, size)]

        def ms(get, g=g):
            v = [get(r) for r in g if get(r) is not None]
            return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "—"

        cells = [
            ms(lambda r: r["retrain"]["time"]), ms(lambda r: r["retrain"]["f1"]),
            ms(lambda r: r.get("retrain_to_gif_f1")), ms(lambda r: r.get("gif", {}).get("time")),
            ms(lambda r: r.get("gif", {}).get("f1")), ms(lambda r: r.get("gif", {}).get("hvps")),
            ms(lambda r: r.get("speedup_full")), ms(lambda r: r.get("speedup_to_gif_f1")),
        ] + [ms(lambda r, m=m: r.get(m, {}).get("f1")) for m in methods if m != "gif"]  # fmt: skip
        lines.append(f"| {model} | {g[0]['train']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="5000,20000,60000")
    p.add_argument("--models", default="small_cnn")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--hessian-examples", type=int, default=1000)
    p.add_argument("--val-examples", type=int, default=2000)
    p.add_argument("--methods", default="gif,projecting,finetune")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="benchmarks/results/scale_removal.json")
    p.add_argument("--partial", help="append each finished row to this JSON-lines file")
    p.add_argument("--from-partial", help="summarize the rows of this JSON-lines file")
    a = p.parse_args(argv)
    claim(a.out, Path(a.out).with_suffix(".md"))
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    methods = a.methods.split(",")
    if a.from_partial:
        rows = [json.loads(x) for x in Path(a.from_partial).read_text().splitlines() if x.strip()]
    else:
        rows = []
        for model_name in a.models.split(","):
            for size in (int(v) for v in a.sizes.split(",")):
                for seed in (int(v) for v in a.seeds.split(",")):
                    rows.append(run_row(size, model_name, seed, a, device))
                    print(json.dumps({k: rows[-1].get(k) for k in ("model", "size", "seed",
                          "speedup_full")}), file=sys.stderr, flush=True)  # fmt: skip
                    if a.partial:
                        with open(a.partial, "a") as f:
                            f.write(json.dumps(rows[-1]) + "\n")
    md = summarize(rows, methods)
    print(md, file=sys.stderr)
    config = {k: v for k, v in vars(a).items() if k not in ("out", "partial", "from_partial")}
    command = "python benchmarks/scale_removal.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    result = {"benchmark": "scale_removal", "command": command, "config": config,
              "versions": versions(), "device": str(device), "rows": rows, "table": md}  # fmt: skip
    emit(result, a.out)
    write_text(Path(a.out).with_suffix(".md"), md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
