"""Bias task: text loaders and splits, embedding cache, head, task in both worlds, config."""
import numpy as np
import pytest
import torch
from conftest import FAST_BIAS
from gymnasium.utils.env_checker import check_env

from rledit_ray.config import build_config
from rledit_ray.data.text import TextDataset, load_jigsaw, load_redditbias, text_splits
from rledit_ray.errors import UserError
from rledit_ray.targets.text_head import load_text_head
from rledit_ray.tasks import bias_metrics as bm
from rledit_ray.tasks.bias import BiasTask, bias_data, soft_auc
from rledit_ray.worlds import MaskWorld, ShiftWorld, WorldSettings

JIGSAW_COLUMNS = ["id", "comment_text", "target", "male", "female", "black", "white", "muslim", "jewish",
                  "christian", "homosexual_gay_or_lesbian", "psychiatric_or_mental_illness"]


def write_jigsaw(path, rows=60, drop=None):
    import pandas as pd

    rng = np.random.default_rng(0)
    table = {"id": np.arange(rows), "comment_text": [f"comment number {i} says something" for i in range(rows)],
             "target": rng.uniform(0, 1, rows)}
    for col in JIGSAW_COLUMNS[3:]:
        table[col] = np.where(rng.uniform(0, 1, rows) < 0.3, rng.uniform(0.5, 1, rows), 0.0)
    table["female"][:5] = np.nan  # unannotated rows: background only
    frame = pd.DataFrame(table)
    if drop:
        frame = frame.drop(columns=[drop])
    frame.to_csv(path, index=False)
    return frame


# ----------------------------------------------------------------------------- data
def test_jigsaw_loader_reads_the_kaggle_schema(tmp_path):
    frame = write_jigsaw(tmp_path / "train.csv")
    ds = load_jigsaw(tmp_path / "train.csv")
    assert len(ds) == 60 and ds.groups[:2] == ("male", "female")
    assert ds.labels.tolist() == (frame["target"] >= 0.5).astype(int).tolist()
    assert ds.membership.shape == (60, 9)
    assert ds.membership[:, 1].tolist() == (frame["female"].fillna(0) >= 0.5).tolist()
    assert ds.pairs == []


def test_jigsaw_csv_missing_a_column_is_one_line(tmp_path):
    write_jigsaw(tmp_path / "bad.csv", drop="black")
    with pytest.raises(UserError, match=r"lacks column 'black'") as err:
        load_jigsaw(tmp_path / "bad.csv")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="does not exist"):
        load_jigsaw(tmp_path / "nope.csv")


def test_redditbias_has_five_groups_and_clean_labels():
    ds = load_redditbias()
    assert ds.groups == ("female", "black", "jews", "lgbtq", "muslims")
    assert 11000 < len(ds) < 12000 and set(np.unique(ds.labels)) == {0, 1}
    assert (ds.membership.sum(1) == 1).all()  # one group per row
    assert ds.membership.sum(0).min() > 1500
    assert len(ds.pairs) > 1000 and {g for _, _, g in ds.pairs} == set(range(5))
    original, swapped, _ = ds.pairs[0]
    assert original != swapped


def test_splits_are_disjoint_deterministic_and_stratified():
    ds = load_redditbias()
    a, b = text_splits(ds), text_splits(ds)
    pools = (a.fit, a.reward, a.validation, a.test)
    assert sum(len(p) for p in pools) == len(ds)
    assert len(np.unique(np.concatenate(pools))) == len(ds)
    assert all((x == y).all() for x, y in zip(pools, (b.fit, b.reward, b.validation, b.test)))
    share = ds.membership.mean(0)
    for pool in pools:
        assert np.abs(ds.membership[pool].mean(0) - share).max() < 0.01
        assert abs(ds.labels[pool].mean() - ds.labels.mean()) < 0.01
    assert not set(a.pairs_reward) & set(a.pairs_test)


# ----------------------------------------------------------------------------- encoder
def test_embedding_cache_hit_does_not_run_the_encoder(monkeypatch):
    from rledit_ray.targets import encoder

    encoded = []
    real_encode = encoder._encode
    monkeypatch.setattr(encoder, "_encode", lambda texts, path: encoded.append(len(texts)) or real_encode(texts, path))
    texts = ["women are great engineers", "muslims are my neighbours", f"cache probe {np.random.rand()}"]
    first = encoder.embed_texts(texts)
    assert encoded == [3]
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    second = encoder.embed_texts(texts)
    assert encoded == [3]  # served from disk
    assert np.array_equal(first, second)
    encoder.embed_texts(texts[:2])  # other content, other key
    assert encoded == [3, 2]


# ----------------------------------------------------------------------------- task
def synthetic_text_data(n=600, groups=("a", "b", "c"), seed=0):
    """Embeddings where the label is linearly readable and group c is scored too high."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, len(groups), n)
    labels = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 16)).astype(np.float32)
    x[:, 0] += 1.5 * labels
    x[np.arange(n), 1 + group] += 2.0
    membership = np.zeros((n, len(groups)), bool)
    membership[np.arange(n), group] = True
    ds = TextDataset("synthetic", "test", [f"t{i}" for i in range(n)], labels.astype(np.int64), tuple(groups),
                     membership, [(f"t{i}", f"s{i}", int(group[i])) for i in range(40)])
    pair_x = x[:40] + rng.normal(0, 0.1, (40, 16)).astype(np.float32)
    return ds, x, pair_x


def synthetic_world(world_cls, objective="bias_score"):
    ds, x, pair_x = synthetic_text_data()
    splits = text_splits(ds)
    y_fit = torch.from_numpy(ds.labels[splits.fit])
    # Teach the head a biased rule: group c rows count as harmful.
    biased = y_fit | torch.from_numpy(ds.membership[splits.fit, 2]).long()
    model, _ = load_text_head("synthetic-test", torch.from_numpy(x[splits.fit]), biased)
    data = bias_data(ds.labels, ds.membership, ds.groups, splits, x, x[:40], pair_x,
                     np.array([g for _, _, g in ds.pairs]))
    task = BiasTask(data, samples_per_set=64, objective=objective)
    return world_cls(model, ["fc2"], task, WorldSettings(step_size=0.5, episode_length=3))


@pytest.mark.parametrize("world_cls", [MaskWorld, ShiftWorld])
def test_bias_task_passes_gymnasium_env_checker(world_cls):
    world = synthetic_world(world_cls)
    check_env(world, skip_render_check=True)
    obs, info = world.reset(seed=0)
    assert set(BiasTask.observed_terms) <= set(info)
    obs, reward, terminated, _, info = world.step(world.action_space.sample())
    assert np.isfinite(reward) and 0 <= info["utility"] <= 1 and 0 <= info["objective"] <= 1


def test_world_scores_match_the_full_network_and_metrics_are_complete():
    world = synthetic_world(MaskWorld)
    world.reset(seed=0)
    world.step(world.action_space.sample())
    test = world.task.data.test
    full = world.model(test.x).softmax(1)[:, 1]
    assert torch.allclose(world.scores("test", test), full, atol=1e-6)
    m = world.task_metrics()
    for key in ("overall_auc", "bias_score", "final_score", "worst_group_acc", "counterfactual_gap",
                "bias_score_val", "overall_auc_val"):
        assert 0.0 <= m[key] <= 1.0, key
    assert set(m["groups"]) == {"a", "b", "c"}
    assert set(bm.GROUP_AUCS) <= set(m["groups"]["a"])
    # the biased head: group c negatives are scored high, so its BPSN AUC is the worst
    assert m["groups"]["c"]["bpsn_auc"] == min(g["bpsn_auc"] for g in m["groups"].values())


def test_soft_auc_approaches_the_exact_auc():
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.integers(0, 2, 300)).bool()
    z = torch.from_numpy(rng.normal(0, 1, 300)) + y.double()
    exact = bm.auc(z.numpy(), y.numpy())
    assert float(soft_auc(z, y, ~y, tau=0.01)) == pytest.approx(exact, abs=0.03)
    # scale-blindness comes from standardising before the sigmoid (see BiasTask.reward_terms)
    assert float(soft_auc(z, y, ~y, tau=1.0)) < float(soft_auc(z, y, ~y, tau=0.1))


@pytest.mark.parametrize("objective", ["bias_score", "worst_group", "counterfactual_gap"])
def test_every_objective_gives_a_reward(objective):
    world = synthetic_world(ShiftWorld, objective)
    world.reset(seed=0)
    _, _, _, _, info = world.step(np.ones(world.action_space.shape, np.float32) * 0.5)
    assert 0 <= info["objective"] <= 1


def test_reward_tensors_are_the_reward_and_their_gradient_raises_it():
    world = synthetic_world(MaskWorld, "worst_group")
    task, ref = world.task, world.reference_logits.clone()
    logits = ref.clone().requires_grad_(True)
    terms = task.reward_tensors(logits, ref)
    assert {k: float(v) for k, v in terms.items()} == pytest.approx(task.reward_terms(ref, ref))
    terms["objective"].backward()
    stepped = (logits + 0.5 * logits.grad / logits.grad.norm()).detach()
    assert task.reward_terms(stepped, ref)["objective"] > task.reward_terms(ref, ref)["objective"]


def test_calibration_term_charges_a_moved_threshold_only():
    world = synthetic_world(MaskWorld)
    task = world.task
    ref = world.reference_logits
    shifted = ref + torch.tensor([0.0, 2.0])  # every score up: same ranking, more flagged harmful
    plain = task.reward_terms(shifted, ref)["utility"]
    task.calibration_coef = 2.0
    assert task.reward_terms(ref, ref)["utility"] == pytest.approx(plain, abs=1e-6)
    assert task.reward_terms(shifted, ref)["utility"] < plain - 0.1


# ----------------------------------------------------------------------------- config
def test_bias_config_defaults_and_errors():
    cfg = build_config({"task": "bias"})
    assert cfg.dataset == "redditbias" and cfg.edit == ["fc2.weight", "fc2.bias"]
    assert cfg.reward.utility_coef == 2.0 and cfg.bias.objective == "worst_group"
    assert build_config({"task": "bias", "edit": ["fc1"]}).edit == ["fc1"]
    assert build_config({"task": "bias", "reward": {"utility_coef": 5}}).reward.utility_coef == 5
    assert build_config({}).dataset == "mnist"  # unlearning keeps its defaults
    with pytest.raises(UserError, match="dataset 'mnist' does not fit task 'bias'"):
        build_config({"task": "bias", "dataset": "mnist"})
    with pytest.raises(UserError, match=r"bias.objective: Input should be"):
        build_config({"task": "bias", "bias": {"objective": "vibes"}})
    with pytest.raises(UserError, match=r"bias.temperature"):
        build_config({"task": "bias", "bias": {"temperature": 0}})


def test_reward_pairs_can_be_left_out_unless_the_objective_scores_them():
    ds, x, pair_x = synthetic_text_data()
    data = bias_data(ds.labels, ds.membership, ds.groups, text_splits(ds), x, x[:40], pair_x,
                     np.array([g for _, _, g in ds.pairs]))
    task = BiasTask(data, samples_per_set=64, objective="worst_group", pairs_per_set=0)
    assert task.n_pairs == 0 and len(task.reward_x) == task.n_samples
    logits = torch.randn(len(task.reward_x), 2)
    assert float(task.reward_tensors(logits, logits)["gap_reward"]) == 0.0
    with pytest.raises(UserError, match="set bias.pairs_per_set above 0"):
        BiasTask(data, objective="counterfactual_gap", pairs_per_set=0)


def test_jigsaw_without_a_csv_is_one_line(tmp_path, capsys):
    from rledit_ray.cli import main

    assert main(["train", "--task", "bias", "--dataset", "jigsaw", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs its CSV" in err[0]


# ----------------------------------------------------------------------------- end to end


def _train(tmp_path, config: dict, *flags):
    import yaml

    from rledit_ray.cli import main

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(run), *flags]) == 0
    return run


def _check_run(run, groups):
    import json

    m = json.loads((run / "metrics.json").read_text())
    assert m["task"] == "bias" and "forget_classes" not in m
    for when in ("before", "after"):
        for key in ("overall_auc", "bias_score", "final_score", "worst_group_acc", "counterfactual_gap"):
            assert key in m[when], key
        assert set(m[when]["groups"]) == set(groups)
        for g in m[when]["groups"].values():
            assert {"subgroup_auc", "bpsn_auc", "bnsp_auc"} <= set(g)
    assert set(m["intervals"]) == {"overall_auc", "bias_score", "worst_group_bias_auc", "counterfactual_gap"}
    report = (run / "report.md").read_text()
    assert "## Per-group metrics (test)" in report and "| bias score (test) |" in report
    for name in ("curves.png", "edited_weights.safetensors", "checkpoint/rledit_config.yaml"):
        assert (run / name).exists(), name
    return m


@pytest.mark.slow
def test_train_bias_on_a_jigsaw_csv_end_to_end(tmp_path, monkeypatch):
    """A tiny Jigsaw-schema file through the whole CLI: encoder, head, PPO, report, and
    `rledit edit` replaying the saved policy (from a relative checkpoint path)."""
    import json

    from rledit_ray.cli import main

    write_jigsaw(tmp_path / "jigsaw.csv", rows=240)
    config = {**FAST_BIAS, "dataset": "jigsaw", "data_root": str(tmp_path / "jigsaw.csv")}
    m = _check_run(_train(tmp_path, config, "--world", "shift"), JIGSAW_COLUMNS[3:])
    assert m["world"] == "shift"
    monkeypatch.chdir(tmp_path)
    assert main(["edit", "--checkpoint", "run", "--out", "edited"]) == 0
    replay = json.loads((tmp_path / "edited" / "metrics.json").read_text())["after"]
    for key in ("overall_auc", "bias_score", "worst_group_bias_auc"):
        assert replay[key] == pytest.approx(m["after"][key], nan_ok=True)


@pytest.mark.slow
def test_train_bias_on_redditbias_end_to_end(tmp_path):
    """The default data (embeds ~11.5k texts once: minutes on 2 cores, then cached)."""
    m = _check_run(_train(tmp_path, FAST_BIAS), ("female", "black", "jews", "lgbtq", "muslims"))
    assert 0.75 < m["before"]["overall_auc"] < 0.9
    assert m["before"]["counterfactual_gap"] > 0


# ----------------------------------------------------------------------------- editing the encoder
def _jigsaw_config(tmp_path, **fields) -> dict:
    write_jigsaw(tmp_path / "jigsaw.csv", rows=240)
    return {"task": "bias", "dataset": "jigsaw", "data_root": str(tmp_path / "jigsaw.csv"),
            "samples": {"per_set": 16}, **fields}


def test_an_edit_of_the_encoder_puts_the_encoder_in_the_target(tmp_path):
    """`minilm.<module>` edits MiniLM itself: the target becomes encoder + pooling + the same
    head on token ids, scoring exactly as the head on the cached embeddings does."""
    from rledit_ray.build import build_world
    from rledit_ray.targets.sentence_classifier import SentenceClassifier

    base = _jigsaw_config(tmp_path, world="shift", episode_length=1)
    head_world = build_world(build_config(base))
    world = build_world(build_config({**base, "edit": ["minilm.encoder.layer.5.output.dense"]}))
    assert isinstance(world.model, SentenceClassifier) and world.split.kind == "memo"
    assert [(layer.rows, layer.cols) for layer in world.layers] == [(384, 1537)]
    test = world.task.data.test
    assert test.x.dtype == torch.long and test.x.shape[1] == 2  # token ids and attention masks
    torch.testing.assert_close(world.scores("test", test), head_world.scores("test", head_world.task.data.test),
                               atol=1e-5, rtol=1e-5)
    world.reset(seed=0)
    before = world.scores("test", test).clone()
    # Not a constant action: a constant added to the matrix shifts every output alike, which the
    # LayerNorm after it removes.
    _, reward, _, _, info = world.step(np.random.default_rng(0).uniform(-1, 1, world.action_space.shape).astype(np.float32))
    assert np.isfinite(reward) and (world.scores("test", test) - before).abs().max() > 1e-3
    with pytest.raises(UserError, match="minilm.encoder.layer.9"):
        build_world(build_config({**base, "edit": ["minilm.encoder.layer.9.output.dense"]}))


def _full_pass_logits(world) -> torch.Tensor:
    """The world's reward logits from the model's own pass over the weights it wrote (its
    low-rank edit hidden: the instance attribute shadows the method)."""
    world.low_rank_edit = lambda: None
    try:
        return world.reward_logits()
    finally:
        del world.low_rank_edit


@pytest.mark.parametrize("factor_basis", [0, [8, 32]])
def test_an_edit_of_the_encoders_last_ffn_output_is_scored_in_closed_form_as_its_weights_score(
        tmp_path, factor_basis):
    """ShiftWorld's low-rank edit of the last FFN output goes through the LayerNorm and the
    pooling in closed form (targets/pooled_tail.py): the logits the weights written into the
    whole model give, step after step, and the closed form is what was used."""
    from rledit_ray.build import build_world

    config = _jigsaw_config(tmp_path, world="shift", edit=["minilm.encoder.layer.5.output.dense"], rank=2,
                            episode_length=3, factor_basis=factor_basis)
    world = build_world(build_config(config))
    rng = np.random.default_rng(0)
    world.reset(seed=0)
    for _ in range(3):  # the rank grows with each step: 2, 4, 6
        world.step(rng.uniform(-1, 1, world.action_space.shape).astype(np.float32))
        closed = world.reward_logits().clone()
        torch.testing.assert_close(closed, _full_pass_logits(world), atol=1e-5, rtol=1e-5)
    tails = [value for _, records in world.reward_h.chunks for key, value in records.items()
             if key[0] == "<pooled tail>"]
    assert tails and all(tail is not None for tail in tails)


def test_a_world_batch_scores_its_encoder_edits_together_as_each_world_alone(tmp_path, monkeypatch):
    """Sub-envs of one EnvRunner (WorldBatch) score their low-rank edits of the encoder in one
    closed-form pass; each world's rewards are those of its own full forward pass."""
    from rledit_ray.build import build_parts, build_world
    from rledit_ray.targets.memo import MemoSplit
    from rledit_ray.worlds import WorldBatch

    config = build_config(_jigsaw_config(tmp_path, world="shift", edit=["minilm.encoder.layer.5.output.dense"],
                                         rank=2, episode_length=2, factor_basis=[8, 32]))
    parts = build_parts(config)
    batch = WorldBatch(lambda: build_world(config, parts), 3)
    stacked = []
    together = MemoSplit.closed_form_suffixes
    monkeypatch.setattr(MemoSplit, "closed_form_suffixes",
                        lambda self, cache, edits: stacked.append(len(edits)) or together(self, cache, edits))
    batch.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2):
        actions = rng.uniform(-1, 1, batch.action_space.shape).astype(np.float32)
        batch.step(actions)
        for world in batch.worlds:
            expected = world.reward_task.reward_terms(_full_pass_logits(world), world.reference_logits)
            assert world.terms == pytest.approx(expected, abs=1e-5)
    assert 3 in stacked


def test_a_closed_form_that_does_not_give_the_models_logits_is_not_used(tmp_path, monkeypatch, caplog):
    """A model that claims the closed form but pools otherwise (its first token, as BERT's CLS
    classifiers do): the check against the replay refuses the closed form, one log line says
    so, and the scores stay exact."""
    from rledit_ray.build import build_world
    from rledit_ray.targets.sentence_classifier import SentenceClassifier

    def first_token(self, input_ids, attention_mask):
        return self.pooled_logits(self.minilm(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0])

    monkeypatch.setattr(SentenceClassifier, "forward", first_token)
    config = _jigsaw_config(tmp_path, world="shift", edit=["minilm.encoder.layer.5.output.dense"], episode_length=1)
    world = build_world(build_config(config))
    world.reset(seed=0)
    world.step(np.random.default_rng(0).uniform(-1, 1, world.action_space.shape).astype(np.float32))
    replayed = world.reward_logits().clone()
    torch.testing.assert_close(replayed, _full_pass_logits(world), atol=1e-5, rtol=1e-5)
    assert "differs from the model's own pass" in caplog.text
    assert all(value is None for _, records in world.reward_h.chunks for key, value in records.items()
               if key[0] == "<pooled tail>")


@pytest.mark.slow
def test_es_edits_the_encoder_end_to_end_and_the_edit_replays(tmp_path, monkeypatch):
    import json

    from rledit_ray.cli import main

    config = _jigsaw_config(tmp_path, world="shift", edit=["minilm.encoder.layer.5.output.dense"], episode_length=1,
                            agent={"algorithm": "es", "es_population": 4}, training={"iterations": 2})
    m = _check_run(_train(tmp_path, config), JIGSAW_COLUMNS[3:])
    monkeypatch.chdir(tmp_path)
    assert main(["edit", "--checkpoint", "run", "--out", "edited"]) == 0
    replay = json.loads((tmp_path / "edited" / "metrics.json").read_text())["after"]
    for key in ("overall_auc", "bias_score", "worst_group_bias_auc"):
        assert replay[key] == pytest.approx(m["after"][key], nan_ok=True)
