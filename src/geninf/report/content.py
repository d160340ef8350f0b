"""What a run's report shows: the plots drawn from ``results.json`` and the report document.

:func:`make_plots` draws every figure that can be rebuilt from a run's results alone (prediction
histograms, solver convergence, training curves, accuracy vs modification ratio); figures that
need the models (Grad-CAM, scored images) are drawn by the job and kept. :func:`write_report`
writes ``report.md`` and ``report.html``, showing only images that exist in the run directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .document import Document
from .plots import (
    matplotlib_available,
    plot_accuracy_vs_ratio,
    plot_class_histograms,
    plot_convergence,
    plot_training_curve,
)
from .rundir import atomic_write_text

__all__ = ["CAPTIONS", "DEMO_COLUMNS", "demo_table_rows", "make_plots", "write_report"]

CAPTIONS = {
    "plots/histograms.png": "Predicted labels of the removed class's examples: original, edited "
    "and retrained models (paper Fig. 5)",
    "plots/gradcam.png": "Grad-CAM of the last convolution for a few removed-class and kept "
    "images (paper Fig. 4)",
    "plots/convergence.png": "Solver convergence: relative residual vs Hessian-vector products",
    "plots/accuracy_vs_ratio.png": "Test accuracy vs modification ratio per selection criterion "
    "(paper Fig. 3)",
    "plots/training.png": "Training and validation loss and accuracy per epoch",
    "plots/top_examples.png": "Queries with their most helpful (green) and harmful (red) training "
    "examples",
}


def make_plots(results: dict[str, Any], root: Path) -> tuple[list[str], list[str]]:
    """Draw the figures ``results`` has data for into ``root/plots``.

    Returns:
        ``(relative paths written, notes)``; a note says why a figure was skipped.
    """
    if not matplotlib_available():
        return [], ["plots skipped: matplotlib is not installed (pip install matplotlib)"]
    written: list[str] = []
    hist = results.get("histograms")
    if hist and hist.get("counts"):
        plot_class_histograms(
            root / "plots/histograms.png",
            hist["counts"],
            forget_class=hist.get("forget_class"),
            title=f"predicted labels of {hist.get('subject', 'the removed examples')}",
        )
        written.append("plots/histograms.png")
    solves = {
        name: (h.get("products") or [], h.get("residuals") or [])
        for name, h in (results.get("solver_histories") or {}).items()
        if h.get("residuals")
    }
    if solves:
        plot_convergence(root / "plots/convergence.png", solves)
        written.append("plots/convergence.png")
    if results.get("history"):
        plot_training_curve(root / "plots/training.png", results["history"])
        written.append("plots/training.png")
    sweep = results.get("sweep")
    if sweep and sweep.get("curves"):
        plot_accuracy_vs_ratio(
            root / "plots/accuracy_vs_ratio.png",
            {k: [tuple(p) for p in v] for k, v in sweep["curves"].items()},
            references=sweep.get("references"),
            title=sweep.get("title", "accuracy vs modification ratio"),
        )
        written.append("plots/accuracy_vs_ratio.png")
    return written, []


def _images(doc: Document, results: dict[str, Any], root: Path) -> None:
    shown = False
    for rel in results.get("plots") or []:
        if (root / rel).is_file():
            if not shown:
                doc.heading("Figures")
                shown = True
            doc.image(rel, CAPTIONS.get(rel, Path(rel).stem.replace("_", " ")))


def _notes(doc: Document, results: dict[str, Any]) -> None:
    notes = list(results.get("notes") or []) + [
        f"warning: {w}" for w in results.get("warnings") or []
    ]
    if notes:
        doc.heading("Notes")
        for note in notes:
            doc.text(note)


def _metrics_table(doc: Document, results: dict[str, Any]) -> None:
    metrics = results.get("metrics") or {}
    agree = results.get("agreement_with_retrained") or {}
    cols = [
        ("test_acc", "test acc (%)"),
        ("self_acc", "self acc, removed train (%)"),
        ("self_test_acc", "self acc, class test (%)"),
        ("changed_acc_new", "acc on changed, new labels (%)"),
        ("changed_acc_old", "acc on changed, old labels (%)"),
        ("f1", "F1"),
    ]
    cols = [c for c in cols if any(c[0] in m for m in metrics.values())]
    header = ["model"] + [c[1] for c in cols] + (["agreement w/ retrain (%)"] if agree else [])
    rows = []
    for name, m in metrics.items():
        row = [name] + [m.get(k) for k, _ in cols]
        if agree:
            row.append((agree.get(name) or {}).get("agreement"))
        rows.append(row)
    doc.table(header, rows)


def _edit_table(doc: Document, record: dict[str, Any]) -> None:
    solver = record.get("solver") or {}
    subset = record.get("subset") or {}
    compute = record.get("compute") or {}
    rows = [
        ["method", record.get("method")],
        ["schedule", record.get("schedule")],
        ["parameters moved", f"{subset.get('selected')} of {subset.get('total')}"],
        ["selection", subset.get("source")],
        ["solver", solver.get("solver")],
        ["iterations / HVPs", f"{solver.get('iterations')} / {solver.get('products')}"],
        ["relative residual", solver.get("residual")],
        ["converged", solver.get("converged")],
        ["step norm γ, steps k", _pair(record.get("gamma"), record.get("steps"))],
        ["scale (Newton)", record.get("scale")],
        ["example-gradient evaluations", compute.get("example_gradients")],
        ["wall time (s)", record.get("wall_time")],
    ]
    doc.table(["edit", "value"], rows)


def _pair(a: Any, b: Any) -> str | None:
    return None if a is None and b is None else f"{a}, {b}"


def _doc_train(doc: Document, config: dict[str, Any], results: dict[str, Any]) -> None:
    m = results.get("metrics") or {}
    doc.table(
        ["split", "examples", "accuracy (%)", "loss"],
        [[k, v.get("examples"), v.get("acc"), v.get("loss")] for k, v in m.items()],
    )
    per_class = results.get("per_class_test_acc") or {}
    if per_class:
        doc.table(["class", "test accuracy (%)"], [[k, v] for k, v in per_class.items()])


def _doc_edit(doc: Document, config: dict[str, Any], results: dict[str, Any]) -> None:
    what = results.get("forget") or results.get("changes") or {}
    doc.text(", ".join(f"{k}: {v}" for k, v in what.items() if v is not None))
    _metrics_table(doc, results)
    if results.get("record"):
        _edit_table(doc, results["record"])


#: the columns of the demo's table (``geninf demo``'s printout, README and report)
DEMO_COLUMNS = (
    "method",
    "params moved",
    "time (s)",
    "test acc",
    "self acc",
    "F1",
    "agreement w/ retrain",
    "example-grads",
)


def demo_table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """The cells of the demo's table (:data:`DEMO_COLUMNS`) for its result ``rows``."""
    return [
        [
            r["method"],
            r.get("moved"),
            f"{r['seconds']:.1f}",
            f"{r['test_acc']:.2f}",
            f"{r['self_acc']:.2f}",
            f"{r['f1']:.4f}",
            f"{r['agreement']:.2f}",
            str(r.get("example_gradients", "—")),
        ]
        for r in rows
    ]


def _doc_demo(doc: Document, config: dict[str, Any], results: dict[str, Any]) -> None:
    doc.text(results.get("description", ""))
    doc.table(list(DEMO_COLUMNS), demo_table_rows(results.get("rows") or []))


def _doc_score(doc: Document, config: dict[str, Any], results: dict[str, Any]) -> None:
    doc.text(results.get("convention", ""))
    for q in (results.get("queries") or [])[:8]:
        doc.text(f"query {q['split']}[{q['index']}] (label {q['label']})")
        rows = [
            [kind, i + 1, e["train"], e["label"], e["score"]]
            for kind in ("helpful", "harmful")
            for i, e in enumerate(q[kind])
        ]
        doc.table(["kind", "rank", "train index", "label", "score"], rows)
    si = results.get("self_influence")
    if si:
        doc.text("Training examples with the highest self-influence")
        doc.table(
            ["train index", "label", "self-influence"],
            [[e["train"], e["label"], e["score"]] for e in si["top"]],
        )


def _doc_bench(doc: Document, config: dict[str, Any], results: dict[str, Any]) -> None:
    doc.raw_markdown(results.get("_markdown", ""))


_BUILDERS: dict[str, Callable[[Document, dict[str, Any], dict[str, Any]], None]] = {
    "train": _doc_train,
    "remove": _doc_edit,
    "relabel": _doc_edit,
    "demo": _doc_demo,
    "score": _doc_score,
    "bench": _doc_bench,
}


def write_report(
    root: Path, config: dict[str, Any], results: dict[str, Any], *, markdown: str | None = None
) -> list[str]:
    """Write ``report.md`` and ``report.html`` into ``root``; return the images they show.

    ``markdown`` is shown verbatim (the experiments' own tables) for bench runs.
    """
    kind = config.get("kind", results.get("kind", "run"))
    title = results.get("title") or f"geninf {config.get('command', kind)}"
    doc = Document(title)
    doc.text(
        f"geninf {config.get('versions', {}).get('geninf', '')} · command: "
        f"{' '.join(['geninf', *config.get('argv', [])])}"
    )
    body = dict(results)
    if markdown is not None:
        body["_markdown"] = markdown
    _BUILDERS.get(kind, lambda *a: None)(doc, config, body)
    _images(doc, results, root)
    _notes(doc, results)
    atomic_write_text(root / "report.md", doc.to_markdown())
    atomic_write_text(root / "report.html", doc.to_html())
    return doc.images()
