"""Rerun a measured table of the docs from its commands and rewrite its block in its page.

Every table of measured numbers in README.md and docs/*.md sits between two markers,

    <!-- reproduce: NAME -->
    Measured DATE on MACHINE, load LOAD, commit COMMIT, took DURATION: `python scripts/reproduce.py NAME`
    ... the table ...
    <!-- /reproduce: NAME -->

and TABLES (reproducing/registry.py) says, for each NAME, its page, the shell commands that measure it and the
function that turns their outputs (metrics.json of runs, comparison.md of `rledit compare`,
summary.csv of `rledit sweep`, the JSON of `rledit bench --json`, a script's stdout) into
the block. How to run, from the repository root (after `make setup`):

    python scripts/reproduce.py --list                 # names, pages, estimated minutes
    python scripts/reproduce.py results bias           # rerun two tables, rewrite their blocks
    python scripts/reproduce.py --dry-run --all        # print every command, run nothing

Commands run from the repository root with `.venv/bin` first on PATH (`--venv DIR` for
another environment), so `rledit` and `python` are the project's. Each table writes under
runs/reproduce/NAME/ (stdout, stderr and a record of every command under logs/). A rerun
resumes: a command whose record says it finished, or whose output already holds its result
(a run's metrics.json: `rledit train` refuses a finished run directory), is skipped; an
interrupted `rledit train` continues with `--resume`, an interrupted sweep with `--resume`.
The page is rewritten only when every command of the table finished, atomically (a
temporary file, then os.replace). This script needs nothing but the standard library; its
parts live in reproducing/ beside it (its __init__ lists them in reading order).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its package, also when this file is loaded by path
from reproducing.registry import TABLES
from reproducing.runner import environment, reproduce
from reproducing.steps import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="tables to rerun (see --list)")
    parser.add_argument("--list", action="store_true", help="print every table: name, page, estimated minutes")
    parser.add_argument("--all", action="store_true", help="rerun every table")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--venv", default=str(ROOT / ".venv"), help="environment whose bin/ comes first on PATH")
    args = parser.parse_args(argv)
    if args.list:
        for name, t in TABLES.items():
            print(f"{name:26s} {t.page:20s} ~{t.minutes:g} min, {len(t.steps)} command{'s' * (len(t.steps) > 1)}")
        print(f"{'all':26s} {'':20s} ~{sum(t.minutes for t in TABLES.values()):g} min")
        return 0
    names = list(TABLES) if args.all else args.names
    unknown = [n for n in names if n not in TABLES]
    if unknown or not names:
        parser.error(f"unknown table '{unknown[0]}' (see --list)" if unknown else "name a table, or --all, or --list")
    venv = Path(args.venv)
    if not args.dry_run and not (venv / "bin" / "rledit").exists():
        parser.error(f"no rledit in {venv}/bin: run `make setup` first, or pass --venv")
    for name in names:
        reproduce(name, TABLES[name], environment(venv), dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
