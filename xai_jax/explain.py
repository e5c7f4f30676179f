"""explain(): the maps of several methods for a model and a data set of any size.

    ex = xj.explain(model, xs)                        # the default methods, predicted classes
    ex["Grad-CAM"]                                    # (N, *spatial) maps
    ex = xj.explain(model, batches, targets="labels", out_dir="runs/ex")   # streamed, resumable

`model` is anything the adapters take (a function f(x) -> scores of one input, xai_jax.Model
for linen with batch_stats / Haiku, an NNX or Equinox module, xai_jax.Split). `xs` is an
array (N, ...) or a source of batches (xai_jax.stream). See docs/explain.md.
"""

from __future__ import annotations

import sys
import time
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from xai_jax import stream
from xai_jax.batching import attribute
from xai_jax.method import Method
from xai_jax.registry import REGISTRY, Context, MethodSpec, lookup

METHOD_SETS = ("default", "all")


def _model(model: Any, params: Any):
    from xai_jax.adapters.base import Model
    if params is not None:
        return Model(model, params)
    return model


def _context(shape: tuple[int, ...], channel_axis: int | None, light: bool, references) -> Context:
    spatial = list(shape)
    if len(spatial) >= 2:
        del spatial[channel_axis if channel_axis is not None else -1]
    return Context(ndim=max(1, len(spatial)), size=int(max(spatial)) if spatial else 1, light=bool(light),
                   references=None if references is None else np.asarray(references))


def _has_layer(model, x_shape: tuple[int, ...], dtype) -> str | None:
    """None when the model has a layer the CAMs can use (its last convolution), else why not."""
    from xai_jax.adapters import adapt
    try:
        adapter = adapt(model, who="explain")
        adapter.resolve(None, tuple(x_shape), dtype)
    except (TypeError, ValueError) as e:
        return str(e).split("\n")[0]
    return None


def resolve_methods(model: Any, methods: Any, ctx: Context, x_shape: tuple[int, ...],
                    dtype) -> tuple[dict[str, Method], dict[str, MethodSpec | None], dict[str, str]]:
    """(name -> Method, name -> its registry spec or None, skipped name -> reason)."""
    skipped: dict[str, str] = {}
    if isinstance(methods, str) and methods in METHOD_SETS:
        chosen: list[Any] = []
        no_layer = None
        for spec in REGISTRY.values():
            if methods == "default" and not spec.default or methods == "all" and not spec.all:
                continue
            if spec.image_only and not ctx.image:
                continue
            if spec.needs_references and ctx.references is None:
                skipped[spec.name] = "needs references= (baseline inputs, e.g. training samples)"
                continue
            if spec.layer:
                no_layer = no_layer if no_layer is not None else (_has_layer(model, x_shape, dtype) or "")
                if no_layer:
                    skipped[spec.name] = f"the model has no layer to explain ({no_layer})"
                    continue
            chosen.append(spec)
        cams = [n for n, why in skipped.items() if why.startswith("the model has no layer")]
        if cams:
            warnings.warn(f"explain: left out the layer methods {cams}: {skipped[cams[0]]}", stacklevel=3)
    elif isinstance(methods, str) or isinstance(methods, Method):
        chosen = [methods]
    elif isinstance(methods, Mapping):
        chosen = list(methods.items())
    elif isinstance(methods, Sequence):
        chosen = list(methods)
        if not chosen:
            raise ValueError("methods is empty: pass 'default', 'all', names or Methods")
    else:
        raise TypeError(f"methods must be 'default', 'all', a list of names or Methods, or a dict name -> Method; "
                        f"got {type(methods).__name__}")
    built: dict[str, Method] = {}
    specs: dict[str, MethodSpec | None] = {}
    for item in chosen:
        name, spec = None, None
        if isinstance(item, tuple):
            name, item = item
        if isinstance(item, str):
            spec = lookup(item)
            method = spec.build(model, ctx)
            name = name or spec.name
        elif isinstance(item, MethodSpec):
            spec, method, name = item, item.build(model, ctx), name or item.name
        elif isinstance(item, Method):
            method = item
            name = name or item.name
        elif callable(item):
            raise TypeError(f"methods: {item!r} is a plain callable; wrap it with xai_jax.Method.wrap(fn, model=f) "
                            f"so that explain knows whether it takes a key and what it explains")
        else:
            raise TypeError(f"methods: each item must be a method name or a Method, got {type(item).__name__}")
        if not isinstance(name, str):
            raise TypeError(f"methods: names must be str, got {type(name).__name__}")
        base, i = name, 2
        while name in built:
            name, i = f"{base} ({i})", i + 1
        built[name], specs[name] = method, spec
    return built, specs, skipped


class Explanations(Mapping):
    """What explain returns: a Mapping method name -> maps (N, ...) as each method returns them
    (input-shaped for gradient methods, spatial for CAMs), plus

    targets      (N,) the classes explained
    labels       (N,) the data's labels when the source had them, else None
    methods      name -> the Method that computed the maps
    ms_per_input name -> milliseconds per input (compilation excluded), for this process's run
    skipped      name -> why a method of the chosen set was left out
    directory    the run directory of a streamed run (maps are read from its shards on access)

    `spatial(name)` gives the maps as one value per position (see `spatial_maps`).
    """

    def __init__(self, maps: Mapping[str, np.ndarray] | None, targets: np.ndarray | None, *,
                 methods: Mapping[str, Any], ms_per_input: Mapping[str, float] | None = None,
                 skipped: Mapping[str, str] | None = None, labels: np.ndarray | None = None,
                 directory: Path | None = None, signed: Mapping[str, bool] | None = None,
                 spatial: Mapping[str, bool] | None = None, reduce: Mapping[str, str] | None = None):
        self._maps = dict(maps) if maps is not None else None
        self._targets = targets
        self._labels = labels
        self.methods = dict(methods)
        self.ms_per_input = dict(ms_per_input or {})
        self.skipped = dict(skipped or {})
        self.directory = directory
        self.signed = dict(signed or {n: bool(getattr(m, "signed", True)) for n, m in self.methods.items()})
        self.is_spatial = dict(spatial or {n: getattr(m, "output", "input") == "spatial"
                                           for n, m in self.methods.items()})
        self.reduce = {n: "sum" for n in self.methods} | dict(reduce or {})

    # ------------------------------------------------------------------ Mapping
    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.methods:
            raise KeyError(f"{name!r}: this run has {list(self.methods)}")
        if self._maps is not None:
            return self._maps[name]
        i = list(self.methods).index(name)
        return np.concatenate([s[f"map_{i}"] for _, s in self.shards()])

    def __iter__(self) -> Iterator[str]:
        return iter(self.methods)

    def __len__(self) -> int:
        return len(self.methods)

    def __repr__(self) -> str:
        where = f", directory={str(self.directory)!r}" if self.directory else ""
        return f"Explanations({list(self.methods)}, n={self.n}{where})"

    @property
    def n(self) -> int:
        if self._maps is not None:
            return len(self._targets)
        return int(self._index()["n"])

    @property
    def targets(self) -> np.ndarray:
        if self._targets is None:
            self._targets = np.concatenate([s["targets"] for _, s in self.shards()])
        return self._targets

    @property
    def labels(self) -> np.ndarray | None:
        if self._labels is None and self.directory is not None:
            parts = [s.get("labels") for _, s in self.shards()]
            self._labels = None if any(p is None for p in parts) else np.concatenate(parts)
        return self._labels

    def spatial(self, name: str) -> np.ndarray:
        """The maps of `name` with one value per position: spatial maps as they are; input-shaped
        maps summed over the channel axis (the last), or their |map| summed for the methods
        whose registry entry says reduce="abs_sum" (saliency, SmoothGrad)."""
        return spatial_maps(self[name], self.is_spatial[name], self.reduce[name])

    # ------------------------------------------------------------------ streamed runs
    def _index(self) -> dict:
        import json
        return json.loads((self.directory / "index.json").read_text())

    def shards(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(start, arrays) per shard of a streamed run; one shard of everything in memory."""
        if self._maps is not None:
            arrays = {f"map_{i}": self._maps[n] for i, n in enumerate(self.methods)}
            arrays["targets"] = self._targets
            if self._labels is not None:
                arrays["labels"] = self._labels
            yield 0, arrays
            return
        for entry in self._index()["shards"]:
            with np.load(self.directory / entry["file"]) as z:
                yield entry["start"], {k: z[k] for k in z.files}

    @classmethod
    def load(cls, directory: str | Path) -> Explanations:
        """A streamed run's results from its directory (written by explain(..., out_dir=...))."""
        import json
        d = Path(directory)
        if not (d / "index.json").exists():
            raise FileNotFoundError(f"{d} holds no finished explain run (no index.json): run or resume explain "
                                    f"with out_dir={str(d)!r}")
        index = json.loads((d / "index.json").read_text())
        names = index["methods"]
        return cls(None, None, methods={n: None for n in names}, directory=d, skipped=index.get("skipped"),
                   signed=dict(zip(names, index["signed"])), spatial=dict(zip(names, index["spatial"])),
                   reduce=dict(zip(names, index["reduce"])))


def spatial_maps(maps: np.ndarray, is_spatial: bool, reduce: str = "sum") -> np.ndarray:
    """One value per position: spatial maps unchanged; input-shaped (N, ..., C) maps summed
    over the (last) channel axis ("sum") or their magnitudes summed ("abs_sum")."""
    maps = np.asarray(maps)
    if is_spatial:
        return maps
    return maps.sum(-1) if reduce == "sum" else np.abs(maps).sum(-1)


def _reductions(specs: Mapping[str, MethodSpec | None]) -> dict[str, str]:
    return {n: (s.reduce if s is not None else "sum") for n, s in specs.items()}


def _resolve_targets(targets: Any, who: str) -> Any:
    if targets is None or (isinstance(targets, str) and targets == "labels"):
        return targets
    if isinstance(targets, str):
        raise ValueError(f"{who}: targets must be None (the predicted class), 'labels' (the data's labels) or "
                         f"class indices (N,); got {targets!r}")
    return np.asarray(targets)


def _targets_for(targets, y, lo: int, hi: int, f, x) -> np.ndarray:
    from xai_jax.metrics.signature import predicted_targets
    if targets is None:
        return predicted_targets(f, x)
    if isinstance(targets, str):
        if y is None:
            raise ValueError("targets='labels' but the data has no labels: give (x, y) pairs or dicts with 'label'")
        return np.asarray(y)
    if len(targets) < hi:
        raise ValueError(f"targets has {len(targets)} entries but the data has at least {hi} inputs")
    return np.asarray(targets[lo:hi])


def _run_methods(methods: Mapping[str, Method], specs, ctx: Context, x: np.ndarray, t: np.ndarray, key,
                 first_index: int, batch_size: int | None, progress: bool | None, times: dict) -> list[np.ndarray]:
    out = []
    for name, method in methods.items():
        spec = specs.get(name)
        keyed = bool(getattr(method, "keyed", False))
        k = jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF) if keyed else None
        if spec is not None and spec.host:
            maps = _host_method(method, x, t, k, first_index, times, name)
        else:
            bs = batch_size or (spec.batch(ctx) if spec is not None else None)
            timing: dict = {}
            maps = attribute(method, x, t, key=k, batch_size=bs and min(bs, len(x)), progress=progress, desc=name,
                             first_index=first_index, timing=timing)
            acc = times.setdefault(name, [0.0, 0, 0.0, 0])  # rest s, rest rows, first-batch s, rows
            acc[0] += timing.get("rest_s", 0.0)
            acc[1] += timing.get("rest_rows", 0)
            acc[2] += timing.get("first_s", 0.0)
            acc[3] += len(x) - timing.get("rest_rows", 0)
        out.append(np.asarray(maps))
    return out


def _host_method(method, x, t, key, first_index, times, name):
    """A method that runs per input on the host (XRAI): the first input compiles its parts."""
    call = (lambda i: method(x[i], int(t[i]), jax.random.fold_in(key, first_index + i))) if key is not None \
        else (lambda i: method(x[i], int(t[i])))
    t0 = time.perf_counter()
    first = np.asarray(call(0))
    t1 = time.perf_counter()
    rest = [np.asarray(call(i)) for i in range(1, len(x))]
    acc = times.setdefault(name, [0.0, 0, 0.0, 0])
    acc[0] += time.perf_counter() - t1
    acc[1] += len(rest)
    acc[2] += t1 - t0
    acc[3] += 1
    return np.stack([first, *rest])


def _ms(times: Mapping[str, list]) -> dict[str, float]:
    """Milliseconds per input after each call's first batch (which compiles); when every call
    was one batch, the first batches' time (compilation included)."""
    return {n: 1e3 * (s / r if r else (s1 / r1 if r1 else float("nan"))) for n, (s, r, s1, r1) in times.items()}


def explain(model: Any, xs: Any, methods: Any = "default", targets: Any = None, *, params: Any = None,
            key: jax.Array | None = None, batch_size: int | None = None, light: bool = False,
            references: Any = None, channel_axis: int | None = None, out_dir: str | Path | None = None,
            shard_size: int = 1000, resume: bool = True, progress: bool | None = None) -> Explanations:
    """The maps of several methods for model over xs.

    model: a function f(x) -> class scores of one unbatched input, or any model the adapters
      take (xai_jax.Model(module, variables) for linen with batch_stats or Haiku, an NNX or
      Equinox module, xai_jax.Split); params= builds xai_jax.Model(model, params) for a linen
      module.
    xs: an array (N, ...) of inputs, or a source of batches (a list of batches, a
      tensorflow-datasets dataset, or a zero-argument callable returning an iterator; each
      batch an array, an (x, y) pair or a dict with "image"/"label"): see xai_jax.stream.
    methods: "default" (Grad-CAM, Grad-CAM++, IG, saliency, gradient x input, SmoothGrad,
      RISE, Score-CAM, SISE, occlusion), "all" (every registered method that applies), or a
      list whose items are registry names ("Integrated Gradients" or "integrated_gradients")
      or Methods (built by the user, e.g. integrated_gradients(f, steps=256)), or a dict
      name -> Method. The sets leave out, with a warning, the layer methods (CAMs) on a model
      without a convolution, and Expected Gradients without references=.
    targets: None (the class the model predicts for each input), "labels" (the source's
      labels) or (N,) class indices.
    key: for the keyed methods (SmoothGrad, RISE, ...): input i of method m gets
      fold_in(fold_in(key, hash(m)), i), so maps do not depend on batch or shard sizes.
      None means jax.random.key(0).
    batch_size: inputs per compiled call; None uses each registered method's setting, or
      XLA's memory analysis for a user's Method.
    light: fewer steps, samples and masks on images (CPU runs); references: (M, ...) inputs
      for Expected Gradients' baselines; channel_axis: where the channel axis is (default -1).
    out_dir: write the maps to this directory in shards of shard_size inputs (see
      xai_jax.stream for the format) and return an Explanations that reads them back on
      access: memory stays independent of N. An existing run there is resumed (resume=True)
      from its last whole shard: the files are bitwise the same as an uninterrupted run's.
      Under jax.distributed each process writes shards k with k % process_count ==
      process_index; process 0 writes the index after all are done.
      A source of batches without out_dir is read into memory.
    progress: per-method bars named after the method (default: on for more than 4 batches);
      a program compiling for a new shape shows as "compiling <method> for (B, ...) ...".
    """
    model = _model(model, params)
    from xai_jax.checks import check_int, check_key
    shard_size = check_int(shard_size, "shard_size", 1)
    key = jax.random.key(0) if key is None else check_key(key)
    targets = _resolve_targets(targets, "explain")
    source = stream.is_source(xs)
    if not source:
        from xai_jax.checks import check_array
        check_array(xs, "xs")
        if np.ndim(xs) < 2:
            raise ValueError(f"explain: xs must be a batch (N, ...) of inputs, got shape {np.shape(xs)}")
        if isinstance(targets, str) and targets == "labels":
            raise ValueError("explain: targets='labels' needs a source whose batches carry labels ((x, y) pairs or "
                             "dicts); with an array xs pass the labels as targets")
    from xai_jax.attribution.common import model_fn
    f = model_fn(model)
    if not source and out_dir is None:
        x = np.asarray(xs) if not isinstance(xs, jax.Array) else xs
        ctx = _context(tuple(x.shape[1:]), channel_axis, light, references)
        built, specs, skipped = resolve_methods(model, methods, ctx, tuple(x.shape[1:]), x.dtype)
        t = _targets_for(targets, None, 0, len(x), f, np.asarray(x))
        times: dict = {}
        maps = _run_methods(built, specs, ctx, x, t, key, 0, batch_size, progress, times)
        return Explanations(dict(zip(built, maps)), t, methods=built, ms_per_input=_ms(times), skipped=skipped,
                            reduce=_reductions(specs))
    return _explain_stream(model, f, xs, methods, targets, key=key, batch_size=batch_size, light=light,
                           references=references, channel_axis=channel_axis, out_dir=out_dir,
                           shard_size=shard_size, resume=resume, progress=progress)


def _explain_stream(model, f, xs, methods, targets, *, key, batch_size, light, references, channel_axis, out_dir,
                    shard_size, resume, progress) -> Explanations:
    source = xs if stream.is_source(xs) else [np.asarray(xs)]
    if out_dir is None:  # a source without a directory: read into memory
        parts = list(stream.batches(source))
        x = np.concatenate([p[0] for p in parts])
        y = None if any(p[1] is None for p in parts) else np.concatenate([p[1] for p in parts])
        t = y if isinstance(targets, str) else targets
        if isinstance(targets, str) and y is None:
            raise ValueError("explain: targets='labels' but the data has no labels: give (x, y) pairs or dicts")
        ex = explain(model, x, methods, t, key=key, batch_size=batch_size, light=light, references=references,
                     channel_axis=channel_axis, progress=progress)
        ex._labels = y
        return ex
    built = specs = skipped = ctx = None
    d = None
    done: set[int] = set()
    proc, nproc = stream.process_info()
    times: dict = {}
    bar = None
    for k, x, y in stream.shards(source, shard_size, "xs"):
        if built is None:
            ctx = _context(tuple(x.shape[1:]), channel_axis, light, references)
            built, specs, skipped = resolve_methods(model, methods, ctx, tuple(x.shape[1:]), x.dtype)
            settings = {"kind": "explain", "methods": list(built), "shard_size": shard_size,
                        "targets": targets if targets is None or isinstance(targets, str) else "given",
                        "key": np.asarray(jax.random.key_data(key)).tolist(), "input_shape": list(x.shape[1:]),
                        "input_dtype": str(x.dtype), "light": bool(light),
                        "settings": {n: _describe(m) for n, m in built.items()}}
            d = stream.start_run(out_dir, settings, resume, "explain")
            done = stream.done_shards(d)
            show = (progress is None and True) or bool(progress)
            bar = tqdm(desc="explain: shards", unit="shard", disable=not show, file=sys.stderr)
        lo = k * shard_size
        if k % nproc != proc:
            continue
        if k in done:
            old = stream.load_shard(d, k)
            if str(old["input_sha1"]) != stream.fingerprint(x):
                raise ValueError(f"explain: the inputs of shard {k} (rows {lo}..{lo + len(x) - 1}) differ from those "
                                 f"the run in {d} wrote: the source is not the one this run started with")
            bar.update(1)
            continue
        t = _targets_for(targets, y, lo, lo + len(x), f, x)
        maps = _run_methods(built, specs, ctx, x, t, key, lo, batch_size, False, times)
        arrays = {f"map_{i}": m for i, m in enumerate(maps)}
        arrays.update(targets=np.asarray(t, np.int32), index=np.arange(lo, lo + len(x), dtype=np.int64),
                      input_sha1=np.asarray(stream.fingerprint(x)))
        if y is not None:
            arrays["labels"] = np.asarray(y)
        stream.write_npz(d / stream.SHARD.format(k), arrays)
        bar.update(1)
    if built is None:
        raise ValueError("explain: the source yielded no inputs")
    bar.close()
    signed = [bool(getattr(m, "signed", True)) for m in built.values()]
    spatial = [getattr(m, "output", "input") == "spatial" for m in built.values()]
    stream.finish_run(d, {"kind": "explain", "methods": list(built), "signed": signed, "spatial": spatial,
                          "reduce": [_reductions(specs)[n] for n in built], "skipped": skipped}, "explain")
    ex = Explanations.load(d)
    ex.methods = dict(built)
    ex.ms_per_input = _ms(times)
    return ex


def _describe(method: Any) -> str:
    """A short, deterministic description of a Method's settings (checked on resume)."""
    args = getattr(method, "extras", {}).get("factory_args") if isinstance(method, Method) else None
    name = getattr(method, "name", type(method).__name__)
    if not args:
        return name
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in sorted(args.items()) if _plain(v))})"


def _plain(v) -> bool:
    return isinstance(v, (int, float, str, bool, type(None))) or (isinstance(v, tuple) and all(_plain(i) for i in v))
