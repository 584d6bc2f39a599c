"""The row-wise observation: an edit request described by data, laid out per output unit.

A generalist editor must make sense of requests it never trained on, so the observation
names no class index. It describes the edited output layer (rows = classes) by what the
request's samples do to it under the current weights, packed flat (gymnasium Box) as:

1. rows (m x ROW_FEATURES): per output class i, statistics of logit i on the request's
   forget and retain reward samples (`row_features`);
2. columns (n x COL_FEATURES): per input j of the layer, its mean on forget and on retain
   samples (`column_features`); a bias column sees the constant 1;
3. matrix (m x n x 2): the current and the original weights, over the original spread;
4. globals: the reward terms and t / T.

Relabelling the classes permutes the row blocks (and the matrix rows) and nothing else, which
is what lets one network applied per row (agent/rowwise.py) serve any class.

`RowwiseObservation` is the world's observer (worlds/observation.py) built from these functions.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rledit_ray.errors import UserError
from rledit_ray.worlds.observation import Observer, global_features, n_globals

ROW_FEATURES = 8
COL_FEATURES = 3
MATRIX_CHANNELS = 2


def row_features(logits: torch.Tensor, y: torch.Tensor, n_forget: int,
                 reference_logits: torch.Tensor) -> torch.Tensor:
    """(classes, ROW_FEATURES). Row i uses only logit column i and whether labels equal i,
    so permuting the class labels permutes the rows.

    Per class i: mean softmax p_i on forget and on retain samples; share of forget samples
    predicted i; share of retain samples labelled i (0 for the class being forgotten, as it
    is absent from the retain set); mean logit i on forget and on retain samples, in units of
    the original logits' spread; the same two means under the original weights."""
    f, c = n_forget, logits.shape[1]
    spread = reference_logits.std().clamp_min(1e-6)
    p = logits.softmax(1)
    forget_pred = nn.functional.one_hot(logits[:f].argmax(1), c).float().mean(0)
    retain_label = nn.functional.one_hot(y[f:], c).float().mean(0)
    return torch.stack([
        p[:f].mean(0), p[f:].mean(0), forget_pred, retain_label,
        logits[:f].mean(0) / spread, logits[f:].mean(0) / spread,
        reference_logits[:f].mean(0) / spread, reference_logits[f:].mean(0) / spread,
    ], dim=1)


def column_features(h: torch.Tensor, n_forget: int, has_bias: bool) -> torch.Tensor:
    """(cols, COL_FEATURES): mean input j on forget and on retain samples (in units of the
    inputs' spread) and their difference (how specific input j is to the forget samples)."""
    h = h.flatten(1)
    if has_bias:
        h = torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype, device=h.device)], 1)
    spread = h.std().clamp_min(1e-6)
    f_mean, r_mean = h[:n_forget].mean(0) / spread, h[n_forget:].mean(0) / spread
    return torch.stack([f_mean, r_mean, f_mean - r_mean], dim=1)


def obs_layout(m: int, n: int, n_globals: int) -> dict:
    """What the row-wise module needs to unpack the flat observation."""
    return {"m": m, "n": n, "row_features": ROW_FEATURES, "col_features": COL_FEATURES,
            "matrix_channels": MATRIX_CHANNELS, "globals": n_globals}


def obs_size(layout: dict) -> int:
    m, n = layout["m"], layout["n"]
    return (m * layout["row_features"] + n * layout["col_features"]
            + m * n * layout["matrix_channels"] + layout["globals"])


def check_rowwise_edit(layers, suffix: nn.Module, logits: torch.Tensor) -> None:
    """Rows must be the network's outputs: one edited Linear layer that is the last stage."""
    layer = layers[0] if len(layers) == 1 else None
    stages = list(suffix.children()) if isinstance(suffix, nn.Sequential) else []
    ok = (layer is not None and layer.weight is not None and layer.weight.dim() == 2
          and len(stages) == 1 and isinstance(stages[0], nn.Linear) and layer.rows == logits.shape[1])
    if not ok:
        names = ", ".join(layer.module_name for layer in layers)
        raise UserError(f"the row-wise (generalist) observation needs one edited Linear output layer, "
                        f"the network's last stage (e.g. edit: [fc2]); got {names}")


def unpack_observation(obs: torch.Tensor, layout: dict) -> dict[str, torch.Tensor]:
    """Flat (B, O) observations -> rows (B, m, Fr), cols (B, n, Fc), matrix (B, m, n, C),
    globals (B, G): the contract between this world and the row-wise agent module."""
    m, n = int(layout["m"]), int(layout["n"])
    fr, fc = int(layout["row_features"]), int(layout["col_features"])
    ch, g = int(layout["matrix_channels"]), int(layout["globals"])
    b = obs.shape[0]
    rows, cols, matrix, glob = torch.split(obs, [m * fr, n * fc, m * n * ch, g], dim=-1)
    return {"rows": rows.reshape(b, m, fr), "cols": cols.reshape(b, n, fc),
            "matrix": matrix.reshape(b, m, n, ch), "globals": glob}


class RowwiseObservation(Observer):
    """`row_features`, `column_features`, the current and original matrix, the global features."""

    def __init__(self, world):
        layer = world.layers[0]
        check_rowwise_edit(world.layers, world.split.sequential_suffix, world.reference_logits)
        self.layout = obs_layout(layer.rows, layer.cols, n_globals(world))
        self.size = obs_size(self.layout)
        self._has_bias = layer.bias is not None
        self._columns, self._columns_task = None, None

    def observe(self, world) -> np.ndarray:
        with torch.inference_mode():
            obs = torch.cat([
                row_features(world.last_logits, world.task.reward_y, world.task.n_forget,
                             world.reference_logits).reshape(-1),
                self._column_features(world).reshape(-1),
                torch.stack([world.matrices[0] / world.scales[0], world.original[0] / world.scales[0]],
                            -1).reshape(-1),
                torch.tensor(global_features(world), dtype=torch.float32, device=world.device),
            ])
            return obs.float().cpu().numpy()

    def _column_features(self, world) -> torch.Tensor:
        """Request data, computed once per task: tasks/requests.py keeps one task object per
        request, and a dropped request comes back as a new one over new activations."""
        if self._columns_task is not world.task:
            self._columns = column_features(world.reward_h, world.task.n_forget, self._has_bias)
            self._columns_task = world.task
        return self._columns
