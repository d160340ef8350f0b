"""Does iterated GIF pay? GIF with 1, 3 and 6 Newton steps on robustness problems.

    python benchmarks/iterated_gif.py [--out benchmarks/results/iterated_gif.json]

For five problem × seed pairs of ``robust_problems.PROBLEMS`` (the two label-correction
problems on which one step falls short, a backdoor and a class removal), the model is trained
once and edited by ``geninf.remove``/``geninf.relabel`` at the library defaults with the option
``iterations`` = 1, 3 and 6 (:mod:`geninf.edit.iterate`: re-linearize at the edited point, the
same H, stop when the validation score stops improving). Reports the test-side score of
``robustness.py`` (F1 or restored accuracy), the validation score, the steps kept and the
compute in example-gradient evaluations. Writes JSON and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from _common import emit, versions
from _outputs import claim, write_text
from robust_problems import PROBLEMS
from robustness import make_task, train

from geninf.objective import SupervisedObjective

CASES = [(2, 0), (2, 2), (8, 0), (1, 0), (10, 0)]  # (problem index, seed)
ITERATIONS = (1, 3, 6)


def run_case(index: int, seed: int) -> list[dict]:
    problem = PROBLEMS[index]
    torch.manual_seed(seed)
    data = problem.data(seed)
    task = make_task(problem, data, seed)
    model, _ = train(problem, data, task.train_set, seed)
    obj = SupervisedObjective(weight_decay=problem.weight_decay)
    rows = [{"problem": problem.name, "seed": seed, "iterations": 0,
             "score": task.metrics(model)["score"]}]  # fmt: skip
    for it in ITERATIONS:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = task.edit(model, obj, "gif", validation=task.validation, seed=seed, iterations=it)
        steps = res.record.extra.get("iterations", [])
        rows.append({
            "problem": problem.name,
            "seed": seed,
            "iterations": it,
            "score": task.metrics(res.model)["score"],
            "validation_score": res.record.validation_score,
            "steps_kept": 1 + sum(s["kept"] for s in steps),
            "example_gradients": res.record.compute.example_gradients,
            "time": time.perf_counter() - t0,
        })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| problem | seed | unedited | 1 step | 3 steps (kept) | 6 steps (kept) | "
             "cost 1 → 6 steps (ex. grads) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, seed in dict.fromkeys((r["problem"], r["seed"]) for r in rows):
        group = {r["iterations"]: r for r in rows if (r["problem"], r["seed"]) == (name, seed)}
        cells = [f"{group[0]['score']:.3f}", f"{group[1]['score']:.3f}"]
        cells += [f"{group[i]['score']:.3f} ({group[i]['steps_kept']})" for i in (3, 6)]
        cost = f"{group[1]['example_gradients']:,} → {group[6]['example_gradients']:,}"
        lines.append(f"| {name} | {seed} | " + " | ".join(cells) + f" | {cost} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results/iterated_gif.json")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    claim(a.out, Path(a.out).with_suffix(".md"))
    torch.set_num_threads(a.threads)
    rows = [row for index, seed in CASES for row in run_case(index, seed)]
    md = table(rows)
    print(md, file=sys.stderr)
    emit({"benchmark": "iterated_gif", "command": "python benchmarks/iterated_gif.py",
          "iterations": list(ITERATIONS), "versions": versions(), "rows": rows, "table": md},
         a.out)  # fmt: skip
    write_text(Path(a.out).with_suffix(".md"), md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
