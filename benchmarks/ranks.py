"""One process versus two ranks (gloo on loopback) for Hessian-vector products.

    python benchmarks/ranks.py [--out FILE.json] [--examples 1000] [--repeats 3]

The small CNN on 1,000 embedded MNIST images, batch 250. One process with 2 threads is compared
with 2 ranks of 1 thread each (the data sharded by batch, results all-reduced); both compute the
same products in float64 for the correctness check and in float32 for the timing.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_time, embedded, emit, model, versions  # noqa: E402

from geninf.linalg import HessianOperator  # noqa: E402


def _products(dtype, examples, repeats):
    splits, data = embedded("mnist5k", examples)
    net = model("small_cnn", splits.input_shape).to(dtype).eval()
    data = (data[0].to(dtype), data[1])
    H = HessianOperator(net, None, data, method="reverse", batch_size=250)
    v = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(0), dtype=dtype)
    seconds = best_time(lambda: H.matvec(v), repeats) if repeats else None
    return H.matvec(v), seconds


def _worker(rank, world, port, out, examples, repeats):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    exact, _ = _products(torch.float64, examples, 0)
    _, seconds = _products(torch.float32, examples, repeats)
    if rank == 0:
        torch.save({"hvp64": exact, "seconds": torch.tensor(seconds)}, out)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    ref, _ = _products(torch.float64, args.examples, 0)
    _, one = _products(torch.float32, args.examples, args.repeats)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.pt")
        mp.spawn(_worker, args=(2, port, out, args.examples, args.repeats), nprocs=2)
        got = torch.load(out, weights_only=True)
    rel = float((got["hvp64"] - ref).norm() / ref.norm())
    emit(
        {
            "benchmark": "ranks",
            "examples": args.examples,
            "versions": versions(),
            "results": {
                "one_process_2_threads_seconds": round(one, 4),
                "two_ranks_1_thread_seconds": round(float(got["seconds"]), 4),
                "speedup": round(one / float(got["seconds"]), 2),
                "relative_difference_float64": rel,
            },
        },
        args.out,
    )


if __name__ == "__main__":
    main()
