"""The GPU path: worlds that hold the target network on cuda step like worlds on the CPU.

Runs only where CUDA is visible (e.g. `pytest tests/test_gpu.py` on a GPU node); CI has no
GPU and skips it. No Ray here: the worlds are the part that runs on an EnvRunner's device.
"""
import copy

import numpy as np
import pytest
import torch

from rledit_ray.build import build_world
from rledit_ray.config import build_config
from rledit_ray.worlds import MaskWorld, WorldBatch, WorldSettings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DIGITS = {"dataset": "digits", "forget_classes": [3], "samples": {"per_set": 32}, "episode_length": 3}
# Different kernels on the two devices (TF32 is off by default for matmuls in torch).
TOL = {"rtol": 1e-3, "atol": 1e-4}


def _worlds(device, **changes):
    return build_world(build_config({**DIGITS, **changes, "device": device}))


@pytest.mark.parametrize("world, edit", [
    ("mask", ["fc2.weight", "fc2.bias"]),
    ("shift", ["fc2.weight", "fc2.bias"]),
    ("mask", ["fc1.weight", "fc1.bias"]),
    ("shift", ["conv1.weight"]),
])
def test_cuda_world_steps_like_the_cpu_world(world, edit):
    cpu, gpu = _worlds("cpu", world=world, edit=edit), _worlds("cuda", world=world, edit=edit)
    assert gpu.device.type == "cuda" and all(p.is_cuda for p in gpu.model.parameters())
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(gpu.reset(seed=0)[0], cpu.reset(seed=0)[0], **TOL)
    for t in range(3):
        action = rng.uniform(-1, 1, cpu.action_space.shape).astype(np.float32)
        (o_gpu, r_gpu, done_gpu, _, i_gpu), (o_cpu, r_cpu, done_cpu, _, i_cpu) = gpu.step(action), cpu.step(action)
        assert isinstance(o_gpu, np.ndarray) and gpu.observation_space.contains(o_gpu)
        np.testing.assert_allclose(o_gpu, o_cpu, **TOL)
        assert r_gpu == pytest.approx(r_cpu, abs=1e-4)
        assert done_gpu == done_cpu == (t == 2)
        assert i_gpu["utility"] == pytest.approx(i_cpu["utility"], abs=1e-4)
    # Evaluation on the held-out pools reads the edited network on cuda as well.
    m_gpu, m_cpu = gpu.task_metrics(pools=("validation",)), cpu.task_metrics(pools=("validation",))
    assert m_gpu == pytest.approx(m_cpu, abs=0.01)


def test_cuda_batch_stacks_the_forward_pass_like_separate_cpu_worlds():
    cfg = build_config({**DIGITS, "device": "cuda"})
    batch = WorldBatch(lambda: build_world(cfg), 3)
    assert batch.batched_layer == "fc2"
    alone = [_worlds("cpu") for _ in range(3)]
    rng = np.random.default_rng(1)
    obs, _ = batch.reset(seed=0)
    np.testing.assert_allclose(obs, np.stack([w.reset(seed=0)[0] for w in alone]), **TOL)
    for _ in range(3):
        actions = rng.uniform(-1, 1, batch.action_space.shape).astype(np.float32)
        obs, rewards, *_ = batch.step(actions)
        steps = [w.step(a) for w, a in zip(alone, actions)]
        np.testing.assert_allclose(obs, np.stack([s[0] for s in steps]), **TOL)
        np.testing.assert_allclose(rewards, [s[1] for s in steps], atol=1e-4)


def test_cuda_world_on_a_non_sequential_target_replays_recorded_outputs_like_the_cpu(digits_task, tiny_cnn):
    # Each world its own task: a world moves its task's tensors to its device.
    worlds = {device: MaskWorld(copy.deepcopy(tiny_cnn), ["fc_layers.2"], copy.deepcopy(digits_task),
                                WorldSettings(episode_length=3, device=device)) for device in ("cpu", "cuda")}
    assert worlds["cuda"].split.kind == worlds["cpu"].split.kind == "memo"
    (_, records), = worlds["cuda"].reward_h.chunks
    assert all(v.is_cuda for v in records.values())
    rng = np.random.default_rng(2)
    np.testing.assert_allclose(worlds["cuda"].reset(seed=0)[0], worlds["cpu"].reset(seed=0)[0], **TOL)
    for _ in range(3):
        action = rng.uniform(-1, 1, worlds["cpu"].action_space.shape).astype(np.float32)
        (o_gpu, r_gpu, *_), (o_cpu, r_cpu, *_) = worlds["cuda"].step(action), worlds["cpu"].step(action)
        np.testing.assert_allclose(o_gpu, o_cpu, **TOL)
        assert r_gpu == pytest.approx(r_cpu, abs=1e-4)
