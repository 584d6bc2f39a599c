"""`rledit sweep SPEC.yaml`: Ray Tune over any field of the run configuration.

How to run:
    rledit sweep tune_configs/unlearning_reward_coefs.yaml --out sweeps/coefs
    rledit sweep tune_configs/unlearning_reward_coefs.yaml --out sweeps/coefs --resume
    python -m rledit_ray sweep SPEC.yaml --out DIR       # the same, e.g. under `ray job submit`

What to expect: one Tune trial per point of the search space, each a full `rledit train`
run in its own trial folder (metrics.json, report.md, checkpoint of its best policy).
Trials are ranked on a scale-free validation score (the task's checkpoint-selection score,
e.g. retain minus forget accuracy), never on the raw return, whose scale changes with the
reward coefficients. The output folder gets summary.csv (one row per trial: swept values,
final test metrics), summary.md (the same, best trial marked) and plots: metric vs swept
value, forget vs retain (Pareto view), learning curves.

A spec (all fields but search_space optional):
    name: reward-coefs
    base: {dataset: mnist, training: {iterations: 20}}   # any `rledit train --config` fields
    search_space:
      reward.utility_coef: {grid: [1.0, 2.0, 4.0]}        # or choice / uniform / loguniform / randint
    num_samples: 1              # repeats of the grid (random domains are sampled per repeat)
    scheduler: {name: asha, grace_period: 5}             # or none
    max_concurrent_trials: 2
    resources: {cpu: 1, gpu: 0}                          # per trial driver; + 1 CPU per EnvRunner
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from rledit_ray.atomic import save_figure, write_json, write_text
from rledit_ray.config import build_config, with_overrides
from rledit_ray.errors import UserError
from rledit_ray.figures import pyplot
from rledit_ray.outputs import SWEEP, check_output, make_output
from rledit_ray.sweep_spec import SweepSpec, load_spec  # noqa: F401 (load_spec: the spec's public door)

SCORE = "selection_score"  # reported by training.train on every evaluated iteration


# ---------------------------------------------------------------------------- the trial
def run_trial(config: dict, inputs=None, sink=None) -> None:
    """One Tune trial: a full `rledit train` run over the driver's data and target (`inputs`,
    when the sweep shares them), written to a local folder and sent to the driver's node
    (`sink`) before the trial reports that it finished, whatever node it ran on."""
    import ray
    from ray import tune

    from rledit_ray.artifacts import pack
    from rledit_ray.build import build_parts
    from rledit_ray.training import train

    cfg = build_config(with_overrides(config["base"], config["sweep"]), where="trial")
    trial = Path(tune.get_context().get_trial_dir()).name
    local = Path(tempfile.mkdtemp(prefix=f"rledit-{trial}-"))

    def report(row: dict) -> None:
        tune.report({k: v for k, v in row.items() if isinstance(v, (int, float))})

    try:
        parts = build_parts(cfg, inputs) if inputs is not None else None
        metrics = train(cfg, local / "run", progress=lambda line: None, on_iteration=report, parts=parts)
        ray.get(sink.write.remote(f"{trial}/run", pack(local / "run")))
    finally:
        shutil.rmtree(local, ignore_errors=True)
    # The final report carries the chosen checkpoint's metrics on validation and test.
    final = {f"final_{k}": v for k, v in metrics["after"].items() if isinstance(v, (int, float))}
    tune.report({SCORE: metrics["final_selection_score"], **final, "env_steps": metrics["env_steps"],
                 "finished": 1})


def shared_inputs(spec: SweepSpec, base: dict):
    """The data and target every trial edits, built here in the driver (None when the sweep
    changes them: then each trial builds its own)."""
    from rledit_ray.build import INPUT_FIELDS, build_inputs, travel_by_value

    if any(key.split(".")[0] in INPUT_FIELDS for key in spec.search_space):
        return None
    inputs = build_inputs(build_config(base))
    travel_by_value(inputs.model)
    return inputs


def _trainable(spec: SweepSpec, base: dict, inputs, sink):
    from ray import tune

    n_runners = build_config(base).agent.num_env_runners
    runner_gpus = build_config(base).agent.num_gpus_per_env_runner
    bundles = [{"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}]
    bundles += [{"CPU": 1.0, "GPU": runner_gpus}] * n_runners
    # with_parameters: the inputs go into the object store once, not into every trial's config.
    shared = tune.with_parameters(run_trial, inputs=inputs, sink=sink)
    return tune.with_resources(shared, tune.PlacementGroupFactory(bundles))


def check_trial_fits(spec: SweepSpec, base: dict, address: str | None) -> None:
    """Refuse a trial bigger than the cluster: Tune would wait for it forever."""
    from rledit_ray.connect import check_resources

    agent = build_config(base).agent
    cpus = spec.resources.cpu + agent.num_env_runners
    gpus = spec.resources.gpu + agent.num_env_runners * agent.num_gpus_per_env_runner
    check_resources(cpus, gpus, f"one trial (resources: cpu {spec.resources.cpu:g}, gpu {spec.resources.gpu:g}, "
                                f"plus 1 CPU per each of its {agent.num_env_runners} EnvRunners) would", address)


def run_sweep(spec_path: str | Path, out: str | Path, resume: bool = False, address: str | None = None) -> Path:
    from ray import tune

    from rledit_ray.connect import ensure_ray

    spec, base = load_spec(spec_path)
    # A new sweep needs a new or empty --out (its summary files would replace another's).
    out = check_output(out, "--out", accept=(SWEEP,) if resume else ())
    experiment = out / spec.name
    if resume and not experiment.exists():
        raise UserError(f"nothing to resume: '{experiment}' does not exist")
    if not resume and experiment.exists():
        raise UserError(f"'{experiment}' already exists: pass --resume to continue it, or another --out")
    # Save the experiment state often, so a killed driver loses at most seconds of
    # bookkeeping and `--resume` never redoes a trial that had finished.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    check_trial_fits(spec, base, address)
    ensure_ray(address)
    make_output(out, "--out")
    from rledit_ray.artifacts import sink_on_this_node

    trainable = _trainable(spec, base, shared_inputs(spec, base), sink_on_this_node(experiment))
    if resume:
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                   restart_errored=True)
    else:
        scheduler = None
        if spec.scheduler.name == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="training_iteration",
                                      max_t=build_config(base).training.iterations + 1,
                                      grace_period=spec.scheduler.grace_period,
                                      reduction_factor=spec.scheduler.reduction_factor)
        tuner = tune.Tuner(
            trainable,
            param_space={"base": base, "sweep": {k: d.to_tune() for k, d in spec.search_space.items()}},
            tune_config=tune.TuneConfig(metric=SCORE, mode="max", num_samples=spec.num_samples,
                                        scheduler=scheduler, max_concurrent_trials=spec.max_concurrent_trials,
                                        trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name=spec.name, storage_path=str(out), verbose=1, callbacks=_mlflow(out, spec)),
        )
    grid = tuner.fit()
    write_summary(grid, spec, out)
    return out


def _mlflow(out: Path, spec: SweepSpec) -> list:
    """Tune's MLflow callback (every trial a run of experiment `spec.name`, in MLFLOW_TRACKING_URI
    or OUT/mlflow.db) when mlflow is installed (`pip install rledit-ray[mlflow]`); none otherwise.
    A database, not a folder: MLflow 3 refuses its file store unless told otherwise."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return []
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out / 'mlflow.db'}"
    return [MLflowLoggerCallback(tracking_uri=uri, experiment_name=spec.name, save_artifact=False)]


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


# ---------------------------------------------------------------------------- the summary
def _trial_rows(grid, spec: SweepSpec) -> list[dict]:
    """One row per trial from Tune's own results (the last report of a finished trial carries
    its final test metrics); the learning curve from the run directory the trial sent back."""
    rows = []
    for result in grid:
        if result.path is None:
            continue
        swept = (result.config or {}).get("sweep", {})
        last = result.metrics or {}
        row = {"trial": Path(result.path).name, **{k: swept.get(k) for k in spec.search_space}}
        status = "error" if result.error else "finished" if last.get("finished") else "stopped by the scheduler"
        row.update(status=status, env_steps=last.get("env_steps"), score_val=last.get(SCORE))
        if status == "finished":
            row.update({k.removeprefix("final_"): v for k, v in last.items() if k.startswith("final_")})
        metrics_file = Path(result.path) / "run" / "metrics.json"
        if metrics_file.is_file():
            row["history"] = json.loads(metrics_file.read_text())["history"]
        else:
            df = result.metrics_dataframe
            row["history"] = df.to_dict("records") if df is not None else []
        rows.append(row)
    return rows


def write_summary(grid, spec: SweepSpec, out: Path) -> list[dict]:
    rows = _trial_rows(grid, spec)
    scored = [r for r in rows if r["status"] == "finished" and r.get("score_val") is not None]
    best = max(scored, key=lambda r: r["score_val"]) if scored else None
    metric_keys = sorted({k for r in rows for k, v in r.items()
                          if k.endswith(("_acc", "_auc", "_score", "_gap")) and k != "score_val"})
    columns = ["trial", *spec.search_space, "status", "env_steps", "score_val", *metric_keys]
    text = _csv_text(rows, columns)
    write_text(out / "summary.csv", text)
    lines = [f"# Sweep `{spec.name}`", "",
             "Ranked on `score_val` (validation, scale-free); metrics without a suffix are on held-out test data. "
             "**bold** = best trial.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in sorted(rows, key=lambda r: -(r.get("score_val") or -math.inf)):
        cells = [_fmt(r.get(c)) for c in columns]
        if r is best:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    if best:
        lines += ["", f"Best trial: `{best['trial']}`; its run (checkpoint, edited weights, report): "
                      f"`{spec.name}/{best['trial']}/run`."]
    write_text(out / "summary.md", "\n".join(lines) + "\n")
    write_json(out / "summary.json", {"best": best and best["trial"], "trials": [
        {k: v for k, v in r.items() if k != "history"} for r in rows]})
    _plots(rows, spec, out)
    return rows


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: r.get(c) for c in columns})
    return buf.getvalue()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def _plots(rows: list[dict], spec: SweepSpec, out: Path) -> None:
    plt = pyplot()

    finished = [r for r in rows if r["status"] == "finished"]
    x_keys, y_pair = list(spec.search_space), _pareto_pair(finished)

    # One panel per (metric, swept field): forget and retain live on very different scales.
    metrics = [*(y_pair or []), "score_val"]
    fig, axes = plt.subplots(len(metrics), len(x_keys), figsize=(4.2 * len(x_keys), 2.8 * len(metrics)),
                             squeeze=False)
    for col, key in enumerate(x_keys):
        for row, metric in enumerate(metrics):
            ordered = sorted(finished, key=lambda r: (not isinstance(r[key], (int, float)), r[key]))
            pts = [(str(r[key]), r[metric]) for r in ordered if r.get(metric) is not None]
            axes[row][col].plot([p[0] for p in pts], [p[1] for p in pts], "o")
            axes[row][col].set(xlabel=key, ylabel=metric)
    fig.suptitle("final metrics vs swept value\n(test; score_val: validation)", fontsize=9)
    save_figure(fig, out / "metric_vs_swept.png", dpi=100)

    if y_pair:
        fig, ax = plt.subplots(figsize=(4.8, 4))
        for r in finished:
            ax.scatter(r[y_pair[0]], r[y_pair[1]])
            ax.annotate(r["trial"].split("_")[-3] if r["trial"].count("_") > 2 else r["trial"],
                        (r[y_pair[0]], r[y_pair[1]]), fontsize=6)
        ax.set(xlabel=y_pair[0], ylabel=y_pair[1], title="trade-off per trial (test)")
        save_figure(fig, out / "pareto.png", dpi=100)

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        pts = [(h.get("env_steps"), h.get(SCORE)) for h in r["history"] if h.get(SCORE) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=", ".join(f"{k}={_fmt(r.get(k))}" for k in x_keys))
    ax.set(xlabel="env steps", ylabel="validation score", title="learning curves")
    ax.legend(fontsize=6)
    save_figure(fig, out / "learning_curves.png", dpi=100)


def _pareto_pair(rows: list[dict]) -> list[str] | None:
    for pair in (["forget_acc", "retain_acc"], ["bias_score", "overall_auc"]):
        if rows and all(k in rows[0] for k in pair):
            return pair
    return None
