"""The CAM family against pytorch-grad-cam 1.5.7, on transplanted weights.

Same weights on both sides (experiments/peers/transplant.py): a VGG (preset "study") at
32 x 32, random weights, 3 images, the logit of the target (pytorch-grad-cam's
ClassifierOutputTarget). The layer is the last convolution, conv2d_3, read after its ReLU
on both sides: our ConvReLU; on the torch side the twin's convolutions are laid out as an
nn.Sequential of Conv2d, ReLU and MaxPool2d modules, and the target layer is the ReLU
module after conv2d_3 (as pytorch-grad-cam's users hook torchvision's VGG). Hooking the
conv and re-applying a ReLU would not do: torch's ReLU has zero gradient at 0, so
Grad-CAM's mean gradient would lose the positions where the layer is 0.

Compared at the layer's resolution (16 x 16), so that neither cv2.resize nor our resize
enters: ours with upsample=False; pytorch-grad-cam with its target size set to the layer's
size. Both maps are compared after pytorch-grad-cam's per-image ReLU and min-max scaling
(x - min) / (max + 1e-7), applied to ours too, relative to the largest value.
- EigenCAM agrees up to the sign of the principal component: pytorch-grad-cam keeps
  LAPACK's sign, ours correlates with the channel mean; the script compares with the
  sign that matches and reports how often it is flipped.
- Grad-CAM++ is reported but not expected to agree: pytorch-grad-cam adds 1e-6 to the
  denominator of alpha (not in the paper, where ours follows the closed form), which
  matters where gradients are small. With that 1e-6 removed from its weights the two
  agreed to 8e-7 (measured once; the reference test skips Grad-CAM++).
- AblationCAM: pytorch-grad-cam's rule (channel -> 0 when the layer's minimum is 0, else
  min - 1e7; weight (y - y_k) / y); ours follows it.
Writes experiments/peers/reference_grad_cam.json (their maps) for
tests/methods/test_grad_cam_reference.py.

    .venv-peers/bin/pip install --no-deps grad-cam==1.5.7 ttach==0.0.3   # the peers venv (compare_metrics_peers.py)
    .venv-peers/bin/python experiments/compare_grad_cam_peers.py
pytorch-grad-cam imports torchvision.transforms for its image helpers only; when
torchvision is not installed (or a CUDA build that does not load beside CPU torch), a stub
module stands in for it (torchvision, .transforms, .transforms.functional), since none of
those helpers is used here.
"""

from __future__ import annotations

import importlib.metadata
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from peers import cli

import xai_jax as xj
from xai_jax.study.models import vgg7

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "experiments" / "peers" / "reference_grad_cam.json"
LAYER = "conv2d_3"
METHODS = {  # ours -> pytorch-grad-cam class
    "grad_cam": "GradCAM", "grad_cam_plus_plus": "GradCAMPlusPlus", "xgrad_cam": "XGradCAM",
    "hires_cam": "HiResCAM", "layer_cam": "LayerCAM", "grad_cam_element_wise": "GradCAMElementWise",
    "eigen_cam": "EigenCAM", "ablation_cam": "AblationCAM",
}


def setup():
    """(model, params, xs (N, 32, 32, 3), targets): fixed seeds, so the tests rebuild them."""
    model = vgg7("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    xs = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype(np.float32)
    return model, params, xs, np.array([0, 3, 5])


def scale(cam: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's per-image ReLU, then (x - min) / (max + 1e-7)."""
    cam = np.maximum(np.asarray(cam, np.float64), 0)
    cam = cam - cam.min()
    return cam / (1e-7 + cam.max())


def ours(name: str) -> np.ndarray:
    """Our maps at the layer's resolution, (N, 16, 16), before pytorch-grad-cam's scaling;
    EigenCAM without its ReLU (the sign comparison needs both halves)."""
    model, params, xs, ts = setup()
    kwargs = {"relu": False} if name == "eigen_cam" else {}
    method = getattr(xj, name)(model, params, LAYER, upsample=False, precision="highest", **kwargs)
    return np.stack([np.asarray(method(jnp.asarray(x), int(t))) for x, t in zip(xs, ts)])


def agreement(name: str, mine: np.ndarray, theirs: np.ndarray) -> tuple[float, int]:
    """(max over images of max |scale(ours) - theirs|, number of EigenCAM sign flips)."""
    worst, flips = 0.0, 0
    for m, t in zip(mine, theirs):
        err = np.abs(scale(m) - t).max()
        if name == "eigen_cam":
            err_flipped = np.abs(scale(-m) - t).max()
            if err_flipped < err:
                err, flips = err_flipped, flips + 1
        worst = max(worst, float(err))
    return worst, flips


def _torchvision_stub() -> None:
    try:
        import torchvision.transforms  # noqa: F401
    except Exception:  # absent, or a build that does not load beside this torch
        for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[key]
        stub = types.ModuleType("torchvision")
        transforms = types.ModuleType("torchvision.transforms")
        functional = types.ModuleType("torchvision.transforms.functional")
        transforms.__path__ = []  # a package, so that its submodule imports

        def unused(*args, **kwargs):
            raise RuntimeError("torchvision stub: pytorch-grad-cam's image helpers are not used here")

        transforms.Compose = transforms.Normalize = transforms.ToTensor = functional.resize = unused
        stub.transforms, transforms.functional = transforms, functional
        sys.modules.update({"torchvision": stub, "torchvision.transforms": transforms,
                            "torchvision.transforms.functional": functional})


def _global_mean():
    import torch

    class GlobalMean(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    return GlobalMean


def theirs(name: str) -> np.ndarray:
    import torch

    _torchvision_stub()
    GlobalMean = _global_mean()  # noqa: N806
    import pytorch_grad_cam
    from peers import transplant
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, params, xs, ts = setup()
    twin = transplant.from_flax(model, params)
    convs = dict(transplant.weight_layers(twin))
    features, target = [], None
    for names in (("conv2d", "conv2d_1"), ("conv2d_2", "conv2d_3")):
        for conv in names:
            features += [convs[conv], torch.nn.ReLU()]
            if conv == LAYER:
                target = features[-1]
        features.append(torch.nn.MaxPool2d(2, 2))
    sequential = torch.nn.Sequential(torch.nn.Sequential(*features), GlobalMean(), convs["dense"]).eval()
    x = torch.as_tensor(transplant.to_channels_first(xs))
    with torch.no_grad():  # the same network as the twin
        np.testing.assert_allclose(sequential(x).numpy(), twin(x).numpy(), rtol=1e-5, atol=1e-5)
    cam = getattr(pytorch_grad_cam, METHODS[name])(model=sequential, target_layers=[target])
    cam.get_target_width_height = lambda input_tensor: (16, 16)  # the layer's size: cv2.resize is the identity
    out = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in ts])
    return np.asarray(out, np.float64)


def main(argv=None) -> int:
    args = cli.parse(__doc__, ROOT / "results" / "compare_grad_cam_peers", argv)
    if cli.missing(("torch", "pytorch_grad_cam", "cv2"), args.out,
                   "pip install --no-deps grad-cam==1.5.7 ttach==0.0.3 and opencv-python-headless into the peers venv; "
                   "see compare_metrics_peers.py"):
        return 0
    result = {"about": __doc__.splitlines()[0], "grad_cam": importlib.metadata.version("grad-cam"),
              "layer": LAYER, "methods": {}}
    for name in METHODS:
        mine, ref = ours(name), theirs(name)
        err, flips = agreement(name, mine, ref)
        result["methods"][name] = {"pytorch_grad_cam": ref.tolist(), "max_abs_diff_scaled": err,
                                   "sign_flips": flips}
        note = (f" (sign flipped on {flips} of {len(mine)} images)" if name == "eigen_cam" else
                " (pytorch-grad-cam's 1e-6 in alpha's denominator; see above)" if name == "grad_cam_plus_plus" else "")
        print(f"  {name}: max |ours - pytorch-grad-cam| after ReLU + min-max = {err:.2e}{note}")
    cli.write(result, args, REFERENCE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
