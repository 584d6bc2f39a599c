"""The Python door: `rledit_ray.edit(model, data, ...)`, the same run as `rledit train`.

    import rledit_ray
    result = rledit_ray.edit(my_cnn, "mnist", forget_classes=[7], layer="fc_layers.2",
                             world="mask", out="runs/my-edit", mean=[0.1307], std=[0.3081])
    result.model      # the edited network (a copy; `my_cnn` is left as it was)
    result.metrics    # before / after accuracies on held-out data, as in metrics.json
    result.run_dir    # checkpoint, edited weights, report, as `rledit train` writes them

Every setting not named here is the config's default (rledit_ray/defaults.py), and any config
field can be set through `settings`, by its dotted name: {"training.iterations": 10}. The
policy is trained by RLlib with EnvRunners (`settings={"agent.num_env_runners": 2}`), which
receive the model object through Ray's object store.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from rledit_ray.config import build_config, with_overrides
from rledit_ray.errors import UserError


@dataclass
class EditResult:
    model: nn.Module
    metrics: dict
    run_dir: Path


def edit(model: nn.Module | None = None, data=None, *, task: str = "unlearning", forget_classes=(7,),
         layer: str | list[str] | None = None, world: str = "mask", out: str | Path | None = None,
         mean: list[float] | None = None, std: list[float] | None = None, seed: int = 0,
         settings: dict | None = None, address: str | None = None, progress=print) -> EditResult:
    """Edit `model` (an nn.Module; None: the config's target) on `data`: a dataset name
    ("mnist", "digits"), a path to your data (idx folder, image folder, .npz, Hugging Face
    dataset), an ImageDataset, or arrays (x_train, y_train, x_test, y_test) with pixels in
    [0, 1] (or uint8) shaped (N, H, W) or (N, C, H, W). `mean`/`std`: the normalisation the
    model expects. Returns the edited model, the metrics and the run directory."""
    from rledit_ray.build import build_inputs, build_parts, normalisation
    from rledit_ray.data import preprocess_images
    from rledit_ray.targets.sources import load_weights
    from rledit_ray.training import check_run_dir, train

    fields = {"task": task, "world": world, "seed": seed, "target": {"mean": mean, "std": std}}
    if task == "unlearning":
        fields["forget_classes"] = [int(k) for k in forget_classes]
    if layer is not None:
        fields["edit"] = [layer] if isinstance(layer, str) else list(layer)
    dataset = None
    if isinstance(data, (str, Path)):
        fields.update(_named_data(str(data)))
    elif data is not None:
        dataset = _image_dataset(data)
        fields["dataset"] = dataset.name
        fields["data_root"] = "(python arrays)"
    if model is not None:
        if not isinstance(model, nn.Module):
            raise UserError(f"rledit_ray.edit: model must be a torch.nn.Module (got {type(model).__name__})")
        model = copy.deepcopy(model)  # the caller's object stays unedited
        fields["target"]["python_object"] = type(model).__name__
    cfg = build_config(with_overrides(fields, settings), where="rledit_ray.edit")
    out = Path(out) if out is not None else Path("runs") / f"api-{cfg.task}-{cfg.world}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_run_dir(out)  # before the data and the target are prepared, not after
    if dataset is not None:
        size = tuple(cfg.target.image_size) if cfg.target.image_size else None
        dataset = preprocess_images(dataset, *normalisation(cfg), size=size)
    parts = (build_parts(cfg, build_inputs(cfg, model=model, data=dataset))
             if model is not None or dataset is not None else build_parts(cfg))
    metrics = train(cfg, out, progress=progress, address=address, parts=parts)
    edited = copy.deepcopy(parts.model)
    load_weights(edited, out / "edited_weights.safetensors")
    return EditResult(edited, metrics, out.resolve())


def _named_data(data: str) -> dict:
    from rledit_ray.names import DATASETS

    if data in DATASETS:
        return {"dataset": data}
    return {"dataset": Path(data).stem or "data", "data_root": data}


def _image_dataset(data):
    """An ImageDataset of raw pixels in [0, 1] from a dataset object or four arrays."""
    from rledit_ray.data import ImageDataset
    from rledit_ray.data.images import images_from_arrays

    if isinstance(data, ImageDataset):
        return data
    if not (isinstance(data, (tuple, list)) and len(data) == 4):
        raise UserError("rledit_ray.edit: data must be a dataset name, a path, an ImageDataset or "
                        "(x_train, y_train, x_test, y_test) arrays")
    return images_from_arrays("arrays", *data)
