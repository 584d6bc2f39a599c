"""Running a table: each step's command in bash from the repository root (skipped when done,
resumed when interrupted), its stdout/stderr and record under RUNS/NAME/logs/, then the
block, under its header line (date, machine, load, commit, duration), into the page."""
from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from .formatting import duration
from .outputs import Outputs
from .pages import rewrite_page, write_atomically
from .steps import ROOT, Step, Table, out_dir

HEADER = ("Measured {date} on {machine}, load {load}, commit {commit}, took {took}: "
          "`python scripts/reproduce.py {name}`")


def machine() -> str:
    """uname, the CPU count and model, and the GPUs nvidia-smi names (if any)."""
    u = platform.uname()
    text = f"{u.system} {u.machine} ({os.cpu_count()} CPUs"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
        text += f" {cpu}"
    except (OSError, StopIteration):
        pass
    try:
        gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20).stdout.split("\n")
        gpus = [g.strip() for g in gpus if g.strip()]
        text += f"; GPU {' + '.join(gpus)}" if gpus else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return text.replace(",", "") + ")"


def header(name: str, started: float, load0: float, load1: float, commit: str, skipped: int, total: int) -> str:
    took = duration(time.time() - started) + (f" ({skipped} of {total} commands already done)" if skipped else "")
    return HEADER.format(date=datetime.date.today().isoformat(), machine=machine(),
                         load=f"{load0:.2f} at start and {load1:.2f} at end", commit=commit, took=took, name=name)


def git_commit() -> str:
    """HEAD, and whether the code differs from it. The pages this script rewrites (README.md,
    docs/) are left out: a run of several tables rewrites them as it goes."""
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                             text=True).stdout.splitlines()
    dirty = [line for line in changed if not (line[3:] == "README.md" or line[3:].startswith("docs/"))]
    return (sha or "unknown") + (" with uncommitted changes" if dirty else "")


def command_line(table: Table, step: Step, root: Path | None = None) -> tuple[str, str]:
    """(the command as run, why it is skipped or ''), from the step's files."""
    root, command = root or ROOT, step.command
    if step.done and (root / step.done).exists():
        return command, "done"
    if step.resume and (root / step.resume[0]).exists():
        command = f"{command} {step.resume[1]}"
    return command, ""


def _copy(stream, sinks):
    for line in iter(stream.readline, ""):
        for sink in sinks:
            sink.write(line)
            sink.flush()
    stream.close()


def run_step(command: str, setup: str, env: dict, log: Path) -> int:
    """Run one command in bash from the repository root; stdout and stderr go to the
    terminal and to log.out / log.err (renamed into place when the command ends)."""
    shell = f"{setup}; {command}" if setup else command
    proc = subprocess.Popen(["bash", "-c", shell], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(f"{log}.out.tmp", "w") as out, open(f"{log}.err.tmp", "w") as err:
        threads = [threading.Thread(target=_copy, args=(proc.stdout, [out, sys.stdout])),
                   threading.Thread(target=_copy, args=(proc.stderr, [err, sys.stderr]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rc = proc.wait()
    os.replace(f"{log}.out.tmp", f"{log}.out")
    os.replace(f"{log}.err.tmp", f"{log}.err")
    return rc


def _other_code(out: Path, commit: str) -> str:
    """What made the outputs in `out` if not `commit` ("commit X", "an unrecorded commit"); ''
    when there are none or this commit made them all."""
    if not out.is_dir() or not any(out.iterdir()):
        return ""
    made = {json.loads(p.read_text()).get("commit") for p in (out / "logs").glob("step*.json")}
    if made == {commit}:
        return ""
    known = sorted(c for c in made if c)
    return "commit " + ", ".join(known) if known and None not in made else "an unrecorded commit"


def finished(name: str, table: Table, commit: str) -> bool:
    """Whether every command of the table finished, all run by `commit`."""
    logs = ROOT / out_dir(name) / "logs"
    records = [logs / f"step{i:02d}.json" for i in range(len(table.steps))]
    return all(r.is_file() for r in records) and all(
        (rec := json.loads(r.read_text())).get("rc") == 0 and rec.get("commit") == commit
        and rec.get("command") == step.command for r, step in zip(records, table.steps))


def reproduce(name: str, table: Table, env: dict, dry_run: bool = False) -> None:
    """Write the table's files, run each step that is not done (printing every command), then
    rewrite its block in its page; dry_run: print what would run, run and write nothing.
    A table it uses is reproduced first unless this code finished it already."""
    for used_name, used in table.uses:
        if not finished(used_name, used, git_commit()):
            print(f"== {name} reads the outputs of {used_name}: that table first", flush=True)
            reproduce(used_name, used, env, dry_run)
    out = ROOT / out_dir(name)
    logs = out / "logs"
    print(f"== {name} -> {table.page} (~{table.minutes:g} min)", flush=True)
    # The commit is read before the commands run: the code they measured, not a later HEAD.
    started, load0, skipped, commit = time.time(), os.getloadavg()[0], 0, git_commit()
    other = _other_code(out, commit)
    if other:
        # A table resumes only what this code made: a block never shows one commit's outputs
        # under another's header.
        verb = "would be removed" if dry_run else "removed"
        print(f"   {out_dir(name)} holds outputs of {other}: {verb}, every command runs again", flush=True)
        if not dry_run:
            shutil.rmtree(out)
    if table.setup:
        print(f"   before each command: {table.setup}")
    for file in table.files:
        print(f"   write {out_dir(name)}/{file}")
    if not dry_run:
        logs.mkdir(parents=True, exist_ok=True)
        for file, text in table.files.items():
            write_atomically(out / file, text())
    for i, step in enumerate(table.steps):
        record_path = logs / f"step{i:02d}.json"
        if other:  # removed above (a dry run only says it would be): none of them counts as done
            command, skip, record = step.command, "", None
        else:
            command, skip = command_line(table, step)
            record = json.loads(record_path.read_text()) if record_path.is_file() else None
        if not skip and record and record.get("rc") == 0 and record.get("command") == step.command:
            skip = "finished before"
        print(f"   {'[' + skip + '] ' if skip else ''}{command}", flush=True)
        if skip:
            skipped += 1
            continue
        if dry_run:
            continue
        t0 = time.time()
        rc = run_step(command, table.setup, env, logs / f"step{i:02d}")
        write_atomically(record_path, json.dumps({"command": step.command, "ran": command, "rc": rc, "commit": commit,
                                                  "seconds": time.time() - t0,
                                                  "finished": datetime.datetime.now().isoformat(timespec="seconds")}) + "\n")
        if rc != 0:
            raise SystemExit(f"{name}: command failed with exit status {rc}: {command} (logs: {logs})")
    if dry_run:
        return
    body = table.build(Outputs(name, table, ROOT))
    head = header(name, started, load0, os.getloadavg()[0], commit, skipped, len(table.steps))
    rewrite_page(ROOT / table.page, name, f"{head}\n\n{body}")
    print(f"   rewrote the '{name}' block of {table.page}", flush=True)


def environment(venv: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("RAY_AUTH_MODE", "disabled")  # as the Makefile: local Ray without tokens
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env
