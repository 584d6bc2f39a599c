"""scripts/reproduce.py and the measured tables of README.md and docs/ stay in step: every
reproduce block has a registered table and every table a block, blocks are well formed,
every registered command parses with the CLI it calls, a block rewrite touches nothing
else, and the table builders read the keys the code writes. Nothing here trains."""
import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cluster_manifests import _check_entrypoint

from rledit_ray.cli import _parser
from rledit_ray.config import load_config
from rledit_ray.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _load_reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module  # as an import would
    spec.loader.exec_module(module)
    return module


R = _load_reproduce()  # the command line; loading it puts scripts/ on sys.path, where its parts live
from reproducing import outputs, pages, registry, runner, steps, tables_bias, tables_byo, tables_unlearning  # noqa: E402

HEADER_RE = re.compile(r"^Measured .+ on .+, load .+, commit .+, took .+: `python scripts/reproduce\.py ([a-z0-9-]+)`$")
UNMEASURED_RE = re.compile(r"^Not measured on this code: .+`python scripts/reproduce\.py ([a-z0-9-]+)` on a machine with")


def _blocks():
    """[(page, name, content)] of every reproduce block in README.md and docs/."""
    out = []
    for page in PAGES:
        text = page.read_text()
        for name, (start, end) in pages.find_blocks(text).items():
            out.append((page, name, text[start:end]))
    return out


# ---------------------------------------------------------------------------- markers and registry
def test_every_block_has_a_table_and_every_table_a_block():
    found = {}
    for page, name, _ in _blocks():
        assert name not in found, f"block '{name}' in both {found.get(name)} and {page}"
        found[name] = page.relative_to(ROOT).as_posix()
    assert set(found) == set(registry.TABLES), (f"blocks without a table: {sorted(set(found) - set(registry.TABLES))}; "
                                                f"tables without a block: {sorted(set(registry.TABLES) - set(found))}")
    for name, table in registry.TABLES.items():
        assert table.page == found[name], f"{name}: registered for {table.page}, found in {found[name]}"


def test_blocks_open_with_their_measurement_line():
    for page, name, content in _blocks():
        first = content.strip("\n").splitlines()[0]
        match = HEADER_RE.match(first) or UNMEASURED_RE.match(first)
        assert match, (f"{page.name} block '{name}' must open with the 'Measured ...' line "
                       f"(or 'Not measured on this code: ...'), not: {first}")
        assert match.group(1) == name, f"{page.name} block '{name}' names table '{match.group(1)}'"
        assert "|---" in content, f"{page.name} block '{name}' holds no table"


def test_only_the_gpu_table_waits_for_hardware_and_holds_no_numbers_meanwhile():
    # A table these machines cannot measure (no GPU) holds its header only: an old number
    # would describe code that is gone (its last measurement lives in CHANGELOG.md).
    unmeasured = {name: content for _, name, content in _blocks()
                  if UNMEASURED_RE.match(content.strip("\n").splitlines()[0])}
    assert set(unmeasured) <= {"performance-gpu"}, sorted(unmeasured)
    for name, content in unmeasured.items():
        rows = [line for line in content.splitlines() if line.startswith("|")]
        assert len(rows) == 2, f"block '{name}' is not measured on this code but holds table rows"


def test_markers_pair_up_on_every_page():
    for page in PAGES:
        text = page.read_text()
        blocks = pages.find_blocks(text)  # raises on an unclosed, crossed or repeated block
        assert len(pages.MARKER.findall(text)) == 2 * len(blocks), page.name
        assert len(re.findall(r"<!--\s*/?\s*reproduce", text)) == 2 * len(blocks), f"{page.name}: a malformed marker"


@pytest.mark.parametrize("text, problem", [
    ("<!-- reproduce: a -->\nx\n", "never closed"),
    ("<!-- reproduce: a -->\n<!-- reproduce: b -->\n<!-- /reproduce: b -->\n<!-- /reproduce: a -->\n", "not closed"),
    ("<!-- /reproduce: a -->\n", "closes no open block"),
    ("<!-- reproduce: a -->\n<!-- /reproduce: b -->\n", "closes no open block"),
    ("<!-- reproduce: a -->\n<!-- /reproduce: a -->\n<!-- reproduce: a -->\n<!-- /reproduce: a -->\n", "twice"),
])
def test_malformed_blocks_are_refused(text, problem):
    with pytest.raises(ValueError, match=problem):
        pages.find_blocks(text)


def test_tables_not_rerun_since_the_critic_fix_say_so():
    for page, name, content in _blocks():
        if "commit before 9305e92" in content.strip().splitlines()[0]:
            assert "Not yet rerun on current code" in content, f"{page.name} block '{name}' is stale and must say so"


# ---------------------------------------------------------------------------- the registry's commands
def _script_flags(path: Path) -> set[str]:
    return set(re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", path.read_text()))


def _check_step(name: str, table, step, tmp_path: Path) -> None:
    argv = shlex.split(step.command)
    for part in (step.done, step.resume and step.resume[0], step.run):
        if part:
            assert part.startswith(steps.RUNS + "/"), f"{name}: {part} is not under {steps.RUNS}/"
    if argv[0] == "rledit":
        config = argv[argv.index("--config") + 1] if "--config" in argv else None
        generated = config and config.startswith(steps.out_dir(name) + "/")
        if generated:  # written by the table before its commands: it must be a valid run config
            text = table.files[Path(config).name]()
            (tmp_path / Path(config).name).write_text(text)
            load_config(tmp_path / Path(config).name)
            _parser().parse_args(argv[1:])
        else:
            _check_entrypoint(step.command)
        if "--out" in argv:
            assert argv[argv.index("--out") + 1].startswith(steps.RUNS + "/"), \
                f"{name}: {step.command} writes outside {steps.RUNS}/"
        if step.resume and argv[1] == "train":  # `--resume RUN_DIR` must parse too
            _parser().parse_args([*argv[1:], *shlex.split(step.resume[1])])
    elif argv[:3] == ["python", "-m", "pytest"]:
        assert all((ROOT / a).exists() for a in argv[3:] if not a.startswith("-")), step.command
    elif argv[0] == "python":
        script = ROOT / argv[1]
        assert script.is_file(), step.command
        unknown = {a.split("=")[0] for a in argv[2:] if a.startswith("--")} - _script_flags(script)
        assert not unknown, f"{step.command}: {sorted(unknown)} are not flags of {argv[1]}"
    elif argv[0] == "make":
        target = argv[-1]
        assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), re.M), step.command
    else:
        assert argv[0] in ("rm", "git"), f"{name}: unexpected command {step.command}"


def test_every_registered_command_parses(tmp_path):
    for name, table in registry.TABLES.items():
        assert table.steps and table.minutes > 0, name
        for step in table.steps:
            _check_step(name, table, step, tmp_path)


def test_an_unknown_flag_in_a_registered_command_fails_the_check(tmp_path):
    table = registry.TABLES["results"]
    bad = steps.Step("rledit train --no-such-flag 1 --out runs/reproduce/results/x")
    with pytest.raises(UserError, match="no-such-flag"):
        _check_step("results", table, bad, tmp_path)
    probe = steps.Step("python scripts/bias_edit_probe.py --no-such-flag 1")
    with pytest.raises(AssertionError, match="no-such-flag"):
        _check_step("bias-probe", registry.TABLES["bias-probe"], probe, tmp_path)


def test_list_and_dry_run_name_every_table_and_command(capsys):
    assert R.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in registry.TABLES)
    assert R.main(["--dry-run", "--all"]) == 0
    printed = capsys.readouterr().out
    for table in registry.TABLES.values():
        assert all(step.command in printed for step in table.steps)
    with pytest.raises(SystemExit):
        R.main(["no-such-table"])


# ---------------------------------------------------------------------------- rewriting a page
def test_rewrite_replaces_exactly_one_block(tmp_path):
    before = "# A page\n\nprose before, with `code` and trailing spaces  \n\n"
    block_a = "<!-- reproduce: a -->\nMeasured old\n\n| x |\n|---|\n| 1 |\n<!-- /reproduce: a -->"
    middle = "\n\nbetween the blocks\n\n"
    block_b = "<!-- reproduce: b -->\nkeep me\n<!-- /reproduce: b -->"
    after = "\n\nthe end, no final newline"
    page = tmp_path / "page.md"
    page.write_bytes((before + block_a + middle + block_b + after).encode())
    pages.rewrite_page(page, "a", "Measured new\n\n| y |\n|---|\n| 2 |\n")
    new_a = "<!-- reproduce: a -->\nMeasured new\n\n| y |\n|---|\n| 2 |\n<!-- /reproduce: a -->"
    assert page.read_bytes() == (before + new_a + middle + block_b + after).encode()
    assert [p.name for p in tmp_path.iterdir()] == ["page.md"]  # no temporary file left behind
    with pytest.raises(ValueError, match="no reproduce block 'c'"):
        pages.rewrite_page(page, "c", "x")
    assert page.read_bytes() == (before + new_a + middle + block_b + after).encode()


def test_rewriting_a_real_page_keeps_the_rest_of_it(tmp_path):
    source = ROOT / "docs" / "results.md"
    page = tmp_path / "results.md"
    page.write_text(source.read_text())
    header = "Measured x on y, load z, commit c, took t: `python scripts/reproduce.py results`"
    pages.rewrite_page(page, "results", header + "\n\n| a |\n|---|")
    old, new = source.read_text(), page.read_text()
    (s0, e0), (s1, e1) = pages.find_blocks(old)["results"], pages.find_blocks(new)["results"]
    assert old[:s0] == new[:s1] and old[e0:] == new[e1:]


def test_a_table_runs_resumes_and_rewrites_its_block(tmp_path, monkeypatch, capsys):
    """The runner itself, on a throwaway table of shell one-liners in a scratch repository."""
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "x.md"
    page.write_text("# x\n\n<!-- reproduce: fake -->\nold\n<!-- /reproduce: fake -->\n\ntail\n")
    out = steps.out_dir("fake")
    table = steps.Table("docs/x.md", (
        steps.Step(f"mkdir -p {out} && echo progress >&2 && echo '{{\"v\": 7}}'"),
        steps.Step(f"echo $GREETING > {out}/marker", done=f"{out}/marker")),
        lambda o: f"| v | greeting |\n|---|---|\n| {o.last_json(0)['v']} | {o.path(out + '/marker').read_text().strip()} |",
        1, setup="GREETING=hello")
    env = runner.environment(Path(sys.executable).parent.parent)
    runner.reproduce("fake", table, env)
    text = page.read_text()
    assert text.startswith("# x\n\n<!-- reproduce: fake -->\nMeasured ") and text.endswith("<!-- /reproduce: fake -->\n\ntail\n")
    assert "| 7 | hello |" in text and "`python scripts/reproduce.py fake`" in text and "already done" not in text
    assert HEADER_RE.match(text.splitlines()[3])
    assert (tmp_path / out / "logs" / "step00.err").read_text() == "progress\n"
    assert json.loads((tmp_path / out / "logs" / "step00.json").read_text())["rc"] == 0
    capsys.readouterr()
    runner.reproduce("fake", table, env)  # a rerun runs nothing: one step has its record, the other its output
    assert "[finished before]" in capsys.readouterr().out
    assert "(2 of 2 commands already done)" in page.read_text()
    failing = steps.Table("docs/x.md", (steps.Step("exit 3"),), lambda o: "never", 1)
    before = page.read_text()
    with pytest.raises(SystemExit, match="exit status 3"):
        runner.reproduce("fake", failing, env)
    assert page.read_text() == before
    # Other code: nothing of the old outputs is reused, every command runs again.
    monkeypatch.setattr(runner, "git_commit", lambda: "newer")
    capsys.readouterr()
    runner.reproduce("fake", table, env, dry_run=True)  # lists what the real run will do
    printed = capsys.readouterr().out
    assert "would be removed" in printed and "[finished before]" not in printed and "[done]" not in printed
    assert (tmp_path / out / "marker").exists()
    runner.reproduce("fake", table, env)
    printed = capsys.readouterr().out
    assert "holds outputs of commit unknown: removed" in printed and "[finished before]" not in printed
    assert "already done" not in page.read_text() and "commit newer" in page.read_text()


def test_a_table_that_uses_another_runs_it_first_only_when_this_code_has_not(tmp_path, monkeypatch, capsys):
    """baselines-bias reads the bias table's runs: they are made once per commit, by either table."""
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    monkeypatch.setattr(runner, "git_commit", lambda: "abc1234")
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "x.md"
    page.write_text("".join(f"<!-- reproduce: {n} -->\nold\n<!-- /reproduce: {n} -->\n" for n in ("runs", "rows")))
    runs_out, rows_out = steps.out_dir("runs"), steps.out_dir("rows")
    runs = steps.Table("docs/x.md", (steps.Step(f"echo 5 > {runs_out}/value"),),
                       lambda o: "| v |\n|---|\n| 5 |", 1)
    rows = steps.Table("docs/x.md", (steps.Step(f"cp {runs_out}/value {rows_out}/copy"),),
                       lambda o: f"| copy |\n|---|\n| {o.path(rows_out + '/copy').read_text().strip()} |", 1,
                       uses=(("runs", runs),))
    env = runner.environment(Path(sys.executable).parent.parent)
    runner.reproduce("rows", rows, env)
    assert "reads the outputs of runs: that table first" in capsys.readouterr().out
    assert page.read_text().count("| 5 |") == 2 and runner.finished("runs", runs, "abc1234")
    runner.reproduce("rows", rows, env)  # this commit made the runs: not again
    assert "that table first" not in capsys.readouterr().out
    monkeypatch.setattr(runner, "git_commit", lambda: "newer")
    assert not runner.finished("runs", runs, "newer")
    runner.reproduce("rows", rows, env)
    assert "that table first" in capsys.readouterr().out


# ---------------------------------------------------------------------------- table builders on fixtures
def _unlearning_metrics(world: str, seed: int, forget: float) -> dict:
    """The keys training.train writes for a single-request unlearning run (UnlearningTask.metrics)."""
    accs = {"forget_acc": forget, "retain_acc": 0.9932, "forget_train_acc": 0.0035, "retain_train_acc": 0.9982,
            "forget_val_acc": 0.0, "retain_val_acc": 0.9915}
    return {"task": "unlearning", "world": world, "seed": seed, "dataset": "mnist", "forget_classes": [7],
            "before": {**accs, "forget_acc": 0.9903}, "after": accs,
            "random_policy": {"forget_acc": 0.6904, "retain_acc": 0.7189, "forget_val_acc": 0.7, "retain_val_acc": 0.7},
            "env_steps": 2000, "iterations": 4, "best_iteration": 4, "wall_time_s": 60.2, "history": []}


def test_results_table_is_what_rledit_summarize_prints(tmp_path):
    from rledit_ray.report import summary_table

    table = registry.TABLES["results"]
    for i, step in enumerate(table.steps):
        run = tmp_path / step.run
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps(_unlearning_metrics(step.label.split("-")[0], i % 3, 0.001 * i)))
    logs = tmp_path / steps.out_dir("results") / "logs"
    logs.mkdir(parents=True)
    (logs / "step00.out").write_text(f"loading\nbefore: forget 99.03% retain 99.23% (test)\nINFO ray\n"
                                     f"after: forget 0.29% (test) | run dir: {tmp_path}/runs/reproduce/results/mask-seed0\n")
    built = tables_unlearning.unlearning_runs_table(outputs.Outputs("results", table, root=tmp_path))
    expected = summary_table([tmp_path / s.run for s in table.steps])
    assert built.startswith(expected + "\n\n")
    assert "before: forget 99.03%" in built and "run dir: runs/reproduce/results/mask-seed0" in built
    assert "INFO ray" not in built and str(tmp_path) not in built


def test_bias_table_reads_the_bias_reports_keys(tmp_path):
    from rledit_ray.tasks import bias_metrics as bm

    rng = np.random.default_rng(0)
    n, groups = 400, ["female", "black"]
    labels, membership = rng.integers(0, 2, n), np.eye(2, dtype=bool)[rng.integers(0, 2, n)]

    def report(noise):
        scores = np.clip(labels * 0.3 + rng.normal(0.35, noise, n), 0, 1)
        out = bm.bias_report(scores, labels, membership, groups)
        return {**out, "counterfactual_gap": bm.counterfactual_gap(scores, np.clip(scores + 0.05, 0, 1))}

    table, first_run = registry.TABLES["bias"], None
    for step in table.steps:
        run = tmp_path / step.run
        run.mkdir(parents=True)
        before, after = report(0.3), report(0.2)
        first_run = first_run or (before, after)
        metrics = {"task": "bias", "world": "shift" if "shift" in step.run else "mask",
                   "seed": int(step.run[-1]), "before": before, "after": after, "wall_time_s": 630.0,
                   "intervals": {k: [-0.01, 0.02] for k in ("overall_auc", "bias_score", "worst_group_bias_auc",
                                                            "counterfactual_gap")}}
        (run / "metrics.json").write_text(json.dumps(metrics, default=float))
    built = tables_bias.bias_runs_table(outputs.Outputs("bias", table, root=tmp_path))
    rows = [line for line in built.splitlines() if line.startswith("| `rledit train")]
    assert len(rows) == 2 * len(table.steps)  # the runs table and the intervals table
    assert "10.5 min" in built and "| MaskWorld | seeds 0, 1, 2 |" in built and "[-1.00, +2.00]" in built
    first, (before, after) = rows[0].split(" | "), first_run
    assert first[1] == f"{100 * before['overall_auc']:.2f} -> {100 * after['overall_auc']:.2f}"


def test_sweep_table_reads_the_sweeps_summary_csv(tmp_path):
    from rledit_ray.sweep import _csv_text

    table = registry.TABLES["sweep-world-rank"]
    trials = [{"trial": f"trial_{i}", "world": w, "rank": r, "seed": s, "status": "finished", "env_steps": 5500,
               "score_val": 0.9855, "forget_acc": 0.0019, "retain_acc": 0.9872}
              for i, (w, r, s) in enumerate([("shift", 4, 1), ("mask", 1, 0), ("mask", 4, 0)])]
    trials.append({"trial": "trial_9", "world": "shift", "rank": 1, "seed": 0, "status": "stopped by the scheduler",
                   "env_steps": 1000, "score_val": 0.5})
    out = tmp_path / table.steps[0].run
    out.mkdir(parents=True)
    columns = ["trial", "world", "rank", "seed", "status", "env_steps", "score_val", "forget_acc", "retain_acc"]
    (out / "summary.csv").write_text(_csv_text(trials, columns))
    built = registry.TABLES["sweep-world-rank"].build(outputs.Outputs("sweep-world-rank", table, root=tmp_path))
    lines = built.splitlines()
    assert lines[0] == "| world | rank | seed | forget (test) | retain (test) | validation score | env steps |"
    assert lines[2] == "| mask | 1 | 0 | 0.19% | 98.72% | 0.9855 | 5500 |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| mask", "| mask", "| shift", "| shift"]
    assert "stopped by the scheduler" in lines[4]


def _bench_config(name: str, rllib: bool) -> dict:
    """One config of `rledit bench --json`, shaped as rledit_ray/bench.py builds it."""
    clock = {"limit_steps_per_s": 155.0, "world_steps_per_s": 139.0, "world_over_limit": 0.85,
             "overhead_us_per_step": 710.0}
    rows = [{"runners": r, "envs_per_runner": m, "vectorize": v, "rllib_steps_per_s": 100.0 * (m + r),
             "world_steps_per_s": 139.0, "rllib_over_world": 0.7 + 0.1 * m, "cpu_rllib_over_world": None}
            for r in (0, 2) for m in (1, 4) for v in (("batched", "sync") if m > 1 else ("batched",))] if rllib else []
    return {"name": name, "limit_steps_per_s": 155.0, "world_steps_per_s": 139.0, "rllib_steps_per_s": None,
            "settings": {"edit": ["fc1.weight", "fc1.bias"], "samples_per_set": 1024, "reward_rows": 2048,
                         "world": "mask", "dataset": "mnist", "device": "cpu"},
            "world_over_limit": 0.85, "overhead_us_per_step": 740.0, "cpu_clock": clock,
            "batches": [{"envs": 4, "steps_per_s": 120.0, "over_limit": 0.82, "over_world": 0.9, "cpu_over_limit": 0.8}],
            "best_rllib": max(rows, key=lambda r: r["rllib_steps_per_s"]) if rows else None, "rllib": rows,
            "samples_scaling": [{"samples_per_set": n, "limit_steps_per_s": 1e5 / n, "world_steps_per_s": 9e4 / n,
                                 "world_over_limit": 0.3, "cpu_world_over_limit": 0.3} for n in (64, 1024)],
            "ppo_iteration": {"total_s": 6.5, "sampling_s": 5.6, "learning_s": 1.0, "env_steps": 500} if rllib else None}


def _run_metrics(seed: int) -> dict:
    """A run's metrics.json with the keys every task writes (unlearning, bias, generalist)."""
    accs = {"forget_acc": 0.003, "retain_acc": 0.993, "forget_train_acc": 0.0035, "retain_train_acc": 0.998,
            "overall_auc": 0.805, "bias_score": 0.7785, "worst_group_bias_auc": 0.6971, "counterfactual_gap": 0.0867}
    return {"task": "unlearning", "world": "mask", "seed": seed, "before": accs, "after": accs, "random_policy": accs,
            "env_steps": 2000, "iterations": 4, "best_iteration": 4, "wall_time_s": 60.0,
            "history": [{"iteration": 4, "forget_val_acc": 0.0045, "forget_val_acc_max": 0.0197}],
            "per_request": {str(k): {"forget_acc": 0.001 * k, "retain_acc": 0.99} for k in range(10)},
            "heldout_classes": [7, 8, 9], "intervals": {k: [-0.01, 0.02] for k in accs},
            "per_class_test_acc": {"before": [0.97] * 10, "after": [0.97, 0.98, 0.97, 0.0, *[0.97] * 6]}}


def _fake_outputs(name: str, table, root: Path) -> None:
    """What each registered command leaves behind, in the formats the code writes or prints."""
    from rledit_ray.sweep import _csv_text

    logs = root / steps.out_dir(name) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for i, step in enumerate(table.steps):
        argv, stdout = shlex.split(step.command), ""
        run = root / step.run if step.run else None
        if argv[:2] == ["rledit", "train"]:
            run.mkdir(parents=True, exist_ok=True)
            (run / "metrics.json").write_text(json.dumps(_run_metrics(i)))
            for figure in tables_unlearning.FIGURES:
                (run / figure).write_bytes(b"\x89PNG")
            stdout = "before: ...\nvalidation target met at iteration 4: stopping early\nafter: ...\n"
        elif argv[:2] == ["rledit", "edit"]:
            run.mkdir(parents=True, exist_ok=True)
            (run / "metrics.json").write_text(json.dumps({"edit_seconds_all": [0.3, 0.2, 1.2], "edit_seconds_median": 0.3,
                                                          "edit_seconds_max": 1.2, "load_seconds": 2.1}))
        elif argv[1] in ("compare", "compare-requests"):
            run.mkdir(parents=True, exist_ok=True)
            (run / "comparison.md").write_text("| method | seeds |\n|---|---|\n| original | 3 |\n\nMean ± sd\n")
        elif argv[1] == "sweep":
            run.mkdir(parents=True, exist_ok=True)
            (run / "summary.csv").write_text(_csv_text(
                [{"trial": "t1", "status": "finished", "env_steps": 5500, "score_val": 0.98, "forget_acc": 0.002,
                  "retain_acc": 0.99, "world": "mask", "rank": 1, "seed": 0, "reward.utility_coef": 4.0,
                  "episode_length": 5, "samples.per_set": 256, **_run_metrics(0)["after"]}],
                ["trial", "world", "rank", "seed", "reward.utility_coef", "episode_length", "samples.per_set",
                 "status", "env_steps", "score_val", *_run_metrics(0)["after"]]))
        elif argv[1] == "bench":
            configs = argv[argv.index("--configs") + 1].split(",") if "--configs" in argv else ["default", "heavy"]
            stdout = json.dumps({"configs": [_bench_config(c, "--world-only" not in argv) for c in configs],
                                 "repeats": 5, "seconds_per_repeat": 0.5}) + "\n"
        elif argv[1] in ("scripts/bias_edit_probe.py", "scripts/bias_encoder_probe.py"):
            metrics = {"overall_auc": 0.8, "bias_score": 0.78, "worst_group_bias_auc": 0.75, "counterfactual_gap": 0.08}
            stdout = json.dumps({"before": metrics, "chosen_on_validation": {**metrics, "step": 10},
                                 tables_bias.PROBE_ORACLE: metrics}) + "\n# mask fc2 ...\n"
        elif argv[1] == "scripts/bias_offset_bound.py":
            stdout = "".join(f"per-group {kind:12s} fitted on {src:12s} utility_coef {u}: doverall_auc -0.10 "
                             f"dbias_score +1.29 dworst_group_bias_auc +2.00\n"
                             for kind in ("offset", "offset+scale") for src in ("test (bound)", "fit+reward")
                             for u in (0.0, 1.0))
        elif argv[1] == "scripts/make_text_classifier.py":
            (root / step.done).parent.mkdir(parents=True, exist_ok=True)
            stdout = "wrote x: classifier head accuracy fit 0.690, validation 0.689 (181 s)\n"
        elif argv[1] == "scripts/hf_target_steps.py":
            stdout = ("classifier: edit classifier, 387 action dims, 4136 reward rows x 53 tokens, split 'memo': "
                      "world 150.5 steps/s, full forward 0.01/s (15050x)\n")
        elif "benchmarks/time_to_edit.py" in argv:
            from rledit_ray.time_to_edit import _summary

            rows = {name: [{"wall_s": w, "phases": {"load": 1.0, "train": w - 1.0}, "forget": 0.003, "retain": 0.99}
                           for w in (12.0, 13.0, 11.0)] for name in ("rl_train", "neggrad_plus", "rl_edit_generalist")}
            stdout = json.dumps({"repeats": 3, "load_start": 0.5, "load_end": 1.0, "rl_over_neggrad": 0.5,
                                 "commands": {name: _summary(r) for name, r in rows.items()}, "runs": rows}) + "\n"
        elif "pytest" in argv or argv[0] == "make":
            stdout = "...\n316 passed, 7 skipped in 635.12s (0:10:35)\n"
        (logs / f"step{i:02d}.out").write_text(stdout)
        (logs / f"step{i:02d}.json").write_text(json.dumps({"command": step.command, "rc": 0, "seconds": 80.0}))


@pytest.mark.parametrize("name", sorted(registry.TABLES))
def test_every_table_builds_its_block_from_outputs_shaped_like_the_codes(name, tmp_path):
    table = registry.TABLES[name]
    _fake_outputs(name, table, tmp_path)
    body = table.build(outputs.Outputs(name, table, root=tmp_path))
    assert "|---" in body and "n/a |" not in body.split("\n\n")[0].splitlines()[2], body
    page = tmp_path / "page.md"
    page.write_text((ROOT / table.page).read_text())
    pages.rewrite_page(page, name, runner.header(name, 0.0, 1.0, 2.0, "abc1234", 0, len(table.steps)) + "\n\n" + body)
    content = page.read_text()
    start, end = pages.find_blocks(content)[name]
    assert HEADER_RE.match(content[start:end].strip().splitlines()[0])


def test_script_lines_the_builders_parse_are_the_scripts_own():
    """The builders read what scripts print; those formats live in the scripts' f-strings."""
    probe = (ROOT / "scripts" / "bias_edit_probe.py").read_text()
    assert f'"{tables_bias.PROBE_ORACLE}"' in probe and '"chosen_on_validation"' in probe
    # The encoder probe prints through the same function.
    assert "from bias_edit_probe import HEADLINE, report" in (ROOT / "scripts" / "bias_encoder_probe.py").read_text()
    offset = (ROOT / "scripts" / "bias_offset_bound.py").read_text()
    assert 'f"per-group {kind:12s} fitted on {source:12s} utility_coef {utility_coef}: {deltas}"' in offset
    hf = (ROOT / "scripts" / "hf_target_steps.py").read_text()
    assert "action dims, {len(x)} reward rows x" in hf and "world {steps:.1f} steps/s, full forward" in hf
    from hf_target_steps import EDITS

    assert set(tables_byo.HF_NOTES) == set(EDITS)
    for name, note in tables_byo.HF_NOTES.items():  # the note repeats the script's settings of that edit
        edit = EDITS[name]
        assert ("ShiftWorld" if edit.get("world") == "shift" else "MaskWorld") in note
        if "pairs_per_set" in edit.get("bias", {}):
            assert f"samples {edit['samples']['per_set']}/set, {edit['bias']['pairs_per_set']} pairs" in note
    made = (ROOT / "scripts" / "make_text_classifier.py").read_text()
    assert 'f"wrote {args.out}: classifier head accuracy fit {fit_acc:.3f}, validation {val_acc:.3f} "' in made


# ---------------------------------------------------------------------------- the front page
def _numbers(text: str) -> list[str]:
    return re.findall(r"\d[\d,]*(?:\.\d+)?", text)


def test_front_page_numbers_come_from_the_docs_tables():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # below the header
    assert rows and all("reproduce.py" in row for row in rows), "every results row names its reproduce command"
    for row in rows:
        what, result, command, details = [cell.strip() for cell in row.strip().strip("|").split("|")]
        page = ROOT / re.search(r"\]\(([^)]+)\)", details).group(1)
        name = re.search(r"reproduce\.py ([a-z0-9-]+)", command).group(1)
        assert name in registry.TABLES and registry.TABLES[name].page == page.relative_to(ROOT).as_posix(), row
        tables = "".join(content for p, n, content in _blocks() if p == page)
        for number in _numbers(result):
            assert re.search(rf"(?<![\d.,]){re.escape(number)}(?![\d])", tables), \
                f"README's {number} ({what}) is in no measured table of {page.name}"
    demo = re.search(r"```\n(before:.*?)```", text, re.S).group(1)
    results = "".join(content for p, n, content in _blocks() if p.name == "results.md")
    for number in _numbers(demo):
        assert number in results, f"the demo transcript's {number} is not in docs/results.md"


def test_links_between_pages_resolve():
    for page in [*PAGES, ROOT / "CHANGELOG.md", ROOT / "cluster" / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_no_command_writes_into_the_folder_that_holds_the_logs():
    """runs/reproduce/NAME/ holds logs/; rledit refuses an --out that holds files it did not
    write, so every command writes into a folder of its own below it."""
    for name, table in registry.TABLES.items():
        for step in table.steps:
            argv = shlex.split(step.command)
            outs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--out"]
            assert steps.out_dir(name) not in outs, (name, step.command)
