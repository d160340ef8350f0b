"""The scale benchmark's CPU path end to end on the smallest augmented workload: it runs,
writes its JSON and table, and its numbers are consistent with each other."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _import(monkeypatch, tmp_path, name: str):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setenv("GENINF_DATA_CACHE", str(tmp_path / "cache"))
    sys.modules.pop(name, None)
    return __import__(name)


@pytest.mark.parametrize("task", ["remove", "relabel"])
def test_scale_removal_runs_on_the_cpu(tmp_path, monkeypatch, task):
    scale_removal = _import(monkeypatch, tmp_path, "scale_removal")
    out = tmp_path / "scale.json"
    partial = tmp_path / "rows.jsonl"
    argv = ["--task", task, "--sizes", "5000", "--epochs", "1", "--seeds", "0", "--methods",
            "gif", "--hessian-examples", "50", "--val-examples", "300", "--threads", "1",
            "--out", str(out), "--partial", str(partial)]  # fmt: skip
    assert scale_removal.main(argv) == 0
    d = json.loads(out.read_text())
    (row,) = d["rows"]
    assert row["task"] == task and row["train"] == 3500 and row["gif"]["hessian_examples"] == 50
    assert 0.0 <= row["gif"]["f1"] <= 1.0 and row["gif"]["hvps"] > 0
    assert row["speedup_full"] == row["retrain"]["time"] / row["gif"]["time"]
    reached = row["retrain_to_gif_f1"]
    assert reached is None or reached <= row["retrain"]["time"] + 1e-9
    assert json.loads(partial.read_text().splitlines()[0])["gif"] == row["gif"]
    assert f"| {task} | small_cnn | 3,500 |" in Path(out.with_suffix(".md")).read_text()
    from geninf.bench import load_dataset

    y = load_dataset("mnist-aug:5000", seed=0).train[1]
    n8 = int((y == 8).sum())
    if task == "relabel":  # the default 40% of the class-8 training images were flipped
        assert row["edited"] == round(0.4 * n8) and 0.0 <= row["gif"]["restored"] <= 1.0
    else:
        assert row["edited"] == n8 and 0.0 <= row["gif"]["self_acc"] <= 1.0
    assert set(row["unedited"]) >= {"f1", "test_acc"}


def test_crossover_lines_and_rows_from_a_result_json(tmp_path, monkeypatch):
    """The fitted crossover against a closed form: retraining 2 ms per image from zero, GIF a
    flat 50 s, so retrain ÷ GIF is 1 at 25,000 and 10 at 250,000 images; a result JSON's rows
    and the measuring run's command survive a second summary."""
    scale_removal = _import(monkeypatch, tmp_path, "scale_removal")
    rows = [{"task": "remove", "model": "small_cnn", "train": n, "size": n, "seed": s,
             "retrain": {"time": 2e-3 * n + 0.1 * (s - 0.5), "f1": 0.9, "curve": []},
             "gif": {"time": 50.0, "f1": 0.9, "hvps": 1}}
            for n in (10_000, 40_000, 100_000) for s in (0, 1)]  # fmt: skip
    (line,) = scale_removal.crossover_lines(rows)
    assert "2.00 ms per training image" in line and "0.000 ms" in line
    assert "= 1 at n train ≈ 25,000" in line and "= 10 at ≈ 250,000" in line
    assert scale_removal.crossover_lines(rows[:2]) == []  # one size: no line
    src = tmp_path / "measured.json"
    src.write_text(json.dumps({"command": "python measure", "config": {}, "versions": {},
                               "rows": rows}))  # fmt: skip
    got, source = scale_removal.read_rows(src)
    assert got == rows and source["command"] == "python measure"
    again = tmp_path / "again.json"
    again.write_text(json.dumps({"command": "python summarize", "rows": rows,
                                 "measured_by": source}))  # fmt: skip
    assert scale_removal.read_rows(again)[1]["command"] == "python measure"
    lines = tmp_path / "rows.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert scale_removal.read_rows(lines) == (rows, None)
