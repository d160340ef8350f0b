"""One process versus two ranks (gloo on loopback): Hessian-vector products, parameter
selection and data scoring.

    python benchmarks/ranks.py [--out FILE.json] [--examples 1000] [--repeats 3]

The small CNN on 1,000 embedded MNIST images, batch 250. One process with 2 threads (and with 1
thread) is compared with 2 ranks of 1 thread each (the data sharded by batch, results
all-reduced). Each task runs in float64 for the correctness check (relative difference to the
one-process result) and in float32 for the timing (best of ``--repeats``):

- ``hvp``: one Hessian-vector product over all the examples;
- ``select``: Highest-k gradients at ratio 0.05 over all the examples (the check compares the
  selected flat indices);
- ``score``: gradient-dot scores of 32 queries against every example (per-example gradients of
  the training batches are the sharded work).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_time, embedded, emit, model, versions  # noqa: E402
from _outputs import claim  # noqa: E402

import geninf  # noqa: E402
from geninf.linalg import HessianOperator  # noqa: E402

TASKS = ("hvp", "select", "score")


def _task(name: str, dtype: torch.dtype, examples: int) -> Callable[[], torch.Tensor]:
    splits, data = embedded("mnist5k", examples)
    net = model("small_cnn", splits.input_shape).to(dtype).eval()
    data = (data[0].to(dtype), data[1])
    if name == "hvp":
        H = HessianOperator(net, None, data, method="reverse", batch_size=250)
        v = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(0), dtype=dtype)
        return lambda: H.matvec(v)
    if name == "select":
        return lambda: (
            geninf.select(
                net, None, data, criterion="highest_gradients", ratio=0.05, seed=0, batch_size=250
            ).flat_indices
        )
    queries = (data[0][:32], data[1][:32])
    return lambda: geninf.score(
        net, None, data, queries, method="grad_dot", batch_size=250, query_block=32
    )


def _run(dtype: torch.dtype, examples: int, repeats: int) -> dict[str, tuple]:
    out = {}
    for name in TASKS:
        fn = _task(name, dtype, examples)
        out[name] = (fn(), best_time(fn, repeats) if repeats else None)
    return out


def _worker(rank, world, port, out, examples, repeats):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    exact = _run(torch.float64, examples, 0)
    timed = _run(torch.float32, examples, repeats)
    if rank == 0:
        result = {f"{k}64": v for k, (v, _) in exact.items()}
        result.update({f"{k}_seconds": torch.tensor(t) for k, (_, t) in timed.items()})
        torch.save(result, out)
    dist.barrier()
    dist.destroy_process_group()


def _difference(got: torch.Tensor, ref: torch.Tensor) -> float:
    if not ref.is_floating_point():
        return 0.0 if torch.equal(got, ref) else 1.0
    return float((got - ref).norm() / ref.norm())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    claim(args.out)
    torch.set_num_threads(2)
    ref = _run(torch.float64, args.examples, 0)
    one = _run(torch.float32, args.examples, args.repeats)
    torch.set_num_threads(1)
    single = _run(torch.float32, args.examples, args.repeats)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.pt")
        mp.spawn(_worker, args=(2, port, out, args.examples, args.repeats), nprocs=2)
        got = torch.load(out, weights_only=True)
    results = {}
    for name in TASKS:
        t1, t2 = one[name][1], float(got[f"{name}_seconds"])
        results[name] = {
            "one_process_1_thread_seconds": round(single[name][1], 4),
            "one_process_2_threads_seconds": round(t1, 4),
            "two_ranks_1_thread_seconds": round(t2, 4),
            "speedup": round(t1 / t2, 2),
            "speedup_over_1_thread": round(single[name][1] / t2, 2),
            "relative_difference_float64": _difference(got[f"{name}64"], ref[name][0]),
        }
    emit(
        {
            "benchmark": "ranks",
            "command": "python " + " ".join(["benchmarks/ranks.py", *sys.argv[1:]]),
            "examples": args.examples,
            "versions": versions(),
            "results": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
