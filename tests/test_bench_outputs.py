"""The benchmark scripts never overwrite a file that the benchmark suite did not write (issue 16).

Each refusal must exit with status 2, say so in one line on stderr, and leave every file that was
there byte for byte as it was; a re-run over a script's own earlier output must succeed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
RESULTS = BENCH / "results"


def load(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` as a module (its siblings importable, as when run as a script)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root`` (links not followed): file bytes, link targets, folders."""
    seen: dict[str, object] = {}
    for top, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(top) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                seen[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[rel] = "folder"
            else:
                seen[rel] = path.read_bytes()
    return seen


def refused(capsys, call, *args) -> str:
    """Run ``call(*args)``; assert a refusal (status 2, one stderr line); return that line."""
    with pytest.raises(SystemExit) as info:
        call(*args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("choose another --out"), err
    return err


def run_main(monkeypatch, module: ModuleType, *argv: str) -> None:
    """Call a script's ``main()`` that reads ``sys.argv``."""
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *map(str, argv)])
    module.main()


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A fake home holding a user's folder (the current folder) with a README.md and data."""
    home = tmp_path / "home"
    work = home / "work"
    (work / "notes").mkdir(parents=True)
    (work / "README.md").write_text("# my project\n")
    (work / "notes" / "mislabel.json").write_text('{"mine": 1}\n')
    (work / "notes" / "lds.md").write_text("my table\n")
    (work / "notes" / "summary.json").write_text('{"benchmark": "not yours"}\n')
    (home / "keep.txt").write_text("keep\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home


# ---------------------------------------------------------------------- the helper itself
def test_helper_writes_lists_and_rewrites_its_own_files(place):
    out = load("_outputs")
    folder = place / "work" / "bench-out"
    (folder).mkdir()
    (folder / "notes.txt").write_text("mine\n")
    out.write_text(folder / "a.json", '{"benchmark": "x"}\n')
    out.write_text(folder / "a.json", '{"benchmark": "y"}\n')  # its own file: replaced
    assert (folder / "a.json").read_text() == '{"benchmark": "y"}\n'
    assert out.listed(folder) == {"a.json"}
    assert (folder / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in folder.iterdir()) == ["a.json", "bench-outputs.json", "notes.txt"]


@pytest.mark.parametrize(
    "target",
    [
        "README.md",  # a user's file in the current folder
        "notes/mislabel.json",  # a user's file in a user's folder
        "notes",  # a folder, not a file
        "new.json",  # a new file, but in the current folder
        "../new.json",  # in a parent of the current folder (the fake home)
        "/new.json",  # in the filesystem root
        "notes/bench-outputs.json",  # the list itself
    ],
)
def test_helper_refuses_and_changes_nothing(place, capsys, target):
    out = load("_outputs")
    before = snapshot(place)
    refused(capsys, out.write_text, target, "{}\n")
    assert snapshot(place) == before
    assert not Path("/new.json").exists()


def test_helper_refuses_links_and_foreign_lists(place, capsys, tmp_path):
    out = load("_outputs")
    folder = place / "work" / "bench-out"
    out.write_text(folder / "hvp_cost.json", "{}\n")
    (folder / "hvp_cost.json").unlink()  # a listed name, now a link to a user's file
    (folder / "hvp_cost.json").symlink_to(place / "work" / "README.md")
    (folder / "other.json").symlink_to(place / "keep.txt")
    before = snapshot(tmp_path)
    assert "link" in refused(capsys, out.write_text, folder / "hvp_cost.json", "{}\n")
    refused(capsys, out.write_text, folder / "other.json", "{}\n")
    assert snapshot(tmp_path) == before
    foreign = place / "work" / "notes" / "bench-outputs.json"
    foreign.write_text('{"files": ["README.md"]}\n')  # the user's own file of that name
    before = snapshot(tmp_path)
    refused(capsys, out.write_text, place / "work" / "notes" / "lds.md", "x\n")
    refused(capsys, out.write_text, place / "work" / "notes" / "fresh.md", "x\n")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------- the scripts
def test_file_scripts_refuse_user_files_and_special_places(place, capsys, monkeypatch):
    hvp = load("hvp_cost")
    before = snapshot(place)
    for target in ("README.md", "notes/summary.json", str(place / "hvp.json"), "hvp.json"):
        refused(capsys, run_main, monkeypatch, hvp, "--quick", "--out", target)
    assert snapshot(place) == before


def test_folder_scripts_refuse_user_folders_home_and_cwd(place, capsys, monkeypatch):
    mislabel, lds = load("mislabel"), load("lds")
    before = snapshot(place)
    for module in (mislabel, lds):
        for target in ("notes", str(place), ".", ".."):
            refused(capsys, run_main, monkeypatch, module, "--quick", "--out", target)
    assert snapshot(place) == before


def test_run_experiments_refuses_home_cwd_and_user_files(place, capsys):
    runner = load("run_experiments")
    user = place / "work" / "mine" / "class_removal"
    user.mkdir(parents=True)
    (user / "results.json").write_text('{"name": "class_removal"}\n')
    (user / "f1.png").write_bytes(b"\x89PNG mine")
    before = snapshot(place)
    for target in (str(place), ".", "..", "mine"):
        refused(capsys, runner.main, ["class-removal", "--quick", "--out", target])
    assert snapshot(place) == before


def test_run_all_refuses_and_rewrites_its_own_summary(place, capsys):
    run_all = load("run_all")
    before = snapshot(place)
    for target in ("notes", ".", "..", str(place)):
        refused(capsys, run_all.main, ["--summary-only", "--out", target])
        refused(capsys, run_all.main, ["--only", "hvp_cost", "--out", target])
    assert snapshot(place) == before
    out = place / "work" / "bench-out"
    for _ in range(2):  # the second run replaces the first one's summary.json
        assert run_all.main(["--summary-only", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["suite"] == "geninf benchmarks"
    assert load("_outputs").listed(out) == {"summary.json"}


# ---------------------------------------------------------------------- committed results
def test_committed_results_are_listed_as_the_suites_own():
    outputs = load("_outputs")
    run_all = load("run_all")
    top = outputs.listed(RESULTS)
    assert "summary.json" in top
    assert {b.output for b in run_all.SUITE if b.output.endswith(".json")} <= top
    for name in ("lds", "mislabel"):
        assert outputs.listed(RESULTS / name) >= {f"{name}.{ext}" for ext in ("json", "md", "png")}
    for folder in (RESULTS / "experiments").iterdir():
        assert outputs.listed(folder) >= {"results.json", "table.md"}
    for folder in (
        RESULTS,
        RESULTS / "lds",
        RESULTS / "mislabel",
        *(RESULTS / "experiments").iterdir(),
    ):
        for name in outputs.listed(folder):
            assert (folder / name).is_file(), folder / name


def test_replot_rewrites_a_copy_of_the_committed_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    for name in ("class_removal_cost.json", "class_removal_cost.md", "class_removal_cost.png"):
        shutil.copy(RESULTS / name, results / name)
    shutil.copy(RESULTS / "bench-outputs.json", results / "bench-outputs.json")
    shutil.copytree(RESULTS / "experiments" / "class_removal", tmp_path / "exp" / "class_removal")
    summary = json.loads((results / "class_removal_cost.json").read_text())["summary"]
    load("class_removal_cost").main(["--replot", "--out", str(results / "class_removal_cost.json")])
    assert json.loads((results / "class_removal_cost.json").read_text())["summary"] == summary
    runner = load("run_experiments")
    assert runner.main(["class-removal", "--replot", "--out", str(tmp_path / "exp")]) == 0
    written = json.loads((tmp_path / "exp" / "class_removal" / "results.json").read_text())
    committed = json.loads((RESULTS / "experiments" / "class_removal" / "results.json").read_text())
    assert written["summaries"] == committed["summaries"]
