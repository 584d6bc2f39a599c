"""Bad sweep specs and bench options, by cause: every value a sweep could try is checked before
the first trial (not only the first), names stay inside --out, trials that no node could hold
are refused instead of waited for; bench refuses before minutes of measuring. One line, exit
status 2, no traceback, nothing written (harness: test_bad_inputs.py)."""
import pytest
import yaml
from conftest import refused
from test_bad_inputs import SMOKE_SPEC

SMOKE = yaml.safe_load(SMOKE_SPEC.read_text())
NAME = "name: Value error, "
# ----------------------------------------------------------------------------- sweep specs
SPECS = [
    # Domains: every value of a grid or choice, both ends of a range.
    ("loguniform from 0", {"search_space": {"agent.lr": {"loguniform": [0, 0.1]}}}, "loguniform needs bounds > 0"),
    ("loguniform below 0", {"search_space": {"agent.lr": {"loguniform": [-1, 0.1]}}}, "loguniform needs bounds > 0"),
    ("uniform reversed", {"search_space": {"agent.lr": {"uniform": [0.1, 0.01]}}}, "low < high (got [0.1, 0.01])"),
    ("randint reversed", {"search_space": {"seed": {"randint": [5, 1]}}}, "randint needs [low, high] with low < high"),
    ("randint empty", {"search_space": {"seed": {"randint": [3, 3]}}}, "randint needs [low, high] with low < high"),
    ("a bad second grid value", {"search_space": {"rank": {"grid": [1, -2]}}}, "rank must be >= 1 (got -2)"),
    ("a bad second choice", {"search_space": {"world": {"choice": ["mask", "teleport"]}}}, "unknown world 'teleport'"),
    ("randint below the field", {"search_space": {"episode_length": {"randint": [0, 3]}}}, "episode_length must be >= 1"),
    ("uniform above the field", {"search_space": {"agent.gamma": {"uniform": [0.5, 1.5]}}}, "agent.gamma"),
    ("loguniform above the field", {"search_space": {"agent.clip_param": {"loguniform": [0.1, 2]}}}, "agent.clip_param"),
    ("NaN in a grid", {"search_space": {"reward.utility_coef": {"grid": [1.0, float("nan")]}}}, "finite number"),
    ("inf bound", {"search_space": {"agent.lr": {"uniform": [0.001, float("inf")]}}}, "finite number"),
    ("grid of a misspelt field", {"search_space": {"rank_": {"grid": [1]}}}, "rank_: unknown field"),
    ("unknown domain kind", {"search_space": {"rank": {"gird": [1]}}}, "gird: unknown field"),
    ("two kinds", {"search_space": {"rank": {"grid": [1], "choice": [2]}}}, "give exactly one of"),
    ("empty grid", {"search_space": {"rank": {"grid": []}}}, "grid is empty"),
    ("empty search space", {"search_space": {}}, "search_space is empty"),
    # Names: one folder below --out.
    ("name ..", {"name": ".."}, NAME + "'..' is not a plain folder name"),
    ("name climbing out", {"name": "../escape"}, NAME + "'../escape' is not a plain folder name"),
    ("absolute name", {"name": "/tmp/escape"}, NAME + "'/tmp/escape' is not a plain folder name"),
    ("name with a folder", {"name": "a/b"}, NAME + "'a/b' is not a plain folder name"),
    ("empty name", {"name": ""}, NAME + "'' is not a plain folder name"),
    # Counts and settings.
    ("zero samples", {"num_samples": 0}, "num_samples"),
    ("zero concurrent trials", {"max_concurrent_trials": 0}, "max_concurrent_trials"),
    ("zero CPUs per trial", {"resources": {"cpu": 0}}, "resources.cpu"),
    ("negative GPUs per trial", {"resources": {"gpu": -1}}, "resources.gpu"),
    ("unknown scheduler", {"scheduler": "hyperband"}, "scheduler.name"),
    ("misspelt base field", {"base": {**SMOKE["base"], "sede": 1}}, "sede: unknown field"),
    ("bad base value", {"base": {**SMOKE["base"], "seed": -1}}, "seed: Input should be greater than or equal to 0"),
    ("missing base config", {"base_config": "nowhere.yaml"}, "base config"),
    # Trials bigger than the cluster (2 CPUs, no GPU): Tune would wait for them forever.
    ("8 EnvRunners per trial", {"base": {**SMOKE["base"], "agent": {**SMOKE["base"]["agent"], "num_env_runners": 8}}},
     "one trial (resources: cpu 1, gpu 0, plus 1 CPU per each of its 8 EnvRunners) would need 9 CPUs"),
    ("a GPU per trial", {"resources": {"cpu": 1, "gpu": 1}}, "would need 1 GPUs but the Ray cluster has 0"),
]


@pytest.mark.parametrize("changes, expected", [s[1:] for s in SPECS], ids=[s[0] for s in SPECS])
def test_a_sweep_spec_refused_before_any_trial(changes, expected, places, capsys):
    spec = places.tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SMOKE, **changes}))
    refused(capsys, ["sweep", spec, "--out", places.new], expected)
    assert not places.new.exists() and not (places.tmp / "escape").exists()


SPEC_FILES = [("latin1.yaml", "is not UTF-8 text"), ("binary.yaml", "is not UTF-8 text"),
              ("list.yaml", "must hold a mapping"), ("broken.yaml", "is not valid YAML"),
              ("missing.yaml", "sweep spec"), ("images", "is a folder, not a file")]


@pytest.mark.parametrize("name, expected", SPEC_FILES, ids=[n for n, _ in SPEC_FILES])
def test_a_sweep_spec_file_that_cannot_be_read(name, expected, places, capsys):
    refused(capsys, ["sweep", places.bad.root / name, "--out", places.new], expected)


def test_a_sweep_base_config_that_is_not_utf8(places, capsys):
    spec = places.tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SMOKE, "base_config": str(places.bad.latin1_yaml)}))
    refused(capsys, ["sweep", spec, "--out", places.new], "base config")


def test_sweep_resume_needs_a_sweep_and_a_new_sweep_a_new_folder(places, capsys):
    refused(capsys, ["sweep", SMOKE_SPEC, "--resume", "--out", places.new], "nothing to resume")
    experiment = places.tmp / "old" / SMOKE["name"]
    experiment.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"a sweep's state")
    refused(capsys, ["sweep", SMOKE_SPEC, "--out", places.tmp / "old"], "continue it with `rledit sweep SPEC --resume")
    assert (experiment / "tuner.pkl").read_bytes() == b"a sweep's state"


# ----------------------------------------------------------------------------- bench
BENCH = [
    (["--configs", ""], "--configs needs at least one name"),
    (["--configs", "fastest"], "unknown bench config 'fastest'"),
    (["--ppo-iterations", "-1"], "--ppo-iterations must be >= 0"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--seconds", "0"], "--seconds a finite number > 0"),
    (["--seconds", "inf"], "--seconds a finite number > 0"),
    (["--seconds", "nan"], "--seconds a finite number > 0"),
    (["--envs", "0"], "--envs needs a comma-separated list of positive integers"),
    (["--envs", ""], "--envs needs a comma-separated list"),
    (["--envs", "a,b"], "expected comma-separated integers"),
    (["--runners", ""], "--runners needs a comma-separated list of non-negative integers"),
    (["--runners", "-1"], "--runners needs a comma-separated list of non-negative integers"),
    (["--runners", "8"], "--runners 8 needs that many CPUs"),
    (["--samples", "-5"], "--samples needs a comma-separated list of positive integers"),
    (["--device", "tpu", "--world-only"], "unknown device 'tpu'"),
    (["--device", "mps", "--world-only"], "unknown device 'mps'"),
    (["--world", "teleport", "--world-only"], "unknown world 'teleport'"),
    (["--dataset", "cifar", "--world-only"], "unknown dataset 'cifar'"),
    (["--address", "nonsense"], "is not HOST:PORT"),
    (["--address", "127.0.0.1:1"], "no Ray cluster answers at --address 127.0.0.1:1"),
]


@pytest.mark.parametrize("flags, expected", BENCH, ids=[" ".join(f) or "empty" for f, _ in BENCH])
def test_bench_options_refused_before_measuring(flags, expected, places, capsys):
    refused(capsys, ["bench", "--configs", "default", *flags] if flags[0] != "--configs" else ["bench", *flags],
            expected)
