"""One small BatchNorm CNN held with the same weights by flax.linen, Flax NNX, Equinox (with
eqx.nn.State) and Haiku (transform_with_state): conv(2->4, 3x3) -> BatchNorm -> ReLU ->
conv(4->5, 3x3) -> ReLU -> spatial mean -> dense(5->3). Inputs 8x8x2 (channels first for Equinox)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

H = W = 8
C_IN, C1, C2, K = 2, 4, 5, 3


def linen_model():
    import flax.linen as nn

    class BNNet(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = True):
            x = nn.Conv(C1, (3, 3), name="conv1")(x)
            x = nn.BatchNorm(use_running_average=not train, name="bn")(x)
            x = nn.relu(x)
            x = nn.relu(nn.Conv(C2, (3, 3), name="conv2")(x))
            return nn.Dense(K, name="head")(x.mean((1, 2)))

    model = BNNet()
    variables = model.init(jax.random.key(0), jnp.zeros((1, H, W, C_IN)), train=False)
    rng = np.random.default_rng(1)  # non-trivial statistics, so that a BatchNorm that ignores them is caught
    stats = {"bn": {"mean": jnp.asarray(rng.normal(size=C1), jnp.float32),
                    "var": jnp.asarray(rng.uniform(0.5, 2.0, size=C1), jnp.float32)}}
    params = dict(variables["params"])
    params["bn"] = {"scale": jnp.asarray(rng.uniform(0.5, 1.5, size=C1), jnp.float32),
                    "bias": jnp.asarray(rng.normal(size=C1) * 0.1, jnp.float32)}
    return model, {"params": params, "batch_stats": stats}


def nnx_model(variables):
    from flax import nnx

    p, s = variables["params"], variables["batch_stats"]

    class BNNet(nnx.Module):
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(C_IN, C1, (3, 3), rngs=rngs)
            self.bn = nnx.BatchNorm(C1, rngs=rngs)
            self.conv2 = nnx.Conv(C1, C2, (3, 3), rngs=rngs)
            self.head = nnx.Linear(C2, K, rngs=rngs)

        def __call__(self, x):
            x = jax.nn.relu(self.bn(self.conv1(x)))
            x = jax.nn.relu(self.conv2(x))
            return self.head(x.mean((1, 2)))

    m = BNNet(nnx.Rngs(0))
    for name in ("conv1", "conv2", "head"):
        getattr(m, name).kernel[...] = p[name]["kernel"]
        getattr(m, name).bias[...] = p[name]["bias"]
    m.bn.scale[...], m.bn.bias[...] = p["bn"]["scale"], p["bn"]["bias"]
    m.bn.mean[...], m.bn.var[...] = s["bn"]["mean"], s["bn"]["var"]
    return m


def equinox_model(variables):
    import equinox as eqx

    p, s = variables["params"], variables["batch_stats"]

    class BNNet(eqx.Module):
        conv1: eqx.nn.Conv2d
        bn: eqx.nn.BatchNorm
        conv2: eqx.nn.Conv2d
        head: eqx.nn.Linear

        def __init__(self, key):
            k1, k2, k3 = jax.random.split(key, 3)
            self.conv1 = eqx.nn.Conv2d(C_IN, C1, 3, padding=1, key=k1)
            self.bn = eqx.nn.BatchNorm(C1, axis_name="batch", mode="ema")
            self.conv2 = eqx.nn.Conv2d(C1, C2, 3, padding=1, key=k2)
            self.head = eqx.nn.Linear(C2, K, key=k3)

        def __call__(self, x, state):
            x = self.conv1(x)
            x, state = self.bn(x, state)
            x = jax.nn.relu(x)
            x = jax.nn.relu(self.conv2(x))
            return self.head(x.mean((1, 2))), state

    model, state = eqx.nn.make_with_state(BNNet)(jax.random.key(0))
    conv = lambda k: jnp.transpose(k, (3, 2, 0, 1))  # HWIO -> OIHW  # noqa: E731
    model = eqx.tree_at(
        lambda m: [m.conv1.weight, m.conv1.bias, m.conv2.weight, m.conv2.bias, m.head.weight, m.head.bias,
                   m.bn.weight, m.bn.bias], model,
        [conv(p["conv1"]["kernel"]), p["conv1"]["bias"][:, None, None], conv(p["conv2"]["kernel"]),
         p["conv2"]["bias"][:, None, None], p["head"]["kernel"].T, p["head"]["bias"], p["bn"]["scale"],
         p["bn"]["bias"]])
    state = state.set(model.bn.ema_state_index, (s["bn"]["mean"], s["bn"]["var"]))
    return model, state


def haiku_model(variables):
    import haiku as hk

    p, s = variables["params"], variables["batch_stats"]

    def net(x, is_training=True):
        x = hk.Conv2D(C1, 3, name="conv1")(x)
        x = hk.BatchNorm(True, True, 0.9, eps=1e-5, name="bn")(x, is_training)
        x = jax.nn.relu(x)
        x = jax.nn.relu(hk.Conv2D(C2, 3, name="conv2")(x))
        return hk.Linear(K, name="head")(x.mean((1, 2)))

    t = hk.transform_with_state(net)
    params, state = t.init(jax.random.key(0), jnp.zeros((1, H, W, C_IN)), is_training=True)
    params = {"conv1": {"w": p["conv1"]["kernel"], "b": p["conv1"]["bias"]},
              "conv2": {"w": p["conv2"]["kernel"], "b": p["conv2"]["bias"]},
              "head": {"w": p["head"]["kernel"], "b": p["head"]["bias"]},
              "bn": {"scale": p["bn"]["scale"].reshape(1, 1, 1, C1), "offset": p["bn"]["bias"].reshape(1, 1, 1, C1)}}
    state = dict(state)
    for stat, name in (("mean", "bn/~/mean_ema"), ("var", "bn/~/var_ema")):
        v = s["bn"][stat].reshape(1, 1, 1, C1)
        state[name] = {"average": v, "hidden": v, "counter": jnp.asarray(1, jnp.int32)}
    return t, params, state


def inputs(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, H, W, C_IN)).astype(np.float32)


def adapted_models():
    """({framework: (xai_jax.Model, channels_first)}, linen module, variables): the same weights in
    linen, NNX, Equinox (with State, channels first) and, when installed, Haiku."""
    import xai_jax as xj

    module, variables = linen_model()
    out = {"linen": (xj.Model(module, variables), False), "nnx": (xj.Model(nnx_model(variables)), False)}
    eqx_model, eqx_state = equinox_model(variables)
    out["equinox"] = (xj.Model(eqx_model, state=eqx_state), True)
    try:
        import haiku  # noqa: F401
    except ImportError:
        pass
    else:
        t, params, state = haiku_model(variables)
        out["haiku"] = (xj.Model(t, params, state), False)
    return out, module, variables
