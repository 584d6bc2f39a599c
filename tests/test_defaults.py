"""One source of defaults: the config, the Python classes and the API agree."""
import inspect

from rledit_ray import defaults as D
from rledit_ray.agent import AgentSettings
from rledit_ray.config import RunConfig, build_config
from rledit_ray.tasks import BiasTask, UnlearningTask
from rledit_ray.tasks.requests import UnlearningRequests


def _default(cls, name):
    return inspect.signature(cls).parameters[name].default


def test_task_defaults_are_the_configs():
    cfg = RunConfig()
    for cls in (UnlearningTask, UnlearningRequests):
        assert _default(cls, "target_margin") == cfg.reward.target_margin
        assert _default(cls, "samples_per_set") == cfg.samples.per_set
        assert _default(cls, "kl_coef") == cfg.reward.kl_coef
    assert _default(BiasTask, "objective") == cfg.bias.objective
    assert _default(BiasTask, "temperature") == cfg.bias.temperature
    assert list(_default(BiasTask, "reward_pools")) == cfg.bias.reward_pools
    assert _default(BiasTask, "calibration_coef") == cfg.bias.calibration_coef
    assert _default(BiasTask, "pairs_per_set") == cfg.bias.pairs_per_set


def test_agent_defaults_are_the_configs():
    settings, cfg = AgentSettings(), RunConfig().agent
    for name, value in cfg.model_dump().items():
        assert getattr(settings, name) == value, name


def test_world_defaults_are_the_configs():

    for world in ("mask", "shift"):
        settings = build_config({"world": world}).world_settings()
        assert settings.step_size == D.STEP_SIZE[world]
        assert (settings.rank, settings.episode_length, tuple(settings.mask_bounds), settings.obs_budget) == (
            D.RANK, D.EPISODE_LENGTH, D.MASK_BOUNDS, D.OBS_BUDGET)
        assert (settings.utility_coef, settings.objective_coef, settings.reward_mode) == (
            D.UTILITY_COEF, D.OBJECTIVE_COEF, D.REWARD_MODE)
        assert settings.mask_update == D.MASK_UPDATE == __import__("rledit_ray").worlds.WorldSettings().mask_update


def test_api_defaults_are_the_configs():
    from rledit_ray.api import edit

    signature = inspect.signature(edit).parameters
    cfg = RunConfig()
    assert signature["world"].default == cfg.world and signature["task"].default == cfg.task
    assert list(signature["forget_classes"].default) == cfg.forget_classes
    assert signature["seed"].default == cfg.seed


def test_worlds_built_from_python_take_the_same_step_size(digits_task, tiny_cnn):
    from rledit_ray.worlds import MaskWorld, ShiftWorld, WorldSettings

    for cls in (MaskWorld, ShiftWorld):
        world = cls(tiny_cnn, ["fc_layers.2"], digits_task, WorldSettings())
        assert world.settings.step_size == D.STEP_SIZE[world.kind]
