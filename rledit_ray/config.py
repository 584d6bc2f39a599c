"""One validated run configuration, from YAML and/or CLI flags.

Every command (train, edit, eval, sweeps) and every Ray worker builds its world from this
object; env_config is `RunConfig.model_dump()`. Unknown fields and bad values are refused
with one line naming the field, before any work starts.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rledit_ray import defaults as D
from rledit_ray.errors import UserError
from rledit_ray.names import DATASETS, DATASETS_OF_TASK, TASKS

WORLDS = ("mask", "shift")
# Datasets are known by name (names.py); any other name needs `data_root` (a folder, file or hub name).
DATA_SOURCES = ("auto", "idx", "csv", "torchvision", "image_folder", "npz", "hf")
# What a task uses when the config leaves the field unset (the top-level defaults suit
# unlearning). Bias: the head's output layer (67-dim actions at rank 1; fc1 has 449, and a
# rank-1 PPO edit of it did no better than fc2: docs/bias.md); utility and objective both move
# with the same scores, so utility needs less weight than in unlearning: 2:1 (the Tune sweep of
# the coefficients, docs/sweeps.md).
TASK_DEFAULTS = {
    "bias": {"dataset": "redditbias", "edit": ["fc2.weight", "fc2.bias"]},
}
TASK_SECTION_DEFAULTS = {
    "bias": {
        "reward": {"utility_coef": 2.0, "objective_coef": 1.0},
        # No early-stop target: the bias targets are not met on validation within a run,
        # so every run trains its 100 iterations and keeps the best validation checkpoint.
        "training": {"iterations": 100},
    },
}
DEFAULT_STEP_SIZE = D.STEP_SIZE
# Seeds go to numpy, torch and RLlib, which take unsigned 32-bit seeds at most.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
# Bounds on sizes that only a typo reaches: past them the policy network or the copies of
# the target would not fit in memory (and torch or Ray would fail far from the cause).
MAX_HIDDEN = 65536
MAX_ENVS_PER_RUNNER = 1024


class _Strict(BaseModel):
    # allow_inf_nan=False: a NaN or inf coefficient, rate or bound would reach the reward and
    # the weights; every float setting must be a finite number.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class RewardConfig(_Strict):
    utility_coef: float = D.UTILITY_COEF
    objective_coef: float = D.OBJECTIVE_COEF
    mode: Literal["improvement", "level"] = D.REWARD_MODE
    target_margin: float = D.TARGET_MARGIN
    kl_coef: float = Field(D.KL_COEF, ge=0)


class SamplesConfig(_Strict):
    per_set: int = Field(D.SAMPLES_PER_SET, ge=1, description="reward samples per set (forget / retain)")
    # ES only: draw this many reward sample sets (set 0 is the one a run of folds 1 draws);
    # iteration i scores its candidates on set i mod folds, so the edit follows the reward of
    # folds x per_set samples at the cost of per_set per step (docs/deep-edits.md).
    folds: int = Field(D.SAMPLE_FOLDS, ge=1, description="reward sample sets; ES scores iteration i on set i mod folds")


class BiasConfig(_Strict):
    """Settings only the bias task reads."""

    objective: Literal["bias_score", "worst_group", "counterfactual_gap"] = D.BIAS_OBJECTIVE
    # Softness of the reward's AUCs, in units of the standardised logit margin. Measured
    # (scripts/bias_edit_probe.py, seed 0, test split; docs/bias.md): 0.3 generalises better
    # than 0.1 for a gradient-followed fc2 edit: a sharper sigmoid fits the pairs of the
    # reward samples.
    temperature: float = Field(D.BIAS_TEMPERATURE, gt=0)
    # Pools the reward samples come from (never validation or test). The head's own
    # training rows (fit) add samples; measured: edits generalise better with them.
    reward_pools: list[Literal["fit", "reward"]] = Field(list(D.BIAS_REWARD_POOLS), min_length=1)
    # Utility minus this times |mean p(harmful) - original mean| on the reward samples: AUCs
    # ignore the threshold, and a ShiftWorld edit moves it (worst-group accuracy falls:
    # docs/baselines.md, the bias comparison).
    # Measured: at 2.0 (step 0.5) and 0.5 (step 0.25) PPO kept the zero edit for 60-75
    # iterations (exploration costs more than it finds), so it is off by default.
    calibration_coef: float = Field(D.BIAS_CALIBRATION_COEF, ge=0)
    # Counterfactual pairs among the reward samples (None: all of the reward split's, ~790 on
    # RedditBias). Fewer keep a per-step cost low when the edited layer sits deep in a
    # transformer; 0 runs none (only the counterfactual_gap objective reads them).
    pairs_per_set: int | None = Field(D.BIAS_PAIRS_PER_SET, ge=0)


class GeneralistConfig(_Strict):
    """One policy for many requests: each episode forgets a class drawn from
    `train_classes`; `heldout_classes` are never trained on and are served afterwards.
    The world then observes the request by its data, per output row (worlds/rowwise.py),
    and the agent is the row-wise module (agent/rowwise.py)."""

    train_classes: list[int] = Field([0, 1, 2, 3, 4, 5, 6], min_length=1)
    heldout_classes: list[int] = Field([7, 8, 9], min_length=1)


class AgentConfig(_Strict):
    A = D.AGENT
    num_env_runners: int = Field(A["num_env_runners"], ge=0)
    num_envs_per_env_runner: int = Field(A["num_envs_per_env_runner"], ge=1, le=MAX_ENVS_PER_RUNNER)
    # "batched": an EnvRunner's sub-envs are one WorldBatch (one stacked forward pass per
    # step where the edit allows it); "sync": gymnasium's SyncVectorEnv, one world at a time.
    vectorize: Literal["batched", "sync"] = A["vectorize"]
    num_gpus_per_env_runner: float = Field(A["num_gpus_per_env_runner"], ge=0)
    num_learners: int = Field(A["num_learners"], ge=0)
    num_gpus_per_learner: float = Field(A["num_gpus_per_learner"], ge=0)
    lr: float = Field(A["lr"], gt=0)
    gamma: float = Field(A["gamma"], ge=0, le=1)
    lambda_: float = Field(A["lambda_"], ge=0, le=1)
    clip_param: float = Field(A["clip_param"], gt=0, lt=1)
    # Clamp on the squared value error (RLlib's default); raise it for returns beyond ~3.
    vf_clip_param: float = Field(A["vf_clip_param"], gt=0)
    entropy_coeff: float = Field(A["entropy_coeff"], ge=0)
    train_batch_size: int = Field(A["train_batch_size"], ge=1)
    minibatch_size: int = Field(A["minibatch_size"], ge=1)
    num_epochs: int = Field(A["num_epochs"], ge=1)
    hidden: list[Annotated[int, Field(ge=1, le=MAX_HIDDEN)]] = list(A["hidden"])
    initial_log_std: float = A["initial_log_std"]
    # "ppo", or "es" for wide layers (agent/es.py; docs/deep-edits.md compares them).
    algorithm: Literal["ppo", "es"] = A["algorithm"]
    ppo_logp: Literal["sum", "mean"] = A["ppo_logp"]
    es_population: int = Field(A["es_population"], ge=2, multiple_of=2)
    es_sigma: float = Field(A["es_sigma"], gt=0)
    es_lr: float = Field(A["es_lr"], gt=0)
    del A


class TrainingConfig(_Strict):
    iterations: int = Field(40, ge=1)
    eval_every: int = Field(1, ge=1, description="evaluate the deterministic policy every k iterations")
    # Stop early once the validation metrics have met these for the deterministic policy.
    stop_forget_acc: float | None = 0.005
    stop_retain_acc: float | None = 0.98


class TargetConfig(_Strict):
    """The network to edit. Left empty: the project's own network for the data (a small CNN,
    or for text a head on frozen sentence embeddings), trained once and cached by content."""

    # A PyTorch model: "path/to/file.py:Name" or "package.module:Name", where Name is an
    # nn.Module class or a function returning one, called with `kwargs`.
    model: str | None = None
    kwargs: dict[str, Any] = {}
    # Its weights: .safetensors, or a .pt/.pth state dict (loaded with weights_only=True).
    weights: str | None = None
    # A transformers sequence classifier (bias task): a local save_pretrained folder, or a hub id.
    hf: str | None = None
    # Input preprocessing the model expects (per channel; one value serves every channel).
    # Unset: the dataset's usual normalisation (MNIST's mean/std for MNIST, else 0.5 / 0.5).
    mean: list[float] | None = None
    std: list[float] | None = None
    image_size: list[int] | None = Field(None, min_length=2, max_length=2, description="[H, W]")
    max_length: int = Field(128, ge=1, description="tokenizer truncation for `hf` models")
    # Set by the Python API (rledit_ray.edit) to the class of the model object it was given: such
    # a target cannot be rebuilt from the config alone.
    python_object: str | None = None

    @property
    def is_builtin(self) -> bool:
        return self.model is None and self.hf is None


class RunConfig(_Strict):
    task: str = "unlearning"
    dataset: str = "mnist"
    data_root: str | None = None
    data_source: Literal[DATA_SOURCES] = "auto"
    # Columns of a user's table or Hugging Face dataset, e.g. {image: img, label: digit} or, for
    # text, {text: comment, label: toxic, groups: [female, black]}.
    data_columns: dict[str, Any] = {}
    forget_classes: list[int] = [7]
    target: TargetConfig = TargetConfig()
    target_seed: Seed = 0
    world: str = "mask"
    edit: list[str] = ["fc2.weight", "fc2.bias"]
    rank: int = D.RANK
    step_size: float | None = None
    mask_bounds: tuple[float, float] = D.MASK_BOUNDS
    # MaskWorld: how an action changes the mask (worlds/mask.py says when additive is needed).
    mask_update: Literal["multiplicative", "additive"] = D.MASK_UPDATE
    episode_length: int = D.EPISODE_LENGTH
    reward: RewardConfig = RewardConfig()
    samples: SamplesConfig = SamplesConfig()
    bias: BiasConfig = BiasConfig()
    obs_budget: int = D.OBS_BUDGET
    # k > 0: the factors are coefficients of k directions per side (the layer's top singular
    # vectors, its inputs' principal directions): 2 r k action values; [k_out, k_in]: the sides
    # apart, r (k_out + k_in) values, 0 keeping a side's coordinates (worlds/bases.py).
    factor_basis: int | tuple[int, ...] = D.FACTOR_BASIS  # its range: WorldSettings.check
    seed: Seed = 0
    device: str = "auto"
    # Intra-op threads per env process. An env step is many tiny tensor ops, where thread
    # hand-offs cost more than they save (measured: 1900 vs 75 steps/s on 2 busy cores);
    # parallelism comes from EnvRunners instead.
    torch_threads: int = Field(1, ge=1)
    agent: AgentConfig = AgentConfig()
    training: TrainingConfig = TrainingConfig()
    generalist: GeneralistConfig | None = None

    def check(self) -> "RunConfig":
        """Semantic checks that need no data; raises UserError with one line. Also fills
        the task's own defaults into fields the user left unset."""
        if self.task not in TASKS:
            raise UserError(f"unknown task '{self.task}': choose one of {', '.join(TASKS)}")
        for field, value in TASK_DEFAULTS.get(self.task, {}).items():
            if field not in self.model_fields_set:
                setattr(self, field, value)
        for section, defaults in TASK_SECTION_DEFAULTS.get(self.task, {}).items():
            node = getattr(self, section)
            for field, value in defaults.items():
                if field not in node.model_fields_set:
                    setattr(node, field, value)
        if self.world not in WORLDS:
            raise UserError(f"unknown world '{self.world}': choose one of {', '.join(WORLDS)}")
        self._check_data()
        self._check_target()
        self.world_settings().check()  # rank, step size, bounds, episode length: checked in one place
        if self.samples.folds > 1 and self.agent.algorithm != "es":
            raise UserError(f"samples.folds {self.samples.folds} draws a fresh reward sample set per ES iteration: "
                            f"it needs agent.algorithm es (PPO scores every episode on one set; use folds 1)")
        if self.generalist is not None:
            g = self.generalist
            if self.task != "unlearning":
                raise UserError(f"a generalist: section needs task unlearning (got '{self.task}')")
            both = sorted(set(g.train_classes) & set(g.heldout_classes))
            if both:
                raise UserError(f"generalist: class {both[0]} is in both train_classes and heldout_classes: "
                                f"held-out requests must never be trained on")
        return self

    def _check_data(self) -> None:
        own = DATASETS_OF_TASK[self.task]
        if self.dataset in own:
            return
        if self.dataset in DATASETS:
            raise UserError(f"dataset '{self.dataset}' does not fit task '{self.task}': choose one of "
                            f"{', '.join(own)}, or your own data with data_root")
        if self.data_root is None:
            raise UserError(f"unknown dataset '{self.dataset}': choose one of {', '.join(own)}, or point "
                            f"data_root (--data-root) at your own data")

    def _check_target(self) -> None:
        t = self.target
        if t.model and t.hf:
            raise UserError("target: give either model (a PyTorch class) or hf (a transformers folder), not both")
        if t.hf and self.task != "bias":
            raise UserError(f"target.hf is a text classifier: it needs task bias (got '{self.task}')")
        if t.weights and not t.model:
            raise UserError("target.weights needs target.model (--model FILE.py:Class) to load them into")
        if t.kwargs and not t.model:
            raise UserError("target.kwargs needs target.model (--model FILE.py:Class) to pass them to")
        if (t.mean is None) != (t.std is None):
            raise UserError("target: give both mean and std for the input normalisation, or neither")
        if t.std is not None and (not t.std or min(t.std) <= 0):
            raise UserError(f"target.std must be one or more values > 0 (got {t.std})")
        if t.mean is not None and len(t.mean) != len(t.std):
            raise UserError(f"target: mean has {len(t.mean)} values but std has {len(t.std)}")
        if t.image_size is not None and min(t.image_size) < 1:
            raise UserError(f"target.image_size must be two sizes >= 1, [H, W] (got {t.image_size})")

    def world_settings(self):
        """What a world of this run is built with (worlds/settings.py)."""
        from rledit_ray.worlds.settings import WorldSettings

        return WorldSettings(
            rank=self.rank,
            step_size=self.effective_step_size,
            mask_bounds=tuple(self.mask_bounds),
            mask_update=self.mask_update,
            episode_length=self.episode_length,
            factor_basis=self.factor_basis,
            utility_coef=self.reward.utility_coef,
            objective_coef=self.reward.objective_coef,
            reward_mode=self.reward.mode,
            obs_budget=self.obs_budget,
            observation="rowwise" if self.generalist is not None else "weights",
            seed=self.seed,
            device=self.device,
        )

    @property
    def effective_step_size(self) -> float:
        return self.step_size if self.step_size is not None else DEFAULT_STEP_SIZE[self.world]


def _one_line(err: ValidationError, where: str) -> UserError:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return UserError(" ".join(f"{where}: {field}: {msg}".split()))  # a key may hold a newline


def build_config(data: dict | None = None, where: str = "config", from_flags=()) -> RunConfig:
    """`where`: what a bad value is named by; `from_flags`: the dotted keys the command line
    set, whose bad values are named "command line" instead."""
    try:
        return RunConfig.model_validate(data or {}).check()
    except ValidationError as err:
        field = ".".join(str(p) for p in err.errors()[0]["loc"])
        raise _one_line(err, "command line" if field in from_flags else where) from None


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} '{path}' does not exist" if not path.exists() else f"{what} '{path}' is a folder, not a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"{what} '{path}' is not UTF-8 text: save it as UTF-8 (YAML files are read as UTF-8)") from None
    except yaml.YAMLError as err:
        raise UserError(f"{what} '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{what} '{path}' must hold a mapping of settings")
    return data


def with_overrides(data: dict, overrides: dict | None) -> dict:
    """A deep copy of `data` with dotted keys ("reward.utility_coef") set on top."""
    data = copy.deepcopy(data)
    for key, value in (overrides or {}).items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"'{key}': '{p}' is a value, not a section of settings")
        node[leaf] = value
    return data


def absolute_paths(data: dict, base: Path) -> dict:
    """`data` with its file paths (data_root, target.model's file, target.weights, target.hf)
    made absolute against `base` where such a file exists there: Tune runs each trial in a
    folder of its own. Names that are not files here (hub ids, importable modules) stay."""
    data = copy.deepcopy(data)

    def absolute(value: str) -> str:
        candidate = (Path(base) / value).expanduser()
        return str(candidate.resolve()) if candidate.exists() else value

    if data.get("data_root"):
        data["data_root"] = absolute(data["data_root"])
    target = data.get("target") or {}
    for key in ("weights", "hf"):
        if target.get(key):
            target[key] = absolute(target[key])
    if target.get("model") and ":" in target["model"]:
        where, name = target["model"].rsplit(":", 1)
        target["model"] = f"{absolute(where)}:{name}"
    return data


def load_config(path: str | Path | None, overrides: dict | None = None) -> RunConfig:
    """YAML file (optional) with CLI overrides (dotted keys allowed) on top. A bad value is
    named where it came from: the file, or the command line's flag."""
    data = read_yaml_mapping(path) if path else {}
    return build_config(with_overrides(data, overrides), where=str(path) if path else "config",
                        from_flags=overrides or {})
