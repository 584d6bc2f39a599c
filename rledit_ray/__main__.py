"""`python -m rledit_ray VERB ...`: the `rledit` command without its console script, e.g.
`python -m rledit_ray sweep SPEC.yaml --out DIR` as a `ray job submit` entrypoint."""
import sys

from rledit_ray.cli import main

sys.exit(main())
