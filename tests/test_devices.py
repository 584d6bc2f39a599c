"""Devices: which device worlds use, said once per process; runners without a GPU stay on
the CPU even on a GPU node; GPU requests on a CPU-only machine fall back with one line.
(No GPU on the test machine: the CUDA side is checked by its decisions, not by a card.)"""
import logging

import pytest
import torch

from rledit_ray.agent.ppo import AgentSettings, build_ppo_config, runner_env_config
from rledit_ray.build import build_world
from rledit_ray.config import build_config
from rledit_ray.worlds import base

LAYOUT = [{"name": "fc2", "m": 10, "n": 32, "rank": 1}]


@pytest.fixture
def fresh_announcements(monkeypatch):
    monkeypatch.setattr(base, "_ANNOUNCED", set())


def test_world_says_once_which_device_it_uses(caplog, fresh_announcements):
    cfg = build_config({"dataset": "digits", "forget_classes": [3], "samples": {"per_set": 32}})
    with caplog.at_level(logging.INFO, logger="rledit_ray.worlds.base"):
        build_world(cfg)
        build_world(cfg)
    lines = [r.getMessage() for r in caplog.records if "worlds in process" in r.getMessage()]
    expected = "use cuda" if torch.cuda.is_available() else "use the CPU: no CUDA GPU visible"
    assert len(lines) == 1 and expected in lines[0], lines


@pytest.mark.parametrize("runners, gpus, device, expected", [
    (2, 0.0, "auto", "cpu"),     # zero-GPU runner on a GPU node must not grab cuda:0
    (2, 0.25, "auto", "auto"),   # Ray sets CUDA_VISIBLE_DEVICES; the world picks cuda
    (0, 0.0, "auto", "auto"),    # sampling in the driver: the user's choice stands
    (2, 0.0, "cuda", "cuda"),    # an explicit device is never rewritten
])
def test_runner_device(runners, gpus, device, expected):
    s = AgentSettings(num_env_runners=runners, num_gpus_per_env_runner=gpus)
    assert runner_env_config({"device": device}, s)["device"] == expected


def test_ppo_config_hands_runners_their_device(monkeypatch):
    env = {"device": "auto", "factor_layout": LAYOUT}
    cpu = build_ppo_config("dev-test-env", lambda c: None, env, AgentSettings(num_env_runners=2))
    assert cpu.env_config["device"] == "cpu" and env["device"] == "auto"
    monkeypatch.setattr("rledit_ray.agent.ppo.gpus_available", lambda: True)
    gpu = build_ppo_config("dev-test-env", lambda c: None, env,
                           AgentSettings(num_env_runners=2, num_gpus_per_env_runner=0.5, num_gpus_per_learner=1))
    assert gpu.env_config["device"] == "auto"
    assert gpu.num_gpus_per_env_runner == 0.5 and gpu.num_gpus_per_learner == 1


def test_gpu_request_on_a_cpu_machine_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr("rledit_ray.agent.ppo.gpus_available", lambda: False)
    env = {"device": "auto", "factor_layout": LAYOUT}
    with caplog.at_level(logging.WARNING, logger="rledit_ray.agent.ppo"):
        cfg = build_ppo_config("dev-test-env", lambda c: None, env,
                               AgentSettings(num_env_runners=2, num_gpus_per_env_runner=0.5, num_gpus_per_learner=1))
    assert cfg.num_gpus_per_env_runner == 0 and cfg.num_gpus_per_learner == 0
    assert cfg.env_config["device"] == "cpu"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "running on CPU instead" in warnings[0]
