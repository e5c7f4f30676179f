"""The propagation family against Captum 0.9 and Zennit 1.0.0, on transplanted weights.

Three models, random weights (fixed seeds), the same weights on both sides:
- "mnist1d": the study CNN, xai_jax.study.models.mnist1d_cnn("study"), 4 signals (40, 1);
- "vgg": the VGG preset "study" at 16 x 16, 2 images in [0, 1];
- "bn": the BatchNorm CNN of tests/adapters/bn_models.py (conv -> BatchNorm -> ReLU -> conv
  -> ReLU -> global mean -> dense), 2 inputs (8, 8, 2), to check the BatchNorm canonizer.
The torch twins (built here, weights through experiments/peers/transplant.py) hold their
ReLUs, max and average poolings as modules, each used once, as Captum's DeepLift and
GuidedBackprop and Zennit's rules require; the flattening is functional (its gradient is
the permutation on both sides). For DeepLift, a copying module sits between each ReLU and
MaxPool2d of the VGG twin: with the two modules adjacent, Captum 0.9's DeepLift hooks interact and its
attributions no longer sum to F(x) - F(b) (its own convergence delta was 0.036 on a toy
conv -> ReLU -> MaxPool2d -> Linear net, 0 with the copy between; its VGG maps then differed
from ours by 0.59 of their maximum, while ours sum to F(x) - F(b) to float precision).

Compared per method and model: max |ours - theirs| / max |theirs| over the inputs (the
goal: < 1e-4):
- Captum: DeepLift and DeepLiftShap (baselines: 0.2 * N(0, 1) inputs; DeepLiftShap 4 of
  them), GuidedBackprop, Deconvolution, GuidedGradCam (the last convolution's ReLU
  module as its layer; ours grad_cam's default layer, the last ConvReLU), LRP (Captum's
  default: the epsilon rule with eps = 1e-9 on every layer, pools included; Conv1d given
  EpsilonRule explicitly, as Captum has no default for it). Ours:
  lrp(rule=Epsilon(1e-9)) with the pools' stabiliser 1e-9.
- Zennit: EpsilonPlus, EpsilonPlusFlat, EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat and
  EpsilonGammaBox (low, high: -4, 4 for the signals and the BN net; 0, 1 for the images),
  with SequentialMergeBatchNorm on the BN net, output relevance one_hot(target) * logits
  through zennit.attribution.Gradient. Ours: lrp(composite=...) (BatchNorm merged by
  canonize=True).
Writes experiments/peers/reference_propagation.json (their maps, float32) for
tests/methods/test_propagation_reference.py.

    .venv-peers/bin/pip install --no-deps --ignore-requires-python zennit==1.0.0   # Zennit declares Python >= 3.11.11
    .venv-peers/bin/python experiments/compare_propagation_peers.py
Zennit imports torchvision for type checks (torchvision.ops.FrozenBatchNorm2d) and its
ResNet canonizers (torchvision.models.resnet); when torchvision is absent a stub with
those three classes stands in (none of them occurs in these models).
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from peers import cli

import xai_jax as xj
from xai_jax.attribution.lrp import lrp_rules
from xai_jax.study.models import mnist1d_cnn, vgg7

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "experiments" / "peers" / "reference_propagation.json"
sys.path.insert(0, str(ROOT / "tests" / "adapters"))
CAPTUM = ("deeplift", "deeplift_shap", "guided_backprop", "deconvnet", "guided_grad_cam", "lrp_epsilon")
ZENNIT = ("EpsilonPlus", "EpsilonPlusFlat", "EpsilonAlpha2Beta1", "EpsilonAlpha2Beta1Flat", "EpsilonGammaBox")
CASES = {"mnist1d": CAPTUM + ZENNIT, "vgg": CAPTUM + ZENNIT, "bn": ("deeplift", "guided_backprop") + ZENNIT}
BOUNDS = {"mnist1d": (-4.0, 4.0), "vgg": (0.0, 1.0), "bn": (-4.0, 4.0)}


def setup(case: str):
    """(model, variables, xs (flax layout), targets, baselines (N, ...), shap baselines (4, ...))."""
    rng = np.random.default_rng(0)
    if case == "mnist1d":
        model = mnist1d_cnn("study")
        variables = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))
        xs = rng.normal(size=(4, 40, 1)).astype(np.float32)
        ts = np.array([0, 3, 5, 9])
    elif case == "vgg":
        model = vgg7("study")
        variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
        xs = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
        ts = np.array([1, 6])
    else:
        import bn_models
        model, variables = bn_models.linen_model()
        xs = bn_models.inputs(2)
        ts = np.array([0, 2])
    base = (0.2 * rng.normal(size=xs.shape)).astype(np.float32)
    shap = (0.2 * rng.normal(size=(4, *xs.shape[1:]))).astype(np.float32)
    return model, variables, xs, ts, base, shap


def our_method(case: str, name: str):
    model, variables, xs, ts, base, shap = setup(case)
    m = xj.Model(model, variables)
    if name == "deeplift":
        return lambda x, t, i: xj.deeplift(m, baseline=base[i], precision="highest")(x, t)
    if name == "deeplift_shap":
        method = xj.deeplift_shap(m, baselines=shap, precision="highest")
    elif name == "guided_grad_cam":
        method = xj.guided_grad_cam(m, precision="highest")
    elif name == "lrp_epsilon":
        comp = lrp_rules.Composite(conv=lrp_rules.Epsilon(1e-9), dense=lrp_rules.Epsilon(1e-9), stabilizer=1e-9)
        method = xj.lrp(m, composite=comp, precision="highest")
    elif name in ZENNIT:
        low, high = BOUNDS[case]
        method = xj.lrp(m, composite=lrp_rules.composite(name, low=low, high=high), precision="highest")
    else:
        method = getattr(xj, name)(m, precision="highest")
    return lambda x, t, i: method(x, t)


def ours(case: str, name: str) -> np.ndarray:
    """Our maps for the case's inputs, in the flax layout (N, ...)."""
    _, _, xs, ts, _, _ = setup(case)
    fn = our_method(case, name)
    return np.stack([np.asarray(fn(jnp.asarray(x), int(t), i)) for i, (x, t) in enumerate(zip(xs, ts))])


def agreement(mine: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / max |theirs| (over all inputs)."""
    return float(np.abs(np.asarray(mine, np.float64) - theirs).max() / max(np.abs(theirs).max(), 1e-30))


# ----------------------------------------------------------------------------- the torch side


def _torchvision_stub() -> None:
    try:
        import torchvision.models.resnet  # noqa: F401
        import torchvision.ops  # noqa: F401
    except Exception:  # absent, or a build that does not load beside this torch
        import types

        import torch

        for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[key]
        mods = {name: types.ModuleType(name) for name in
                ("torchvision", "torchvision.ops", "torchvision.models", "torchvision.models.resnet")}
        for name, mod in mods.items():
            mod.__path__ = []
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(mods[parent], child, mod)
        mods["torchvision.ops"].FrozenBatchNorm2d = type("FrozenBatchNorm2d", (torch.nn.Module,), {})
        mods["torchvision.models.resnet"].Bottleneck = type("Bottleneck", (torch.nn.Module,), {})
        mods["torchvision.models.resnet"].BasicBlock = type("BasicBlock", (torch.nn.Module,), {})
        sys.modules.update(mods)


def twin(case: str, copies: bool = False):
    """(torch model with module ReLUs/pools, the ReLU module after the last convolution);
    copies: a copying module between each ReLU and MaxPool2d (for Captum's DeepLift only:
    Captum's LRP has no rule for it)."""
    import torch
    from peers import transplant
    from torch import nn

    model, variables, *_ = setup(case)
    params = variables["params"]

    class Copy(nn.Module):  # between a ReLU and a MaxPool2d module (Captum's DeepLift; module docstring)
        def forward(self, a):
            return a.clone()

    class Twin(nn.Module):
        def __init__(self, features, head, flatten):
            super().__init__()
            self.features, self.head, self.flatten = features, head, flatten

        def forward(self, x):
            return self.head(self.flatten(self.features(x)))

    layers: list = []
    if case == "mnist1d":
        for name in ("conv1d", "conv1d_1", "conv1d_2"):
            k = np.shape(params[name]["kernel"])
            conv = nn.Conv1d(k[1], k[2], k[0], padding="same")
            conv.load_state_dict(transplant.torch_state(params[name]))
            layers += [conv, nn.ReLU()]
        head = nn.Linear(*np.shape(params["dense"]["kernel"]))
        flatten = lambda a: a.transpose(1, 2).flatten(1)  # noqa: E731  (flax's row-major (L, C) order)
    elif case == "vgg":
        i = 0
        for block in model.blocks:
            for _ in block:
                name = "conv2d" if i == 0 else f"conv2d_{i}"
                k = np.shape(params[name]["kernel"])
                conv = nn.Conv2d(k[2], k[3], 3, padding="same")
                conv.load_state_dict(transplant.torch_state(params[name]))
                layers += [conv, nn.ReLU()]
                i += 1
            layers += [Copy(), nn.MaxPool2d(2, 2)] if copies else [nn.MaxPool2d(2, 2)]
        layers.append(nn.AdaptiveAvgPool2d(1))
        head = nn.Linear(*np.shape(params["dense"]["kernel"]))
        flatten = lambda a: a.flatten(1)  # noqa: E731
    else:
        stats = variables["batch_stats"]["bn"]
        convs = []
        for name in ("conv1", "conv2"):
            k = np.shape(params[name]["kernel"])
            conv = nn.Conv2d(k[2], k[3], 3, padding=1)
            conv.load_state_dict(transplant.torch_state(params[name]))
            convs.append(conv)
        bn = nn.BatchNorm2d(convs[0].out_channels, eps=1e-5)
        with torch.no_grad():
            bn.weight.copy_(torch.as_tensor(np.asarray(params["bn"]["scale"])))
            bn.bias.copy_(torch.as_tensor(np.asarray(params["bn"]["bias"])))
            bn.running_mean.copy_(torch.as_tensor(np.asarray(stats["mean"])))
            bn.running_var.copy_(torch.as_tensor(np.asarray(stats["var"])))
        layers = [convs[0], bn, nn.ReLU(), convs[1], nn.ReLU(), nn.AdaptiveAvgPool2d(1)]
        head = nn.Linear(*np.shape(params["head"]["kernel"]))
        flatten = lambda a: a.flatten(1)  # noqa: E731
    head.load_state_dict(transplant.torch_state(params["dense" if case != "bn" else "head"]))
    relus = [m for m in layers if isinstance(m, nn.ReLU)]
    net = Twin(nn.Sequential(*layers), head, flatten).eval()
    return net, relus[-1]


def theirs(case: str, name: str) -> np.ndarray:
    import torch
    from peers import transplant

    model, variables, xs, ts, base, shap = setup(case)
    net, last_relu = twin(case, copies=name.startswith("deeplift"))
    x = torch.as_tensor(transplant.to_channels_first(xs))
    with torch.no_grad():  # the same network on both sides
        mine = np.stack([np.asarray(xj.Model(model, variables)(jnp.asarray(v))) for v in xs])
        np.testing.assert_allclose(net(x).numpy(), mine, rtol=1e-4, atol=1e-4)
    target = torch.as_tensor(ts)
    if name in ZENNIT:
        _torchvision_stub()
        import zennit.composites as zc
        from zennit.attribution import Gradient
        from zennit.canonizers import SequentialMergeBatchNorm

        low, high = BOUNDS[case]
        kwargs = {"low": low, "high": high} if name == "EpsilonGammaBox" else {}
        comp = getattr(zc, name)(canonizers=[SequentialMergeBatchNorm()], **kwargs)
        one_hot = torch.nn.functional.one_hot(target, net.head.out_features).float()
        with Gradient(model=net, composite=comp) as attributor:
            _, rel = attributor(x.clone().requires_grad_(True), lambda out: one_hot * out)
        out = rel
    else:
        import captum.attr as ca

        if name == "deeplift":
            out = ca.DeepLift(net).attribute(x, baselines=torch.as_tensor(transplant.to_channels_first(base)),
                                             target=target)
        elif name == "deeplift_shap":
            out = ca.DeepLiftShap(net).attribute(x, baselines=torch.as_tensor(transplant.to_channels_first(shap)),
                                                 target=target)
        elif name == "guided_backprop":
            out = ca.GuidedBackprop(net).attribute(x, target=target)
        elif name == "deconvnet":
            out = ca.Deconvolution(net).attribute(x, target=target)
        elif name == "guided_grad_cam":
            out = ca.GuidedGradCam(net, last_relu).attribute(x, target=target)
        else:  # lrp_epsilon
            from captum.attr._utils.lrp_rules import EpsilonRule
            for m in net.modules():
                if isinstance(m, torch.nn.Conv1d):
                    m.rule = EpsilonRule()
            out = ca.LRP(net).attribute(x, target=target)
    return transplant.to_channels_last(out.detach())


def main(argv=None) -> int:
    args = cli.parse(__doc__, ROOT / "results" / "compare_propagation_peers", argv)
    if cli.missing(("torch", "captum", "zennit"), args.out,
                   "pip install captum==0.9.0 and, with --no-deps --ignore-requires-python, zennit==1.0.0 into the "
                   "peers venv"):
        return 0
    result = {"about": __doc__.splitlines()[0], "captum": importlib.metadata.version("captum"),
              "zennit": importlib.metadata.version("zennit"), "cases": {}}
    for case, names in CASES.items():
        result["cases"][case] = {}
        for name in names:
            ref = theirs(case, name)
            err = agreement(ours(case, name), ref)
            peer = "zennit" if name in ZENNIT else "captum"
            result["cases"][case][name] = {"peer": peer, "theirs": ref.astype(np.float32).tolist(),
                                           "max_abs_diff_rel": err}
            print(f"  {case:8s} {name:24s} vs {peer:7s}: max |ours - theirs| / max |theirs| = {err:.1e}")
    cli.write(result, args, REFERENCE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
