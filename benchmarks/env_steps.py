"""Env-step throughput of the editing worlds against the forward-pass limit.

The same as `rledit bench` (the code lives in rledit_ray/bench.py so the installed
command has it too). How to run, from the repository root:

    .venv/bin/python benchmarks/env_steps.py                 # tables, a few minutes on 2 cores
    .venv/bin/python benchmarks/env_steps.py --json          # one JSON object on stdout
    .venv/bin/python benchmarks/env_steps.py --configs heavy --runners 0 --envs 1,8

What to expect and what the columns mean: see the module docstring of rledit_ray/bench.py
and docs/performance.md.
"""
import sys

from rledit_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
