"""`rledit edit` serves a checkpoint's policy without RLlib, acting exactly as RLlib's module."""
import json
import subprocess
import sys

import numpy as np

from rledit_ray.agent import deterministic_action, load_module
from rledit_ray.agent.serving import POLICY_SPEC, load_policy
from rledit_ray.build import build_world
from rledit_ray.config import load_config
from rledit_ray.editing import CONFIG_NAME


def test_the_serving_policy_acts_as_rllibs_module(finished_runs):
    for run in (finished_runs.run, finished_runs.gen):  # a factorised and a row-wise policy
        ckpt = run / "checkpoint"
        world = build_world(load_config(ckpt / CONFIG_NAME))
        spec = json.loads((ckpt / POLICY_SPEC).read_text())
        serve = load_policy(ckpt, spec, world.action_space.low, world.action_space.high)
        module = load_module(ckpt)
        observations = np.stack([world.reset(seed=s)[0] for s in range(3)])
        noise = np.random.default_rng(0).normal(0, 3, (4, *world.observation_space.shape)).astype(np.float32)
        for obs in (observations, noise, observations[0]):
            np.testing.assert_array_equal(serve(obs), deterministic_action(module, obs))


def test_edit_with_a_generalist_imports_no_rllib(finished_runs, tmp_path):
    code = ("import sys; from rledit_ray.cli import main; "
            f"rc = main(['edit', '--checkpoint', '{finished_runs.gen}', '--forget-class', '8', '--out', '{tmp_path / 'e'}']); "
            "print(rc, 'ray.rllib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.split()[-2:] == ["0", "False"], result.stdout + result.stderr
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["forget_class"] == 8
