"""The geninf command through ``main([...])``: every subcommand on tiny settings, the run
directory it writes, ``--json`` output, and the exit codes of bad input.

The full demo (a CNN on 5,000 MNIST images, about a minute) runs in ``make demo``, not here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from geninf.cli import main

TRAIN = ["train", "--data", "digits", "--model", "mlp", "--epochs", "2", "--quiet"]
FAST = ["--solver", "cg", "--max-iter", "4", "--quiet"]


def run_json(capsys, argv: list[str]) -> dict:
    """Run with --json; check exit 0 and that stdout equals the run's results.json."""
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
    if out is not None:
        assert printed == json.loads((out / "results.json").read_text())
    return printed


def check_run_dir(path: Path, *, model: bool = True) -> None:
    """The files of every run directory, and every image the reports show exists."""
    names = ["config.json", "results.json", "report.md", "report.html"]
    names += ["model.safetensors"] if model else []
    for name in names:
        assert (path / name).is_file(), name
    config = json.loads((path / "config.json").read_text())
    assert {"command", "options", "versions", "created"} <= set(config) or "experiment" in config
    assert "torch" in config["versions"] and "geninf" in config["versions"]
    md = (path / "report.md").read_text()
    html = (path / "report.html").read_text()
    md_images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    html_images = re.findall(r'<img src="([^"]+)"', html)
    assert md_images, "the report shows no figure"
    assert sorted(md_images) == sorted(html_images)
    for rel in md_images:
        assert not Path(rel).is_absolute()
        assert (path / rel).is_file(), rel
    assert not list(path.parent.glob(f".{path.name}.*")), "staging left behind"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("geninf: ")
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "trained"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


# ----------------------------------------------------------------------------- happy paths
def test_train_writes_a_run_directory_and_json_matches(tmp_path, capsys):
    out = tmp_path / "t"
    res = run_json(capsys, [*TRAIN, "--epochs", "1", "--out", str(out), "--seed", "3"])
    assert res["kind"] == "train" and len(res["history"]) == 1
    assert res["metrics"]["test"]["examples"] > 0 and "plots/training.png" in res["plots"]
    check_run_dir(out)
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"] == {"model": 3, "data": 0}
    assert config["checkpoint"]["architecture"]["model"] == "mlp"


def test_remove_class_with_retrain(trained, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["remove", "--checkpoint", str(trained), "--forget", "class:8", "--out", str(out)]
    res = run_json(capsys, [*argv, *FAST, "--retrain"])
    assert res["forget"] == {"spec": "class:8", "class": 8, "num_forget": 122, "num_retain": 1137}
    assert set(res["metrics"]) == {"original", "edited", "retrained"}
    assert res["metrics"]["edited"]["self_acc"] < res["metrics"]["original"]["self_acc"]
    assert res["record"]["method"] == "gif" and res["record"]["subset"]["selected"] > 0
    assert {"plots/histograms.png", "plots/convergence.png"} <= set(res["plots"])
    assert any("Grad-CAM skipped" in n for n in res["notes"])  # an MLP has no convolution
    assert "edited" in res["agreement_with_retrained"]
    check_run_dir(out)
    # the edited model loads back, with the edit in its record
    from geninf.report import load_checkpoint

    ckpt = load_checkpoint(out)
    assert ckpt.info["edits"][-1]["target"] == "class:8"


def test_the_same_remove_twice_gives_byte_identical_model_files(trained, tmp_path):
    """No timestamp in the model file's metadata (config.json has the time of the run)."""
    argv = ["remove", "--checkpoint", str(trained), "--forget", "class:3", *FAST]
    blobs = []
    for name in ("a", "b"):
        assert main([*argv, "--out", str(tmp_path / name)]) == 0
        blobs.append((tmp_path / name / "model.safetensors").read_bytes())
        assert "created" in json.loads((tmp_path / name / "config.json").read_text())
    assert blobs[0] == blobs[1]


def test_remove_indices_file_and_paper_needs_a_class(trained, tmp_path, capsys):
    idx = tmp_path / "forget.txt"
    idx.write_text("# first examples\n0, 1 2\n3\n")
    out = tmp_path / "ri"
    base = ["remove", "--checkpoint", str(trained), "--forget", f"indices:{idx}"]
    res = run_json(capsys, [*base, "--out", str(out), "--method", "original", *FAST])
    assert res["forget"]["num_forget"] == 4 and res["forget"]["class"] is None
    check_run_dir(out)
    assert main([*base, "--out", str(tmp_path / "p"), "--schedule", "paper", *FAST]) == 2
    assert "class:C" in one_line_error(capsys)


def test_remove_baseline_with_paper_schedule(trained, tmp_path, capsys):
    out = tmp_path / "ft"
    argv = [
        "remove",
        "--checkpoint",
        str(trained),
        "--forget",
        "class:3",
        "--out",
        str(out),
        "--method",
        "finetune",
        "--budget",
        "2000",
        "--schedule",
        "paper",
        "--quiet",
    ]
    res = run_json(capsys, argv)
    assert res["record"]["compute"]["budget"] == 2000
    check_run_dir(out)
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        edit = json.loads(f.metadata()["geninf"])["edits"][-1]
    assert edit["method"] == "finetune" and edit["ratio"] is None  # a baseline has no subset


def test_remove_scrub_with_unlearning_options_reaches_the_record(trained, tmp_path, capsys):
    out = tmp_path / "scrub"
    argv = ["remove", "--checkpoint", str(trained), "--forget", "class:3", "--out", str(out)]
    argv += ["--method", "scrub", "--budget", "1000", "--quiet"]
    res = run_json(capsys, [*argv, "--unlearning-options", "scrub_alpha=0,scrub_temperature=2"])
    hp = res["record"]["extra"]["hyperparameters"]
    assert (hp["scrub_alpha"], hp["scrub_temperature"]) == (0.0, 2.0)
    assert hp["scrub_max_fraction"] == 0.5  # the default, not given
    assert res["record"]["options"]["unlearning_options"] == {
        "scrub_alpha": 0.0,
        "scrub_temperature": 2.0,
    }
    argv[argv.index(str(out))] = str(tmp_path / "bad")
    assert main([*argv, "--unlearning-options", "scrub_beta=1"]) == 2
    assert "unknown unlearning option(s) scrub_beta" in one_line_error(capsys)


def test_relabel(trained, tmp_path, capsys):
    from geninf.bench import load_dataset

    y = load_dataset("digits", seed=0, flatten=True).train[1]
    changes = tmp_path / "changes.csv"
    changes.write_text(
        "index,new_label\n" + "".join(f"{i},{(int(y[i]) + 1) % 10}\n" for i in range(5))
    )
    out = tmp_path / "rl"
    argv = ["relabel", "--checkpoint", str(trained), "--changes", str(changes), "--out", str(out)]
    res = run_json(capsys, [*argv, *FAST])
    assert res["changes"]["num_changed"] == 5 and res["record"]["operation"] == "relabel"
    assert "changed_acc_new" in res["metrics"]["edited"]
    check_run_dir(out)
    bad = tmp_path / "bad.csv"
    bad.write_text("index,new_label\n0,x\n")
    assert main([*argv[:4], str(bad), "--out", str(tmp_path / "rb"), *FAST]) == 2
    assert "row 1" in one_line_error(capsys)


def test_score(trained, tmp_path, capsys):
    out = tmp_path / "s"
    argv = [
        "score",
        "--checkpoint",
        str(trained),
        "--queries",
        "test:0-2",
        "--k",
        "3",
        "--train-examples",
        "150",
        "--out",
        str(out),
        *FAST,
    ]
    res = run_json(capsys, argv)
    assert [q["index"] for q in res["queries"]] == [0, 1, 2]
    assert len(res["queries"][0]["helpful"]) == 3 and res["num_scored"] == 150
    h = [e["score"] for e in res["queries"][0]["helpful"]]
    assert h == sorted(h, reverse=True)
    assert (out / "scores.csv").is_file() and (out / "scores.json").is_file()
    check_run_dir(out, model=False)
    out2 = tmp_path / "s2"
    res = run_json(
        capsys,
        [*argv[:-7], "--out", str(out2), "--method", "grad_dot", "--self-influence", "--quiet"],
    )
    top = [e["score"] for e in res["self_influence"]["top"]]
    assert len(top) == 3 and top == sorted(top, reverse=True)


def test_bench_and_report_regeneration(tmp_path, capsys):
    out = tmp_path / "b"
    argv = [
        "bench",
        "class-removal",
        "--seeds",
        "1",
        "--epochs",
        "2",
        "--methods",
        "gif",
        "--ratios",
        "0.05",
        "--schedules",
        "newton",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--quiet",
    ]
    res = run_json(capsys, argv)
    assert res["name"] == "class_removal" and res["seeds"] == [0]
    assert (out / "table.md").is_file()
    check_run_dir(out, model=False)
    (out / "report.md").unlink()
    again = run_json(capsys, ["report", str(out), "--quiet"])
    assert again == res
    check_run_dir(out, model=False)
    assert main(["bench", "selection", "--methods", "gif", "--out", str(tmp_path / "x")]) == 2
    assert "does not apply" in one_line_error(capsys)


def test_report_regenerates_plots_and_documents(trained, capsys):
    for name in ("report.md", "report.html", "plots/training.png"):
        (trained / name).unlink()
    res = run_json(capsys, ["report", str(trained), "--quiet"])
    assert res == json.loads((trained / "results.json").read_text())
    check_run_dir(trained)


# ----------------------------------------------------------------------------- bad input
def test_no_command_help_and_version(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert "geninf" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["demo", "--no-such-flag"], "unrecognized arguments"),
        (
            ["train", "--data", "digits", "--model", "mlp", "--out", "x", "--epochs", "0"],
            "positive",
        ),
        (["remove", "--checkpoint", "x", "--out", "y"], "required"),
        (["bench", "nonsense"], "invalid choice"),
        (
            ["remove", "--checkpoint", "x", "--forget", "class:1", "--out", "y", "--ratio", "a"],
            "invalid float",
        ),
        (
            ["remove", "--checkpoint", "x", "--forget", "class:1", "--out", "y"]
            + ["--unlearning-options", "scrub_alpha"],
            "expected KEY=NUMBER pairs",
        ),
        (
            ["relabel", "--checkpoint", "x", "--changes", "c.csv", "--out", "y"]
            + ["--unlearning-options", "scrub_alpha=1"],
            "unrecognized arguments",
        ),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in one_line_error(capsys)


@pytest.mark.parametrize(
    "forget, expected",
    [
        ("class:42", "classes 0..9"),
        ("class:x", "integer class"),
        ("everything", "class:C"),
        ("indices:/no/such/file", "does not exist"),
    ],
)
def test_bad_forget_spec(trained, tmp_path, forget, expected, capsys):
    argv = [
        "remove",
        "--checkpoint",
        str(trained),
        "--forget",
        forget,
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--quiet"]) == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_missing_truncated_mismatched_and_pickled_checkpoints(trained, tmp_path, capsys):
    base = ["remove", "--forget", "class:1", "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*base, "--checkpoint", str(tmp_path / "nothing")]) == 2
    assert "not found" in one_line_error(capsys)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((trained / "model.safetensors").read_bytes()[:500])
    assert main([*base, "--checkpoint", str(cut)]) == 2
    assert "truncated" in one_line_error(capsys)
    assert main([*base, "--checkpoint", str(trained), "--model", "mlp", "--width", "2"]) == 2
    assert "does not fit" in one_line_error(capsys)

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    evil = tmp_path / "evil.pt"
    torch.save({"weight": Evil()}, evil)
    assert main([*base, "--checkpoint", str(evil), "--model", "mlp", "--data", "digits"]) == 2
    assert "refused" in one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_pt_state_dict_needs_and_uses_model_and_data(trained, tmp_path, capsys):
    from geninf.report import load_checkpoint

    pt = tmp_path / "plain.pt"
    torch.save(load_checkpoint(trained).model.state_dict(), pt)
    base = ["remove", "--checkpoint", str(pt), "--forget", "class:1", *FAST]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "--model" in one_line_error(capsys)
    assert main([*base, "--out", str(tmp_path / "b"), "--model", "mlp", "--data", "digits"]) == 0
    assert (tmp_path / "b" / "model.safetensors").is_file()


def test_existing_out_needs_force_and_inputs_are_never_overwritten(trained, tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    argv = [*TRAIN, "--epochs", "1", "--out", str(out)]
    assert main(argv) == 2
    assert "choose a new --out" in one_line_error(capsys)
    assert main([*argv, "--force"]) == 2  # --force replaces only a run directory geninf made
    assert "keep.txt" in one_line_error(capsys)
    assert (out / "keep.txt").read_text() == "user data"
    (out / "keep.txt").unlink()
    out.rmdir()
    assert main(argv) == 0
    assert main(argv) == 2
    assert "--force" in one_line_error(capsys)
    assert main([*argv, "--force"]) == 0
    assert (out / "model.safetensors").is_file()
    before = (trained / "model.safetensors").read_bytes()
    argv = ["remove", "--checkpoint", str(trained), "--forget", "class:1", "--out", str(trained)]
    assert main([*argv, "--force", *FAST]) == 2
    assert "never overwritten" in one_line_error(capsys)
    assert (trained / "model.safetensors").read_bytes() == before


def test_numerical_failure_exits_3(tmp_path, capsys):
    argv = [*TRAIN, "--epochs", "1", "--lr", "1e30", "--out", str(tmp_path / "nan")]
    assert main(argv) == 3
    assert "numerical failure" in one_line_error(capsys)
    assert not (tmp_path / "nan").exists()


def test_interrupted_run_leaves_nothing(tmp_path, capsys, monkeypatch):
    import geninf.report.jobs.train as train_job

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_job, "finish", interrupt)
    assert main([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "i")]) == 130
    assert "no output was written" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_a_gpu_is_bad_input(tmp_path, capsys):
    assert main([*TRAIN, "--out", str(tmp_path / "c"), "--device", "cuda"]) == 2
    assert "no CUDA device" in one_line_error(capsys)


def test_demo_bad_class_is_one_line_exit_2(tmp_path, capsys):
    assert main(["demo", "--forget-class", "42", "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert "forget-class" in one_line_error(capsys)


def test_unwritable_out_and_bad_run_directories(trained, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main([*TRAIN, "--epochs", "1", "--out", str(blocker / "run")]) == 2
    assert "cannot create the output directory" in one_line_error(capsys)
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in one_line_error(capsys)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((trained / "config.json").read_text())
    (broken / "results.json").write_text('{"kind": "train", ')
    assert main(["report", str(broken)]) == 2
    assert "not valid JSON" in one_line_error(capsys)


def test_debug_shows_the_exception(tmp_path):
    from geninf.errors import InputError

    argv = ["remove", "--checkpoint", str(tmp_path), "--forget", "class:1", "--out", "o"]
    with pytest.raises(InputError):
        main([*argv, "--debug"])
    with pytest.raises(InputError):
        main(["--debug", *argv])


def test_grad_cam_matches_a_manual_computation():
    from torch import nn

    from geninf.report import grad_cam

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
    ).double()
    x, classes = torch.randn(3, 1, 6, 6, dtype=torch.float64), torch.tensor([1, 3, 0])
    before = [p.detach().clone() for p in net.parameters()]
    cams = grad_cam(net, x, classes)
    assert all(p.grad is None for p in net.parameters())  # no parameter gradient, no change
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    act = net[:3](x)
    act.retain_grad()
    net[3:](act).gather(1, classes.view(-1, 1)).sum().backward()
    weights = act.grad.mean(dim=(2, 3), keepdim=True)
    expected = torch.relu((weights * act).sum(dim=1)).detach()
    expected = expected / expected.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    torch.testing.assert_close(cams, expected)


def test_cnn_removal_report_has_grad_cam(tmp_path, capsys):
    cnn = tmp_path / "cnn"
    argv = ["train", "--data", "digits", "--model", "small_cnn", "--width", "0.25"]
    assert main([*argv, "--epochs", "2", "--out", str(cnn), "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "cnn-8"
    argv = ["remove", "--checkpoint", str(cnn), "--forget", "class:8", "--out", str(out)]
    res = run_json(capsys, [*argv, *FAST, "--retrain"])
    assert "plots/gradcam.png" in res["plots"] and "plots/histograms.png" in res["plots"]
    check_run_dir(out)
