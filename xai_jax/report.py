"""Results -> Markdown and CSV tables, JSON, and a report.md tying figures and numbers."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# metric -> (column title, better direction)
METRICS = {
    "drop": ("drop rate", "lower"),
    "increase": ("increase rate", "higher"),
    "deletion_auc": ("deletion AUC", "lower"),
    "insertion_auc": ("insertion AUC", "higher"),
    "pointing_game": ("pointing game", "higher"),
    "relevance_mass": ("relevance mass", "higher"),
    "auroc": ("localisation AUROC", "higher"),
    "completeness_error": ("|completeness error|", "lower"),
}


def _jsonable(obj: Any):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    Path(path).write_text(json.dumps(_jsonable(obj), indent=2))


def metric_table(summary: Mapping[str, Mapping[str, tuple[float, float, float]]],
                 cost_ms: Mapping[str, float] | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of method x metric 'mean [lo, hi]' cells, plus ms per input."""
    metrics = [m for m in METRICS if any(m in s for s in summary.values())]
    header = ["method"] + [f"{METRICS[m][0]} ({METRICS[m][1]} is better)" for m in metrics]
    if cost_ms is not None:
        header.append("ms / input")
    rows = []
    for name, s in summary.items():
        row = [name]
        for m in metrics:
            row.append(f"{s[m][0]:.3f} [{s[m][1]:.3f}, {s[m][2]:.3f}]" if m in s else "")
        if cost_ms is not None:
            row.append(f"{cost_ms.get(name, float('nan')):.2f}")
        rows.append(row)
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def write_metric_tables(out_dir: str | os.PathLike, measured: Mapping[str, Any],
                        cost_ms: Mapping[str, float] | None, class_names: Sequence[str] | None = None) -> str:
    """Writes metrics.md / metrics.csv / per_class.csv; returns the Markdown table."""
    out = Path(out_dir)
    header, rows = metric_table(measured["summary"], cost_ms)
    md = markdown_table(header, rows)
    (out / "metrics.md").write_text(md)
    csv_header = ["method"]
    csv_rows: dict[str, list] = {name: [name] for name in measured["summary"]}
    for m in METRICS:
        if any(m in s for s in measured["summary"].values()):
            csv_header += [f"{m}_mean", f"{m}_ci_lo", f"{m}_ci_hi"]
            for name, s in measured["summary"].items():
                csv_rows[name] += list(s.get(m, ("", "", "")))
    if cost_ms is not None:
        csv_header.append("ms_per_input")
        for name in csv_rows:
            csv_rows[name].append(cost_ms.get(name, ""))
    write_csv(out / "metrics.csv", csv_header, list(csv_rows.values()))
    pc_rows = []
    for name, metrics in measured["per_class"].items():
        for metric, by_class in metrics.items():
            pc_rows.append([name, metric] + [f"{by_class[c]:.4f}" for c in sorted(by_class)])
    first = next(iter(measured["per_class"].values()))
    classes = sorted(next(iter(first.values())))
    names = [class_names[c] if class_names else str(c) for c in classes]
    write_csv(out / "per_class.csv", ["method", "metric"] + names, pc_rows)
    return md
