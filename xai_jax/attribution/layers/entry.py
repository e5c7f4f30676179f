"""What every framework adapter reports about a layer."""

from __future__ import annotations

from typing import Any, NamedTuple


class Entry(NamedTuple):
    name: str                   # how the user names it: "block/conv", "blocks.2.conv", "layers[3]"
    module_class: str           # the module's class name
    shape: tuple[int, ...]      # its output for one unbatched input, in the model's own layout
    handle: Any                 # what the adapter's run() takes to capture it
    is_conv: bool               # a convolution (what layer=None picks)
    out_channels: int | None    # the conv's output channels when the module says so


def is_conv_class(name: str) -> bool:
    return "Conv" in name


def find_named(layer: str, entries: list[Entry], owner: str) -> Entry:
    found = next((e for e in entries if e.name == layer), None)
    if found is None:
        raise ValueError(f"layer {layer!r} is not a submodule of {owner} that the forward pass calls; valid "
                         f"layers: {[e.name for e in entries]}")
    return found
