"""Peak memory of one gradient and one Hessian-vector product for ResNet-18 (≈11M parameters).

    python benchmarks/memory.py [--out FILE.json] [--batch 32] [--width 1.0]

Each measurement runs in a fresh subprocess (1 thread) on random CIFAR-shaped data and reports
the growth of the process's peak resident memory (VmHWM) during the call, in MiB — the
model, data and vectors are allocated before the baseline is read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

from _common import emit, versions
from _outputs import claim

CHILD = textwrap.dedent(
    """
    import json, resource, sys

    def peak_kib():
        # VmHWM belongs to this process image; ru_maxrss would also count the parent's memory
        # at fork time (Linux copies it into the child), hiding the child's own growth.
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    import time
    import torch
    sys.path.insert(0, "benchmarks")
    from _common import cifar_shaped, model
    from geninf.functional import FunctionalModel
    from geninf.linalg import HessianOperator
    torch.set_num_threads(1)
    what, batch, width = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    net = model("resnet18", (3, 32, 32), width=width).eval()
    data = cifar_shaped(batch)
    fm = FunctionalModel(net, None)
    v = torch.randn(fm.num_params, generator=torch.Generator().manual_seed(0))
    if what == "gradient":
        run = lambda: fm.gradient(data, batch_size=batch)
    else:
        H = HessianOperator(net, None, data, method=what, batch_size=batch)
        run = lambda: H.matvec(v)
    base = peak_kib()
    t = time.perf_counter()
    run()
    seconds = time.perf_counter() - t
    peak = peak_kib()
    print(json.dumps({"params": fm.num_params, "peak_extra_mib": (peak - base) / 1024,
                      "seconds": seconds}))
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=float, default=1.0)
    args = ap.parse_args()
    claim(args.out)
    rows = {}
    for what in ("gradient", "reverse", "reverse_cached", "forward_over_reverse"):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, what, str(args.batch), str(args.width)],
            check=True,
            capture_output=True,
            text=True,
        )
        rows[what] = json.loads(out.stdout.strip().splitlines()[-1])
    grad = rows["gradient"]["peak_extra_mib"]
    for row in rows.values():
        row["peak_over_gradient"] = round(row["peak_extra_mib"] / grad, 2)
    emit(
        {
            "benchmark": "memory",
            "model": f"resnet18 width {args.width}",
            "batch": args.batch,
            "data": "random 3x32x32",
            "versions": versions(),
            "results": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
