"""The one source of defaults.

The run config (YAML / CLI), the Python classes (worlds, tasks, the PPO agent) and the Python
API all read their defaults from here, so a setting left unset means the same thing however a
run is started (tests/test_defaults.py checks it). The values are the measured ones of
docs/design.md ("Measured findings"); this module imports nothing of the project.
"""

# Worlds: the step size that suits each world (measured on the last MNIST layer; ShiftWorld
# is sensitive to it).
STEP_SIZE = {"mask": 2.0, "shift": 0.5}
RANK = 1
MASK_BOUNDS = (0.0, 1.5)
MASK_UPDATE = "multiplicative"
EPISODE_LENGTH = 5
OBS_BUDGET = 4096
FACTOR_BASIS = 0  # 0: factors span rows and columns; k: k directions per side; [k_out, k_in] (worlds/bases.py)

# Reward: utility must outweigh the objective (~4:1), else "wreck everything" beats "do nothing".
UTILITY_COEF = 4.0
OBJECTIVE_COEF = 1.0
REWARD_MODE = "improvement"
TARGET_MARGIN = -4.0
KL_COEF = 0.0
SAMPLES_PER_SET = 256
SAMPLE_FOLDS = 1  # reward sample sets; ES scores iteration i on set i mod folds

# Bias task.
BIAS_OBJECTIVE = "worst_group"
BIAS_TEMPERATURE = 0.3
BIAS_REWARD_POOLS = ("fit", "reward")
BIAS_CALIBRATION_COEF = 0.0
BIAS_PAIRS_PER_SET = None  # every counterfactual pair of the reward split

# PPO agent.
AGENT = {
    "num_env_runners": 0,
    # 8 batched sub-envs per EnvRunner: RLlib's per-call cost (connectors, metrics, one module
    # forward) is paid once per 8 env steps; the default edit samples ~3x faster (1 sub-env:
    # 747 steps/s, 8: 2,377) and reaches its target in as many env steps (docs/performance.md).
    "num_envs_per_env_runner": 8,
    "vectorize": "batched",
    "num_gpus_per_env_runner": 0.0,
    "num_learners": 0,
    "num_gpus_per_learner": 0.0,
    "lr": 1e-3,
    "gamma": 1.0,
    "lambda_": 0.95,
    "clip_param": 0.3,
    "vf_clip_param": 10.0,
    "entropy_coeff": 0.0,
    "train_batch_size": 500,
    "minibatch_size": 125,
    "num_epochs": 10,
    "hidden": (64, 64),
    "initial_log_std": -0.7,  # std ~0.5: explores a good part of [-1, 1] at start
    # "ppo", or "es" (agent/es.py: evolution strategies, for wide layers). ES's settings:
    # candidates per iteration (antithetic pairs), perturbation scale in action units, Adam's
    # step on the action offsets (docs/deep-edits.md).
    "algorithm": "ppo",
    "ppo_logp": "sum",  # PPO's ratio over the joint log-prob ("sum") or the per-dim mean ("mean")
    "es_population": 32,
    "es_sigma": 0.1,
    "es_lr": 0.05,
}
