"""Peak memory of Hessian products does not grow with the number of examples (issue 7)."""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
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

    import torch
    from torch import nn
    from geninf.linalg import HessianOperator
    torch.set_num_threads(1)
    method, factor, cache = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 1024), nn.Tanh(), nn.Linear(1024, 1024), nn.Tanh(),
                          nn.Linear(1024, 4))
    n = 256 * factor
    data = (torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g))
    cached = None if cache == "all" else 1
    H = HessianOperator(model, None, data, method=method, batch_size=256,
                        max_cached_batches=cached)
    v = torch.randn(H.shape[0], generator=g)
    base = peak_kib()
    for _ in range(2):
        H.matvec(v)
    peak = peak_kib()
    print(json.dumps({"extra_kib": peak - base}))
    """
)


def _extra_memory_kib(method: str, factor: int, cache: str = "one") -> int:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, method, str(factor), cache],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_kib"]


@pytest.mark.parametrize("method", ["reverse", "reverse_cached", "forward_over_reverse"])
def test_hvp_memory_flat_in_data_size(method):
    one = _extra_memory_kib(method, 1)
    eight = _extra_memory_kib(method, 8)
    # one batch's graph is tens of MiB here; 8x the data must not cost 8x (or even 2x) the memory
    assert one > 4 * 1024, f"the measurement did not see the graph memory ({one} KiB)"
    assert eight < 1.5 * one + 16 * 1024, f"{method}: 1x data +{one} KiB, 8x data +{eight} KiB"


def test_memory_measurement_sees_growth():
    """Control: caching every batch's graph does grow with the data, and the test sees it."""
    one = _extra_memory_kib("reverse_cached", 1, "all")
    eight = _extra_memory_kib("reverse_cached", 8, "all")
    assert eight > 1.5 * one + 16 * 1024, f"1x data +{one} KiB, 8x data +{eight} KiB"
