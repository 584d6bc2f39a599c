"""Which tensors a world edits, seen as matrices.

A layer's editable matrix is its weight viewed as (out, fan_in) (a conv kernel becomes
(out, in*kh*kw)) with the bias appended as one more column when it is edited too. Every
world edit and every observation is expressed on these matrices.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rledit_ray.errors import UserError


@dataclass
class EditLayer:
    module_name: str
    weight: nn.Parameter | None  # None when only the bias is edited
    bias: nn.Parameter | None
    rows: int
    cols: int  # fan_in (+1 when the bias is edited)

    @property
    def param_names(self) -> list[str]:
        names = [f"{self.module_name}.weight"] if self.weight is not None else []
        return names + ([f"{self.module_name}.bias"] if self.bias is not None else [])

    def read(self) -> torch.Tensor:
        """The current (rows, cols) matrix (a new tensor)."""
        parts = []
        if self.weight is not None:
            parts.append(self.weight.detach().reshape(self.rows, -1))
        if self.bias is not None:
            parts.append(self.bias.detach().reshape(self.rows, 1))
        return torch.cat(parts, 1)

    def write(self, matrix: torch.Tensor) -> None:
        """Copy a (rows, cols) matrix into the parameters in place (no reallocation)."""
        with torch.no_grad():
            start = 0
            if self.weight is not None:
                fan_in = self.weight[0].numel()
                self.weight.copy_(matrix[:, :fan_in].reshape(self.weight.shape))
                start = fan_in
            if self.bias is not None:
                self.bias.copy_(matrix[:, start])


EDITABLE = (nn.Linear, nn.Conv2d)


def _near(name: str, modules: dict) -> str:
    """The editable layers whose names are closest to `name` (all of them when few)."""
    import difflib

    editable = [n for n, m in modules.items() if n and isinstance(m, EDITABLE)]
    if len(editable) <= 8:
        return f"choose from {', '.join(editable)}"
    near = difflib.get_close_matches(name, editable, n=5, cutoff=0.5)
    return (f"did you mean {', '.join(near)}?" if near else f"e.g. {', '.join(editable[-3:])}") + \
        f" ({len(editable)} Linear/Conv2d layers)"


def resolve_edit_layers(model: nn.Module, names: list[str]) -> list[EditLayer]:
    """Group parameter names ("fc2.weight", "fc2.bias", or a bare module "fc2" meaning
    both) into editable layers, in the order the modules appear in the model."""
    if not names:
        raise UserError("no parameters to edit: name at least one, e.g. edit: [fc2.weight]")
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    wanted: dict[str, set[str]] = {}
    for name in names:
        if name in modules and name and any(f"{name}.{k}" in params for k in ("weight", "bias")):
            module, kinds = name, {k for k in ("weight", "bias") if f"{name}.{k}" in params}
        elif name in params and name.rsplit(".", 1)[-1] in ("weight", "bias"):
            module, kind = name.rsplit(".", 1)
            kinds = {kind}
        else:
            raise UserError(f"unknown layer or parameter '{name}' in {type(model).__name__}: {_near(name, modules)}")
        if not isinstance(modules[module], EDITABLE):
            raise UserError(f"'{name}' belongs to a {type(modules[module]).__name__}: only Linear and Conv2d layers can "
                            f"be edited; {_near(name, modules)}")
        wanted.setdefault(module, set()).update(kinds)

    layers = []
    for module_name, _ in model.named_modules():
        if module_name not in wanted:
            continue
        kinds = wanted[module_name]
        weight = params.get(f"{module_name}.weight") if "weight" in kinds else None
        bias = params.get(f"{module_name}.bias") if "bias" in kinds else None
        ref = weight if weight is not None else bias
        if weight is not None and weight.dim() not in (2, 4):
            raise UserError(
                f"'{module_name}.weight' has {weight.dim()} dims: only Linear (2) and Conv2d (4) weights can be edited"
            )
        rows = ref.shape[0]
        cols = (weight[0].numel() if weight is not None else 0) + (1 if bias is not None else 0)
        layers.append(EditLayer(module_name, weight, bias, rows, cols))
    return layers

