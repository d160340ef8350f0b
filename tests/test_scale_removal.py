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
