"""Time to a verified edit: the default `rledit train` and NegGrad+ side by side.

The code and its "how to run / what to expect" live in rledit_ray/time_to_edit.py; from the
repository root:

    .venv/bin/python benchmarks/time_to_edit.py --repeats 5
"""
import sys

from rledit_ray.time_to_edit import main

if __name__ == "__main__":
    sys.exit(main())
