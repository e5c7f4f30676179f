"""The command line shared by the peer comparison scripts (compare_occlusion_captum.py,
compare_grad_cam_peers.py, compare_pair_saliency.py): the same flags, the same message when
the peers are missing, and the same outputs (comparison.json under --out, and the committed
reference when the run is not --quick), and their timer. Imports no peer."""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path


def parse(doc: str, default_out: Path, argv=None, quick_help: str = "the same cases; writes only to --out"):
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=default_out)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--data-dir", type=Path, default=None, help="unused (no data needed)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def missing(modules: tuple[str, ...], out: Path, install: str) -> bool:
    """True (after saying so, and writing out/peers_missing.txt) when a peer module is absent."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        message = f"peers not installed: {', '.join(absent)}; nothing compared ({install})"
        print(message)
        (out / "peers_missing.txt").write_text(message + "\n")
    return bool(absent)


def write(result: dict, args, reference: Path) -> None:
    """comparison.json under --out; the committed reference too unless --quick."""
    text = json.dumps(result) + "\n"
    (args.out / "comparison.json").write_text(text)
    if not args.quick:
        reference.write_text(text)
        print(f"wrote {reference}")


def best_time(fn, repeats: int = 1) -> float:
    """The best of `repeats` wall-clock timings of fn() (no warm-up: the callers compile first)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
