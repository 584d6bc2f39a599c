"""Where a target network comes from: a user's PyTorch class, a transformers folder, or ours.

- `load_user_model("path/to/file.py:Net", kwargs, weights)`: any nn.Module class (or a function
  returning one) from a file or an importable module, with weights from a `.safetensors` file
  or a `.pt`/`.pth` state dict (read with `torch.load(weights_only=True)`: a pickled module
  can run code when loaded, so it is refused with the way to save a state dict instead);
- `load_sequence_classifier(DIR)`: a Hugging Face `transformers` sequence classifier and its
  tokenizer from a `save_pretrained` folder (or a hub id, for users with a network);
- the project's own CNNs and text head live in targets/train.py and targets/text_head.py.

Every mistake a user can make here (no such file or class, a factory that raises, weights that
do not fit) is one `UserError` line that names the file, key or shapes involved.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import torch
from torch import nn

from rledit_ray.errors import UserError

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


# ----------------------------------------------------------------------------- PyTorch models
def load_user_model(spec: str, kwargs: dict | None = None, weights: str | None = None) -> nn.Module:
    """The model named by `spec` ("file.py:Name" or "package.module:Name"), built with `kwargs`,
    with `weights` loaded into it, in eval mode."""
    factory = _resolve(spec)
    try:
        model = factory(**(kwargs or {}))
    except Exception as err:  # a user's code: whatever it raises is their error to read
        raise UserError(f"--model {spec}: {_call_text(factory, kwargs)} raised "
                        f"{type(err).__name__}: {_first_line(err)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {spec}: {_call_text(factory, kwargs)} returned a "
                        f"{type(model).__name__}, not a torch.nn.Module")
    if weights:
        load_weights(model, weights)
    return model.eval()


def _resolve(spec: str):
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise UserError(f"--model '{spec}': expected FILE.py:NAME or package.module:NAME, e.g. my_models.py:Net")
    module = _module_from_file(where) if where.endswith(".py") or "/" in where else _import(where)
    obj = getattr(module, name, None)
    if obj is None:
        found = sorted(k for k, v in vars(module).items() if inspect.isclass(v) and issubclass(v, nn.Module)
                       and v.__module__ == module.__name__)
        raise UserError(f"--model {spec}: '{where}' has no '{name}'"
                        + (f" (nn.Module classes there: {', '.join(found)})" if found else ""))
    if not callable(obj):
        raise UserError(f"--model {spec}: '{name}' is a {type(obj).__name__}, not a class or function")
    return obj


def _module_from_file(path: str):
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise UserError(f"--model: model file '{path}' does not exist")
    # A name of its own per file, so two users' `model.py` never shadow each other; the build
    # layer pickles such modules by value when the model travels to Ray workers.
    name = f"rledit_user_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise UserError(f"--model: importing '{path}' failed: {type(err).__name__}: {_first_line(err)}") from None
    return module


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise UserError(f"--model: cannot import '{name}' ({_first_line(err)}): install it, or name "
                        f"its file instead (path/to/file.py:NAME)") from None
    except Exception as err:
        raise UserError(f"--model: importing '{name}' failed: {type(err).__name__}: {_first_line(err)}") from None


def is_file_module(model: nn.Module) -> bool:
    """True when the model's class came from a file (it must travel to workers by value)."""
    return type(model).__module__.startswith("rledit_user_")


# ----------------------------------------------------------------------------- weights
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"weights file '{path}' does not exist")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise UserError(f"weights file '{path}': expected one of {', '.join(WEIGHT_SUFFIXES)}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise UserError(f"weights file '{path}' is not a readable safetensors file: {_first_line(err)}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... on bad files
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise UserError(f"weights file '{path}' holds a pickled object (a whole module?), which could run "
                            f"code when loaded: save model.state_dict() with torch.save, or a .safetensors file") from None
        raise UserError(f"weights file '{path}' cannot be read: {type(err).__name__}: {_first_line(err)}") from None
    # Training scripts often wrap the state dict ({"state_dict": ...}, Lightning-style).
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights file '{path}' holds a {type(state).__name__}, not a state dict of tensors")
    return state


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict into `model`, naming the first key or shape that does not fit."""
    state = read_state_dict(path)
    own = model.state_dict()
    for key, value in own.items():  # the model's order: "first" means what a reader expects
        if key in state and state[key].shape != value.shape:
            raise UserError(f"weights '{path}' do not fit the model: '{key}' is {tuple(state[key].shape)} in the "
                            f"file but {tuple(value.shape)} in {type(model).__name__}")
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        what = (f"the model's '{missing[0]}' is not in the file" if missing
                else f"the file's '{unexpected[0]}' is not in the model")
        raise UserError(f"weights '{path}' do not fit {type(model).__name__}: {what} "
                        f"({len(missing)} missing, {len(unexpected)} unexpected keys)")
    model.load_state_dict(state)


# ----------------------------------------------------------------------------- transformers
def load_sequence_classifier(where: str):
    """(model, tokenizer) of a transformers sequence classifier: a save_pretrained folder, or a
    hub id (downloaded by transformers, which needs a network)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    looks_local = where.startswith((".", "/", "~")) or Path(where).expanduser().exists()
    folder = Path(where).expanduser()
    if looks_local and not (folder / "config.json").is_file():
        raise UserError(f"target.hf '{where}' is not a transformers folder (no config.json): "
                        f"save one with model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR)")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder) if looks_local else where)
        tokenizer = AutoTokenizer.from_pretrained(str(folder) if looks_local else where)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"target.hf '{where}' cannot be loaded as a sequence classifier: {_first_line(err)}") from None
    return model.eval(), tokenizer


def pack_texts(tokenizer, texts: list[str], max_length: int) -> torch.Tensor:
    """Token ids and attention masks of `texts` as one int64 tensor (N, 2, L), padded to the
    longest text (at most `max_length` tokens): the one-tensor batch the worlds cache."""
    if not texts:
        return torch.zeros((0, 2, 1), dtype=torch.long)
    batch = tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    return torch.stack([batch["input_ids"], batch["attention_mask"]], 1).long()


def _call_text(factory, kwargs) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in (kwargs or {}).items())
    return f"{getattr(factory, '__name__', 'the factory')}({args})"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
