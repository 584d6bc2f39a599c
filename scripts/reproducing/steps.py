"""What a table is: the shell commands that measure it (Steps), its page, and the function
that builds its block from what the commands left. Paths are from the repository root;
every table writes under RUNS/NAME (out_dir)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .outputs import Outputs

ROOT = Path(__file__).resolve().parents[2]
RUNS = "runs/reproduce"


@dataclass(frozen=True)
class Step:
    """One shell command of a table. `done`: a path (from the repository root) whose
    existence means the command already finished; `resume`: (path, extra arguments) to add
    when that path exists but `done` does not (an interrupted run); `run`: the folder the
    command writes its result to; `label`: how the table names its row."""

    command: str
    done: str | None = None
    resume: tuple[str, str] | None = None
    run: str | None = None
    label: str = ""


@dataclass(frozen=True)
class Table:
    """A measured table: its page, its steps (run in order), the function that builds its
    block from what they left."""

    page: str
    steps: tuple[Step, ...]
    build: Callable[[Outputs], str]
    minutes: float  # estimate, from the times the docs quote for the last measurement
    setup: str = ""  # shell prefix of every command (e.g. a variable the commands use)
    files: dict[str, Callable[[], str]] = field(default_factory=dict)  # written under the table's folder first
    # Tables whose outputs its commands read, as (name, table): each is run first unless this
    # code already finished it (so one table's rows can be another's, measured once).
    uses: tuple[tuple[str, "Table"], ...] = ()


def out_dir(name: str) -> str:
    return f"{RUNS}/{name}"


def train(out: str, flags: str, label: str = "") -> Step:
    """`rledit train FLAGS --out OUT`: done when OUT holds metrics.json; an interrupted run
    continues from its checkpoint."""
    return Step(f"rledit train {flags} --out {out}".replace("  ", " "), done=f"{out}/metrics.json",
                resume=(f"{out}/checkpoint/rledit_state.json", f"--resume {out}"), run=out, label=label)


def sweep(name: str, spec: str, experiment: str) -> Step:
    out = f"{out_dir(name)}/sweep"  # beside logs/: a sweep's --out must hold nothing else
    return Step(f"rledit sweep {spec} --out {out}", done=f"{out}/summary.csv",
                resume=(f"{out}/{experiment}", "--resume"), run=out)
