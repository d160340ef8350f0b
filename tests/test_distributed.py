"""Two CPU processes on loopback (gloo) give the single-process results (float64, ≤ 1e-6):
gradients, losses, Hessian and Gauss-Newton products, a GIF solve, parameter selection (with a
``max_examples`` cut inside a batch), score matrices (iterative and dense solves, gradient dot
products) and self-influence (the split dense path and the in-step iterative path)."""

import os
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from geninf import ParameterSubset, influence, score, select, self_influence
from geninf.data import as_batches
from geninf.functional import FunctionalModel
from geninf.linalg import GaussNewtonOperator, HessianOperator

from .conftest import make_problem

DEADLINE_S = 120


def _compute(p) -> dict[str, torch.Tensor]:
    n = p.flat_params().numel()
    v = torch.randn(n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    subset = ParameterSubset.from_flat_indices(p.model, list(range(0, n, 3)))
    fm = FunctionalModel(p.model, p.loss_fn)
    res = influence(
        p.model,
        p.loss_fn,
        p.train,
        p.target,
        method="gif",
        subset=subset,
        solver="lsmr",
        damping=0.1,
        batch_size=7,
        solver_options={"tol": 1e-12, "max_iter": 200},
    )
    x, y = p.train
    common = {"damping": 0.1, "batch_size": 7}
    iterative = {"tol": 1e-12, "max_iter": 200}
    picks = {
        f"select_{c}": select(
            p.model,
            p.loss_fn,
            p.train,
            criterion=c,
            ratio=0.3,
            seed=0,
            batch_size=7,
            max_examples=25,
        ).flat_indices
        for c in ("highest_gradients", "highest_outputs", "lowest_gradients")
    }
    return {
        **picks,
        "score_gif_lsmr": score(
            p.model,
            p.loss_fn,
            p.train,
            p.target,
            method="gif",
            subset=subset,
            solver="lsmr",
            solver_options=iterative,
            **common,
        ),
        "score_original_dense": score(
            p.model, p.loss_fn, p.train, p.target, method="original", solver="dense", **common
        ),
        "score_grad_dot": score(p.model, p.loss_fn, p.train, p.target, method="grad_dot"),
        "self_gif_dense": self_influence(
            p.model, p.loss_fn, p.train, method="gif", subset=subset, solver="dense", **common
        ),
        "self_original_cg": self_influence(
            p.model,
            p.loss_fn,
            (x[:14], y[:14]),
            method="original",
            solver="lsmr",
            solver_options=iterative,
            hessian_data=p.train,
            num_train=30,
            **common,
        ),
        "grad": fm.gradient(p.train, batch_size=7),
        "loss": fm.loss(p.train, batch_size=7).reshape(1),
        "hvp": HessianOperator(p.model, p.loss_fn, p.train, batch_size=7).matvec(v),
        "ggn": GaussNewtonOperator(p.model, p.loss_fn, p.train, batch_size=7).matvec(v),
        "gif": res.delta,
    }


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        p = make_problem("cnn")
        result = _compute(p)
        fm = FunctionalModel(p.model, p.loss_fn)
        result["batches"] = torch.tensor([i for i, _, _ in fm.iter_sharded(as_batches(p.train, 7))])
        tmp = Path(out_dir) / f"rank{rank}.pt.tmp"
        torch.save(result, tmp)
        tmp.replace(Path(out_dir) / f"rank{rank}.pt")  # complete results only
    finally:
        dist.barrier()  # no rank tears gloo down while another is still talking
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_equal_one_process(tmp_path, monkeypatch):
    root = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ctx = mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False)
    start = time.monotonic()
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() - start > DEADLINE_S:
                for proc in ctx.processes:
                    proc.kill()
                raise AssertionError(f"the 2-process run did not finish within {DEADLINE_S} s")
    except mp.ProcessExitedException as exc:
        # gloo can abort a process while tearing down after its results were written (seen
        # once in CI: SIGABRT "terminate called without an active exception"); the results are
        # what is under test, so accept a signal exit only when both ranks finished writing them
        files = [tmp_path / f"rank{r}.pt" for r in range(2)]
        if exc.signal_name is None or not all(f.exists() for f in files):
            raise
    single = _compute(make_problem("cnn"))
    shards = []
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        shards.append(got.pop("batches").tolist())
        for key, ref in single.items():
            torch.testing.assert_close(got[key], ref, rtol=1e-6, atol=1e-12, msg=key)
    # the work really was split: 30 examples in batches of 7 -> batches 0..4, shared out
    assert shards == [[0, 2, 4], [1, 3]]


def test_torchrun_cli_equals_one_process(tmp_path):
    """``torchrun --nproc_per_node 2 -m geninf remove ...`` (selection, solve and evaluation
    sharded over two gloo ranks) gives the one-process edit; only rank 0 writes."""
    import json
    import subprocess
    import sys

    from safetensors.torch import load_file

    from geninf.cli import main

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    model = tmp_path / "model"
    train = ["train", "--data", "digits", "--model", "mlp", "--epochs", "1", "--max-train", "300"]
    assert main([*train, "--quiet", "--out", str(model)]) == 0
    edit = ["remove", "--checkpoint", str(model), "--forget", "class:3", "--solver", "lsmr"]
    edit += ["--max-iter", "5", "--quiet", "--json"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher += ["--nproc_per_node", "2", "-m", "geninf"]
    proc = subprocess.run(
        [*launcher, *edit, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    two = json.loads(proc.stdout)  # printed once, by rank 0
    assert main([*edit, "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert json.loads((tmp_path / "two" / "results.json").read_text()) == two
    for arm in ("original", "edited"):
        for key, value in one["metrics"][arm].items():
            assert abs(two["metrics"][arm][key] - value) <= 1e-6 * max(1.0, abs(value)), key
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6, msg=key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "one", "two"]
