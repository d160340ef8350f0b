"""What a selection chose, layer by layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["LayerSelection", "SelectionSummary"]


@dataclass(frozen=True)
class LayerSelection:
    """One layer group of a selection.

    Attributes:
        name: module name (``"(root)"`` for parameters held by the model itself).
        module_type: the module's class name.
        rule: the rule used, e.g. ``"output channels by |mean output|"``, ``"random elements"``,
            ``"excluded (normalization)"``, ``"elements by |θ| (fallback: module not called)"``.
        selected: number of selected elements.
        total: number of trainable elements of the group.
    """

    name: str
    module_type: str
    rule: str
    selected: int
    total: int

    @property
    def fraction(self) -> float:
        return self.selected / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.module_type,
            "rule": self.rule,
            "selected": self.selected,
            "total": self.total,
            "fraction": self.fraction,
        }


@dataclass(frozen=True)
class SelectionSummary:
    """Per-layer account of a :func:`geninf.select` call.

    Attributes:
        criterion: the criterion's string value.
        ratio: the ratio used (None for criteria without a budget).
        seed: the seed of the generator used for random draws (drawn from the OS when the call
            passed ``seed=None``; pass it back to reproduce the selection).
        num_examples: examples the statistics were computed on (0 when no statistic was needed).
        seconds: wall time of the selection.
        layers: one :class:`LayerSelection` per layer group, in ``named_modules()`` order.
    """

    criterion: str
    ratio: float | None
    seed: int | None
    num_examples: int
    seconds: float
    layers: tuple[LayerSelection, ...]

    @property
    def selected(self) -> int:
        return sum(layer.selected for layer in self.layers)

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers)

    @property
    def fraction(self) -> float:
        return self.selected / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of everything above (plus the totals)."""
        return {
            "criterion": self.criterion,
            "ratio": self.ratio,
            "seed": self.seed,
            "num_examples": self.num_examples,
            "seconds": self.seconds,
            "selected": self.selected,
            "total": self.total,
            "fraction": self.fraction,
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def format_table(self) -> str:
        """A plain-text table, one row per layer and a total row."""
        head = ("layer", "type", "rule", "selected", "total", "fraction")
        rows = [
            (x.name, x.module_type, x.rule, str(x.selected), str(x.total), f"{x.fraction:.2%}")
            for x in self.layers
        ]
        rows.append(("total", "", "", str(self.selected), str(self.total), f"{self.fraction:.2%}"))
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        right = {3, 4, 5}

        def fmt(row: tuple[str, ...]) -> str:
            cells = [
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            return "  ".join(cells).rstrip()

        title = (
            f"selection: {self.criterion}"
            + (f", ratio {self.ratio:g}" if self.ratio is not None else "")
            + f", {self.num_examples} examples, {self.seconds:.3g} s"
        )
        rule = "  ".join("-" * w for w in widths)
        return "\n".join([title, fmt(head), rule, *map(fmt, rows[:-1]), rule, fmt(rows[-1])])
