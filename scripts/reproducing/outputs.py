"""What a table's commands left, as its builder reads it: files under the repository, each
step's stdout and record (runner.py writes them under RUNS/NAME/logs/)."""
from __future__ import annotations

import json
from pathlib import Path

from .steps import ROOT, Step, Table, out_dir


class Outputs:
    """What a table's commands left: files under the repository, each step's stdout and
    record (command, seconds, exit status)."""

    def __init__(self, name: str, table: Table, root: Path | None = None):
        self.name, self.table, self.root = name, table, root or ROOT
        self.logs = self.root / out_dir(name) / "logs"

    def path(self, rel: str) -> Path:
        return self.root / rel

    def json(self, rel: str) -> dict:
        return json.loads(self.path(rel).read_text())

    def stdout(self, i: int) -> str:
        p = self.logs / f"step{i:02d}.out"
        return p.read_text() if p.is_file() else ""

    def record(self, i: int) -> dict | None:
        p = self.logs / f"step{i:02d}.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def seconds(self, i: int) -> float | None:
        r = self.record(i)
        return r["seconds"] if r and r.get("rc") == 0 else None

    def metrics(self, step: Step) -> dict:
        return self.json(f"{step.run}/metrics.json")

    def last_json(self, i: int) -> dict:
        """The last stdout line of step i that is a JSON object (`--json` output, a probe's result)."""
        for line in reversed(self.stdout(i).splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise ValueError(f"{self.name}: step {i} printed no JSON line ({self.logs})")
