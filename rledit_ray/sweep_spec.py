"""The sweep spec of `rledit sweep` (see sweep.py for the format): parsed and checked whole,
every domain value against the run configuration, before any trial starts."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rledit_ray.config import absolute_paths, build_config, read_yaml_mapping, with_overrides
from rledit_ray.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# A sweep's name becomes a folder below --out: one plain folder name, never a path.
SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Domain(_Strict):
    """Exactly one of these per swept field."""

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k, v in self.model_dump().items() if v is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of grid, choice, uniform, loguniform, randint")
        kind, values = kinds[0], getattr(self, kinds[0])
        if kind in ("grid", "choice") and not values:
            raise ValueError(f"{kind} is empty")
        if kind in ("uniform", "loguniform", "randint") and not values[0] < values[1]:
            # Tune's randint excludes its upper bound, so [a, a] is empty too.
            raise ValueError(f"{kind} needs [low, high] with low < high (got {list(values)})")
        if kind == "loguniform" and values[0] <= 0:
            raise ValueError(f"loguniform needs bounds > 0 (got {list(values)})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k, v in self.model_dump().items() if v is not None)

    def values_to_check(self) -> list:
        """Every value of a grid or choice, the extremes of a range: if the field takes all of
        them, it takes every trial's value (a field's limits are ranges too)."""
        v = getattr(self, self.kind)
        if self.kind in ("grid", "choice"):
            return list(v)
        if self.kind == "randint":
            return [int(v[0]), int(v[1]) - 1]  # Tune's upper bound is exclusive
        return [float(v[0]), float(v[1])]

    def to_tune(self):
        from ray import tune

        v = getattr(self, self.kind)
        return {"grid": lambda: tune.grid_search(list(v)), "choice": lambda: tune.choice(list(v)),
                "uniform": lambda: tune.uniform(*v), "loguniform": lambda: tune.loguniform(*v),
                "randint": lambda: tune.randint(*v)}[self.kind]()


class Scheduler(_Strict):
    name: Literal["none", "asha"] = "none"
    grace_period: int = Field(5, ge=1, description="ASHA: iterations before a trial can be stopped")
    reduction_factor: float = Field(3.0, gt=1)


class Resources(_Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class SweepSpec(_Strict):
    name: str = "sweep"
    base: dict = {}
    base_config: str | None = None  # a run YAML, relative to the spec file; `base` overrides it
    search_space: dict[str, Domain]
    num_samples: int = Field(1, ge=1)
    scheduler: Scheduler = Scheduler()
    max_concurrent_trials: int = Field(2, ge=1)
    resources: Resources = Resources()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not SWEEP_NAME.fullmatch(name) or name in (".", ".."):
            raise ValueError(f"'{name}' is not a plain folder name (letters, digits, '.', '_', '-'; no '/' or "
                             f"'..'): the sweep is written to --out/<name>")
        return name


def load_spec(path: str | Path) -> tuple[SweepSpec, dict]:
    """The spec and its resolved base config; every check happens here, before any trial."""
    path = Path(path)
    raw = read_yaml_mapping(path, what="sweep spec")
    if isinstance(raw.get("scheduler"), str):
        raw["scheduler"] = {"name": raw["scheduler"]}
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise UserError(f"{path}: {field}: {msg}") from None
    if not spec.search_space:
        raise UserError(f"{path}: search_space is empty: name at least one field to sweep")
    base = read_yaml_mapping(path.parent / spec.base_config, "base config") if spec.base_config else {}
    base = with_overrides(base, _flatten(spec.base))
    base = absolute_paths(base, path.parent)  # Tune runs trials in their own folders
    build_config(base, where=f"{path}: base")
    for key, domain in spec.search_space.items():
        for value in domain.values_to_check():
            build_config(with_overrides(base, {key: value}), where=f"{path}: search_space")
    return spec, base


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
