"""`python -m rledit_ray VERB ...`: the `rledit` command without its console script, e.g.
`python -m rledit_ray sweep SPEC.yaml --out DIR` as a `ray job submit` entrypoint."""
from rledit_ray.cli import run

run()
