"""Gymnasium environments from the `env` config group: made, checked (an unknown id with a did-you-mean over
gymnasium's registry, spaces an agent cannot read), observations as tensors, and an environment's state as
plain data for an exact resume.

Resume rule: the state of an environment is the plain attributes (numbers, arrays, tuples of numbers) of the
environment and of each wrapper around it, plus its random generator's state. That is all of the state of
gymnasium's classic-control and toy-text environments, so an episode interrupted by a checkpoint continues
exactly. An environment with state outside Python (Atari's emulator) cannot be captured this way: after a
resume its interrupted episode restarts, and `restarted_episodes` in the metrics counts it.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from dlrun.errors import DlrunError, did_you_mean


def gym():
    try:
        import gymnasium
    except ImportError:
        raise DlrunError("env=... needs gymnasium: pip install 'gymnasium[classic-control,toy-text]'") from None
    return gymnasium


def check_id(env_id: str) -> None:
    """An id gymnasium knows, or a one-line error with the closest ones."""
    registry = gym().registry
    if env_id not in registry:
        if env_id.startswith("ALE/"):
            try:
                import ale_py  # noqa: F401  (registers the ALE/ ids)
            except ImportError:
                raise DlrunError(f"env.id={env_id} needs ale-py: pip install ale-py") from None
            registry = gym().registry
            if env_id in registry:
                return
        raise DlrunError(f"unknown environment env.id={env_id!r}.{did_you_mean(env_id, list(registry))} "
                         "(the ids are gymnasium's: python -c 'import gymnasium; gymnasium.pprint_registry()')")


def make(env_cfg, render: bool = False):
    """The environment `env_cfg` names (checked), with Atari preprocessing when `env.atari`."""
    check_id(env_cfg.id)
    g = gym()
    kw = dict(env_cfg.get("kwargs") or {})
    if env_cfg.get("max_episode_steps"):
        kw["max_episode_steps"] = env_cfg.max_episode_steps
    if render:
        kw["render_mode"] = "rgb_array"
    if env_cfg.get("atari"):
        kw["frameskip"] = 1  # AtariPreprocessing skips frames itself
    try:
        env = g.make(env_cfg.id, **kw)
    except (TypeError, ValueError, g.error.Error) as exc:
        raise DlrunError(f"env.id={env_cfg.id} could not be made with {kw}: {str(exc).splitlines()[0]}") from None
    if env_cfg.get("atari"):
        env = g.wrappers.FrameStackObservation(g.wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84), 4)
    return env


def spaces(env, env_id: str, model: str, discrete_obs_ok: bool = True) -> tuple[tuple, int, bool]:
    """(observation shape as the network reads it, number of actions, whether observations are discrete
    states, one-hot encoded); a space the agent cannot read is a one-line error."""
    sp = gym().spaces
    act, obs = env.action_space, env.observation_space
    if not isinstance(act, sp.Discrete):
        raise DlrunError(f"env={env_id} has a continuous action space ({type(act).__name__}{tuple(act.shape)}); "
                         f"model={model} chooses among discrete actions: pick an environment with a Discrete "
                         "action space (CartPole-v1, Acrobot-v1, MountainCar-v0, FrozenLake-v1, ...)")
    if isinstance(obs, sp.Discrete) and discrete_obs_ok:
        return (int(obs.n),), int(act.n), True
    if isinstance(obs, sp.Box) and obs.shape:
        return tuple(obs.shape), int(act.n), False
    raise DlrunError(f"env={env_id} has an observation space model={model} cannot read ({obs}); it reads a Box "
                     "of numbers or frames, or a Discrete state")


def as_tensor(obs, discrete: int | None) -> torch.Tensor:
    """An observation as stored: a state's one-hot (float), frames as uint8, numbers as float32."""
    if discrete:
        x = torch.zeros(discrete)
        x[int(obs)] = 1.0
        return x
    arr = np.asarray(obs)
    return torch.from_numpy(arr.copy()) if arr.dtype == np.uint8 else torch.as_tensor(arr, dtype=torch.float32)


# ---- an environment's state as plain data (the resume rule in the module docstring) ----------------------
PLAIN = (int, float, bool, str, type(None))


def _plain(value):
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype != object:
        return {"__array__": torch.from_numpy(value.copy()), "dtype": str(value.dtype)}
    if isinstance(value, tuple) and all(isinstance(v, PLAIN + (np.generic,)) for v in value):
        return {"__tuple__": [v.item() if isinstance(v, np.generic) else v for v in value]}
    raise TypeError


def _unplain(value):
    if isinstance(value, dict) and "__array__" in value:
        return value["__array__"].numpy().astype(value["dtype"])
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(value["__tuple__"])
    return value


def _layers(env) -> list:
    layers = [env]
    while hasattr(layers[-1], "env"):  # gymnasium's wrappers, outermost first
        layers.append(layers[-1].env)
    return layers


def get_state(env) -> dict | None:
    """The environment's state as plain data, or None when part of it lives outside Python (Atari)."""
    if "ale" in vars(env.unwrapped):
        return None
    layers = []
    for layer in _layers(env):
        attrs = {}
        for k, v in vars(layer).items():
            try:
                attrs[k] = _plain(v)
            except TypeError:
                continue
        layers.append(attrs)
    rng = env.unwrapped.np_random.bit_generator.state  # 128-bit integers: kept as JSON text
    return {"layers": layers, "rng": json.dumps(rng)}


def set_state(env, state: dict | None) -> bool:
    """Restore `get_state`'s data; False when there was none (the episode restarts)."""
    if state is None:
        return False
    for layer, attrs in zip(_layers(env), state["layers"]):
        for k, v in attrs.items():
            setattr(layer, k, _unplain(v))
    env.unwrapped.np_random.bit_generator.state = json.loads(state["rng"])
    return True
