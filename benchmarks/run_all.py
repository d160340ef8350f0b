"""Run the benchmark suite, one subprocess per benchmark, and collect the headlines in summary.json.

    python benchmarks/run_all.py [--out benchmarks/results] [--quick] [--only NAME,...]
        [--dry-run] [--list] [--timeout SECONDS] [--summary-only]

Every benchmark writes its JSON into ``--out`` (default ``benchmarks/results``) and its console
output into ``OUT/logs/NAME.log``; at the end ``OUT/summary.json`` collects the headline numbers
of each with the command that produced it. A benchmark not run this time keeps the entry of an
earlier ``summary.json`` in ``OUT`` (or, without one, is read from its JSON file if present and
marked as such). ``--quick`` passes small sizes to every script (a smoke run of a few minutes;
send it to another folder, e.g. ``--out /tmp/bench-quick``). The full suite takes hours on
2 CPU cores (solver_cost alone about an hour). No script writes over a file the suite did not
write (see ``_outputs.py``); a refusal is found before anything runs.

Default suite (``--only`` takes these names; ``solver_cost`` means both of its runs):
hvp_cost, solver_cost_mlp, solver_cost_cnn, memory, ranks, selection_timing,
class_removal_cost, profile_hvp, forget_examples, forget_examples_mnist_cnn,
forget_examples_mnist_aug. Also available by name, not in the default
suite (they are experiments with their own folders and tables): mislabel, lds, experiments;
precision (float32 products with a float64 solver state, about 15 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _outputs import check_folder, claim, open_log, write_text

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

Headline = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Bench:
    """One benchmark run: a script, its flags (full and quick), its JSON output and headlines.

    Attributes:
        name: the name ``--only`` takes.
        script: the script in ``benchmarks/``.
        output: the JSON file (or folder, for the experiments) relative to ``--out``.
        full: flags of the real run (``{out}`` is replaced by the output path).
        quick: flags of the smoke run.
        headline: turns the JSON into the summary's headline numbers (None: no summary).
        threads: OMP_NUM_THREADS for the subprocess (None: inherit).
        default: part of the default suite.
    """

    name: str
    script: str
    output: str
    full: list[str]
    quick: list[str]
    headline: Headline | None = None
    threads: int | None = None
    default: bool = True
    groups: tuple[str, ...] = field(default_factory=tuple)

    def command(self, out_dir: Path, quick: bool) -> list[str]:
        """The argv of the run (relative paths when ``out_dir`` is inside the repository)."""
        out = _rel(out_dir / self.output)
        flags = [a.replace("{out}", out) for a in (self.quick if quick else self.full)]
        return ["python", f"benchmarks/{self.script}", *flags]


def _rel(path: Path) -> str:
    """``path`` relative to the repository root when inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path.resolve())


def _r(x: Any, digits: int = 3) -> Any:
    """``x`` rounded when it is a float."""
    return round(x, digits) if isinstance(x, float) else x


# ------------------------------------------------------------------------------ headlines
def hvp_headline(d: dict[str, Any]) -> dict[str, Any]:
    """HVP ÷ gradient and normal product ÷ gradient per model and HVP method."""
    return {
        model: {
            "params": row.get("params"),
            "examples": row.get("examples"),
            "hvp_over_grad": {m: v["hvp_over_grad"] for m, v in row["methods"].items()},
            "normal_product_over_grad": {
                m: v["normal_product_over_grad"] for m, v in row["methods"].items()
            },
        }
        for model, row in d["results"].items()
    }


def solver_headline(d: dict[str, Any]) -> dict[str, Any]:
    """Products to relative residual 1e-3 and 1e-6 per model and solver (None: not reached)."""
    return {
        model: {
            "caps_iterations": d.get("caps_iterations", {}).get(model),
            "hessian_examples": row.get("hessian_examples"),
            "solvers": {
                s: {
                    "products_to_1e-3": v["products_to_1e-3"],
                    "products_to_1e-6": v["products_to_1e-6"],
                    "products_total": v["products_total"],
                    "final_residual": v["final_residual"],
                }
                for s, v in row["solvers"].items()
            },
        }
        for model, row in d["results"].items()
    }


def memory_headline(d: dict[str, Any]) -> dict[str, Any]:
    """Peak extra memory (MiB) and ÷ gradient per pass."""
    return {
        "model": d.get("model"),
        "batch": d.get("batch"),
        "peak_extra_mib": {k: _r(v["peak_extra_mib"], 1) for k, v in d["results"].items()},
        "peak_over_gradient": {k: v["peak_over_gradient"] for k, v in d["results"].items()},
    }


def ranks_headline(d: dict[str, Any]) -> dict[str, Any]:
    """One process vs two ranks per task: seconds, speed-up, float64 difference."""
    r = d["results"]
    if "speedup" in r:  # an older file: Hessian-vector products only
        r = {"hvp": r}
    return {"examples": d.get("examples"), **r}


def selection_headline(d: dict[str, Any]) -> dict[str, Any]:
    """Median seconds of one selection per criterion."""
    return {
        "parameters": d["setup"]["parameters"],
        "seconds_median": {c: v["seconds_median"] for c, v in d["criteria"].items()},
    }


def class_removal_headline(d: dict[str, Any]) -> dict[str, Any]:
    """Per training-set size: F1s, seconds and speed-ups (mean over seeds), and the crossovers."""

    def mean(ms: dict[str, Any]) -> Any:
        """The rounded mean of a mean ± std summary."""
        return _r(ms["mean"], 4) if ms and ms.get("mean") is not None else None

    per_n = {}
    for n, s in d["summary"].items():
        per_n[n] = {
            "retrain_f1": mean(s["retrain_f1"]),
            "retrain_seconds": mean(s["retrain_seconds"]),
            **{
                mode: {
                    "gif_f1": mean(s[mode]["gif_f1"]),
                    "gif_seconds": mean(s[mode]["gif_seconds"]),
                    "retrain_to_gif_f1_seconds": mean(s[mode]["retrain_to_match_seconds"]),
                    "speedup_at_gif_f1": mean(s[mode]["speedup_at_gif_f1"]),
                    "speedup_at_retrain_f1": mean(s[mode]["speedup_at_retrain_f1"]),
                    "speedup_vs_full_retrain": mean(s[mode]["speedup_vs_full_retrain"]),
                    "gif_max_iter_within_0.01": s[mode]["gif_max_iter_within_0.01_of_retrain"],
                    "stages_seconds": {k: mean(v) for k, v in s[mode]["stages"].items()},
                }
                for mode in ("sample", "full")
            },
        }
    return {
        "seeds": d["config"]["seeds"],
        "target_speedup": d["config"]["target_speedup"],
        "per_n": per_n,
        "predicted_n_for_10x": {k: _r(v["n"], 0) for k, v in d["crossovers"].items()},
    }


def profile_headline(d: dict[str, Any]) -> dict[str, Any]:
    """Wall ratios to a gradient and the largest parts of the HVP's extra time."""
    rows = d["breakdown_hvp_vs_gradient"]["by_category"]
    return {
        "setting": d["setting"],
        "over_gradient": d["ratios"],
        "extra_ms_by_category": {c: _r(r["extra_ms"], 1) for c, r in list(rows.items())[:4]},
        "findings": d.get("findings", []),
    }


def forget_examples_headline(d: dict[str, Any]) -> dict[str, Any]:
    """Per forget fraction: each method's average gap to retraining (mean over seeds)."""
    return {
        frac: {label: _r(row["gap"]["mean"], 2) for label, row in summary.items()}
        for frac, summary in d["summary"].items()
    }


def robustness_headline(d: dict[str, Any]) -> dict[str, Any]:
    """Per problem: GIF and retraining scores (mean over seeds) and the verdict."""
    return {
        row["problem"]: {
            "gif": _r(row.get("gif.score")),
            "retrain": _r(row.get("retrain.score")),
            "verdict": row["verdict"],
        }
        for row in d["summary"]
    }


# ------------------------------------------------------------------------------ the suite
SUITE: list[Bench] = [
    Bench("hvp_cost", "hvp_cost.py", "hvp_cost.json", ["--out", "{out}"],
          ["--quick", "--repeats", "1", "--out", "{out}"], hvp_headline, threads=2),
    Bench("solver_cost_mlp", "solver_cost.py", "solver_cost_mlp.json",
          ["--models", "mlp", "--out", "{out}"],
          ["--models", "mlp", "--quick", "--epochs", "5", "--dtype", "float32", "--paper-cap",
           "20", "--neumann-cap", "40", "--krylov-cap", "40", "--out", "{out}"],
          solver_headline, threads=2, groups=("solver_cost",)),
    Bench("solver_cost_cnn", "solver_cost.py", "solver_cost_cnn.json",
          ["--models", "cnn", "--paper-cap", "500", "--neumann-cap", "1500", "--krylov-cap",
           "800", "--out", "{out}"],
          ["--models", "cnn", "--quick", "--epochs", "1", "--dtype", "float32", "--paper-cap",
           "5", "--neumann-cap", "10", "--krylov-cap", "10", "--out", "{out}"],
          solver_headline, threads=2, groups=("solver_cost",)),
    Bench("memory", "memory.py", "memory.json", ["--out", "{out}"],
          ["--batch", "4", "--width", "0.25", "--out", "{out}"], memory_headline),
    Bench("ranks", "ranks.py", "ranks.json", ["--out", "{out}"],
          ["--examples", "250", "--repeats", "1", "--out", "{out}"], ranks_headline),
    Bench("selection_timing", "selection_timing.py", "selection_timing.json",
          ["--out", "{out}"], ["--repeats", "1", "--out", "{out}"], selection_headline),
    Bench("class_removal_cost", "class_removal_cost.py", "class_removal_cost.json",
          ["--quiet", "--out", "{out}"], ["--quick", "--quiet", "--out", "{out}"],
          class_removal_headline, threads=1),
    Bench("profile_hvp", "profile_hvp.py", "profile_hvp.json", ["--out", "{out}"],
          ["--quick", "--out", "{out}"], profile_headline, threads=1),
    Bench("forget_examples", "forget_examples.py", "forget_examples.json",
          ["--threads", "1", "--out", "{out}"],
          ["--quick", "--fractions", "0.1", "--threads", "1", "--out", "{out}"],
          forget_examples_headline, threads=1),
    Bench("forget_examples_mnist_cnn", "forget_examples.py", "forget_examples_mnist_cnn.json",
          ["--setting", "mnist-cnn", "--threads", "1", "--out", "{out}"],
          ["--setting", "mnist-cnn", "--quick", "--seeds", "0", "--fractions", "0.1",
           "--threads", "1", "--out", "{out}"],
          forget_examples_headline, threads=1),
    Bench("forget_examples_mnist_aug", "forget_examples.py", "forget_examples_mnist_aug.json",
          ["--setting", "mnist-aug-sources", "--threads", "1", "--out", "{out}"],
          ["--setting", "mnist-aug-sources", "--quick", "--seeds", "0", "--size", "5000",
           "--sources", "20", "--threads", "1", "--out", "{out}"],
          forget_examples_headline, threads=1),
    Bench("robustness", "robustness.py", "robustness.json", ["--jobs", "2", "--out", "{out}"],
          ["--quick", "--methods", "gif,finetune", "--threads", "1", "--out", "{out}"],
          robustness_headline, threads=1),
    Bench("iterated_gif", "iterated_gif.py", "iterated_gif.json", ["--out", "{out}"],
          ["--out", "{out}"], threads=1, default=False),
    Bench("precision", "precision.py", "precision.json",
          ["--seeds", "0", "--variants", "f32,f64_state,f64", "--threads", "1", "--out", "{out}"],
          ["--specs", "mnist5k", "--seeds", "0", "--epochs", "1", "--hessian-examples", "100",
           "--val-examples", "300", "--variants", "f32,f64_state,f64", "--threads", "1",
           "--out", "{out}"], threads=1, default=False),
    Bench("mislabel", "mislabel.py", "mislabel", ["--threads", "1", "--out", "{out}"],
          ["--quick", "--threads", "1", "--out", "{out}"], threads=1, default=False),
    Bench("lds", "lds.py", "lds", ["--threads", "1", "--out", "{out}"],
          ["--quick", "--threads", "1", "--out", "{out}"], threads=1, default=False),
    Bench("experiments", "run_experiments.py", "experiments", ["all", "--out", "{out}"],
          ["all", "--quick", "--out", "{out}"], threads=1, default=False),
]  # fmt: skip


def select(only: str | None) -> list[Bench]:
    """The benchmarks named by ``--only`` (names or groups), in suite order; default suite if
    None."""
    if not only:
        return [b for b in SUITE if b.default]
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    known = {b.name for b in SUITE} | {g for b in SUITE for g in b.groups}
    unknown = sorted(wanted - known)
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {sorted(known)}")
    return [b for b in SUITE if b.name in wanted or wanted & set(b.groups)]


def run_one(bench: Bench, out_dir: Path, quick: bool, timeout: float | None) -> dict[str, Any]:
    """Run one benchmark as a subprocess; its output goes to ``OUT/logs/NAME.log``."""
    argv = bench.command(out_dir, quick)
    log = out_dir / "logs" / f"{bench.name}.log"
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if bench.threads is not None:
        env["OMP_NUM_THREADS"] = str(bench.threads)
    shown = (f"OMP_NUM_THREADS={bench.threads} " if bench.threads else "") + shlex.join(argv)
    print(f"== {bench.name}: {shown}", flush=True)
    start = time.perf_counter()
    with open_log(log) as fh:
        fh.write(f"$ {shown}\n")
        fh.flush()
        try:
            proc = subprocess.run(
                [sys.executable, *argv[1:]],
                cwd=ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    seconds = time.perf_counter() - start
    status = "ok" if rc == 0 else ("timeout" if rc is None else f"failed (rc {rc})")
    print(f"   {status} in {seconds:.0f} s; log {_rel(log)}", flush=True)
    return {
        "command": shown,
        "rc": rc,
        "status": status,
        "seconds": round(seconds, 1),
        "log": _rel(log),
        "quick": quick,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def headline_of(bench: Bench, out_dir: Path) -> dict[str, Any] | None:
    """The headline numbers from the benchmark's JSON in ``out_dir`` (None if absent)."""
    path = out_dir / bench.output
    if bench.headline is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return bench.headline(data)
    except (ValueError, KeyError, TypeError) as exc:
        return {"error": f"could not read {path.name}: {type(exc).__name__}: {exc}"}


def _recorded_command(path: Path) -> str | None:
    """The ``command`` a benchmark recorded in its own JSON, if it did."""
    if not path.is_file():
        return None
    try:
        command = json.loads(path.read_text()).get("command")
    except (ValueError, AttributeError):
        return None
    return command if isinstance(command, str) else None


def write_summary(out_dir: Path, ran: dict[str, dict[str, Any]], argv: list[str]) -> Path:
    """Merge this run's entries into ``OUT/summary.json`` (earlier entries are kept)."""
    path = out_dir / "summary.json"
    previous: dict[str, Any] = {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text()).get("benchmarks", {})
        except ValueError:
            previous = {}
    entries: dict[str, Any] = {}
    for bench in SUITE:
        output = _rel(out_dir / bench.output)
        if bench.name in ran:
            entry = {**ran[bench.name], "output": output, "produced_by_this_invocation": True}
            entry["headline"] = headline_of(bench, out_dir) if ran[bench.name]["rc"] == 0 else None
        elif bench.name in previous and (
            (out_dir / bench.output).exists() or previous[bench.name].get("status") is None
        ):
            entry = {**previous[bench.name], "produced_by_this_invocation": False}
            entry.pop("status", None)  # a result file that has appeared since
            entry["headline"] = headline_of(bench, out_dir) or entry.get("headline")
        elif (out_dir / bench.output).exists():
            entry = {
                "command": _recorded_command(out_dir / bench.output)
                or "unknown: the file was there before run_all.py; the suite's command is "
                + shlex.join(bench.command(out_dir, False)),
                "output": output,
                "produced_by_this_invocation": False,
                "headline": headline_of(bench, out_dir),
            }
        elif bench.default:
            entry = {
                "command": shlex.join(bench.command(out_dir, False)),
                "output": output,
                "status": "not run yet",
                "produced_by_this_invocation": False,
                "headline": None,
            }
        else:
            continue
        entries[bench.name] = entry
    summary = {
        "suite": "geninf benchmarks",
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "last_invocation": shlex.join(["python", "benchmarks/run_all.py", *argv]),
        "benchmarks": entries,
    }
    write_text(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks and write the summary; 1 if any failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "results"), help="folder of the JSON outputs")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--only", help="comma-separated benchmark names (see --list)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--timeout", type=float, help="seconds allowed per benchmark")
    ap.add_argument(
        "--summary-only",
        action="store_true",
        help="run nothing; rebuild OUT/summary.json from the JSON files already in OUT",
    )
    args = ap.parse_args(argv)
    if args.list:
        for b in SUITE:
            print(f"{b.name:20s} {'default' if b.default else 'by name'}  {b.script}")
        return 0
    out_dir = Path(args.out)
    benches = select(args.only)
    if args.dry_run:
        for b in benches:
            prefix = f"OMP_NUM_THREADS={b.threads} " if b.threads else ""
            print(prefix + shlex.join(b.command(out_dir, args.quick)))
        return 0
    check_folder(out_dir)
    claim(out_dir / "summary.json")
    if args.summary_only:
        print(f"== summary: {_rel(write_summary(out_dir, {}, argv))}")
        return 0
    for b in benches:  # each script checks its own outputs again, with the .md and .png
        claim(out_dir / "logs" / f"{b.name}.log")
        if b.output.endswith(".json"):
            claim(out_dir / b.output)
    start = time.perf_counter()
    ran = {b.name: run_one(b, out_dir, args.quick, args.timeout) for b in benches}
    path = write_summary(out_dir, ran, argv)
    failed = [name for name, r in ran.items() if r["rc"] != 0]
    total = time.perf_counter() - start
    print(f"== summary: {_rel(path)}; {len(ran)} benchmark(s) in {total:.0f} s", flush=True)
    if failed:
        print(f"== FAILED: {', '.join(failed)} (see the logs)", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
