"""The scale benchmark's CPU path end to end on the smallest augmented workload: it runs,
writes its JSON and table, and its numbers are consistent with each other."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_scale_removal_runs_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setenv("GENINF_DATA_CACHE", str(tmp_path / "cache"))
    sys.modules.pop("scale_removal", None)
    import scale_removal

    out = tmp_path / "scale.json"
    partial = tmp_path / "rows.jsonl"
    argv = ["--sizes", "5000", "--epochs", "1", "--seeds", "0", "--methods", "gif",
            "--hessian-examples", "50", "--val-examples", "300", "--threads", "1",
            "--out", str(out), "--partial", str(partial)]  # fmt: skip
    assert scale_removal.main(argv) == 0
    d = json.loads(out.read_text())
    (row,) = d["rows"]
    assert row["train"] == 3500 and row["gif"]["hessian_examples"] == 50
    assert 0.0 <= row["gif"]["f1"] <= 1.0 and row["gif"]["hvps"] > 0
    assert row["speedup_full"] == row["retrain"]["time"] / row["gif"]["time"]
    reached = row["retrain_to_gif_f1"]
    assert reached is None or reached <= row["retrain"]["time"] + 1e-9
    assert json.loads(partial.read_text().splitlines()[0])["gif"] == row["gif"]
    assert "| small_cnn | 3,500 |" in Path(out.with_suffix(".md")).read_text()
