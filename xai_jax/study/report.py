"""Results -> Markdown and CSV tables, JSON, and a report.md tying figures and numbers."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# metric -> (column title, better direction); the ranking set, in table order
METRICS = {
    "drop": ("drop rate", "lower"),
    "increase": ("increase rate", "higher"),
    "deletion_auc": ("deletion AUC", "lower"),
    "insertion_auc": ("insertion AUC", "higher"),
    "pointing_game": ("pointing game", "higher"),
    "relevance_mass": ("relevance mass", "higher"),
    "relevance_mass_min": ("relevance mass, min-shifted", "higher"),
    "auroc": ("localisation AUROC", "higher"),
    "completeness_error": ("|completeness error|", "lower"),
}
# variants reported beside the ranking set: the study's convention, signed maps, "any" supports
VARIANTS = {
    "drop_study": ("drop rate, study convention", "lower"),
    "increase_study": ("increase rate, study convention", "higher"),
    **{f"{m}_signed": (f"{METRICS[m][0]}, signed map", "higher")
       for m in ("pointing_game", "relevance_mass", "relevance_mass_min", "auroc")},
    **{f"{m}_any": (f"{METRICS[m][0]}, 'any' support", "higher")
       for m in ("pointing_game", "relevance_mass", "relevance_mass_min", "auroc")},
}
ALL_METRICS = {**METRICS, **VARIANTS}
_LOCALISATION = ("pointing_game", "relevance_mass", "relevance_mass_min", "auroc")
# the column groups of the rank figure (each group framed and titled; ranks coloured per column)
METRIC_GROUPS = {
    "ranking metrics": list(METRICS),
    "study convention": ["drop_study", "increase_study"],
    "signed maps": [f"{m}_signed" for m in _LOCALISATION],
    "'any' support": [f"{m}_any" for m in _LOCALISATION],
}
# what each variant group is, for the text above the variants table
_VARIANT_TEXT = {
    "study convention": "drop/increase under the study's float32 convention",
    "signed maps": "localisation of the signed maps of signed methods (the ranking uses |map|)",
    "'any' support": "localisation against the looser 'any template contribution' support",
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
                 cost_ms: Mapping[str, float] | None = None,
                 metrics: Mapping[str, tuple[str, str]] = METRICS) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of method x metric 'mean [lo, hi]' cells, plus ms per input."""
    table = metrics
    metrics = [m for m in table if any(m in s for s in summary.values())]
    header = ["method"] + [f"{table[m][0]} ({table[m][1]} is better)" for m in metrics]
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
    """Writes metrics.md (the ranking metrics), variants.md (study convention, signed maps,
    'any' supports), metrics.csv (all) and per_class.csv; returns the ranking table."""
    out = Path(out_dir)
    header, rows = metric_table(measured["summary"], cost_ms)
    md = markdown_table(header, rows)
    (out / "metrics.md").write_text(md)
    if any(m in s for s in measured["summary"].values() for m in VARIANTS):
        v_header, v_rows = metric_table(measured["summary"], None, VARIANTS)
        (out / "variants.md").write_text(markdown_table(v_header, v_rows))
    csv_header = ["method"]
    csv_rows: dict[str, list] = {name: [name] for name in measured["summary"]}
    for m in ALL_METRICS:
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


def variants_table(measured: Mapping[str, Any]) -> str:
    """Markdown table of the variant metrics (empty string when there are none)."""
    if not any(m in s for s in measured["summary"].values() for m in VARIANTS):
        return ""
    header, rows = metric_table(measured["summary"], None, VARIANTS)
    return markdown_table(header, rows)


def variants_intro(measured: Mapping[str, Any]) -> str:
    """One sentence naming the variant groups that the variants table holds, and those that
    this run did not measure, so that the text and the table agree."""
    present = {m for s in measured["summary"].values() for m in s}
    have = [text for g, text in _VARIANT_TEXT.items() if present & set(METRIC_GROUPS[g])]
    missing = [text for g, text in _VARIANT_TEXT.items() if not present & set(METRIC_GROUPS[g])]
    if not have:
        return "No variant metrics were measured in this run."
    line = "The variants measured beside the ranking metrics: " + "; ".join(have) + "."
    if missing:
        line += " Not measured in this run: " + "; ".join(missing) + "."
    return line


def shares_note(measured: Mapping[str, Any]) -> str:
    """One paragraph: how many inputs saturate in float32 and which methods had ties."""
    shares = measured.get("shares") or {}
    if not shares:
        return ""
    first = next(iter(shares.values()))
    parts = [f"{first.get('saturated', first.get('saturated_study', 0.0)):.1%} of the inputs have a float32 "
             "softmax score of exactly 1.0 for their class (the precise convention compares them exactly; "
             "the study's cannot register an increase for them)."]
    tied = [f"{name} {s.get('tie_topk', 0.0):.0%} / {s.get('tie_ordering', 0.0):.0%}" for name, s in shares.items()
            if s.get("tie_topk", 0.0) > 0 or s.get("tie_ordering", 0.0) > 0]
    if tied:
        parts.append("Inputs with exact ties at the top-k cut / in the deletion ordering, resolved as the "
                     "expectation over random tie orders: " + "; ".join(tied) + ".")
    else:
        parts.append("No map had exact ties at the top-k cut or in the deletion ordering.")
    return " ".join(parts)


def findings(summary: Mapping[str, Mapping[str, tuple[float, float, float]]], a: str, b: str,
             metrics: Sequence[str] | None = None) -> list[str]:
    """Sentences comparing methods a and b metric by metric from the means and 95% CIs:
    which is better (its mean first: "deletion AUC: IG (0.106 vs 0.114; ...)"), and whether the
    intervals are disjoint (a clear difference) or overlap."""
    if a not in summary or b not in summary:
        return []
    metrics = [m for m in (metrics or METRICS) if m in summary[a] and m in summary[b]]
    wins = {a: [], b: []}
    lines = []
    for m in metrics:
        title, better = ALL_METRICS[m]
        (ma, la, ha), (mb, lb, hb) = summary[a][m], summary[b][m]
        if ma == mb:
            lines.append(f"- {title}: tie ({ma:.3f}).")
            continue
        winner = a if (ma < mb) == (better == "lower") else b
        clear = ha < lb or hb < la
        wins[winner].append((m, clear))
        mw, ml = (ma, mb) if winner == a else (mb, ma)  # the winner's number first
        lines.append(f"- {title}: {winner} ({mw:.3f} vs {ml:.3f}; 95% CIs "
                     f"{'disjoint' if clear else 'overlap'}).")
    n_clear = {k: sum(c for _, c in v) for k, v in wins.items()}
    head = (f"{a} is better than {b} on {len(wins[a])} of {len(metrics)} metrics ({n_clear[a]} with disjoint "
            f"95% CIs); {b} on {len(wins[b])} ({n_clear[b]} disjoint).")
    return [head, *lines]
