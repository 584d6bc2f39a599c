"""The command line as a user meets it: bad input gets one line and exit status 2."""
import subprocess
import sys

import pytest

from rledit_ray.cli import main
from rledit_ray.config import load_config
from rledit_ray.errors import UserError


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "rledit_ray.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--world", "teleport"], "unknown world 'teleport'"),
    (["--task", "painting"], "unknown task 'painting'"),
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--dataset", "digits", "--layer", "fc9"], "unknown layer or parameter 'fc9'"),
    (["--rank", "0"], "rank must be >= 1"),
    (["--episode-length", "0"], "episode_length must be >= 1"),
    (["--dataset", "digits", "--forget-class", "10"], "forget class 10 is outside the label set"),
    (["--config", "/nonexistent/run.yaml"], "config file '/nonexistent/run.yaml' does not exist"),
    (["--rank", "two"], "invalid int value: 'two'"),
])
def test_bad_train_input_is_one_line_exit_2(args, message, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--out", str(out), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("args", [["--world", "teleport"], ["--rank", "0"], ["--config", "/nonexistent/run.yaml"]])
def test_a_wrong_config_value_is_answered_before_torch_and_ray_load(args):
    # Loading torch and starting Ray take seconds here; a typo in a flag should not.
    probe = ("import sys\nfrom rledit_ray.cli import main\n"
             f"try:\n    code = main(['train', *{args!r}])\nexcept SystemExit as e:\n    code = e.code\n"
             "print(code, 'torch' in sys.modules, 'ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["2", "False", "False"], result.stdout + result.stderr


def test_unknown_config_field_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("reward:\n  utility_coef: 2.0\n  utility_coeff: 3.0\n")
    with pytest.raises(UserError, match=r"reward.utility_coeff: unknown field"):
        load_config(path)


def test_wrong_type_in_config_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("samples: {per_set: 0}\n")
    with pytest.raises(UserError, match=r"samples.per_set: Input should be greater than or equal to 1"):
        load_config(path)


def test_edit_with_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["edit", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_eval_refuses_weights_of_another_shape(tmp_path, capsys):
    from safetensors.torch import save_file

    from rledit_ray.targets import mnist_cnn

    path = tmp_path / "mnist.safetensors"
    save_file({k: v.contiguous() for k, v in mnist_cnn().state_dict().items()}, str(path))
    assert main(["eval", "--dataset", "digits", "--edited", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "do not fit the model" in err and "(64, 256)" in err and "(128, 1568)" in err


def test_every_shipped_config_loads():
    """configs/*.yaml are what the docs tell users to run: each parses and passes the checks."""
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        load_config(str(path), {})
