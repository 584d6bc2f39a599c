"""Bad input, by cause: each verb answers a mistake with one line on stderr and exit status 2,
with no traceback, before it writes anything; the shared runs stay byte-identical (issue 18).

Here: config files, config fields, flags, output folders, `train --resume`, edit options.
test_bad_files.py: data, weights, checkpoints, run metrics, comparisons. test_bad_options.py:
sweep specs, bench options. test_bad_actions.py: NaN and misshapen actions, the config schema
(property tests). test_bad_terminal.py: clusters that do not answer, a stale address file, a
running local cluster, and examples through the real process (no traceback reaches a terminal).
The CLI runs in this process (conftest.py: `refused`); the runs it must not touch are trained
once per session (conftest.py: finished_runs) and hashed around every test (`places`).
"""
from pathlib import Path

import pytest
import yaml
from conftest import refused

REPO = Path(__file__).resolve().parents[1]
SMOKE_SPEC = REPO / "tune_configs" / "digits_smoke.yaml"
DIGITS = {"dataset": "digits", "forget_classes": [3]}


def config_file(tmp_path, data: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ----------------------------------------------------------------------------- config files
CONFIG_VERBS = {
    "train": lambda cfg, p: ["train", "--config", cfg, "--out", p.new],
    "eval": lambda cfg, p: ["eval", "--config", cfg],
    "compare": lambda cfg, p: ["compare", "--config", cfg, "--methods", "original", "--seeds", "1", "--out", p.new],
}
CONFIG_FILES = [
    ("latin1.yaml", "is not UTF-8 text"), ("binary.yaml", "is not UTF-8 text"), ("list.yaml", "must hold a mapping"),
    ("broken.yaml", "is not valid YAML"), ("unknown.yaml", "sede: unknown field"), ("badtype.yaml", "samples.per_set"),
    ("missing.yaml", "does not exist"), ("images", "is a folder, not a file"),
]


@pytest.mark.parametrize("verb", CONFIG_VERBS)
@pytest.mark.parametrize("name, expected", CONFIG_FILES, ids=[n for n, _ in CONFIG_FILES])
def test_a_config_file_that_cannot_be_read(verb, name, expected, places, capsys):
    refused(capsys, CONFIG_VERBS[verb](places.bad.root / name, places), expected)
    assert not places.new.exists()


# ----------------------------------------------------------------------------- config fields
FIELDS = [
    ("negative seed", {"seed": -1}, "seed: Input should be greater than or equal to 0"),
    ("seed beyond 32 bits", {"seed": 2**40}, "seed: Input should be less than or equal to 4294967295"),
    ("negative target seed", {"target_seed": -5}, "target_seed: Input should be greater than or equal to 0"),
    ("device tpu", {"device": "tpu"}, "unknown device 'tpu'"),
    ("device mps", {"device": "mps"}, "unknown device 'mps'"),
    ("device cuda:x", {"device": "cuda:x"}, "unknown device 'cuda:x'"),
    ("hidden -4", {"agent": {"hidden": [-4]}}, "agent.hidden.0: Input should be greater than or equal to 1"),
    ("hidden 0", {"agent": {"hidden": [64, 0]}}, "agent.hidden.1"),
    ("hidden 10^9", {"agent": {"hidden": [10**9]}}, "agent.hidden.0: Input should be less than or equal to 65536"),
    ("rank 10^20", {"rank": 10**20}, "rank 100000000000000000000 exceeds what layer 'fc2' (10 x 65) can hold"),
    ("rank above the layer", {"rank": 11}, "choose a rank of at most 10"),
    ("rank 0", {"rank": 0}, "rank must be >= 1"),
    ("NaN coefficient", {"reward": {"utility_coef": float("nan")}}, "reward.utility_coef: Input should be a finite number"),
    ("inf step size", {"step_size": float("inf")}, "step_size: Input should be a finite number"),
    ("negative step size", {"step_size": -1.0}, "step_size must be > 0"),
    ("NaN mask bound", {"mask_bounds": [float("nan"), 2.0]}, "mask_bounds.0: Input should be a finite number"),
    ("mask bounds without 1", {"mask_bounds": [2.0, 3.0]}, "mask_bounds must contain 1"),
    ("inf learning rate", {"agent": {"lr": float("inf")}}, "agent.lr: Input should be a finite number"),
    ("zero learning rate", {"agent": {"lr": 0}}, "agent.lr: Input should be greater than 0"),
    ("gamma 2", {"agent": {"gamma": 2}}, "agent.gamma"),
    ("clip param 1.5", {"agent": {"clip_param": 1.5}}, "agent.clip_param"),
    ("negative KL coefficient", {"reward": {"kl_coef": -1}}, "reward.kl_coef"),
    ("10^9 envs per runner", {"agent": {"num_envs_per_env_runner": 10**9}}, "num_envs_per_env_runner: Input should be less"),
    ("negative runners", {"agent": {"num_env_runners": -1}}, "agent.num_env_runners"),
    ("zero iterations", {"training": {"iterations": 0}}, "training.iterations"),
    ("zero episode length", {"episode_length": 0}, "episode_length must be >= 1"),
    ("zero observation budget", {"obs_budget": 0}, "obs_budget must be >= 1"),
    ("zero reward samples", {"samples": {"per_set": 0}}, "samples.per_set"),
    ("zero threads", {"torch_threads": 0}, "torch_threads"),
    ("unknown mask update", {"mask_update": "sideways"}, "mask_update"),
    ("unknown reward mode", {"reward": {"mode": "vibes"}}, "reward.mode"),
    ("unknown world", {"world": "teleport"}, "unknown world 'teleport'"),
    ("unknown task", {"task": "painting"}, "unknown task 'painting'"),
    ("unknown dataset", {"dataset": "cifar"}, "unknown dataset 'cifar'"),
    ("dataset of the other task", {"dataset": "redditbias"}, "does not fit task 'unlearning'"),
    ("no forget class", {"forget_classes": []}, "forget classes are empty"),
    ("forget class 12", {"forget_classes": [12]}, "forget class 12 is outside the label set"),
    ("forget every class", {"forget_classes": list(range(10))}, "cannot forget every class"),
    ("no layer", {"edit": []}, "no parameters to edit"),
    ("unknown layer", {"edit": ["fc9"]}, "unknown layer or parameter 'fc9'"),
    ("class trained and held out", {"generalist": {"train_classes": [0, 1], "heldout_classes": [1]}}, "is in both"),
    ("held-out class 12", {"generalist": {"train_classes": [0, 1], "heldout_classes": [12]}}, "forget class 12"),
    ("weights without a model", {"target": {"weights": "w.safetensors"}}, "target.weights needs target.model"),
    ("mean without std", {"target": {"mean": [0.5]}}, "give both mean and std"),
    ("negative std", {"target": {"mean": [0.5], "std": [-1.0]}}, "target.std must be"),
    ("image size 0", {"target": {"image_size": [0, 8]}}, "target.image_size"),
    ("unknown data source", {"data_source": "magic"}, "data_source"),
    ("misspelt section", {"agnet": {"lr": 0.1}}, "agnet: unknown field"),
]


@pytest.mark.parametrize("verb", ["train", "eval"])
@pytest.mark.parametrize("fields, expected", [f[1:] for f in FIELDS], ids=[f[0] for f in FIELDS])
def test_a_config_field_out_of_its_domain(verb, fields, expected, places, capsys):
    cfg = config_file(places.tmp, {**DIGITS, **fields})
    refused(capsys, ["train", "--config", cfg, "--out", places.new] if verb == "train" else ["eval", "--config", cfg],
            expected)
    assert not places.new.exists()  # no folder holding only config.yaml


# ----------------------------------------------------------------------------- flags
RUN_FLAGS = [  # shared by train, eval and compare (cli._add_run_flags)
    (["--forget-class", "10"], "forget class 10 is outside the label set"),
    (["--forget-class", "-1"], "forget class -1 is outside the label set"),
    (["--forget-class", "three"], "invalid int value: 'three'"),
    (["--task", "painting"], "unknown task 'painting'"),
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--data-source", "magic"], "data_source"),
    (["--data-columns", "[1]"], "must be a JSON object"),
    (["--data-columns", "{oops"], "is not JSON"),
    (["--mean", "0.5"], "give both mean and std"),
    (["--mean", "0.5", "--std", "0"], "target.std must be"),
    (["--mean", "a,b", "--std", "1"], "is not a comma-separated list of numbers"),
    (["--image-size", "0,8"], "target.image_size"),
    (["--image-size", "8"], "target.image_size"),
    (["--model", "missing.py:Net"], "does not exist"),
    (["--model", "Net"], "expected FILE.py:NAME"),
    (["--weights", "w.safetensors"], "target.weights needs target.model"),
    (["--hf-model", "some/model"], "target.hf is a text classifier"),
]
RUN_VERBS = {
    "train": lambda flags, p: ["train", "--dataset", "digits", *flags, "--out", p.new],
    "eval": lambda flags, p: ["eval", "--dataset", "digits", *flags],
    "compare": lambda flags, p: ["compare", "--dataset", "digits", "--methods", "original", "--seeds", "1", *flags,
                                 "--out", p.new],
}


@pytest.mark.parametrize("verb", RUN_VERBS)
@pytest.mark.parametrize("flags, expected", RUN_FLAGS, ids=[" ".join(f) for f, _ in RUN_FLAGS])
def test_a_run_flag_out_of_its_domain(verb, flags, expected, places, capsys):
    refused(capsys, RUN_VERBS[verb](flags, places), expected)
    assert not places.new.exists()


TRAIN_FLAGS = [
    (["--seed", "-1"], "seed: Input should be greater than or equal to 0"),
    (["--rank", "two"], "invalid int value: 'two'"),
    (["--rank", "0"], "rank must be >= 1"),
    (["--rank", str(10**20)], "exceeds what layer 'fc2'"),
    (["--episode-length", "0"], "episode_length must be >= 1"),
    (["--iterations", "0"], "command line: training.iterations"),
    (["--config", str(Path(__file__).parents[1] / "configs" / "conv2_es.yaml"), "--iterations", "0"],
     "command line: training.iterations"),
    (["--env-runners", "-1"], "agent.num_env_runners"),
    (["--mask-bounds", "2,3"], "mask_bounds must contain 1"),
    (["--mask-bounds", "nan,2"], "mask_bounds.0: Input should be a finite number"),
    (["--mask-bounds", "0"], "mask_bounds.1"),
    (["--world", "teleport"], "unknown world 'teleport'"),
    (["--layer", "fc9"], "unknown layer or parameter 'fc9'"),
    (["--mask-update", "sideways"], "mask_update"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--address", "nonsense"], "is not HOST:PORT"),
    # Refused up front, where Ray would wait forever (2 CPUs in the test cluster).
    (["--env-runners", "8"], "need 8 CPUs but the Ray cluster has 2"),
]


@pytest.mark.parametrize("flags, expected", TRAIN_FLAGS, ids=[" ".join(f) for f, _ in TRAIN_FLAGS])
def test_a_train_flag_out_of_its_domain(flags, expected, places, capsys):
    refused(capsys, ["train", "--dataset", "digits", *flags, "--out", places.new], expected)
    assert not places.new.exists()


# ----------------------------------------------------------------------------- output folders
OUT_VERBS = {
    "train": lambda out, p: ["train", "--dataset", "digits", "--out", out],
    "edit": lambda out, p: ["edit", "--checkpoint", p.run, "--out", out],
    "edit generalist": lambda out, p: ["edit", "--checkpoint", p.gen, "--forget-class", "8", "--out", out],
    "sweep": lambda out, p: ["sweep", SMOKE_SPEC, "--out", out],
    "compare": lambda out, p: ["compare", "--dataset", "digits", "--forget-class", "3", "--methods", "original",
                               "--seeds", "1", "--out", out],
    "compare-requests": lambda out, p: ["compare-requests", "--checkpoint", p.gen, "--baselines", "--out", out],
}
BAD_OUTS = {
    "a file": (lambda p: p.bad.file, "is a file: choose a folder"),
    "below a file": (lambda p: p.bad.file / "sub", "lies below the file"),
    "in /proc": (lambda p: Path("/proc/rledit-nope/out"), "cannot create folders in '/proc'"),
    "a finished run": (lambda p: p.run, "already holds a finished run (a finished run is never written into)"),
    "a generalist run": (lambda p: p.gen, "already holds a finished run"),
    "an unfinished run": (lambda p: p.interrupted, "already holds an unfinished run"),
    "a checkpoint": (lambda p: p.run / "checkpoint", "already holds files rledit did not write"),
    "a comparison": (lambda p: p.bad.comparison, "already holds a comparison"),
}
OUT_CASES = [(verb, where) for verb in OUT_VERBS for where in BAD_OUTS
             if not (verb == "compare" and where == "a comparison")]  # compare resumes its own


@pytest.mark.parametrize("verb, where", OUT_CASES, ids=[f"{v} --out {w}" for v, w in OUT_CASES])
def test_an_output_folder_that_must_not_be_written(verb, where, places, capsys):
    out, expected = BAD_OUTS[where]
    refused(capsys, OUT_VERBS[verb](out(places), places), expected)


# ----------------------------------------------------------------------------- resume
RESUME = [
    ("a typo", lambda p: [p.root / "interruptd"], "does not exist"),
    ("a file", lambda p: [p.bad.file], "is a file, not a run"),
    ("a finished run", lambda p: [p.run], "the run has finished (metrics.json): nothing to resume"),
    ("another --out", lambda p: [p.interrupted, "--out", p.new], "drop --out"),
    ("a --config", lambda p: [p.interrupted, "--config", p.bad.list_yaml], "drop --config"),
    ("another layer", lambda p: [p.interrupted, "--layer", "fc1"], "cannot change edit"),
    ("another rank", lambda p: [p.interrupted, "--rank", "2"], "cannot change rank (1 -> 2)"),
    ("another world", lambda p: [p.interrupted, "--world", "shift"], "cannot change world (mask -> shift)"),
    ("another class", lambda p: [p.interrupted, "--forget-class", "5"], "cannot change forget_classes"),
    ("another seed", lambda p: [p.interrupted, "--seed", "9"], "cannot change seed (0 -> 9)"),
    ("a damaged checkpoint", lambda p: [p.bad.resume_damaged], "cannot be loaded"),
    ("a partial checkpoint", lambda p: [p.bad.resume_partial], "cannot be loaded"),
    ("a damaged state", lambda p: [p.bad.resume_state], "rledit_state.json' is damaged"),
    ("no checkpoint yet", lambda p: [p.bad.resume_early], "nothing to resume: no checkpoint"),
    ("not a run", lambda p: [p.bad.images], "is not an rledit run (no config.yaml)"),
    ("more runners than CPUs", lambda p: [p.interrupted, "--env-runners", "8"], "need 8 CPUs"),
]


@pytest.mark.parametrize("args, expected", [r[1:] for r in RESUME], ids=[r[0] for r in RESUME])
def test_resume_only_an_unfinished_run_in_place(args, expected, places, capsys):
    refused(capsys, ["train", "--resume", *args(places)], expected)
    assert not places.new.exists()


# ----------------------------------------------------------------------------- edit options
EDITS = [
    ("repeat 0", lambda p: ["--checkpoint", p.run, "--repeat", "0"], "--repeat must be >= 1 (got 0)"),
    ("repeat -1", lambda p: ["--checkpoint", p.run, "--repeat", "-1"], "--repeat must be >= 1"),
    ("repeat 2, one request", lambda p: ["--checkpoint", p.run, "--repeat", "2"], "needs a generalist checkpoint"),
    ("generalist repeat 0", lambda p: ["--checkpoint", p.gen, "--forget-class", "8", "--repeat", "0"], "--repeat"),
    ("class for one request", lambda p: ["--checkpoint", p.run, "--forget-class", "3"], "needs a generalist"),
    ("generalist without class", lambda p: ["--checkpoint", p.gen], "name the request with --forget-class"),
    ("generalist class 99", lambda p: ["--checkpoint", p.gen, "--forget-class", "99"], "forget class 99 is outside"),
    ("no --out", lambda p: ["--checkpoint", p.run], "the following arguments are required: --out"),
]


@pytest.mark.parametrize("args, expected", [e[1:] for e in EDITS], ids=[e[0] for e in EDITS])
def test_edit_options_that_make_no_sense(args, expected, places, capsys):
    argv = ["edit", *args(places)] + ([] if expected.endswith("--out") else ["--out", places.new])
    refused(capsys, argv, expected)
    assert not places.new.exists()


# ----------------------------------------------------------------------------- the Python API
API = [
    ("out at a finished run", lambda p: {"out": p.run}, "already holds a finished run"),
    ("a setting out of its domain", lambda p: {"settings": {"agent.hidden": [-4]}, "out": p.new}, "agent.hidden.0"),
    ("a negative seed", lambda p: {"seed": -1, "out": p.new}, "seed: Input should be greater than or equal to 0"),
]


@pytest.mark.parametrize("kwargs, expected", [a[1:] for a in API], ids=[a[0] for a in API])
def test_the_python_api_refuses_before_building_anything(kwargs, expected, places, digits_target):
    import rledit_ray
    from rledit_ray.errors import UserError

    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        rledit_ray.edit(digits_target[1], "digits", forget_classes=[3], **kwargs(places))
    assert not places.new.exists()
