"""A user's own model as the target: loading by file or import path, weights, and every
mistake answered in one line."""
import sys

import pytest
import torch
from safetensors.torch import save_file

from rledit_ray.errors import UserError
from rledit_ray.targets.sources import load_user_model, load_weights, read_state_dict

MODEL_FILE = '''
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.head(self.body(x))


def make(hidden=8):
    return Net(hidden)


def broken(**kwargs):
    raise RuntimeError("no GPU here")


def not_a_model():
    return 42
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(MODEL_FILE)
    return path


def test_a_class_from_a_file_with_kwargs_and_weights(model_file, tmp_path):
    reference = load_user_model(f"{model_file}:Net", {"hidden": 5})
    assert reference.head.in_features == 5 and not reference.training
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(weights))
    loaded = load_user_model(f"{model_file}:make", {"hidden": 5}, str(weights))
    assert torch.equal(loaded.head.weight, reference.head.weight)
    pt = tmp_path / "w.pt"
    torch.save({"state_dict": reference.state_dict()}, pt)  # a training script's wrapped state dict
    assert torch.equal(load_user_model(f"{model_file}:Net", {"hidden": 5}, str(pt)).head.bias, reference.head.bias)


def test_an_importable_module(model_file, monkeypatch):
    monkeypatch.syspath_prepend(str(model_file.parent))
    sys.modules.pop("my_models", None)
    assert type(load_user_model("my_models:make")).__name__ == "Net"


def test_the_third_party_package_by_file():
    """digit-recognizer-py's CNN: its package __init__ imports torchvision (absent here), so the
    import path is refused in one line and the file path works."""
    spec = pytest.importorskip("importlib.util").find_spec("digit_recognizer")
    if spec is None:
        pytest.skip("digit-recognizer-py is not installed")
    from pathlib import Path

    folder = Path(spec.submodule_search_locations[0])
    model = load_user_model(f"{folder / 'model.py'}:CNN", weights=str(folder / "models" / "handwriting_model.pth"))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(UserError, match="cannot import 'digit_recognizer.model'.*torchvision"):
        load_user_model("digit_recognizer.model:CNN")


def _write_pickled_module(model_file, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(load_user_model(f"{model_file}:Net"), path)
    return path


@pytest.mark.parametrize("case, spec, kwargs, weights, message", [
    ("no file", "{dir}/nope.py:Net", None, None, "does not exist"),
    ("no such class", "{file}:Nett", None, None, r"has no 'Nett' \(nn.Module classes there: Net\)"),
    ("bad spec", "{file}", None, None, "expected FILE.py:NAME"),
    ("factory raises", "{file}:broken", None, None, "broken\\(\\) raised RuntimeError: no GPU here"),
    ("not a module", "{file}:not_a_model", None, None, "returned a int, not a torch.nn.Module"),
    ("bad kwargs", "{file}:Net", {"width": 3}, None, "unexpected keyword argument 'width'"),
    ("no weights file", "{file}:Net", None, "{dir}/missing.pt", "weights file .* does not exist"),
    ("wrong suffix", "{file}:Net", None, "{file}", "expected one of .safetensors"),
    ("shape mismatch", "{file}:Net", {"hidden": 4}, "{dir}/h8.safetensors",
     r"'body.1.weight' is \(8, 16\) in the file but \(4, 16\) in Net"),
    ("missing keys", "{file}:Net", None, "{dir}/partial.pt", "the model's 'head.bias' is not in the file"),
    ("pickled module", "{file}:Net", None, "{dir}/whole.pt", "pickled object .* save model.state_dict"),
    ("corrupt safetensors", "{file}:Net", None, "{dir}/corrupt.safetensors", "not a readable safetensors file"),
])
def test_bad_model_input_is_one_line(case, spec, kwargs, weights, message, model_file, tmp_path):
    good = load_user_model(f"{model_file}:Net")
    save_file({k: v.contiguous() for k, v in good.state_dict().items()}, str(tmp_path / "h8.safetensors"))
    torch.save({k: v for k, v in good.state_dict().items() if k != "head.bias"}, tmp_path / "partial.pt")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    _write_pickled_module(model_file, tmp_path)
    fill = {"dir": tmp_path, "file": model_file}
    with pytest.raises(UserError, match=message) as err:
        load_user_model(spec.format(**fill), kwargs, weights.format(**fill) if weights else None)
    assert "\n" not in str(err.value)


def test_read_state_dict_refuses_a_non_dict(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(UserError, match="holds a list, not a state dict"):
        read_state_dict(tmp_path / "list.pt")


def test_load_weights_names_both_shapes(model_file, tmp_path):
    model = load_user_model(f"{model_file}:Net")
    torch.save({**model.state_dict(), "head.weight": torch.zeros(2, 8)}, tmp_path / "w.pt")
    with pytest.raises(UserError, match=r"'head.weight' is \(2, 8\) in the file but \(3, 8\)"):
        load_weights(model, tmp_path / "w.pt")
