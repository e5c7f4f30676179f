"""Fingerprints of the state a callable captures, so that programs compiled from it and cached
(xai_jax.batching.program_cache) are compiled again when that state changes.

A traced program bakes the arrays its function captures into the program as constants: after

    P = {"p": params}
    g = lambda z: model.apply({"params": P["p"]}, z[None])[0]
    P["p"] = new_params

a program compiled from g still computes with the old params (plain `jax.jit(g)` behaves the
same way: JAX caches traces on the function's identity). The library caches compiled programs
on the function or Method it is given, so it checks, each time it takes a program from its
cache, that the state the callable reaches is the state it was compiled with.

What the fingerprint walks, from the callable (bounded: MAX_NODES objects, MAX_DEPTH levels):
- a function's code, closure cells, default arguments and the globals its code names
  (co_names, also those of nested functions and lambdas), and `__wrapped__`;
- a functools.partial's function, arguments and keywords; a bound method's function and `self`;
- containers (dict and other mappings, list, tuple, set) and objects' attributes (`__dict__`
  and `__slots__`): a Method's fields, a model object's parameters, a flax/NNX/Equinox
  module's fields, ...
It records each array it reaches by identity (arrays are replaced when a model is updated:
`P["p"] = new`, `model.w = new`, `nnx.update(...)`, `optax` steps all create new arrays) and each
Python scalar or string by value. Modules, classes and the globals of library functions
(jax, numpy, flax, xai_jax, ...) are not walked.

What it cannot see (documented in docs/errors.md):
- a NumPy array changed in place (`w[:] = ...`, `w += 1`): same object, same identity;
- state beyond the walk's bounds (more than MAX_NODES objects, or deeper than MAX_DEPTH);
- state reached only through objects without `__dict__`/`__slots__` (C extension objects),
  through attribute access on modules (`mymodule.W`), or through calls (`get_params()`);
- a function the user jitted himself (`f = jax.jit(g)`): JAX keeps its own trace of g, keyed on
  g's identity, and reuses it even though the library compiles again.
"""

from __future__ import annotations

import functools
import types
import weakref
from typing import Any

import numpy as np

MAX_NODES = 4096  # objects visited per fingerprint
MAX_DEPTH = 24  # nesting levels followed from the callable
PROGRAMS_ATTRIBUTE = "_xai_jax_programs"  # where program_cache keeps programs (never walked)

# functions of these packages keep no user state in their globals (their closures are walked)
_LIBRARIES = ("jax", "jaxlib", "numpy", "flax", "xai_jax", "equinox", "haiku", "optax", "functools", "scipy",
              "orbax", "builtins", "typing", "inspect", "dataclasses", "collections")
_SCALARS = (bool, int, float, complex, str, bytes, type(None))
_SKIP = (type, types.ModuleType, types.BuiltinFunctionType, types.BuiltinMethodType, types.MethodWrapperType,
         types.WrapperDescriptorType, types.MethodDescriptorType, types.GetSetDescriptorType, types.CodeType,
         types.FrameType, types.GeneratorType)


@functools.lru_cache(maxsize=4096)
def _names(code: types.CodeType) -> tuple[str, ...]:
    """The global names a code object and the functions defined in it may read."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_names(const))
    return tuple(dict.fromkeys(names))


def _is_library(fn: types.FunctionType) -> bool:
    module = getattr(fn, "__module__", None) or ""
    return module.split(".", 1)[0] in _LIBRARIES


class Fingerprint:
    """What a callable reached when it was fingerprinted: `key`, a tuple of array identities
    and scalar values in walk order, and weak references to the arrays, so that an array
    freed since (whose id a new array may reuse) never matches. `complete` is False when the
    walk stopped at its bounds."""

    __slots__ = ("key", "refs", "complete")

    def __init__(self, key: tuple, refs: tuple, complete: bool):
        self.key, self.refs, self.complete = key, refs, complete

    def __eq__(self, other) -> bool:
        return (isinstance(other, Fingerprint) and self.key == other.key
                and all(r() is not None for r in self.refs) and all(r() is not None for r in other.refs))

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Fingerprint({len(self.key)} entries, {len(self.refs)} arrays, complete={self.complete})"


def _is_array(obj: Any) -> bool:
    if isinstance(obj, np.ndarray):
        return True
    jax = _jax()
    return jax is not None and isinstance(obj, jax.Array)


@functools.cache
def _jax():
    try:
        import jax
    except ImportError:  # pragma: no cover
        return None
    return jax


def fingerprint(*objs: Any) -> Fingerprint:
    """The fingerprint of the state reachable from objs (see the module docstring)."""
    key: list = []
    refs: list = []
    seen: set[int] = set()
    complete = True
    budget = MAX_NODES
    stack: list[tuple[Any, int]] = [(o, 0) for o in reversed(objs)]
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, _SCALARS):
            key.append(obj if not isinstance(obj, float) or obj == obj else "nan")
            continue
        if isinstance(obj, np.generic):
            key.append((obj.dtype.str, obj.tobytes()))
            continue
        oid = id(obj)
        if oid in seen:
            key.append(("seen", oid))  # shared structure: the same object again
            continue
        if isinstance(obj, _Mark):
            key.append(obj)
            continue
        if _is_array(obj):
            seen.add(oid)
            key.append(("array", oid))
            try:
                refs.append(weakref.ref(obj))
            except TypeError:  # pragma: no cover (arrays take weak references)
                key.append(("unreferenced", tuple(obj.shape), str(obj.dtype)))
            continue
        if isinstance(obj, types.CodeType):  # kept alive by a weak reference: an id never reused unseen
            refs.append(weakref.ref(obj))
            continue
        if isinstance(obj, _SKIP):
            continue
        budget -= 1
        if budget < 0 or depth >= MAX_DEPTH:
            complete = False
            continue
        seen.add(oid)
        children = _children(obj)
        if children is None:
            continue
        key.append(type(obj).__qualname__)
        key.append(len(children))
        stack.extend((c, depth + 1) for c in reversed(children))
    return Fingerprint(tuple(key), tuple(refs), complete)


class _Mark(tuple):
    """An entry recorded as it is (not walked)."""


def _children(obj: Any) -> list | None:
    """The objects obj's behaviour may depend on (None: nothing to walk)."""
    from xai_jax.method import Method
    if isinstance(obj, Method):  # what it computes with (not its rebinder, nor its cached programs)
        return [obj.fn, obj.model, obj.raw, dict(obj.extras), obj.precision, obj.num_classes]
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            if isinstance(k, str) and k.startswith(PROGRAMS_ATTRIBUTE):
                continue
            out.append(k if isinstance(k, _SCALARS) else _Mark(("key", id(k))))
            out.append(v)
        return out
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=lambda v: (type(v).__name__, repr(v))) if len(obj) <= 64 else list(obj)
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        out: list = [_Mark(("code", id(code))), code]
        if obj.__closure__:
            for cell in obj.__closure__:
                try:
                    out.append(cell.cell_contents)
                except ValueError:  # an empty cell (a name assigned later)
                    out.append(None)
        out.append(obj.__defaults__)
        out.append(obj.__kwdefaults__)
        if not _is_library(obj):
            glob = obj.__globals__
            out.extend(glob[n] for n in _names(code) if n in glob)
        wrapped = obj.__dict__.get("__wrapped__")
        if wrapped is not None:
            out.append(wrapped)
        return out
    if isinstance(obj, types.MethodType):
        return [obj.__func__, obj.__self__]
    if isinstance(obj, functools.partial):
        return [obj.func, obj.args, obj.keywords]
    out = []
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        for name, value in attrs.items():
            if not name.startswith(PROGRAMS_ATTRIBUTE):
                out.append(value)
    for klass in type(obj).__mro__:
        for name in klass.__dict__.get("__slots__", ()):
            if name in ("__dict__", "__weakref__"):
                continue
            try:
                out.append(getattr(obj, name))
            except AttributeError:
                pass
    wrapped = getattr(obj, "__wrapped__", None) if not out else None  # e.g. jax.jit's PjitFunction
    if wrapped is not None:
        out.append(wrapped)
    return out or None
