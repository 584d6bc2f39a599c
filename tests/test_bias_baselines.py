"""Hand-designed bias baselines (reweighted fine-tune, LEACE) and `rledit compare --task bias`."""
import csv
import json

import numpy as np
import pytest
import torch
import yaml

from rledit_ray.baselines import BASELINES, BaselineSettings, baselines_for, get_baseline, run_baseline
from rledit_ray.baselines.head_fit import balanced_weights, cells, train_side
from rledit_ray.baselines.leace import fit_eraser
from rledit_ray.cli import main
from rledit_ray.data.text import TextDataset, text_splits
from rledit_ray.errors import UserError
from rledit_ray.evaluation import evaluate_bias, probe_accuracy
from rledit_ray.targets.text_head import load_text_head
from rledit_ray.tasks.bias import BiasTask, bias_data

torch.set_num_threads(1)
GROUPS = ("a", "b", "c")


def shortcut_task(n=1500, seed=0):
    """Embeddings in the real format where the identity group is a shortcut for the label:
    group c comments are mostly harmful (80%), a and b mostly benign (20%), and the harm
    itself is only weakly readable (one noisy direction). A head trained on the true labels
    leans on the group: it flags benign c comments and misses harmful a/b ones."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, len(GROUPS), n)
    labels = (rng.uniform(0, 1, n) < np.where(group == 2, 0.8, 0.2)).astype(np.int64)
    x = rng.normal(0, 1, (n, 16)).astype(np.float32)
    x[:, 0] += 1.2 * labels
    x[np.arange(n), 1 + group] += 2.0
    membership = np.zeros((n, len(GROUPS)), bool)
    membership[np.arange(n), group] = True
    pairs = [(f"t{i}", f"s{i}", int(group[i])) for i in range(60)]
    ds = TextDataset("shortcut", "test", [f"t{i}" for i in range(n)], labels, GROUPS, membership, pairs)
    swapped = x[:60].copy()  # the same comment about another group
    swapped[np.arange(60), 1 + group[:60]] -= 2.0
    swapped[np.arange(60), 1 + (group[:60] + 1) % 3] += 2.0
    splits = text_splits(ds)
    model, _ = load_text_head("shortcut-test", torch.from_numpy(x[splits.fit]), torch.from_numpy(labels[splits.fit]))
    data = bias_data(labels, membership, GROUPS, splits, x, x[:60], swapped, group[:60])
    return model, BiasTask(data, samples_per_set=64)


@pytest.fixture(scope="module")
def shortcut():
    model, task = shortcut_task()
    return model, task, evaluate_bias(model, task)


def test_original_head_uses_the_group_shortcut(shortcut):
    _, _, before = shortcut
    assert before["overall_auc"] > 0.75  # a useful classifier ...
    assert before["worst_group_bias_auc"] < before["overall_auc"] - 0.1  # ... unfair across groups
    assert before["group_probe_acc"] > 0.75  # the group is plain to read in its features (chance 1/3)


# Erasing the group costs accuracy here by design: the group really predicts the label in this
# data (80% vs 20% harmful), and the harm direction correlates with it, so LEACE removes part
# of both (measured: overall AUC 0.80 -> 0.62-0.65 over seeds 0-2, worst-group AUC 0.15 -> 0.54+).
AUC_DROP_AT_MOST = {"reweighted_finetune": 0.04, "leace": 0.2}


@pytest.mark.parametrize("name", baselines_for("bias"))
def test_each_bias_baseline_raises_worst_group_auc(name, shortcut):
    model, task, before = shortcut
    state = {k: v.clone() for k, v in model.state_dict().items()}
    edited, seconds = run_baseline(name, model, task, BaselineSettings(seed=0), task="bias")
    after = evaluate_bias(edited, task)
    assert after["worst_group_bias_auc"] >= before["worst_group_bias_auc"] + 0.05, (before, after)
    assert after["bias_score"] > before["bias_score"] + 0.02, (before, after)
    assert after["overall_auc"] >= before["overall_auc"] - AUC_DROP_AT_MOST[name], (before, after)
    assert seconds > 0
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # never in place
    if name == "leace":  # the head now sees erased embeddings: the group is far harder to read
        assert after["group_probe_acc"] < before["group_probe_acc"] - 0.2, (before, after)


def test_bias_baselines_are_seeded_and_the_seed_matters(shortcut):
    model, task, _ = shortcut
    run = lambda seed: run_baseline("reweighted_finetune", model, task, BaselineSettings(seed=seed), task="bias")[0]
    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_balanced_weights_give_every_group_label_cell_the_same_weight(shortcut):
    _, task, _ = shortcut
    rows = train_side(task)
    assert len(rows.y) == len(task.data.fit.y) + len(task.data.reward.y)  # never validation or test
    w, cell = balanced_weights(rows), cells(rows)
    totals = torch.stack([w[cell == c].sum() for c in torch.unique(cell)])
    assert torch.allclose(totals, totals[0].expand_as(totals), rtol=1e-5)
    assert w.mean() == pytest.approx(1.0)
    # Harmful group-c comments are common, so each weighs less than a rare harmful group-a one.
    assert w[cell == 2 * 2 + 1][0] < w[cell == 0 * 2 + 1][0]


def test_leace_eraser_removes_linear_group_information():
    rng = np.random.default_rng(1)
    group = rng.integers(0, 4, 2000)
    x = rng.normal(0, 1, (2000, 12)) + 2.0 * np.eye(12)[group] + 0.5 * np.eye(12)[group + 4]
    concept = torch.nn.functional.one_hot(torch.from_numpy(group), 4).float()
    erase = fit_eraser(torch.from_numpy(x).float(), concept)
    with torch.no_grad():
        erased = erase(torch.from_numpy(x).float()).numpy()
    # LEACE's guarantee: every group's mean equals the overall mean (no linear signal left) ...
    means = np.stack([erased[group == g].mean(0) for g in range(4)])
    assert np.abs(means - erased.mean(0)).max() < 1e-3
    # ... so a linear probe falls from near-perfect to chance (1/4), while the edit is small.
    half = slice(0, 1000), slice(1000, 2000)
    assert probe_accuracy(x[half[0]], group[half[0]], x[half[1]], group[half[1]]) > 0.8
    assert probe_accuracy(erased[half[0]], group[half[0]], erased[half[1]], group[half[1]]) < 0.35
    assert np.linalg.norm(erased - x, axis=1).mean() < np.linalg.norm(x, axis=1).mean()


def test_registry_serves_each_task_its_own_methods():
    assert baselines_for("bias") == ["reweighted_finetune", "leace"]
    assert set(baselines_for("unlearning")) | set(baselines_for("bias")) == set(BASELINES)
    with pytest.raises(UserError, match="unknown bias baseline 'ssd': choose one of reweighted_finetune, leace"):
        get_baseline("ssd", task="bias")
    with pytest.raises(UserError, match="leace: unknown hyper-parameter 'steps'"):
        run_baseline("leace", torch.nn.Linear(2, 2), None, BaselineSettings(overrides={"steps": 3}))


def test_a_pool_outside_the_train_side_is_refused(shortcut):
    model, task, _ = shortcut
    with pytest.raises(UserError, match="train on fit and reward only \\(got pool 'test'\\)"):
        run_baseline("reweighted_finetune", model, task, BaselineSettings(overrides={"pools": ("fit", "test")}))


# ----------------------------------------------------------------------------- rledit compare --task bias
def write_jigsaw_shortcut(path, rows=240):
    """A Kaggle-schema CSV whose texts the real encoder embeds (the compare path end to end)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    identities = ["male", "female", "black", "white", "muslim", "jewish", "christian",
                  "homosexual_gay_or_lesbian", "psychiatric_or_mental_illness"]
    harmful = rng.uniform(0, 1, rows) < 0.4
    words = np.where(harmful, "you are stupid and I hate", "what a lovely day with")
    who = rng.integers(0, 3, rows)
    names = np.array(["the women", "my muslim neighbours", "those people"])[who]
    table = {"comment_text": [f"{w} {n} number {i}" for i, (w, n) in enumerate(zip(words, names))],
             "target": np.where(harmful, 0.9, 0.1)}
    for col in identities:
        table[col] = 0.0
    table["female"] = np.where(who == 0, 1.0, 0.0)
    table["muslim"] = np.where(who == 1, 1.0, 0.0)
    pd.DataFrame(table).to_csv(path, index=False)


def test_compare_bias_baselines(tmp_path):
    data = tmp_path / "jigsaw.csv"
    write_jigsaw_shortcut(data)
    out = tmp_path / "cmp"
    args = ["compare", "--task", "bias", "--dataset", "jigsaw", "--data-root", str(data), "--seeds", "2",
            "--methods", "original", "reweighted_finetune", "leace", "--out", str(out)]
    assert main(args) == 0
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    methods = ("original", "reweighted_finetune", "leace")
    assert [(r["method"], r["seed"]) for r in rows] == [(m, s) for m in ("leace", "original", "reweighted_finetune")
                                                       for s in "01"]
    for col in ("overall_auc", "bias_score", "final_score", "worst_group_bias_auc", "worst_group_acc",
                "counterfactual_gap", "group_probe_acc", "time_s", "bpsn_auc_female", "bnsp_auc_muslim"):
        assert col in rows[0], col
    assert all(0 <= float(r["overall_auc"]) <= 1 for r in rows)
    md = (out / "comparison.md").read_text()
    assert all(f"| {m} | 2 |" in md for m in methods) and "worst-group BPSN/BNSP AUC" in md
    assert md.index("| original |") < md.index("| reweighted_finetune |") < md.index("| leace |")
    assert (out / "comparison.png").stat().st_size > 0
    row = json.loads((out / "rows" / "leace-seed1.json").read_text())
    assert row["task"] == "bias" and row["seed"] == 1
    assert main(args) == 0  # resumes: nothing to redo, the same table
    assert (out / "comparison.md").read_text() == md
    # An unlearning comparison cannot land in the same folder.
    assert main(["compare", "--dataset", "digits", "--methods", "original", "--out", str(out)]) == 2


@pytest.mark.parametrize("args, message", [
    (["--methods", "ssd"], "unknown method 'ssd' for --task bias: choose original, reweighted_finetune, leace"),
    (["--methods", "rl_mask_fc9"], "unknown layer or parameter 'fc9'"),
])
def test_compare_bias_refuses_bad_input_in_one_line(args, message, tmp_path, capsys):
    data = tmp_path / "jigsaw.csv"
    write_jigsaw_shortcut(data, rows=60)
    assert main(["compare", "--task", "bias", "--dataset", "jigsaw", "--data-root", str(data),
                 "--out", str(tmp_path / "c"), *args]) == 2
    # (Under pytest logging is unconfigured, so the world's one device line lands on stderr too.)
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("worlds in process")]
    assert len(err) == 1 and message in err[0], err


@pytest.mark.slow
def test_compare_bias_with_rl_rows(tmp_path):
    """RL rows train with `rledit train --task bias` on the same splits; the compare row is the
    run's own test result (same weights, same rows)."""
    data = tmp_path / "jigsaw.csv"
    write_jigsaw_shortcut(data)
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(yaml.safe_dump({"samples": {"per_set": 32}, "training": {"iterations": 2},
                                   "agent": {"train_batch_size": 200, "minibatch_size": 50, "num_epochs": 2}}))
    out = tmp_path / "cmp"
    assert main(["compare", "--task", "bias", "--dataset", "jigsaw", "--data-root", str(data), "--seeds", "1",
                 "--config", str(cfg), "--methods", "original", "rl_shift", "--out", str(out)]) == 0
    rows = {r["method"]: r for r in csv.DictReader((out / "comparison.csv").open())}
    run = json.loads((out / "runs" / "rl_shift-seed0" / "metrics.json").read_text())
    assert run["task"] == "bias" and run["world"] == "shift" and run["iterations"] == 2
    assert float(rows["rl_shift"]["time_s"]) == pytest.approx(run["wall_time_s"])
    assert 0 < float(rows["rl_shift"]["overall_auc"]) <= 1
    # (On 48 test rows some group metrics lack a class and are NaN in both.)
    for key in ("overall_auc", "bias_score", "worst_group_bias_auc", "counterfactual_gap"):
        assert float(rows["rl_shift"][key]) == pytest.approx(run["after"][key], nan_ok=True)
        assert float(rows["original"][key]) == pytest.approx(run["before"][key], nan_ok=True)
