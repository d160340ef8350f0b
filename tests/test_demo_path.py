"""``geninf demo`` is the class-removal job of ``geninf remove``, configured: one path.

At a tiny configuration (one epoch, a Hessian sample of 40 examples, one damping, GIF only) the
demo's rows must carry exactly the numbers that ``geninf train`` + ``geninf remove --forget
class:8`` give with the same settings: the same trained model, the same edit, the same record.
"""

from __future__ import annotations

import inspect

import pytest

from geninf.demo import DemoJob, run_demo
from geninf.edit.config import EditConfig
from geninf.report.jobs import relabel_run, remove_run, train_run
from geninf.report.jobs.edit import RelabelJob, RemoveJob

#: one epoch, a Hessian sample of 40, one damping (rel:0.01 instead of auto's path of five)
TINY = {"epochs": 1, "hessian_examples": 40, "damping": "rel:0.01", "threads": 1, "progress": False}
METRICS = ("test_acc", "self_acc", "self_test_acc", "f1")


def _numbers(value):
    """``value`` without its timings (keys with ``time`` or ``seconds`` in their name)."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items() if "time" not in k and "seconds" not in k}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


@pytest.fixture
def fast(monkeypatch):
    """Read the embedded MNIST once for the three jobs and draw no plots: neither changes a
    number, and the test stays within seconds."""
    import geninf.demo
    import geninf.report.content
    import geninf.report.jobs.common
    import geninf.report.jobs.inputs
    import geninf.report.jobs.train
    from geninf.bench.datasets import load_dataset

    cache: dict = {}

    def cached(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = load_dataset(*args, **kwargs)
        return cache[key]

    for module in (geninf.demo, geninf.report.jobs.inputs, geninf.report.jobs.train):
        monkeypatch.setattr(module, "load_dataset", cached)
    for module in (geninf.report.content, geninf.report.jobs.common):
        monkeypatch.setattr(module, "matplotlib_available", lambda: False)


def test_demo_rows_are_the_numbers_of_train_then_remove(tmp_path, fast):
    demo = run_demo(out=str(tmp_path / "demo"), methods=("gif",), cache_dir=None, **TINY)
    train_run(
        data="mnist5k",
        model="small_cnn",
        width=0.5,
        epochs=TINY["epochs"],
        out=str(tmp_path / "train"),
        threads=1,
        progress=False,
    )
    job = remove_run(
        checkpoint=str(tmp_path / "train"),
        forget="class:8",
        hessian_examples=TINY["hessian_examples"],
        damping=TINY["damping"],
        batch_size=250,
        out=str(tmp_path / "remove"),
        threads=1,
        progress=False,
    )
    rows = {r["method"]: r for r in demo["rows"]}
    for key in METRICS:
        assert rows["original model"][key] == job["metrics"]["original"][key], key
        assert rows["gif"][key] == job["metrics"]["edited"][key], key
    assert _numbers(demo["records"]["gif"]) == _numbers(job["record"])


def test_one_declaration_of_the_edit_options():
    """Every EditConfig field is an option of remove_run/relabel_run; the demo's are a subset
    with the same defaults but the Hessian sample; the library gets them by name."""
    edit = {
        name: EditConfig.__dataclass_fields__[name].default
        for name in EditConfig.__dataclass_fields__
    }
    for fn in (remove_run, relabel_run):
        params = inspect.signature(fn).parameters
        for name, default in edit.items():
            assert params[name].default == default, (fn.__name__, name)
    params = inspect.signature(run_demo).parameters
    for name in DemoJob.EDIT_FIELDS:
        expected = DemoJob.EDIT_DEFAULTS.get(name, edit[name])
        assert params[name].default == expected, name
    job = RemoveJob.from_options(
        {"checkpoint": "c", "forget": "class:1", "out": "o", "max_iter": 7, "gammas": [0.1]}
    )
    kw = job.edit.kwargs()
    assert kw["solver_options"] == {"max_iter": 7} and kw["gammas"] == (0.1,)
    assert "max_iter" not in kw and "tol" not in kw
    assert job.options()["max_iter"] == 7 and "force" not in job.options()


def test_unknown_or_missing_job_options_are_type_errors():
    with pytest.raises(TypeError, match="no_such"):
        remove_run(checkpoint="c", forget="class:1", out="o", no_such=1)
    with pytest.raises(TypeError, match="forget"):
        remove_run(checkpoint="c", out="o")


def test_every_edit_option_is_a_flag_of_remove_and_relabel():
    """A field of EditConfig with a help text is a flag of remove/relabel with its default (the
    unlearning baselines' options: of remove only)."""
    from dataclasses import fields

    from geninf.cli.parser import build_parser

    parser = build_parser()
    argv = {"remove": ["--forget", "class:1"], "relabel": ["--changes", "c.csv"]}
    for command, target in argv.items():
        args = vars(parser.parse_args([command, "--checkpoint", "c", "--out", "o", *target]))
        for f in fields(EditConfig):
            if f.metadata.get("group") == "unlearning" and command == "relabel":
                assert f.name not in args, f.name
            elif f.metadata.get("help"):
                assert args[f.name] == f.default, (command, f.name)
        cls = RemoveJob if command == "remove" else RelabelJob
        assert cls.from_options({k: v for k, v in args.items() if k in _params(cls)})
    flags = ["--forget", "class:1", "--max-iter", "3", "--gammas", "0.1,0.2"]
    flags += ["--unlearning-options", "scrub_alpha=0.25"]
    args = vars(parser.parse_args(["remove", "--checkpoint", "c", "--out", "o", *flags]))
    job = RemoveJob.from_options({k: v for k, v in args.items() if k in _params(RemoveJob)})
    assert job.edit.kwargs()["solver_options"] == {"max_iter": 3}
    assert job.edit.kwargs()["gammas"] == (0.1, 0.2)
    assert job.edit.kwargs()["unlearning_options"] == {"scrub_alpha": 0.25}


def _params(cls: type) -> set[str]:
    return set(cls.signature().parameters)


def test_score_flags_and_score_run_share_their_defaults():
    """geninf score and score_run(...) default to the same settings (the edit defaults)."""
    from geninf.cli.parser import build_parser
    from geninf.report.jobs.score import ScoreJob

    args = vars(build_parser().parse_args(["score", "--checkpoint", "c", "--out", "o"]))
    job = ScoreJob.signature().parameters
    for name in ("method", "criterion", "ratio", "solver", "damping", "k", "queries", "seed"):
        assert args[name] == job[name].default, name
