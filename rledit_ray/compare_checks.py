"""What `rledit compare` checks before it builds anything: its counts, the runs it is told to
reuse (--rl-run), and that a folder it resumes was made with the same settings.

A comparison folder keeps its settings in compare_settings.json (the run config and
--rl-iterations): rows are resumed per (method, seed) file, so rows of other settings (another
forget class, dataset or target) would otherwise mix into one table without a word.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from rledit_ray.errors import UserError
from rledit_ray.outputs import read_run_metrics
from rledit_ray.worlds.layers import resolve_edit_layers

# rl_<world>[_<layer>]: `rledit train` with PPO; es_<world>[_<layer>]: with --algorithm es.
RL_PATTERN = re.compile(r"^(rl|es)_(mask|shift)(?:_(\w+))?$")
SETTINGS_FILE = "compare_settings.json"
MAX_SEED = 2**32 - 1  # seeds go to numpy and torch


def check_arguments(methods: list[str], seeds: int, first_seed: int, rl_iterations: int | None,
                    rl_runs: dict[tuple[str, int], str]) -> None:
    """Counts and reused runs that make sense, before anything is built."""
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1 (got {seeds})")
    if first_seed < 0 or first_seed + seeds - 1 > MAX_SEED:
        raise UserError(f"--first-seed must be in 0..{MAX_SEED - seeds + 1} (got {first_seed})")
    if rl_iterations is not None and rl_iterations < 1:
        raise UserError(f"--rl-iterations must be >= 1 (got {rl_iterations})")
    seed_range = range(first_seed, first_seed + seeds)
    for method, seed in rl_runs:
        if method not in methods or not RL_PATTERN.match(method) or seed not in seed_range:
            raise UserError(f"--rl-run {method}:{seed}: the comparison has no such row (RL methods: "
                            f"{', '.join(m for m in methods if RL_PATTERN.match(m)) or 'none'}; seeds "
                            f"{first_seed}..{first_seed + seeds - 1})")


def check_reused_run(run: str, method: str, cfg, target) -> None:
    """A run given with --rl-run must be a finished run of this row's settings and target."""
    from rledit_ray.cache import state_fingerprint

    metrics = read_run_metrics(run, f"--rl-run {method}:{cfg.seed}:")
    for key in ("task", "dataset", "forget_classes", "world"):
        if key in metrics and metrics[key] != getattr(cfg, key):
            raise UserError(f"run '{run}' has {key}={metrics[key]}, the comparison needs {getattr(cfg, key)}")
    if metrics.get("algorithm", "ppo") != cfg.agent.algorithm:
        raise UserError(f"run '{run}' trained with {metrics.get('algorithm', 'ppo')}, the row {method} with "
                        f"{cfg.agent.algorithm}")
    layers = [layer.param_names for layer in resolve_edit_layers(target, cfg.edit)]
    edited = [layer.param_names for layer in resolve_edit_layers(target, metrics.get("edit", []))]
    if edited != layers:
        raise UserError(f"run '{run}' edited {metrics.get('edit')}, the row {method} edits {cfg.edit}")
    fingerprint = (metrics.get("target") or {}).get("fingerprint")
    if fingerprint is not None and fingerprint != state_fingerprint(target):
        raise UserError(f"run '{run}' edited another target network than the comparison's (fingerprint {fingerprint})")


def check_settings(out: Path, settings: dict) -> None:
    """Refuse to add rows to a comparison made with other settings (settings present in both
    are compared, so a field added to the config later does not make old folders foreign)."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"'{path}' is damaged: cannot tell which settings '{out}' was made with") from None
    old, new = _flat(saved), _flat(settings)
    for key in sorted(old.keys() & new.keys()):
        if old[key] != new[key]:
            raise UserError(f"--out '{out}' holds a comparison of other settings ({key}: {old[key]} there, "
                            f"{new[key]} now): choose another --out")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out
