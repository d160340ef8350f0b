"""benchmarks/hvp_cost.py on the CPU path with --device: it runs, records the device, and every
ratio it reports is a positive number."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_hvp_cost_runs_with_a_device_option(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("hvp_cost", None)
    import hvp_cost

    out = tmp_path / "hvp.json"
    hvp_cost.main(["--quick", "--device", "cpu", "--methods", "reverse", "--examples", "64",
                   "--repeats", "1", "--out", str(out)])  # fmt: skip
    d = json.loads(out.read_text())
    assert d["device"] == "cpu" and set(d["results"]) == {"mlp_digits", "small_cnn_mnist5k"}
    for row in d["results"].values():
        assert row["examples"] == 64 and list(row["methods"]) == ["reverse"]
        ratios = row["methods"]["reverse"]
        assert ratios["hvp_over_grad"] > 0 and ratios["normal_product_over_grad"] > 0
