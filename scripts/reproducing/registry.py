"""TABLES: every measured table of README.md and docs/*.md, page by page. A table's name is
the name of its block in its page; it declares its commands (steps.py), the builder that
turns their outputs into the block (tables_*.py) and its estimated minutes (from the times
the docs quote for the last measurement)."""
from __future__ import annotations

from typing import Callable

from .steps import ROOT, Step, Table, out_dir, sweep, train
from .tables_bias import bias_delta_table, bias_runs_table, offset_bound_table, probe_table
from .tables_byo import byo_bench_table, byo_table, mask_settings_table, transformers_table
from .tables_generalist import generalist_table, requests_table, serve_timing_table
from .tables_performance import bench_table, test_suite_table, time_to_edit_table, world_only_table
from .tables_sweeps import BIAS_SWEEP, UNLEARNING_SWEEP, sweep_table
from .tables_unlearning import comparison_md, deep_layer_table, figures_table, optimiser_table, unlearning_runs_table


# ---------------------------------------------------------------------------- docs/results.md, docs/baselines.md
def _unlearning_runs() -> tuple[Step, ...]:
    out = out_dir("results")
    return tuple(train(f"{out}/{world}-seed{s}", f"--world {world} --seed {s}", f"{world}-seed{s}")
                 for world in ("mask", "shift") for s in (0, 1, 2))


def _unlearning() -> dict[str, Table]:
    return {
        "results": Table("docs/results.md", _unlearning_runs(), unlearning_runs_table, 12),
        "baselines-unlearning": Table("docs/baselines.md", (Step(
            f"rledit compare --task unlearning --dataset mnist --forget-class 7 --seeds 3 --rl-iterations 25 "
            f"--out {out_dir('baselines-unlearning')}/compare", run=f"{out_dir('baselines-unlearning')}/compare"),),
            comparison_md, 23),
        "figures": Table("docs/outputs.md", (train(f"{out_dir('figures')}/digits-class3",
                                                   "--dataset digits --forget-class 3"),), figures_table, 1),
    }


# ---------------------------------------------------------------------------- docs/deep-edits.md
OPTIMISER_RUNS = (  # (name, flags, label "optimiser|layer (action dims)|world"); seeds 0-2 each
    ("ppo-fc2", "", "PPO (the default)|fc2 (139)|mask"),
    ("es-fc2", "--algorithm es", "ES|fc2 (139)|mask"),
    ("ppo-fc1", "--layer fc1 --iterations 25", "PPO|fc1 (1,697)|mask"),
    ("ppo-mean-fc1", "--config {out}/ppo-mean.yaml --layer fc1 --iterations 25",
     "PPO, per-dim mean log-prob|fc1 (1,697)|mask"),
    ("es-fc1", "--layer fc1 --algorithm es", "ES|fc1 (1,697)|mask"),
    ("es-fc1-shift", "--layer fc1 --algorithm es --world shift", "ES|fc1 (1,697)|shift"),
)


ENCODER_PROBES = (  # flags of scripts/bias_encoder_probe.py: exact gradients on MiniLM's last FFN output
    "--world shift --rank 4 --per-set 256 --pairs-per-set 400 --lr 0.003 --steps 150",
    "--world mask --rank 4 --per-set 256 --pairs-per-set 400 --lr 0.003 --steps 150",
    "--world shift --rank 4 --basis 64 --per-set 256 --pairs-per-set 400 --lr 0.01 --steps 150",
    "--world shift --rank 1 --per-set 64 --pairs-per-set 128 --lr 0.003 --steps 150",
)
PROBE_COMMON = "--objective worst_group --temperature 0.05 --utility-coef 4 --eval-every 5"


def _three_seeds(name: str, flags: str) -> tuple[Step, ...]:
    """`rledit train FLAGS --seed S` for seeds 0-2, each in its own folder, labelled by its command."""
    return tuple(train(f"{out_dir(name)}/seed{s}", f"{flags} --seed {s}", f"`rledit train {flags} --seed {s}`")
                 for s in (0, 1, 2))


def _deep_edits() -> dict[str, Table]:
    out = out_dir("optimisers")
    steps = tuple(train(f"{out}/{name}-seed{s}", f"{flags.format(out=out)} --seed {s}", label)
                  for name, flags, label in OPTIMISER_RUNS for s in (0, 1, 2))
    return {"optimisers": Table("docs/deep-edits.md", steps, optimiser_table, 13,
                                files={"ppo-mean.yaml": lambda: "agent: {ppo_logp: mean}\n"}),
            "bias-es": Table("docs/deep-edits.md", _three_seeds("bias-es", "--config configs/bias_fc1_es.yaml"),
                             bias_delta_table, 9),
            "conv2": Table("docs/deep-edits.md", _three_seeds("conv2", "--config configs/conv2_es.yaml"),
                           deep_layer_table, 36),
            "bias-es-mask": Table("docs/deep-edits.md",
                                  _three_seeds("bias-es-mask", "--config configs/bias_fc1_es.yaml --world mask"),
                                  bias_delta_table, 9),
            "bias-encoder-es": Table("docs/deep-edits.md",
                                     _three_seeds("bias-encoder-es", "--config configs/bias_encoder_es.yaml"),
                                     bias_delta_table, 42),
            "bias-encoder-probe": Table("docs/deep-edits.md", tuple(
                Step(f"python scripts/bias_encoder_probe.py {flags} {PROBE_COMMON}", label=f"`{flags}`")
                for flags in ENCODER_PROBES), probe_table, 20)}



# ---------------------------------------------------------------------------- docs/bias.md
def _bias_runs() -> tuple[Step, ...]:
    out = out_dir("bias")
    steps = []
    for world in ("mask", "shift"):
        for s in (0, 1, 2):
            flags = "--task bias" + (" --world shift" if world == "shift" else "") + (f" --seed {s}" if s else "")
            steps.append(train(f"{out}/{world}-seed{s}", flags, f"`rledit train {flags}`"))
    return tuple(steps)


PROBES = (  # (flags of scripts/bias_edit_probe.py, how the table names the row after the flags)
    ("--world mask --edit fc2 --objective worst_group --temperature 0.1", "(300)"),
    ("--world mask", "(the defaults: fc2, worst_group, 0.3, 2; 300)"),
    ("--world shift --edit fc2 --objective worst_group --temperature 0.1", "(300)"),
    ("--world shift", "(the defaults; 300)"),
    ("--world mask --edit fc1 --rank 4 --objective bias_score --temperature 0.05 --steps 200", ""),
    ("--world shift --edit fc1 --rank 4 --objective bias_score --temperature 0.05 --utility-coef 1 --steps 200", ""),
    ("--world shift --edit fc1 --rank 4 --objective worst_group --temperature 0.05 --utility-coef 4 --steps 200", ""),
    ("--world mask --edit fc1,fc2", "(both layers, rank 1; 300)"),
    ("--world mask --edit fc1,fc2 --rank 2 --objective bias_score --temperature 0.05", "(300)"),  # fc2 (2 x 65): rank <= 2
    ("--world mask --edit fc1 --rank 16 --objective bias_score --temperature 0.05 --utility-coef 1", "(300)"),
)


def _bias() -> dict[str, Table]:
    runs = Table("docs/bias.md", _bias_runs(), bias_runs_table, 55)
    # The comparison's RL rows are the six runs of the bias table (the same commands `rledit
    # compare` would train: compare_checks.py refuses a run of other settings).
    reuse = " ".join(f"--rl-run rl_{step.run.rsplit('/', 1)[1].replace('-seed', ':')}={step.run}"
                     for step in runs.steps)
    return {
        "bias": runs,
        "baselines-bias": Table("docs/baselines.md", (Step(
            f"rledit compare --task bias --seeds 3 {reuse} --out {out_dir('baselines-bias')}/compare",
            run=f"{out_dir('baselines-bias')}/compare"),), comparison_md, 2, uses=(("bias", runs),)),
        "bias-fc1": Table("docs/bias.md", (train(f"{out_dir('bias-fc1')}/mask-fc1-seed0", "--task bias --layer fc1",
                                                 "`rledit train --task bias --layer fc1`"),),
                          bias_delta_table, 14),
        "bias-probe": Table("docs/bias.md", tuple(
            Step(f"python scripts/bias_edit_probe.py {flags}", label=f"`{flags}`" + (f" {note}" if note else ""))
            for flags, note in PROBES), probe_table, 10),
        "bias-offset-bound": Table("docs/bias.md", (Step("python scripts/bias_offset_bound.py"),),
                                   offset_bound_table, 2),
    }


# ---------------------------------------------------------------------------- docs/generalist.md
GEN = out_dir("generalist-training")  # the serving tables edit with these runs' checkpoints


def _generalist_runs() -> tuple[Step, ...]:
    """Seeds 0, 1, 2 of both shipped generalist configs; the seed-0 runs come first (the serving
    tables edit with them)."""
    runs = []
    for seed in (0, 1, 2):
        for world in ("mask", "shift"):
            flag, suffix = (f" --seed {seed}", f"-seed{seed}") if seed else ("", "")
            runs.append(train(f"{GEN}/gen-{world}{suffix}", f"--config configs/generalist_{world}.yaml{flag}",
                              f"`configs/generalist_{world}.yaml{flag}`"))
    return tuple(runs)


def _with_agent(config: str, agent: str) -> Callable[[], str]:
    """A shipped config with its one-line `agent:` section replaced."""
    def text() -> str:
        lines = (ROOT / config).read_text().splitlines()
        return "\n".join(f"agent: {agent}" if line.startswith("agent:") else line for line in lines) + "\n"
    return text


def _serve_timing() -> tuple[Step, ...]:
    out = out_dir("generalist-serve-timing")
    steps = []
    for world in ("mask", "shift"):
        for k in (7, 8, 9):
            steps.append(Step(f"rledit edit --checkpoint {GEN}/gen-{world} --forget-class {k} --repeat 5 "
                              f"--out {out}/{world}-{k}", done=f"{out}/{world}-{k}/metrics.json",
                              run=f"{out}/{world}-{k}", label=f"{world}|{k}"))
    return _generalist_runs()[:2] + tuple(steps)


# The PPO steps the shipped generalist configs were chosen against (each config's own is in the
# training table): world, name, seed, its agent section.
PPO_STEPS = (("mask", "default-step", 0, "{lr: 0.001, num_epochs: 10}"), ("mask", "epochs3", 0, "{num_epochs: 3}"),
             ("shift", "default-step", 0, "{lr: 0.001, num_epochs: 10}"), ("shift", "epochs3", 0, "{num_epochs: 3}"),
             ("shift", "epochs3", 1, "{num_epochs: 3}"))


def _generalist() -> dict[str, Table]:
    ppo, serving = out_dir("generalist-ppo-steps"), f"{out_dir('generalist-serving')}/compare"
    return {
        "generalist-training": Table("docs/generalist.md", _generalist_runs(), generalist_table, 30),
        "generalist-ppo-steps": Table("docs/generalist.md", tuple(
            train(f"{ppo}/{world}-{name}-seed{seed}", f"--config {ppo}/{world}-{name}.yaml --seed {seed}",
                  f"`configs/generalist_{world}.yaml`, `agent: {agent}`" + (f", seed {seed}" if seed else ""))
            for world, name, seed, agent in PPO_STEPS), generalist_table, 15,
            files={f"{world}-{name}.yaml": _with_agent(f"configs/generalist_{world}.yaml", agent)
                   for world, name, _, agent in PPO_STEPS}),
        "generalist-earlystop": Table("docs/generalist.md", (train(
            f"{out_dir('generalist-earlystop')}/gen-shift-earlystop", "--config configs/generalist_shift_earlystop.yaml",
            "`configs/generalist_shift_earlystop.yaml`"),), generalist_table, 4),
        "generalist-serving": Table("docs/generalist.md", _generalist_runs()[:2] + (
            Step(f"rledit compare-requests --checkpoint {GEN}/gen-mask --out {serving}", run=serving),
            Step(f"rledit compare-requests --checkpoint {GEN}/gen-shift --baselines --out {serving}", run=serving)),
            requests_table, 15),
        "generalist-serve-timing": Table("docs/generalist.md", _serve_timing(), serve_timing_table, 3),
    }


# ---------------------------------------------------------------------------- docs/sweeps.md
def _sweeps() -> dict[str, Table]:
    return {
        "sweep-reward-coefs": Table("docs/sweeps.md", (sweep(
            "sweep-reward-coefs", "tune_configs/unlearning_reward_coefs.yaml", "unlearning-reward-coefs"),),
            lambda o: sweep_table(o, ["reward.utility_coef"], UNLEARNING_SWEEP), 8),
        "sweep-episode-length": Table("docs/sweeps.md", (sweep(
            "sweep-episode-length", "tune_configs/unlearning_episode_length.yaml", "unlearning-episode-length"),),
            lambda o: sweep_table(o, ["episode_length"], UNLEARNING_SWEEP), 8),
        "sweep-sample-count": Table("docs/sweeps.md", (sweep(
            "sweep-sample-count", "tune_configs/unlearning_sample_count.yaml", "unlearning-sample-count"),),
            lambda o: sweep_table(o, ["samples.per_set"], UNLEARNING_SWEEP), 8),
        "sweep-world-rank": Table("docs/sweeps.md", (sweep(
            "sweep-world-rank", "tune_configs/unlearning_world_rank.yaml", "unlearning-world-rank"),),
            lambda o: sweep_table(o, ["world", "rank", "seed"], UNLEARNING_SWEEP), 8),
        "sweep-bias-reward-coefs": Table("docs/sweeps.md", (sweep(
            "sweep-bias-reward-coefs", "tune_configs/bias_reward_coefs.yaml", "bias-reward-coefs"),),
            lambda o: sweep_table(o, ["reward.utility_coef"], BIAS_SWEEP), 11),
    }


# ---------------------------------------------------------------------------- docs/performance.md
def _performance() -> dict[str, Table]:
    suite, t2e = out_dir("test-suite"), out_dir("time-to-edit")
    return {
        "performance": Table("docs/performance.md", (Step("rledit bench --repeats 5 --seconds 0.5 --json"),),
                             bench_table, 6),
        "performance-world-cpu": Table("docs/performance.md", (
            Step("rledit bench --world-only --device cpu --repeats 5 --seconds 0.4 --json"),
            *[Step("rledit bench --world-only --device cpu --configs heavy --repeats 5 --seconds 0.4 --json",
                   label=f"heavy alone, run {i}") for i in range(1, 5)]),
            world_only_table, 6),
        "performance-gpu": Table("docs/performance.md", (
            Step("rledit bench --world-only --device cuda --repeats 5 --seconds 0.4 --json"),
            Step("python -m pytest -q tests/test_gpu.py", label="tests/test_gpu.py")),
            world_only_table, 3),
        "time-to-edit": Table("docs/performance.md", (
            train(f"{t2e}/generalist-mask", "--config configs/generalist_mask.yaml", "the generalist `rledit edit` serves"),
            Step(f"rm -rf {t2e}/work && python benchmarks/time_to_edit.py --repeats 5 --generalist "
                 f"{t2e}/generalist-mask --work {t2e}/work --json")),
            time_to_edit_table, 14),
        "test-suite": Table("docs/performance.md", (
            Step(f"rm -rf {suite}/clone && git clone -q . {suite}/clone"),
            Step(f"make -C {suite}/clone test"), Step(f"make -C {suite}/clone test-quick")), test_suite_table, 20),
    }


# ---------------------------------------------------------------------------- docs/byo.md
DR = ('DR=$(python -c "import importlib.util as u, pathlib; '
      "print(pathlib.Path(u.find_spec('digit_recognizer').origin).parent)\")")
BYO_MODEL = "--model $DR/model.py:CNN --weights $DR/models/handwriting_model.pth --mean 0.1307 --std 0.3081 --layer fc_layers.2"


def _byo() -> dict[str, Table]:
    byo, hf, mask_settings = out_dir("byo"), out_dir("byo-transformers"), out_dir("byo-mask-settings")
    return {
        "byo": Table("docs/byo.md", tuple(
            train(f"{byo}/{name}", f"{BYO_MODEL} --mask-bounds=-1,1.5 --mask-update additive {flags}", label)
            for name, flags, label in (("seed0", "--seed 0", "0"), ("seed1", "--seed 1", "1"), ("seed2", "--seed 2", "2"),
                                       ("seed0-runners2", "--seed 0 --env-runners 2", "0, `--env-runners 2`"))),
            byo_table, 6, setup=DR),
        "byo-mask-settings": Table("docs/byo.md", (
            train(f"{mask_settings}/default-seed0", f"{BYO_MODEL} --seed 0", "[0, 1.5] (the default)|multiplicative|0"),
            *[train(f"{mask_settings}/bounds-seed{s}", f"{BYO_MODEL} --mask-bounds=-1,1.5 --seed {s}",
                    f"[-1, 1.5]|multiplicative|{s}") for s in (0, 1, 2)]),
            mask_settings_table, 25, setup=DR),
        "byo-bench": Table("docs/byo.md", (Step(
            "rledit bench --configs default,third_party --runners 0 --envs 1,4 --samples 256 --repeats 5 "
            "--seconds 0.5 --json"),), byo_bench_table, 4),
        "byo-transformers": Table("docs/byo.md", (
            Step(f"python scripts/make_text_classifier.py --out {hf}/minilm-redditbias",
                 done=f"{hf}/minilm-redditbias/config.json", label="make"),
            Step(f"python scripts/hf_target_steps.py --hf-model {hf}/minilm-redditbias", label="steps"),
            train(f"{hf}/train", f"--task bias --hf-model {hf}/minilm-redditbias --layer classifier --iterations 3",
                  "train")),
            transformers_table, 10),
    }


TABLES = {**_unlearning(), **_deep_edits(), **_bias(), **_generalist(), **_sweeps(), **_performance(), **_byo()}
