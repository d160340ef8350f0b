"""Linear datamodeling score (LDS, method.md §7) of the scoring methods on digits.

    python benchmarks/lds.py [--out DIR] [--seeds 0 1 2] [--subsets 50] [--cache DIR] [--threads N]

For each seed: the digits train split (1,259 examples) and the first ``--queries`` (100) test
examples as queries. A model is trained on the whole training set and every method scores every
(query, training example) pair on it (``geninf.score``: score[q, i] ≈ change of query q's loss
when i is removed; positive = helpful). Then ``--subsets`` (50) random halves S_j of the training
set are drawn (seeded) and a model is retrained on each; the actual output of query q is its
cross-entropy loss under model j. Including a helpful example lowers the loss, so the datamodel
prediction is ``−Σ_{i∈S_j} score[q, i]``. LDS = Spearman correlation across the subsets between
actual and predicted outputs, averaged over the queries; mean ± sample std (ddof = 1) over seeds.

Two models:

- **MLP** 64-32-10 tanh (2,410 parameters), Adam (lr 1e-3, batch 64, ``--epochs`` 30), data
  order seeded per model, under two retraining protocols: every subset model starts from the
  full model's initialization (*same init*), or each from its own random initialization
  (*independent inits*, the usual LDS protocol). The subset models are trained together as one
  ``torch.func.vmap`` ensemble (stacked parameters; Adam is elementwise, so this is exactly
  independent training). Scores (shared by both protocols): damped Hessian (λ = 0.1 >
  |λ_min(H)|, the MLP's Hessian is indefinite), dense solves in float32 (the model's dtype;
  H + λI is well conditioned). A second ensemble per protocol, with other data orders (and
  other inits), gives the retrain-vs-retrain correlation (Bae et al. 2022: how well one
  retraining predicts another). It measures the retraining noise: a noise-free predictor of the
  expected output can reach about its square root.
- **Logistic regression** (``nn.Linear(64, 10)``, ℓ2 weight 1e-3 in the objective, float64),
  trained to convergence (max |gradient| < 1e-10) by Newton–CG; convex, so retraining is
  exact — the sanity check against the published ≈ .80 for exact IF.

Methods: original, GIF with J from ``highest_gradients`` and ``random`` (ratio 0.05, selected on
the whole training set), freezing and projecting on the ``highest_gradients`` J, grad_dot
(TracIn, final checkpoint), random. Retrained outputs are cached in ``--cache`` (default
``~/.cache/geninf/lds``), keyed by the configuration. Writes ``lds.json``, ``lds.md`` and
``lds.png`` under ``--out`` (default ``benchmarks/results/lds``) and prints the JSON.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import versions
from _outputs import claim, save_figure, write_text
from scipy.stats import spearmanr
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from geninf import SupervisedObjective, select
from geninf.bench import build_model, load_dataset
from geninf.scoring import score

RATIO = 0.05
MLP_DAMPING = 0.1
LR_WEIGHT_DECAY = 1e-3
PUBLISHED = {  # dattri, MNIST subsets of 5,000 training images (method.md §7)
    "logistic regression": {"exact IF / CG": 0.80, "LiSSA": 0.79, "TRAK-50": 0.68, "TracIn": 0.33},
    "MLP": {"CG": 0.26, "LiSSA": 0.14, "TracIn": 0.15, "TRAK-50": 0.45},
}


# ------------------------------------------------------------------------------ training
def train_ensemble(inits, x, y, subsets, *, epochs, seed, lr=1e-3, batch_size=64):
    """Train model ``inits[j]`` on the examples ``subsets[j]`` (index tensor [M, s]) with Adam,
    all M models at once (vmap over stacked parameters)."""
    M, s = subsets.shape
    params, buffers = stack_module_state([copy.deepcopy(m) for m in inits])
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    skeleton = copy.deepcopy(inits[0]).to("meta")

    def loss(p, b, xb, yb):
        return F.cross_entropy(functional_call(skeleton, (p, b), (xb,)), yb)

    opt = torch.optim.Adam(params.values(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = subsets.gather(1, torch.rand(M, s, generator=g).argsort(dim=1))
        for lo in range(0, s, batch_size):
            idx = order[:, lo : lo + batch_size]
            if idx.shape[1] == 1:
                continue
            total = vmap(loss)(params, buffers, x[idx], y[idx]).sum()
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
    return skeleton, {k: v.detach() for k, v in params.items()}, buffers


def ensemble_losses(skeleton, params, buffers, xq, yq):
    def losses(p, b):
        return F.cross_entropy(functional_call(skeleton, (p, b), (xq,)), yq, reduction="none")

    with torch.no_grad():
        return vmap(losses)(params, buffers)


def fit_logreg(x, y, wd, *, tol=1e-10, max_newton=100):
    """Exact minimizer of mean cross-entropy + wd/2·‖θ‖² (weights and bias) by Newton–CG.

    Inexact Newton steps (CG on closed-form Hessian-vector products, forcing term
    min(0.5, √‖g‖)) with backtracking, until max |gradient| < ``tol``. Returns an
    ``nn.Linear`` (float64) holding the solution.
    """
    m, d = x.shape
    k = int(y.max()) + 1
    X = torch.cat([x, torch.ones(m, 1, dtype=x.dtype)], 1)
    Y = F.one_hot(y, k).to(x.dtype)
    W = torch.zeros(d + 1, k, dtype=x.dtype)

    def risk(W):
        return F.cross_entropy(X @ W, y) + 0.5 * wd * (W * W).sum()

    for _ in range(max_newton):
        P = torch.softmax(X @ W, 1)
        G = X.T @ (P - Y) / m + wd * W
        if float(G.abs().max()) < tol:
            break

        def hvp(V, P=P):
            PU = P * (X @ V)
            return X.T @ (PU - P * PU.sum(1, keepdim=True)) / m + wd * V

        gnorm = float(G.norm())
        s, r = torch.zeros_like(W), G.clone()
        p, rr = r.clone(), float((r * r).sum())
        for _ in range(10 * W.numel()):
            Hp = hvp(p)
            alpha = rr / float((p * Hp).sum())
            s, r = s + alpha * p, r - alpha * Hp
            rr_new = float((r * r).sum())
            if rr_new**0.5 <= min(0.5, gnorm**0.5) * gnorm:
                break
            p, rr = r + (rr_new / rr) * p, rr_new
        f0, t = float(risk(W)), 1.0
        while float(risk(W - t * s)) > f0 and t > 1e-10:
            t *= 0.5
        W = W - t * s
    model = nn.Linear(d, k).double()
    with torch.no_grad():
        model.weight.copy_(W[:d].T)
        model.bias.copy_(W[d])
    return model.eval()


# ------------------------------------------------------------------------------ pieces
def draw_subsets(m, count, seed):
    g = torch.Generator().manual_seed(20_000 + seed)
    return torch.stack([torch.randperm(m, generator=g)[: m // 2] for _ in range(count)])


def lds(scores, subsets, actual):
    """Mean over queries of Spearman(actual[:, q], −Σ_{i∈S_j} scores[q, i])."""
    scores = scores.double()
    m = scores.shape[1]
    mask = torch.zeros(subsets.shape[0], m, dtype=scores.dtype)
    mask.scatter_(1, subsets, 1.0)
    predicted = -(mask @ scores.T)  # [M, Q]
    rhos = [spearmanr(actual[:, q], predicted[:, q]).statistic for q in range(actual.shape[1])]
    return float(np.nanmean(rhos))


def method_runs(model, data, objective, seed, damping):
    subsets = {
        c: select(model, objective, data, criterion=c, ratio=RATIO, seed=seed)
        for c in ("highest_gradients", "random")
    }
    hg = subsets["highest_gradients"]
    return {
        "original": dict(method="original"),
        "gif (highest_gradients 5%)": dict(method="gif", subset=hg),
        "gif (random 5%)": dict(method="gif", subset=subsets["random"]),
        "freezing (highest_gradients 5%)": dict(method="freezing", subset=hg),
        "projecting (highest_gradients 5%)": dict(method="projecting", subset=hg),
        "grad_dot": dict(method="grad_dot"),
        "random": dict(method="random", seed=seed),
    }, damping


def score_all(model, objective, train, queries, seed, damping):
    runs, damping = method_runs(model, train, objective, seed, damping)
    out = {}
    for label, kw in runs.items():
        t = time.perf_counter()
        s = score(
            model, objective, train, queries, solver="dense", damping=damping,
            query_objective=F.cross_entropy, **kw,
        )  # fmt: skip
        out[label] = (s, time.perf_counter() - t)
    return out


def cached(cache: Path, config: dict, compute):
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"lds-{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: torch.from_numpy(f[k]) for k in f.files}, True
    arrays = compute()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **{k: v.numpy() for k, v in arrays.items()})
    os.replace(tmp, path)
    return arrays, False


# ------------------------------------------------------------------------------ settings
def run_mlp(seed, args, cache):
    """LDS of every method on the MLP, for two retraining protocols: every subset model starts
    from the full model's initialization ("same init"), or from its own ("independent
    inits"); each with a second ensemble of retrainings for the retrain-vs-retrain ceiling."""
    splits = load_dataset("digits", seed=seed, flatten=True)
    x, y = splits.train
    xq, yq = (t[: args.queries] for t in splits.test)
    m = len(y)
    subsets = draw_subsets(m, args.subsets, seed)

    def mlp(init_seed):
        return build_model("mlp", input_shape=(64,), num_classes=10, seed=init_seed, hidden=(32,))

    base = mlp(seed)
    config = {"kind": "mlp", "seed": seed, "M": args.subsets, "epochs": args.epochs,
              "queries": args.queries, "v": 2}  # fmt: skip

    def compute():
        t = time.perf_counter()
        ep = args.epochs
        _, full_p, _ = train_ensemble([base], x, y, torch.arange(m)[None], epochs=ep, seed=seed)
        arrays = {"full": torch.cat([v[0].reshape(-1) for v in full_p.values()])}
        for tag, offset in (("same", 0), ("independent", 1)):
            for rep in (0, 1):
                inits = [
                    base if offset == 0 else mlp(100_000 * (1 + rep) + 1000 * seed + j)
                    for j in range(args.subsets)
                ]
                order = 1000 * (1 + 4 * rep) + seed
                sk, p, b = train_ensemble(inits, x, y, subsets, epochs=ep, seed=order)
                arrays[f"{tag}_{rep}"] = ensemble_losses(sk, p, b, xq, yq)
        arrays["train_seconds"] = torch.tensor(time.perf_counter() - t)
        return arrays

    arrays, hit = cached(cache, config, compute)
    model = copy.deepcopy(base)
    torch.nn.utils.vector_to_parameters(arrays["full"], model.parameters())
    model = model.eval()
    with torch.no_grad():
        acc = float((model(xq).argmax(1) == yq).double().mean() * 100)
    scores = score_all(model, None, (x, y), (xq, yq), seed, MLP_DAMPING)
    out = {}
    for tag, name in (("same", "MLP, same init"), ("independent", "MLP, independent inits")):
        actual, repeat = arrays[f"{tag}_0"].double(), arrays[f"{tag}_1"].double()
        ceiling = float(np.nanmean([
            spearmanr(actual[:, q], repeat[:, q]).statistic for q in range(actual.shape[1])
        ]))  # fmt: skip
        out[name] = {
            "query_acc": acc,
            "cache_hit": hit,
            "train_seconds": float(arrays["train_seconds"]),
            "retrain_vs_retrain": ceiling,
            "methods": {
                k: {"lds": lds(s, subsets, actual), "seconds": sec}
                for k, (s, sec) in scores.items()
            },
        }
    return out


def run_logreg(seed, args, cache):
    splits = load_dataset("digits", seed=seed, flatten=True)
    x, y = splits.train
    x = x.double()
    xq, yq = (t[: args.queries] for t in splits.test)
    xq = xq.double()
    m = len(y)
    subsets = draw_subsets(m, args.subsets, seed)
    config = {"kind": "logreg", "seed": seed, "M": args.subsets, "wd": LR_WEIGHT_DECAY,
              "queries": args.queries, "v": 2}  # fmt: skip

    def compute():
        t = time.perf_counter()
        rows = []
        for j in range(args.subsets):
            sub = fit_logreg(x[subsets[j]], y[subsets[j]], LR_WEIGHT_DECAY)
            with torch.no_grad():
                rows.append(F.cross_entropy(sub(xq), yq, reduction="none"))
        return {"actual": torch.stack(rows), "train_seconds": torch.tensor(time.perf_counter() - t)}

    arrays, hit = cached(cache, config, compute)
    model = fit_logreg(x, y, LR_WEIGHT_DECAY)
    with torch.no_grad():
        acc = float((model(xq).argmax(1) == yq).double().mean() * 100)
    objective = SupervisedObjective(F.cross_entropy, weight_decay=LR_WEIGHT_DECAY)
    scores = score_all(model, objective, (x, y), (xq, yq), seed, 0.0)
    actual = arrays["actual"].double()
    return {
        "query_acc": acc,
        "cache_hit": hit,
        "train_seconds": float(arrays["train_seconds"]),
        "methods": {
            k: {"lds": lds(s, subsets, actual), "seconds": sec} for k, (s, sec) in scores.items()
        },  # fmt: skip
    }


# ------------------------------------------------------------------------------ report
def mean_std(values):
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def summarize(per_seed):
    first = per_seed[0]
    out = {k: mean_std([r["methods"][k]["lds"] for r in per_seed]) for k in first["methods"]}
    secs = {k: mean_std([r["methods"][k]["seconds"] for r in per_seed]) for k in first["methods"]}
    extra = {"query_acc": mean_std([r["query_acc"] for r in per_seed])}
    if "retrain_vs_retrain" in first:
        extra["retrain_vs_retrain"] = mean_std([r["retrain_vs_retrain"] for r in per_seed])
    return {"lds": out, "seconds": secs, **extra}


def markdown(result):
    s = result["setting"]
    summ = result["summary"]
    names = list(summ)
    fmt = "{mean:.3f} ± {std:.3f}".format
    lines = [
        "# Linear datamodeling score (LDS) on digits",
        "",
        f"{s['subsets']} random half-subsets of the digits train split ({s['train_size']} "
        f"examples), {s['queries']} test queries, output = query cross-entropy; seeds "
        f"{s['seeds']}; mean ± sample std (ddof=1) over seeds. MLP 64-32-10 tanh, Adam "
        f"{s['epochs']} epochs, damping λ = {s['mlp_damping']}, subset models retrained from the "
        "full model's initialization (same init) or each from its own (independent inits); "
        f"logistic regression with ℓ2 {s['lr_weight_decay']} trained to convergence "
        "(Newton–CG). Dense solves (MLP in float32, logistic regression in float64).",
        "",
        "| method | " + " | ".join(f"LDS, {n}" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for k in summ[names[0]]["lds"]:
        lines.append(f"| {k} | " + " | ".join(fmt(**summ[n]["lds"][k]) for n in names) + " |")
    ceiling = [
        fmt(**summ[n]["retrain_vs_retrain"]) if "retrain_vs_retrain" in summ[n] else "1 (exact)"
        for n in names
    ]
    accs = ", ".join(f"{n} {summ[n]['query_acc']['mean']:.1f}%" for n in names)
    lines += [
        "| *retrain vs retrain (retraining noise; see below)* | " + " | ".join(ceiling) + " |",
        "",
        f"Query accuracy of the full models: {accs}.",
        "",
        "The retrain-vs-retrain row correlates two independent retrainings on the same subsets; "
        "both are noisy, so a noise-free predictor of the expected output can score up to about "
        "its square root.",
        "",
        "Published (dattri, MNIST, 5,000 training images): logistic regression exact IF / CG "
        "≈ .80, LiSSA .79, TRAK-50 .68, TracIn .33; MLP CG ≈ .26, LiSSA .14, TracIn .15, "
        "TRAK-50 .45.",
        "",
        f"Total run time: {result['wall_time']:.0f} s"
        + (" (retrained outputs loaded from the cache)." if result["cache_hits"] else "."),
        "",
    ]
    return "\n".join(lines)


def plot(result, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(result["summary"])
    fig = Figure(figsize=(4.5 * len(names), 4))
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        summ = result["summary"][name]["lds"]
        labels = list(summ)
        ax.barh(range(len(labels)), [summ[k]["mean"] for k in labels],
                xerr=[summ[k]["std"] for k in labels], color="tab:blue", alpha=0.8)  # fmt: skip
        published = PUBLISHED["MLP" if name.startswith("MLP") else name]
        for j, (ref, val) in enumerate(published.items()):
            ax.axvline(val, ls=":", color=f"C{j + 1}", label=f"published {ref} {val}")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(-0.1, 1.0)
        ax.set_xlabel("LDS (Spearman, mean over queries)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/lds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--subsets", type=int, default=50)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/geninf/lds"))
    ap.add_argument("--quick", action="store_true", help="2 seeds, 10 subsets, 5 epochs")
    ap.add_argument(
        "--threads", type=int, help="torch threads (1 is fastest on a shared, busy machine)"
    )
    args = ap.parse_args()
    claim(*(Path(args.out) / f"lds.{ext}" for ext in ("json", "md", "png")))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.subsets, args.epochs, args.queries = args.seeds[:2], 10, 5, 20
    start = time.perf_counter()
    cache = Path(args.cache)
    mlp_runs = [run_mlp(s, args, cache) for s in args.seeds]
    per_seed = {name: [r[name] for r in mlp_runs] for name in mlp_runs[0]}
    per_seed["logistic regression"] = [run_logreg(s, args, cache) for s in args.seeds]
    result = {
        "benchmark": "lds",
        "setting": {
            "data": "digits",
            "train_size": int(load_dataset("digits", seed=args.seeds[0]).sizes["train"]),
            "subsets": args.subsets,
            "queries": args.queries,
            "epochs": args.epochs,
            "mlp_damping": MLP_DAMPING,
            "lr_weight_decay": LR_WEIGHT_DECAY,
            "ratio": RATIO,
            "seeds": args.seeds,
            "std": "sample standard deviation (ddof=1) over seeds",
            "prediction": "-sum of scores over the subset (positive score = helpful)",
        },
        "summary": {k: summarize(v) for k, v in per_seed.items()},
        "published": PUBLISHED,
        "per_seed": per_seed,
        "versions": versions(),
    }
    result["wall_time"] = time.perf_counter() - start
    result["cache_hits"] = sum(r["cache_hit"] for runs in per_seed.values() for r in runs)
    out = Path(args.out)
    text = json.dumps(result, indent=2)
    write_text(out / "lds.json", text + "\n")
    write_text(out / "lds.md", markdown(result))
    plot(result, out / "lds.png")
    print(text)


if __name__ == "__main__":
    main()
