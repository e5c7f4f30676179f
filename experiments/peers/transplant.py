"""Flax -> PyTorch weight transplant for xai_jax's bundled models, shared by every script that
compares xai_jax with a torch peer (Quantus, Captum, pytorch-grad-cam).

Torch twins, built from a flax params dict, that compute the same logits:
- `MNIST1DCNNTorch`: `xai_jax.study.models.mnist1d_cnn("study")` / `("wide")` (any MNIST1DCNN):
  Conv1d + ReLU per Keras-named layer ("conv1d", "conv1d_1", ...; SAME padding), flatten in
  the flax (channels-last, row-major) order, Dense -> logits.
- `VGGTorch`: `xai_jax.study.models.vgg7("study")` / `("vgg7")` (any VGG): blocks of 3x3 SAME
  Conv2d + ReLU ("conv2d", "conv2d_1", ...), 2x2 max pooling (stride 2, floor) after each
  block, global average pooling, Dense -> logits.
`from_flax(model, params)` picks the twin of a flax module.

Layouts. Flax takes channels-last inputs, (N, L, C) and (N, H, W, C); torch channels-first,
(N, C, L) and (N, C, H, W): `to_channels_first` / `to_channels_last` convert (a copy).
Weights: a flax Conv kernel (k..., in, out) becomes torch's (out, in, k...); a Dense kernel
(in, out) becomes Linear's (out, in). SAME padding is torch's padding="same" (for stride 1
both put floor((k - 1) / 2) zeros before and the rest after). The MNIST-1D head flattens
(N, L, C) row-major, so the torch twin transposes (N, C, L) -> (N, L, C) before flattening
and the Dense kernel is used unpermuted. `MNIST1DCNNTorch` also takes a 1-D signal laid out
as a one-row image, (N, C, 1, L), as Quantus's image-only metrics (ROAD, region
perturbation) require; the row axis is dropped.

Module names are the flax layer names, registered in call order, and ReLU is functional:
`named_modules()` lists exactly the weight layers, in the order of the flax params, which is
what Quantus's layer randomisation (MPRT & co.) iterates over. `set_reset_source(model,
params)` makes each layer's `reset_parameters()` load the given flax params (e.g.
`flax_model.init(key, ...)["params"]`, what xai_jax's MPRT uses to randomise a layer)
instead of torch's own initialiser, so that both libraries randomise to identical weights.

Needs torch (the peers venv); imports nothing from torchvision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

# ----------------------------------------------------------------------------- weights


def conv_weight(kernel) -> torch.Tensor:
    """A flax Conv kernel (k..., in, out) as a torch Conv weight (out, in, k...)."""
    k = np.asarray(kernel, np.float32)
    nd = k.ndim - 2
    return torch.from_numpy(np.ascontiguousarray(k.transpose(nd + 1, nd, *range(nd))))


def dense_weight(kernel) -> torch.Tensor:
    """A flax Dense kernel (in, out) as a torch Linear weight (out, in)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, np.float32).T))


def torch_state(leaves: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """One flax layer's {"kernel", "bias"} as the torch layer's {"weight", "bias"}."""
    kernel = np.asarray(leaves["kernel"])
    weight = dense_weight(kernel) if kernel.ndim == 2 else conv_weight(kernel)
    return {"weight": weight, "bias": torch.from_numpy(np.asarray(leaves["bias"], np.float32).copy())}


def flax_leaves(layer: nn.Module) -> dict[str, np.ndarray]:
    """A torch layer's weights as the flax layer's {"kernel", "bias"} (NumPy float32)."""
    w = layer.weight.detach().cpu().numpy()
    nd = w.ndim - 2
    kernel = w.T if w.ndim == 2 else w.transpose(*range(2, 2 + nd), 1, 0)
    return {"kernel": np.ascontiguousarray(kernel), "bias": layer.bias.detach().cpu().numpy().copy()}


class _Resettable:
    """A weight layer whose reset_parameters() loads `reset_source` (a torch state dict) when
    one is set, else runs torch's own initialiser."""

    reset_source: dict[str, torch.Tensor] | None = None

    def reset_parameters(self) -> None:
        source = getattr(self, "reset_source", None)
        if source is None:
            super().reset_parameters()  # type: ignore[misc]
            return
        with torch.no_grad():
            for name, value in source.items():
                getattr(self, name).copy_(value)


class Conv1d(_Resettable, nn.Conv1d):
    pass


class Conv2d(_Resettable, nn.Conv2d):
    pass


class Linear(_Resettable, nn.Linear):
    pass


def _check_layers(params: Mapping, names: Sequence[str], who: str) -> None:
    missing = [n for n in names if n not in params]
    extra = [n for n in params if n not in names]
    if missing or extra:
        raise ValueError(f"{who}: params lack layers {missing} and have unexpected {extra}")


def load_flax_params(model: nn.Module, params: Mapping) -> nn.Module:
    """Copies the flax params (layer name -> {"kernel", "bias"}) into the torch twin's layers of
    the same names; ValueError on a missing layer or a shape mismatch. Returns model."""
    layers = dict(weight_layers(model))
    _check_layers(params, list(layers), type(model).__name__)
    with torch.no_grad():
        for name, layer in layers.items():
            for key, value in torch_state(params[name]).items():
                target = getattr(layer, key)
                if tuple(target.shape) != tuple(value.shape):
                    raise ValueError(f"layer {name!r} {key}: the torch model has shape {tuple(target.shape)}, "
                                     f"the flax params give {tuple(value.shape)}")
                target.copy_(value)
    return model


def to_flax_params(model: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """The torch twin's weights as a flax params dict (inverse of `load_flax_params`)."""
    return {name: flax_leaves(layer) for name, layer in weight_layers(model)}


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of the twin's weight layers, in the flax call order."""
    return [(name, m) for name, m in model.named_children() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def set_reset_source(model: nn.Module, params: Mapping | None) -> nn.Module:
    """Each weight layer's reset_parameters() will load its entry of the flax `params` (None:
    back to torch's initialiser). Quantus randomises a layer by calling reset_parameters()
    on a deep copy of the model, which keeps the source. Returns model."""
    layers = weight_layers(model)
    if params is not None:
        _check_layers(params, [n for n, _ in layers], type(model).__name__)
    for name, layer in layers:
        layer.reset_source = None if params is None else torch_state(params[name])
    return model


# ----------------------------------------------------------------------------- models


def _conv_names(params: Mapping, prefix: str) -> list[str]:
    names = [prefix] + [f"{prefix}_{i}" for i in range(1, len(params))]
    return [n for n in names if n in params]


class MNIST1DCNNTorch(nn.Module):
    """Torch twin of xai_jax.study.models.MNIST1DCNN: x (N, C, L) or (N, C, 1, L) -> logits (N, classes).

    convs: [(in, out, kernel)] per convolution ("conv1d", "conv1d_1", ...); length: L, the
    signal length the flattening head was built for; num_classes: outputs.
    """

    def __init__(self, convs: Sequence[tuple[int, int, int]], length: int, num_classes: int):
        super().__init__()
        self.length = int(length)
        for i, (c_in, c_out, k) in enumerate(convs):
            self.add_module("conv1d" if i == 0 else f"conv1d_{i}", Conv1d(c_in, c_out, k, padding="same"))
        self.add_module("dense", Linear(self.length * convs[-1][1], num_classes))

    @classmethod
    def from_flax(cls, params: Mapping) -> MNIST1DCNNTorch:
        """The twin of the MNIST1DCNN whose flax params these are (any preset)."""
        convs = _conv_names(params, "conv1d")
        _check_layers(params, [*convs, "dense"], cls.__name__)
        shapes = [np.shape(params[n]["kernel"]) for n in convs]  # (k, in, out)
        dense_in, classes = np.shape(params["dense"]["kernel"])
        length, rem = divmod(dense_in, shapes[-1][2])
        if rem:
            raise ValueError(f"dense kernel of {dense_in} inputs is not a multiple of the last conv's "
                             f"{shapes[-1][2]} channels")
        model = cls([(s[1], s[2], s[0]) for s in shapes], length, classes)
        return load_flax_params(model, params).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[2] == 1:  # a signal as a one-row image (Quantus)
            x = x[:, :, 0]
        if x.dim() != 3:
            raise ValueError(f"MNIST1DCNNTorch takes x of shape (N, C, L) or (N, C, 1, L), got {tuple(x.shape)}")
        for _, layer in weight_layers(self)[:-1]:
            x = F.relu(layer(x))
        x = x.transpose(1, 2).flatten(1)  # (N, L, C) row-major, as flax's reshape
        return self.dense(x)


class VGGTorch(nn.Module):
    """Torch twin of xai_jax.study.models.VGG: x (N, 3, H, W) -> logits (N, classes).

    blocks: channels per convolution, per block (e.g. ((32, 32), (64, 64))); in_channels:
    the input's channels; num_classes: outputs.
    """

    def __init__(self, blocks: Sequence[Sequence[int]], num_classes: int, in_channels: int = 3):
        super().__init__()
        self.block_sizes = tuple(len(b) for b in blocks)
        i, c_in = 0, in_channels
        for block in blocks:
            for c_out in block:
                self.add_module("conv2d" if i == 0 else f"conv2d_{i}", Conv2d(c_in, c_out, 3, padding="same"))
                c_in, i = c_out, i + 1
        self.add_module("dense", Linear(c_in, num_classes))

    @classmethod
    def from_flax(cls, model, params: Mapping) -> VGGTorch:
        """The twin of the flax VGG `model` (its blocks say where the pooling goes) with `params`."""
        blocks = tuple(tuple(b) for b in model.blocks)
        kernel0 = np.shape(params["conv2d"]["kernel"])  # (3, 3, in, out)
        classes = np.shape(params["dense"]["kernel"])[1]
        twin = cls(blocks, classes, in_channels=kernel0[2])
        return load_flax_params(twin, params).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"VGGTorch takes x of shape (N, C, H, W), got {tuple(x.shape)}")
        convs = [m for _, m in weight_layers(self)[:-1]]
        i = 0
        for size in self.block_sizes:
            for _ in range(size):
                x = F.relu(convs[i](x))
                i += 1
            x = F.max_pool2d(x, 2, 2)
        return self.dense(x.mean(dim=(2, 3)))


def from_flax(model, params: Mapping) -> nn.Module:
    """The torch twin (eval mode) of a flax MNIST1DCNN or VGG with `params`."""
    from xai_jax.study.models import MNIST1DCNN, VGG

    if isinstance(model, MNIST1DCNN):
        return MNIST1DCNNTorch.from_flax(params)
    if isinstance(model, VGG):
        return VGGTorch.from_flax(model, params)
    raise TypeError(f"no torch twin for {type(model).__name__}; expected MNIST1DCNN or VGG")


# ----------------------------------------------------------------------------- layouts


def to_channels_first(x) -> np.ndarray:
    """(N, ..., C) -> (N, C, ...) (flax layout -> torch layout), a writable contiguous float32 copy."""
    return np.array(np.moveaxis(np.asarray(x, np.float32), -1, 1), np.float32, order="C", copy=True)


def to_channels_last(x) -> np.ndarray:
    """(N, C, ...) -> (N, ..., C) (torch layout -> flax layout), a writable contiguous float32 copy."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.array(np.moveaxis(np.asarray(x, np.float32), 1, -1), np.float32, order="C", copy=True)
