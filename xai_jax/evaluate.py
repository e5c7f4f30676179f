"""evaluate(): every metric for every method, as one results table.

    ex = xj.explain(model, xs)
    res = xj.evaluate(model, xs, ex)                   # the default metrics
    print(res.to_markdown())                           # mean [95% CI] per (method, metric)
    res.to_json("results.json"); xj.Results.load("results.json")

See docs/explain.md for the metrics' defaults and the table's columns.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from xai_jax import stream
from xai_jax.explain import Explanations, explain, spatial_maps
from xai_jax.metrics.result import bootstrap_interval

# metric name -> how it is called: "model" metric(model, xs, maps, targets), "support"
# metric(maps, support), "maps" metric(maps), "method" metric(model, xs, Method, targets)
KINDS = {
    "drop_increase": "model", "deletion_insertion": "model", "faithfulness_correlation": "model",
    "pixel_flipping": "model", "region_perturbation": "model", "road": "model", "infidelity": "model",
    "complement_log_odds": "model",
    "sparseness": "maps", "complexity": "maps",
    "pointing_game": "support", "relevance_mass": "support", "localisation_auroc": "support",
    "max_sensitivity": "method", "mprt": "method", "smooth_mprt": "method", "efficient_mprt": "method",
    "random_logit": "method", "completeness": "method",
}
DEFAULT_METRICS = ("drop_increase", "deletion_insertion", "sparseness")
SUPPORT_METRICS = ("pointing_game", "relevance_mass", "localisation_auroc")


class Results:
    """One row per (method, score): per-input scores, their mean and 95% bootstrap CI, and
    whether higher is better. A metric with several outputs (drop_increase: "drop" and
    "increase") gives one score per output; a metric with one output a score of its name.

    rows()           list of dicts: method, metric, score, n, mean, ci_low, ci_high, higher_is_better
    scores[(m, s)]   (N,) per-input values of method m, score s (absent after loading a CSV)
    to_markdown(), to_csv(path=None), to_json(path=None), to_pandas(); Results.load(path)
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], scores: Mapping[tuple[str, str], np.ndarray] | None = None,
                 skipped: Mapping[str, str] | None = None):
        self._rows = [dict(r) for r in rows]
        self.scores = dict(scores or {})
        self.skipped = dict(skipped or {})

    @classmethod
    def from_scores(cls, scores: Mapping[tuple[str, str, str], np.ndarray], higher: Mapping[str, bool],
                    skipped: Mapping[str, str] | None = None) -> Results:
        """From per-input scores keyed (method, metric, score) and score -> higher_is_better."""
        rows, flat = [], {}
        for (method, metric, score), v in scores.items():
            v = np.asarray(v, np.float64).ravel()
            finite = v[np.isfinite(v)]
            lo, hi = bootstrap_interval(v)
            rows.append({"method": method, "metric": metric, "score": score, "n": int(finite.size),
                         "mean": float(finite.mean()) if finite.size else float("nan"), "ci_low": lo, "ci_high": hi,
                         "higher_is_better": bool(higher[score])})
            flat[(method, score)] = v
        return cls(rows, flat, skipped)

    def rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._rows]

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r["method"] for r in self._rows))

    @property
    def score_names(self) -> list[str]:
        return list(dict.fromkeys(r["score"] for r in self._rows))

    def mean(self, method: str, score: str) -> float:
        return self._row(method, score)["mean"]

    def ci(self, method: str, score: str) -> tuple[float, float]:
        r = self._row(method, score)
        return r["ci_low"], r["ci_high"]

    def higher_is_better(self, score: str) -> bool:
        for r in self._rows:
            if r["score"] == score:
                return r["higher_is_better"]
        raise KeyError(f"no score {score!r}; scores: {self.score_names}")

    def _row(self, method: str, score: str) -> dict:
        for r in self._rows:
            if r["method"] == method and r["score"] == score:
                return r
        raise KeyError(f"no row ({method!r}, {score!r}); methods {self.methods}, scores {self.score_names}")

    def __repr__(self) -> str:
        return f"Results({len(self.methods)} methods x {len(self.score_names)} scores)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Results) and _same_rows(self._rows, other._rows)

    # ------------------------------------------------------------------ writers
    def to_markdown(self, digits: int = 3) -> str:
        """Methods as rows, scores as columns: "mean [low, high]"; the header marks each score
        with ↑ (higher is better) or ↓."""
        scores = self.score_names
        head = ["method"] + [f"{s} {'↑' if self.higher_is_better(s) else '↓'}" for s in scores]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in self.methods:
            cells = [m]
            for s in scores:
                try:
                    r = self._row(m, s)
                except KeyError:
                    cells.append("")
                    continue
                cells.append(f"{r['mean']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    COLUMNS = ("method", "metric", "score", "n", "mean", "ci_low", "ci_high", "higher_is_better")

    def to_csv(self, path: str | Path | None = None) -> str:
        """The summary rows (COLUMNS) as CSV; written to path when given."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.COLUMNS)
        for r in self._rows:
            w.writerow([repr(r[c]) if isinstance(r[c], float) else r[c] for c in self.COLUMNS])
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_json(self, path: str | Path | None = None) -> str:
        """The rows, the per-input scores and the skipped methods/metrics as JSON (NaN as null)."""
        obj = {"format": "xai_jax.results/1", "rows": [_nan_to_none(r) for r in self._rows],
               "scores": [{"method": m, "score": s, "values": [None if not math.isfinite(x) else x for x in v.tolist()]}
                          for (m, s), v in self.scores.items()],
               "skipped": self.skipped}
        text = json.dumps(obj, indent=1)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def to_pandas(self):
        """The summary rows as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("Results.to_pandas needs pandas: pip install pandas") from e
        return pd.DataFrame(self.rows(), columns=list(self.COLUMNS))

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """Reads what to_json or to_csv wrote (a CSV holds no per-input scores)."""
        p = Path(path)
        text = p.read_text()
        if p.suffix == ".json" or text.lstrip().startswith("{"):
            obj = json.loads(text)
            if obj.get("format") != "xai_jax.results/1":
                raise ValueError(f"{p} is not an xai_jax results file (format {obj.get('format')!r})")
            rows = [{k: (float("nan") if v is None and k in ("mean", "ci_low", "ci_high") else v) for k, v in r.items()}
                    for r in obj["rows"]]
            scores = {(s["method"], s["score"]): np.array([np.nan if x is None else x for x in s["values"]],
                                                           np.float64) for s in obj["scores"]}
            return cls(rows, scores, obj.get("skipped"))
        reader = csv.DictReader(io.StringIO(text))
        if tuple(reader.fieldnames or ()) != cls.COLUMNS:
            raise ValueError(f"{p}: expected the columns {cls.COLUMNS}, got {reader.fieldnames}")
        rows = []
        for r in reader:
            rows.append({"method": r["method"], "metric": r["metric"], "score": r["score"], "n": int(r["n"]),
                         "mean": float(r["mean"]), "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]),
                         "higher_is_better": r["higher_is_better"] == "True"})
        return cls(rows)


def _nan_to_none(r: Mapping[str, Any]) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}


def _same_rows(a, b) -> bool:
    if len(a) != len(b):
        return False
    for r, s in zip(a, b):
        for k in Results.COLUMNS:
            x, y = r[k], s[k]
            if isinstance(x, float) and isinstance(y, float):
                if not (x == y or (math.isnan(x) and math.isnan(y))):
                    return False
            elif x != y:
                return False
    return True


def _metric(name: str):
    import xai_jax.metrics as M
    if not isinstance(name, str):
        raise TypeError(f"metrics: each item must be a metric name, got {type(name).__name__}")
    if name not in KINDS:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(KINDS)}")
    return getattr(M, name), KINDS[name]


def _choose_metrics(metrics: Any, support) -> list[str]:
    if isinstance(metrics, str) and metrics == "default":
        return list(DEFAULT_METRICS) + (list(SUPPORT_METRICS) if support is not None else [])
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, Sequence) or not metrics:
        raise TypeError(f"metrics must be 'default' or a non-empty list of metric names, got {metrics!r}")
    for m in metrics:
        _, kind = _metric(m)
        if kind == "support" and support is None:
            raise ValueError(f"metric {m!r} needs the ground truth: pass support= (N, *spatial) booleans")
    return list(metrics)


def _scores_of(result, metric: str) -> dict[str, np.ndarray]:
    if isinstance(result.scores, dict):
        return {s: np.asarray(v, np.float64) for s, v in result.scores.items()}
    return {metric: np.asarray(result.scores, np.float64)}


def _higher_of(result, metric: str) -> dict[str, bool]:
    h = result.higher_is_better
    return dict(h) if isinstance(h, dict) else {metric: bool(h)}


def _evaluate_chunk(model, x, maps_of, methods, targets, support, chosen, options, key, batch_size, channel_axis,
                    bar, skipped) -> tuple[dict, dict]:
    """Per-input scores {(method, metric, score): (n,)} for one chunk of inputs."""
    out, higher = {}, {}
    for name in methods:
        for metric in chosen:
            fn, kind = _metric(metric)
            if bar is not None:
                bar.set_description(f"evaluate: {metric} of {name}")
            opts = dict(options.get(metric, {}))
            common = {}
            if kind in ("model", "method"):
                common = dict(key=key, batch_size=batch_size, channel_axis=channel_axis)
            if kind == "model":
                res = fn(model, x, maps_of(name, False), targets, **common, **opts)
            elif kind == "method":
                method = methods[name]
                if method is None:
                    skipped[f"{metric} of {name}"] = "needs the Method (pass explain's result, not maps)"
                    continue
                res = fn(model, x, method, targets, **common, **opts)
            elif kind == "support":
                res = fn(maps_of(name, True), support, **opts)
            else:
                res = fn(maps_of(name, True), **opts)
            for s, v in _scores_of(res, metric).items():
                out[(name, metric, s)] = v
            higher.update(_higher_of(res, metric))
            if bar is not None:
                bar.update(1)
    return out, higher


def evaluate(model: Any, xs: Any, explanations: Any = "default", metrics: Any = "default", targets: Any = None,
             support: Any = None, *, params: Any = None, key: jax.Array | None = None, batch_size: int | None = None,
             channel_axis: int | None = None, options: Mapping[str, Mapping[str, Any]] | None = None,
             out_dir: str | Path | None = None, resume: bool = True, progress: bool | None = None) -> Results:
    """Every metric for every method: a Results table.

    model, xs: as for explain (an array (N, ...) or a source of batches).
    explanations: explain's result (Explanations, in memory or streamed), a dict
      method name -> maps (N, ...) in xs's order, or what explain's `methods` takes ("default",
      names, Methods): then explain runs first (into out_dir/explanations when streaming).
    metrics: "default" (drop_increase, deletion_insertion, sparseness; with support= also
      pointing_game, relevance_mass, localisation_auroc) or a list of xai_jax.metrics names.
      Metrics that recompute maps (max_sensitivity, the MPRT family, random_logit,
      completeness) need the Methods: pass explain's result.
    targets: None (an Explanations' own targets, else the predicted classes), "labels" or (N,).
    support: (N, *spatial) booleans, the ground-truth regions (enables the localisation metrics).
    Ground-truth and complexity metrics see one value per position (Explanations.spatial), as
      magnitudes |map| (a position's relevance is its size; the sign is its direction); the
      model metrics get the maps as they are (input-shaped maps are summed over channels).
    options: per-metric keyword arguments, e.g. {"drop_increase": {"k": 0.2}}.
    key: for the keyed metrics (default jax.random.key(0)); shard k of a streamed run uses
      fold_in(key, k). batch_size, channel_axis: passed to every model metric.
    out_dir: stream: the per-input scores are written per shard of the explanations (same
      format as explain's, xai_jax.stream), resumable, and results.json at the end.
    """
    from xai_jax.checks import check_key
    from xai_jax.explain import _model
    model = _model(model, params)
    key = jax.random.key(0) if key is None else check_key(key)
    options = dict(options or {})
    for m, o in options.items():
        if m not in KINDS or not isinstance(o, Mapping):
            raise ValueError(f"options must map metric names to keyword dicts, got {m!r}: {o!r}")
    chosen = _choose_metrics(metrics, support)
    if not isinstance(explanations, (Explanations, Mapping)):
        sub = None if out_dir is None else Path(out_dir) / "explanations"
        explanations = explain(model, xs, explanations, targets, key=key, channel_axis=channel_axis, out_dir=sub,
                               resume=resume, progress=progress)
    if isinstance(explanations, Mapping) and not isinstance(explanations, Explanations):
        if stream.is_source(xs):
            raise ValueError("evaluate: with a source of batches, pass explain(..., out_dir=...)'s result or method "
                             "names, not a dict of maps")
        shape = tuple(np.shape(xs)[1:])
        maps = {str(k): np.asarray(v) for k, v in explanations.items()}
        explanations = Explanations(maps, None, methods={k: None for k in maps},
                                    spatial={k: tuple(v.shape[1:]) != shape for k, v in maps.items()},
                                    signed={k: bool((v < 0).any()) for k, v in maps.items()})
    methods = explanations.methods
    skipped: dict[str, str] = dict(getattr(explanations, "skipped", {}))
    labels = isinstance(targets, str)
    if labels and targets != "labels":
        raise ValueError(f"evaluate: targets must be None, 'labels' or class indices, got {targets!r}")
    streamed = explanations.directory is not None
    if not streamed:
        if labels:
            targets = explanations.labels
            if targets is None:
                raise ValueError("evaluate: targets='labels' but the data has no labels")
        elif targets is None and explanations._targets is not None:
            targets = explanations.targets
    total = len(methods) * len(chosen)
    show = bool(progress) if progress is not None else True
    if not streamed and not stream.is_source(xs):
        x = np.asarray(xs)
        n = len(x)
        for name in methods:
            if len(explanations[name]) != n:
                raise ValueError(f"explanations[{name!r}] has {len(explanations[name])} maps for {n} inputs")
        sup = None if support is None else np.asarray(support)
        if sup is not None and len(sup) != n:
            raise ValueError(f"support has {len(sup)} rows for {n} inputs")

        def maps_of(name, spatial):
            m = explanations[name]
            if not spatial:
                return m
            return np.abs(spatial_maps(m, explanations.is_spatial[name], explanations.reduce[name]))

        with tqdm(total=total, disable=not show, file=sys.stderr, unit="metric") as bar:
            scores, higher = _evaluate_chunk(model, x, maps_of, methods, None if targets is None else
                                             np.asarray(targets), sup, chosen, options, key, batch_size,
                                             channel_axis, bar, skipped)
        return Results.from_scores(scores, higher, skipped)
    return _evaluate_stream(model, xs, explanations, chosen, targets, support, options, key, batch_size,
                            channel_axis, out_dir, resume, show, skipped)


def _evaluate_stream(model, xs, ex: Explanations, chosen, targets, support, options, key, batch_size, channel_axis,
                     out_dir, resume, show, skipped) -> Results:
    if ex.directory is None:
        raise ValueError("evaluate: a source of batches needs streamed explanations (explain(..., out_dir=...)) "
                         "or explanations computed here (pass method names and out_dir=)")
    if out_dir is None:
        raise ValueError("evaluate: a streamed run needs out_dir= for its per-input scores")
    index = ex._index()
    names = list(ex.methods)
    explained = hashlib.sha1((ex.directory / "index.json").read_bytes()).hexdigest()
    settings = {"kind": "evaluate", "methods": names, "metrics": list(chosen), "explanations_index_sha1": explained,
                "key": np.asarray(jax.random.key_data(key)).tolist(),
                "options": json.loads(json.dumps(options, default=repr, sort_keys=True))}
    d = stream.start_run(out_dir, settings, resume, "evaluate")
    done = stream.done_shards(d)
    proc, nproc = stream.process_info()
    source = xs if stream.is_source(xs) else [np.asarray(xs)]
    shard_size = index["shards"][0]["stop"] - index["shards"][0]["start"]
    higher: dict[str, bool] = {}
    bar = tqdm(total=len(index["shards"]), desc="evaluate: shards", unit="shard", disable=not show, file=sys.stderr)
    sup_all = None if support is None else support
    for (k, x, _), entry in zip(stream.shards(source, shard_size, "xs"), index["shards"]):
        if k % nproc != proc:
            continue
        lo, hi = entry["start"], entry["stop"]
        if len(x) != hi - lo:
            raise ValueError(f"evaluate: shard {k} of the source has {len(x)} inputs, the explanations {hi - lo}")
        if k in done:
            bar.update(1)
            continue
        with np.load(ex.directory / entry["file"]) as z:
            if str(z["input_sha1"]) != stream.fingerprint(x):
                raise ValueError(f"evaluate: the inputs of shard {k} are not those the explanations were computed on")
            arrays = {f"map_{i}": z[f"map_{i}"] for i in range(len(names))}
            if isinstance(targets, str):
                if "labels" not in z.files:
                    raise ValueError("evaluate: targets='labels' but the data has no labels")
                t = z["labels"]
            else:
                t = z["targets"] if targets is None else np.asarray(targets)[lo:hi]

        def maps_of(name, spatial, arrays=arrays):
            m = arrays[f"map_{names.index(name)}"]
            return np.abs(spatial_maps(m, ex.is_spatial[name], ex.reduce[name])) if spatial else m

        sup = None if sup_all is None else np.asarray(sup_all[lo:hi])
        scores, h = _evaluate_chunk(model, x, maps_of, {n: ex.methods.get(n) for n in names}, t, sup, chosen,
                                    options, jax.random.fold_in(key, k), batch_size, channel_axis, None, skipped)
        higher.update(h)
        cols = sorted(scores)
        stream.write_npz(d / stream.SHARD.format(k), {
            **{f"s{i}": v for i, v in enumerate(scores[c] for c in cols)},
            "index": np.arange(lo, hi, dtype=np.int64),
            "columns": np.asarray(["\t".join(c) for c in cols]),
            "higher": np.asarray([f"{s}\t{int(v)}" for s, v in sorted(h.items())])})
        bar.update(1)
    bar.close()
    stream.finish_run(d, {"kind": "evaluate", "methods": names, "metrics": list(chosen)}, "evaluate")
    parts: dict[tuple[str, str, str], list[np.ndarray]] = {}
    for entry in json.loads((d / "index.json").read_text())["shards"]:
        with np.load(d / entry["file"]) as z:
            cols = [tuple(c.split("\t")) for c in z["columns"].tolist()]
            for i, c in enumerate(cols):
                parts.setdefault(c, []).append(z[f"s{i}"])
            for line in z["higher"].tolist():
                s, v = line.split("\t")
                higher[s] = bool(int(v))
    order = [(n, m) for n in names for m in chosen]
    keyed = sorted(parts, key=lambda c: order.index((c[0], c[1])) if (c[0], c[1]) in order else len(order))
    res = Results.from_scores({c: np.concatenate(parts[c]) for c in keyed}, higher, skipped)
    if stream.process_info()[0] == 0:
        res.to_json(d / "results.json")
    return res
