"""Hand-designed unlearning baselines, the shared evaluation and `rledit compare`, on digits."""
import copy
import csv
import json

import numpy as np
import pytest
import torch
import yaml

from rledit_ray.baselines import BASELINES, BaselineSettings, baselines_for, get_baseline, run_baseline
from rledit_ray.cli import main
from rledit_ray.data import unlearning_splits
from rledit_ray.errors import UserError
from rledit_ray.evaluation import evaluate_unlearning, gap_to_retrain, mia_efficacy, probe_accuracy

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits(digits_target):
    ds, model = digits_target
    model = copy.deepcopy(model)
    splits = unlearning_splits(ds, [3])
    return model, splits, evaluate_unlearning(model, splits)


# Finetuning only forgets by interference: on digits it removes about a third of the class.
FORGET_AT_MOST = {"finetune": 0.85}


@pytest.mark.parametrize("name", baselines_for("unlearning"))
def test_each_baseline_forgets_and_keeps_the_rest(name, digits):
    model, splits, before = digits
    state = {k: v.clone() for k, v in model.state_dict().items()}
    edited, seconds = run_baseline(name, model, splits, BaselineSettings(seed=0, dataset="digits"), task="unlearning")
    after = evaluate_unlearning(edited, splits)
    assert before["forget_train_acc"] > 0.95
    assert after["forget_train_acc"] <= FORGET_AT_MOST.get(name, 0.1), after
    assert after["forget_acc"] <= FORGET_AT_MOST.get(name, 0.2), after  # held-out images too
    assert after["retain_acc"] >= before["retain_acc"] - 0.06, (before, after)
    assert after["mia_efficacy"] > before["mia_efficacy"]  # the forget set looks less like training data
    assert seconds > 0
    # The caller's network is never edited in place.
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_registry_dispatches_by_name_and_refuses_unknown_names():
    assert baselines_for("unlearning") == ["retrain", "finetune", "gradient_ascent", "neggrad_plus",
                                           "random_labels", "ssd"]
    assert get_baseline("ssd") is BASELINES["ssd"] and BASELINES["ssd"].task == "unlearning"
    with pytest.raises(UserError, match="unknown unlearning baseline 'scrub': choose one of retrain") as err:
        get_baseline("scrub", task="unlearning")
    assert "\n" not in str(err.value)


def test_unknown_hyper_parameter_is_one_line(digits):
    model, splits, _ = digits
    with pytest.raises(UserError, match="finetune: unknown hyper-parameter 'learning_rate'"):
        run_baseline("finetune", model, splits, BaselineSettings(overrides={"learning_rate": 0.1}))


def test_baselines_are_seeded(digits):
    model, splits, _ = digits
    a, _ = run_baseline("neggrad_plus", model, splits, BaselineSettings(seed=3, overrides={"steps": 5}))
    b, _ = run_baseline("neggrad_plus", model, splits, BaselineSettings(seed=3, overrides={"steps": 5}))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_mia_on_a_model_perfectly_confident_on_members():
    rng = np.random.default_rng(0)
    members = np.ones(500)  # p(true label) = 1 on every training image
    non_members = rng.uniform(0.0, 0.7, 500)
    assert mia_efficacy(members, non_members, np.ones(200)) == 0.0  # looks exactly like training data
    assert mia_efficacy(members, non_members, rng.uniform(0.0, 0.5, 200)) == 1.0  # looks unseen


def test_probe_recovers_a_linear_signal_and_not_noise():
    rng = np.random.default_rng(0)
    y_tr, y_te = rng.integers(0, 2, 600), rng.integers(0, 2, 400)
    signal = lambda y: rng.normal(size=(len(y), 8)) + 3.0 * y[:, None] * np.eye(8)[0]
    assert probe_accuracy(signal(y_tr), y_tr, signal(y_te), y_te) > 0.9
    noise = lambda y: rng.normal(size=(len(y), 8))
    assert abs(probe_accuracy(noise(y_tr), y_tr, noise(y_te), y_te) - 0.5) < 0.1


def test_gap_to_retrain():
    r = {"ua": 1.0, "retain_train_acc": 0.99, "retain_acc": 0.98, "mia_efficacy": 1.0}
    assert gap_to_retrain(r, r) == 0.0
    assert gap_to_retrain({**r, "ua": 0.6, "mia_efficacy": 0.6}, r) == pytest.approx(0.2)


def test_evaluation_of_the_original_network(digits):
    _, _, m = digits
    assert m["forget_train_acc"] > 0.95 and m["ua"] < 0.05
    assert m["mia_efficacy"] < 0.2  # the forget set is training data and the attack sees it
    assert m["probe_acc"] > 0.9  # the class is linearly present in the penultimate features
    assert m["relearn_steps"] == 0  # it never forgot


def test_relearning_a_hidden_class_is_fast_and_a_removed_one_slow(digits):
    """Zeroing the class's output row hides it (the features still hold it): a few steps bring
    it back. Retraining without the class leaves nothing to bring back."""
    from rledit_ray.evaluation import RELEARN_MAX_STEPS, relearn_steps

    model, splits, _ = digits
    hidden = copy.deepcopy(model)
    with torch.no_grad():
        hidden.fc2.weight[3] = 0.0
        hidden.fc2.bias[3] = -10.0
    removed, _ = run_baseline("retrain", model, splits, BaselineSettings(seed=0, dataset="digits"), task="unlearning")
    fast = relearn_steps(hidden, splits.forget_train, splits.forget_test)
    slow = relearn_steps(removed, splits.forget_train, splits.forget_test)
    assert 0 < fast < slow <= RELEARN_MAX_STEPS + 1, (fast, slow)


def test_compare_baselines_on_digits(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--dataset", "digits", "--forget-class", "3", "--seeds", "2",
            "--methods", "original", "retrain", "ssd", "--out", str(out)]
    assert main(args) == 0
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [(r["method"], r["seed"]) for r in rows] == [(m, s) for m in ("original", "retrain", "ssd") for s in "01"]
    for col in ("ua", "retain_train_acc", "retain_acc", "forget_acc", "mia_efficacy", "probe_acc",
                "relearn_steps", "gap_to_retrain", "time_s"):
        assert col in rows[0]
    by = {(r["method"], r["seed"]): r for r in rows}
    assert float(by[("retrain", "0")]["gap_to_retrain"]) == 0.0
    assert float(by[("original", "0")]["gap_to_retrain"]) > float(by[("ssd", "0")]["gap_to_retrain"])
    md = (out / "comparison.md").read_text()
    assert "| ssd | 2 |" in md and " ± " in md
    assert (out / "comparison.png").stat().st_size > 0
    # A second call resumes: nothing to redo, the same table.
    assert main(args) == 0
    assert (out / "comparison.md").read_text() == md


def test_compare_targets_only_leaves_out_the_tests_of_depth(tmp_path):
    """--metrics targets: the accuracies an edit is verified by, none of the MIA, probe, relearn."""
    out = tmp_path / "cmp"
    assert main(["compare", "--dataset", "digits", "--forget-class", "3", "--seeds", "1", "--metrics", "targets",
                 "--methods", "original", "retrain", "neggrad_plus", "--out", str(out)]) == 0
    rows = {r["method"]: r for r in csv.DictReader((out / "comparison.csv").open())}
    assert float(rows["neggrad_plus"]["forget_acc"]) < float(rows["original"]["forget_acc"])
    for row in rows.values():
        assert not {"mia_efficacy", "probe_acc", "relearn_steps"} & {k for k, v in row.items() if v}, row
        assert row["gap_to_retrain"] == "nan"
    assert "n/a: not measured (`--metrics targets`" in (out / "comparison.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--methods", "scrub"], "unknown method 'scrub'"),
    (["--methods", "rl_mask_fc9"], "unknown layer or parameter 'fc9'"),
    (["--task", "painting"], "compare: unknown task 'painting': choose unlearning or bias"),
    (["--methods", "leace"], "unknown method 'leace' for --task unlearning"),
    (["--rl-run", "rl_mask=runs/x"], "expected METHOD:SEED=RUN_DIR"),
])
def test_compare_refuses_bad_input_in_one_line(args, message, tmp_path, capsys):
    assert main(["compare", "--dataset", "digits", "--out", str(tmp_path / "c"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.slow
def test_compare_with_rl_rows_on_digits(tmp_path):
    """RL rows train with `rledit train` on the same splits, and an fc1 row edits the earlier layer."""
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(yaml.safe_dump({"samples": {"per_set": 64}, "training": {"iterations": 2},
                                   "agent": {"train_batch_size": 200, "minibatch_size": 50, "num_epochs": 4}}))
    out = tmp_path / "cmp"
    assert main(["compare", "--dataset", "digits", "--forget-class", "3", "--seeds", "1", "--config", str(cfg),
                 "--methods", "original", "rl_mask", "rl_mask_fc1", "es_shift_fc1", "--out", str(out)]) == 0
    rows = {r["method"]: r for r in csv.DictReader((out / "comparison.csv").open())}
    assert set(rows) == {"original", "rl_mask", "rl_mask_fc1", "es_shift_fc1"}
    run = json.loads((out / "runs" / "rl_mask_fc1-seed0" / "metrics.json").read_text())
    assert run["edit"] == ["fc1"] and run["seed"] == 0 and run["dataset"] == "digits"
    es = json.loads((out / "runs" / "es_shift_fc1-seed0" / "metrics.json").read_text())
    assert (es["algorithm"], es["world"], es["edit"], run["algorithm"]) == ("es", "shift", ["fc1"], "ppo")
    assert float(rows["rl_mask"]["time_s"]) > 0
    # The reported accuracy is the run's own test accuracy: the same weights, the same images.
    assert float(rows["rl_mask"]["forget_acc"]) == pytest.approx(
        json.loads((out / "runs" / "rl_mask-seed0" / "metrics.json").read_text())["after"]["forget_acc"])
