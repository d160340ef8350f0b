"""Where a Hessian-vector product spends its time beyond a gradient: a torch.profiler CPU profile.

    python benchmarks/profile_hvp.py [--examples 1000] [--batch 250] [--width 1.0] [--threads 1]
        [--repeats 10] [--top 15] [--out benchmarks/results/profile_hvp.json] [--quick]

The small CNN (width 1.0: 80,202 parameters, untrained, seed 0) on the first ``--examples``
embedded MNIST images, batch 250, cross-entropy — the setting of ``benchmarks/hvp_cost.py``,
whose ``reverse_cached`` row (1.83× a gradient with 2 threads) misses the 1.5× target. Passes:

- ``gradient``: ``FunctionalModel.gradient`` over the data (one forward + backward per batch);
- ``hvp``: one product of the default ``HessianOperator`` (``reverse_cached``), after a first
  product has built and cached every batch's first-order graph (the steady state a solver sees);
- ``normal_product``: one H_{:,J}ᵀH_{:,J} product (``NormalOperator`` over
  ``ColumnSubsetOperator``, J a seeded random 5%), i.e. two HVPs;
- ``hvp_first_call``: the first ``reverse_cached`` product (it also builds the cached graphs:
  the forward and the first backward with ``create_graph``);
- ``hvp_reverse``: one product of the uncached ``reverse`` method (rebuilds those every time).

For each pass: the best wall time of ``--repeats`` unprofiled calls, then one profiled call
(``torch.profiler``, CPU): the top ops by self CPU time, the time per category of ATen op
(convolution forward / backward, matrix products, pooling, ReLU, loss, element-wise, memory),
the autograd nodes the engine ran (``autograd::engine::evaluate_function``, inclusive time), the
number of op calls, and the time outside any op (Python, autograd-engine glue and profiler
overhead: wall − Σ self CPU). The breakdown then compares the HVP with the gradient category by
category. Writes ``--out`` (JSON) and a ``.md`` table next to it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import best_time, embedded, emit, model, versions
from _outputs import claim, write_text
from torch.profiler import ProfilerActivity, profile

from geninf import ParameterSubset
from geninf.functional import FunctionalModel
from geninf.linalg import ColumnSubsetOperator, HessianOperator, NormalOperator

NODE_PREFIX = "autograd::engine::evaluate_function: "

#: self time inside ``aten::_convolution`` itself: the op computed the convolution without a
#: backend kernel (here: the transposed convolutions of the double backward)
SLOW_CONV = "convolution, slow path (transposed, inside aten::_convolution)"
#: ATen op → category; the first matching rule wins (substring match on the op name)
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("convolution backward", ("convolution_backward", "conv2d_backward", "conv_depthwise2d_bac")),
    ("convolution (mkldnn kernels)", ("convolution", "conv2d", "mkldnn_conv", "_slow_conv2d")),
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",
                         "aten::baddbmm", "aten::dot", "aten::mv")),
    ("pooling", ("max_pool", "avg_pool", "adaptive_")),
    ("ReLU / threshold", ("relu", "threshold")),
    ("loss (log-softmax, NLL)", ("log_softmax", "nll_loss", "cross_entropy", "softmax")),
    ("element-wise math", ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::neg",
                           "aten::sum", "aten::mean", "aten::where", "aten::masked_fill",
                           "aten::index_select", "aten::index_copy", "aten::scatter",
                           "aten::gather", "aten::fill_", "aten::zero_", "aten::zeros",
                           "aten::ones", "aten::isfinite", "aten::all", "aten::abs",
                           "aten::copy_", "aten::clone", "aten::_to_copy", "aten::to")),
    ("memory / views / reshapes", ("aten::empty", "aten::view", "aten::reshape", "aten::as_strided",
                                   "aten::t", "aten::transpose", "aten::permute", "aten::expand",
                                   "aten::cat", "aten::stack", "aten::contiguous",
                                   "aten::detach", "aten::alias", "aten::select", "aten::slice",
                                   "aten::unsqueeze", "aten::squeeze", "aten::flatten",
                                   "aten::split", "aten::chunk", "aten::resize_",
                                   "aten::_unsafe_view", "aten::numpy_T", "aten::lift",
                                   "aten::result_type", "aten::set_")),
]  # fmt: skip


def category(name: str) -> str:
    """The category of an ATen op (``other ops`` when no rule matches)."""
    if name == "aten::_convolution":
        return SLOW_CONV
    for label, keys in CATEGORIES:
        if any(k in name for k in keys):
            return label
    return "other ops"


def profile_pass(fn: Any, repeats: int, top: int) -> dict[str, Any]:
    """Best unprofiled wall time of ``fn()`` and one profiled call's breakdown."""
    wall = best_time(fn, repeats)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t = time.perf_counter()
        fn()
        profiled_wall = time.perf_counter() - t
    events = prof.key_averages()
    ops, nodes, other = [], [], []
    for e in events:
        row = {
            "name": e.key,
            "calls": int(e.count),
            "self_ms": e.self_cpu_time_total / 1e3,
            "total_ms": e.cpu_time_total / 1e3,
        }
        if e.key.startswith(NODE_PREFIX):
            nodes.append({**row, "name": e.key[len(NODE_PREFIX) :]})
        elif e.key.startswith("aten::"):
            ops.append(row)
        else:
            other.append(row)
    slow: dict[str, dict[str, Any]] = {}
    for e in prof.events():
        if e.name == "aten::_convolution" and e.self_cpu_time_total > 0.5 * e.cpu_time_total:
            key = " × ".join(str(list(s)) for s in e.input_shapes[:2])
            row = slow.setdefault(key, {"input × weight": key, "calls": 0, "self_ms": 0.0})
            row["calls"] += 1
            row["self_ms"] += e.self_cpu_time_total / 1e3
    ops.sort(key=lambda r: -r["self_ms"])
    nodes.sort(key=lambda r: -r["total_ms"])
    by_cat: dict[str, float] = defaultdict(float)
    calls_cat: dict[str, int] = defaultdict(int)
    for r in ops:
        by_cat[category(r["name"])] += r["self_ms"]
        calls_cat[category(r["name"])] += r["calls"]
    self_all = sum(r["self_ms"] for r in ops) + sum(
        r["self_ms"] for r in other + nodes
    )  # record_function ranges hold a little self time of their own
    outside = profiled_wall * 1e3 - self_all
    return {
        "wall_ms": wall * 1e3,
        "profiled_wall_ms": profiled_wall * 1e3,
        "op_self_ms": sum(r["self_ms"] for r in ops),
        "outside_ops_ms": outside,
        "op_calls": sum(r["calls"] for r in ops),
        "autograd_nodes_run": sum(r["calls"] for r in nodes),
        "categories_ms": dict(sorted(by_cat.items(), key=lambda kv: -kv[1])),
        "category_calls": dict(calls_cat),
        "top_ops": [{**r, "category": category(r["name"])} for r in ops[:top]],
        "top_autograd_nodes": nodes[:top],
        "slow_path_convolutions": sorted(slow.values(), key=lambda r: -r["self_ms"]),
    }


def breakdown(grad: dict[str, Any], hvp: dict[str, Any]) -> dict[str, Any]:
    """The HVP's time minus the gradient's, by category (profiled, milliseconds)."""
    cats = set(grad["categories_ms"]) | set(hvp["categories_ms"])
    rows = {
        c: {
            "gradient_ms": grad["categories_ms"].get(c, 0.0),
            "hvp_ms": hvp["categories_ms"].get(c, 0.0),
            "extra_ms": hvp["categories_ms"].get(c, 0.0) - grad["categories_ms"].get(c, 0.0),
            "gradient_calls": grad["category_calls"].get(c, 0),
            "hvp_calls": hvp["category_calls"].get(c, 0),
        }
        for c in cats
    }
    rows["outside ops (Python, autograd engine, profiler)"] = {
        "gradient_ms": grad["outside_ops_ms"],
        "hvp_ms": hvp["outside_ops_ms"],
        "extra_ms": hvp["outside_ops_ms"] - grad["outside_ops_ms"],
        "gradient_calls": None,
        "hvp_calls": None,
    }
    extra = hvp["profiled_wall_ms"] - grad["profiled_wall_ms"]
    for r in rows.values():
        r["share_of_extra"] = r["extra_ms"] / extra if extra else None
    ordered = dict(sorted(rows.items(), key=lambda kv: -kv[1]["extra_ms"]))
    return {"extra_profiled_ms": extra, "by_category": ordered}


def first_conv_check(net: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict[str, Any]:
    """Time, on the first convolution's shapes, its forward convolution against the transposed
    convolution that the double backward runs for the gradient with respect to the layer's input
    (the data, which needs no gradient)."""
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    w = conv.weight.detach()
    kw = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation}
    g_out = torch.randn_like(F.conv2d(x, w, **kw))
    fwd = best_time(lambda: F.conv2d(x, w, **kw), repeats)
    trans = best_time(lambda: F.conv_transpose2d(g_out, w, **kw), repeats)
    return {
        "input": list(x.shape),
        "weight": list(w.shape),
        "forward_ms": fwd * 1e3,
        "transposed_ms": trans * 1e3,
        "transposed_over_forward": trans / fwd,
    }


def markdown(result: dict[str, Any]) -> str:
    """Tables of ``profile_hvp.md``."""
    s, passes = result["setting"], result["passes"]
    g = passes["gradient"]["wall_ms"]
    lines = [
        "# Profile: gradient vs Hessian-vector product vs H_{:,J}ᵀH_{:,J} product",
        "",
        f"{s['model']} ({s['parameters']:,} parameters), {s['examples']} embedded MNIST images, "
        f"batch {s['batch']}, {s['threads']} thread(s), torch {result['versions']['torch']}; "
        f"command `{result['command']}`. Wall = best of {s['repeats']} unprofiled calls; the "
        "rest is one call under torch.profiler (CPU), whose own overhead inflates it.",
        "",
        "| pass | wall (ms) | ÷ gradient | profiled wall (ms) | Σ op self CPU (ms) | outside ops "
        "(ms) | ATen op calls | autograd nodes run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in passes.items():
        lines.append(
            f"| {name} | {p['wall_ms']:.1f} | {p['wall_ms'] / g:.2f} | "
            f"{p['profiled_wall_ms']:.1f} | {p['op_self_ms']:.1f} | {p['outside_ops_ms']:.1f} | "
            f"{p['op_calls']} | {p['autograd_nodes_run']} |"
        )
    b = result["breakdown_hvp_vs_gradient"]
    lines += [
        "",
        f"## HVP (reverse_cached, steady state) minus gradient, by category "
        f"(profiled; extra = {b['extra_profiled_ms']:.1f} ms)",
        "",
        "| category | gradient (ms) | HVP (ms) | extra (ms) | share of extra | calls grad → HVP |",
        "|---|---|---|---|---|---|",
    ]
    for c, r in b["by_category"].items():
        share = "—" if r["share_of_extra"] is None else f"{100 * r['share_of_extra']:.0f}%"
        calls = "—" if r["gradient_calls"] is None else f"{r['gradient_calls']} → {r['hvp_calls']}"
        lines.append(
            f"| {c} | {r['gradient_ms']:.1f} | {r['hvp_ms']:.1f} | {r['extra_ms']:+.1f} | "
            f"{share} | {calls} |"
        )
    fc = result["first_conv_check"]
    lines += [
        "",
        "## Convolutions computed on the slow path (self time inside `aten::_convolution`), HVP",
        "",
        "| input × weight | calls | self (ms) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['input × weight']} | {r['calls']} | {r['self_ms']:.2f} |"
        for r in passes["hvp"]["slow_path_convolutions"]
    ]
    lines += [
        "",
        f"First convolution, input {fc['input']}, weight {fc['weight']}: forward "
        f"{fc['forward_ms']:.2f} ms, the transposed convolution of the same shapes "
        f"{fc['transposed_ms']:.2f} ms ({fc['transposed_over_forward']:.1f}×).",
    ]
    for name in ("gradient", "hvp", "normal_product"):
        p = passes[name]
        lines += [
            "",
            f"## Top ops by self CPU time: {name}",
            "",
            "| op | category | calls | self (ms) | total (ms) |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{r['name']}` | {r['category']} | {r['calls']} | {r['self_ms']:.2f} | "
            f"{r['total_ms']:.2f} |"
            for r in p["top_ops"]
        ]
    for name in ("gradient", "hvp"):
        lines += [
            "",
            f"## Autograd nodes run (inclusive time): {name}",
            "",
            "| node | calls | total (ms) |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{r['name']}` | {r['calls']} | {r['total_ms']:.2f} |"
            for r in passes[name]["top_autograd_nodes"]
        ]
    lines += ["", "## Findings", ""] + [f"- {f}" for f in result["findings"]]
    return "\n".join(lines) + "\n"


def findings(result: dict[str, Any]) -> list[str]:
    """Plain-language statements computed from the numbers (no hand-written values)."""
    p = result["passes"]
    g, h = p["gradient"], p["hvp"]
    out = [
        f"HVP ÷ gradient = {h['wall_ms'] / g['wall_ms']:.2f} (wall, unprofiled); normal product "
        f"÷ gradient = {p['normal_product']['wall_ms'] / g['wall_ms']:.2f} "
        f"(= {p['normal_product']['wall_ms'] / h['wall_ms']:.2f} HVPs).",
        f"The gradient runs {g['autograd_nodes_run']} autograd nodes and {g['op_calls']} ATen "
        f"op calls; the cached HVP runs {h['autograd_nodes_run']} nodes and {h['op_calls']} op "
        "calls — the double backward visits a graph about twice as large as the first backward "
        "(every backward node of the first-order graph has its own derivative node).",
    ]
    rows = result["breakdown_hvp_vs_gradient"]["by_category"]
    top = [(c, r) for c, r in rows.items() if r["extra_ms"] > 0][:4]
    out.append(
        "Largest contributions to the extra time: "
        + "; ".join(
            f"{c} {r['extra_ms']:+.1f} ms ({100 * (r['share_of_extra'] or 0):.0f}%)" for c, r in top
        )
        + "."
    )
    first, rev = p["hvp_first_call"], p["hvp_reverse"]
    out.append(
        f"No extra forward in the steady state: the cached graphs make the first product cost "
        f"{first['wall_ms'] / g['wall_ms']:.2f} gradients and every later one "
        f"{h['wall_ms'] / g['wall_ms']:.2f}; the uncached `reverse` product, which redoes the "
        f"forward and the create_graph backward each time, costs "
        f"{rev['wall_ms'] / g['wall_ms']:.2f}."
    )
    slow = h["slow_path_convolutions"]
    fc = result["first_conv_check"]
    first = [r for r in slow if r["input × weight"].endswith(str(fc["weight"]))]
    if slow:
        total = sum(r["self_ms"] for r in slow)
        out.append(
            f"Transposed convolutions on a slow path: {total:.1f} ms of the HVP's "
            f"{h['profiled_wall_ms']:.1f} ms (profiled) run inside `aten::_convolution` without a "
            "backend kernel. They come from ConvolutionBackwardBackward (the derivative of each "
            "conv's weight gradient): gI = conv_transpose(gO, v_W)."
        )
    if first:
        waste = sum(r["self_ms"] for r in first)
        scale = h["wall_ms"] / h["profiled_wall_ms"]
        without = (h["wall_ms"] - waste * scale) / g["wall_ms"]
        out.append(
            f"For the first convolution that gI is the gradient with respect to the data, which "
            f"nothing needs, yet torch computes it ({waste:.1f} ms, "
            f"{100 * waste / h['profiled_wall_ms']:.0f}% of the HVP): on these shapes a "
            f"transposed convolution costs {fc['transposed_over_forward']:.1f}× the forward one. "
            f"Without it the HVP would cost about {without:.2f} gradients."
        )
    return out


def main() -> None:
    """Profile the passes and write the JSON and the Markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--out", default="benchmarks/results/profile_hvp.json")
    ap.add_argument("--quick", action="store_true", help="250 examples, 2 repeats")
    args = ap.parse_args()
    claim(args.out, Path(args.out).with_suffix(".md"))
    if args.quick:
        args.examples, args.repeats = 250, 2
    torch.set_num_threads(args.threads)
    splits, data = embedded("mnist5k", args.examples)
    net = model("small_cnn", splits.input_shape, width=args.width).eval()
    fm = FunctionalModel(net, None)
    n = fm.num_params
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    subset = ParameterSubset.from_flat_indices(net, perm[: max(1, n // 20)])
    v = torch.randn(n, generator=torch.Generator().manual_seed(1))
    H = HessianOperator(net, None, data, method="reverse_cached", batch_size=args.batch)
    N = NormalOperator(ColumnSubsetOperator(H, subset))
    H_rev = HessianOperator(net, None, data, method="reverse", batch_size=args.batch)
    vk = v[: len(subset)]

    def first_call() -> None:
        fresh = HessianOperator(net, None, data, method="reverse_cached", batch_size=args.batch)
        fresh.matvec(v)

    passes = {
        "gradient": profile_pass(lambda: fm.gradient(data, batch_size=args.batch), args.repeats,
                                 args.top),
        "hvp": profile_pass(lambda: H.matvec(v), args.repeats, args.top),
        "normal_product": profile_pass(lambda: N.matvec(vk), args.repeats, args.top),
        "hvp_first_call": profile_pass(first_call, args.repeats, args.top),
        "hvp_reverse": profile_pass(lambda: H_rev.matvec(v), args.repeats, args.top),
    }  # fmt: skip
    result: dict[str, Any] = {
        "benchmark": "profile_hvp",
        "command": " ".join(["python", "benchmarks/profile_hvp.py", *sys.argv[1:]]),
        "setting": {
            "model": f"small_cnn width {args.width}",
            "parameters": n,
            "subset": len(subset),
            "examples": len(data[0]),
            "batch": args.batch,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "hvp_method": "reverse_cached",
        },
        "versions": versions(),
        "ratios": {
            name: round(p["wall_ms"] / passes["gradient"]["wall_ms"], 3)
            for name, p in passes.items()
        },
        "passes": passes,
        "breakdown_hvp_vs_gradient": breakdown(passes["gradient"], passes["hvp"]),
        "first_conv_check": first_conv_check(net, data[0][: args.batch], args.repeats),
    }
    result["findings"] = findings(result)
    out = Path(args.out)
    emit(result, str(out))
    write_text(out.with_suffix(".md"), markdown(result))


if __name__ == "__main__":
    main()
