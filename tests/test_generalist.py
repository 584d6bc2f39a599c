"""Generalist editors: requests described by data, a row-equivariant policy, serving a class
it never trained on. Digits and tiny slices keep it cheap."""
import copy
import json

import numpy as np
import pytest
import torch
import yaml
from conftest import FAST_GENERALIST, GENERALIST_TRAIN

from rledit_ray.cli import main
from rledit_ray.data.images import ImageDataset
from rledit_ray.errors import UserError
from rledit_ray.tasks.requests import UnlearningRequests
from rledit_ray.worlds import MaskWorld, WorldSettings
from rledit_ray.worlds.rowwise import unpack_observation

TRAIN = GENERALIST_TRAIN


@pytest.fixture(scope="module")
def digits(digits_target):
    ds, model = digits_target
    return ds, copy.deepcopy(model)


def rowwise_world(ds, model, train=TRAIN):
    requests = UnlearningRequests(ds, train, samples_per_set=32, seed=0, target_margin=-4.0)
    return MaskWorld(model, ["fc2"], None, WorldSettings(observation="rowwise"), requests=requests)


def observe(world, k):
    world.use_request(k)
    obs, _ = world.reset(seed=0)
    return unpack_observation(torch.as_tensor(obs)[None], world.obs_layout)


def test_relabelling_the_classes_permutes_the_request_features(digits):
    ds, model = digits
    perm = torch.tensor([3, 7, 0, 9, 1, 8, 2, 6, 4, 5])  # class c is called perm[c] after relabelling
    relabelled = ImageDataset("digits", ds.source, ds.x_train, perm[ds.y_train], ds.x_test, perm[ds.y_test])
    permuted_model = copy.deepcopy(model)
    inverse = torch.argsort(perm)  # row perm[c] of the new head = row c of the old one
    with torch.no_grad():
        permuted_model.fc2.weight.copy_(model.fc2.weight[inverse])
        permuted_model.fc2.bias.copy_(model.fc2.bias[inverse])

    k = 8
    a = observe(rowwise_world(ds, model), k)
    b = observe(rowwise_world(relabelled, permuted_model), int(perm[k]))
    torch.testing.assert_close(b["rows"][0][perm], a["rows"][0])
    torch.testing.assert_close(b["matrix"][0][perm], a["matrix"][0])
    torch.testing.assert_close(b["cols"], a["cols"])
    torch.testing.assert_close(b["globals"], a["globals"])


def test_the_request_is_visible_in_the_rows_not_an_index(digits):
    ds, model = digits
    world = rowwise_world(ds, model)
    for k in (3, 8):
        rows = observe(world, k)["rows"][0]
        # Column 3: share of retain samples labelled i; 0 only for the class being forgotten.
        assert rows[k, 3] == 0 and (np.delete(rows[:, 3].numpy(), k) > 0).all()
        # Column 0: the original network gives the forget samples to class k.
        assert int(rows[:, 0].argmax()) == k


def test_episodes_sample_training_requests_and_a_pinned_one_is_served(digits):
    ds, model = digits
    world = rowwise_world(ds, model, train=[1, 4])
    seen = set()
    for seed in range(12):
        world.reset(seed=seed)
        seen.add(world.request)
    assert seen == {1, 4}
    world.use_request(9)  # a held-out class: any class of the label set can be served
    world.reset(seed=0)
    assert world.request == 9 and world.task.splits.forget_test.y.unique().tolist() == [9]
    with pytest.raises(UserError, match="forget class 12 is outside the label set"):
        world.use_request(12)


def test_a_request_starts_from_the_original_network_whatever_came_before(digits):
    ds, model = digits
    world = rowwise_world(ds, model)
    fresh = observe(world, 3)
    world.use_request(5)
    world.reset(seed=0)
    world.step(np.full(world.action_space.shape, 0.9, np.float32))  # a large edit for request 5
    after_other = observe(world, 3)
    for part in fresh:
        torch.testing.assert_close(after_other[part], fresh[part])


def test_rowwise_observation_refuses_a_hidden_layer(digits):
    ds, model = digits
    with pytest.raises(UserError, match="one edited Linear output layer"):
        MaskWorld(model, ["fc1"], None, WorldSettings(observation="rowwise"),
                  requests=UnlearningRequests(ds, TRAIN, samples_per_set=16))


def test_generalist_config_refuses_overlapping_requests(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text("dataset: digits\ngeneralist: {train_classes: [0, 1, 7], heldout_classes: [7, 8]}\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class 7 is in both train_classes and heldout_classes" in err[0]


def rowwise_module(m=4, n=6, rank=2, fr=8, fc=3, ch=2, g=5, **config):
    import gymnasium as gym
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rledit_ray.agent import RowwisePPOModule
    from rledit_ray.worlds.rowwise import obs_layout

    layout = {**obs_layout(m, n, g), "row_features": fr, "col_features": fc, "matrix_channels": ch}
    size = m * fr + n * fc + m * n * ch + g
    return RLModuleSpec(
        module_class=RowwisePPOModule,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (size,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, ((m + n) * rank,), np.float32),
        model_config={"obs_layout": layout, "rank": rank, "hidden": [16, 16], **config},
    ).build(), layout


def test_rowwise_module_is_row_equivariant():
    from ray.rllib.core.columns import Columns

    module, layout = rowwise_module()
    torch.manual_seed(0)
    for p in module.parameters():  # away from the near-zero initial heads, so the test can fail
        p.data.normal_(0, 0.5)
    m, n, r = 4, 6, 2
    obs = torch.randn(3, module.observation_space.shape[0])
    parts = unpack_observation(obs, layout)
    perm = torch.tensor([2, 0, 3, 1])
    permuted = torch.cat([parts["rows"][:, perm].flatten(1), parts["cols"].flatten(1),
                          parts["matrix"][:, perm].flatten(1), parts["globals"]], 1)

    a, b = module.factor_means(obs), module.factor_means(permuted)
    assert a["U"].shape == (3, m, r) and a["V"].shape == (3, n, r)
    torch.testing.assert_close(b["U"], a["U"][:, perm])
    torch.testing.assert_close(b["V"], a["V"])
    torch.testing.assert_close(module.compute_values({Columns.OBS: permuted}),
                               module.compute_values({Columns.OBS: obs}))
    # Not trivially invariant: the rows' own features drive their U.
    assert not torch.allclose(a["U"][:, 0], a["U"][:, 1])
    # Packed in the world's order, with one exploration scale per factor shared over rows.
    dist = module.forward_exploration({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    mean, log_std = dist.chunk(2, dim=-1)
    torch.testing.assert_close(mean, torch.cat([a["U"].flatten(1), a["V"].flatten(1)], 1))
    assert torch.equal(log_std[:, : m * r].reshape(3, m, r), module.log_std_u.expand(3, m, r))


def test_rowwise_module_starts_near_no_edit():
    module, _ = rowwise_module()
    means = module.factor_means(torch.randn(5, module.observation_space.shape[0]))
    assert means["U"].abs().max() < 0.1 and means["V"].abs().max() < 0.1


def test_bounded_means_cannot_leave_the_action_box():
    """The dead zone: a V mean beyond -1 clips every sample to "no edit" and PPO never gets a
    gradient again; tanh keeps the means inside, so some samples always edit."""
    obs = torch.randn(5, rowwise_module()[0].observation_space.shape[0])
    means = {}
    for bounded in (False, True):
        torch.manual_seed(0)
        module, _ = rowwise_module(bounded_means=bounded)
        for p in module.parameters():  # large weights: raw means far outside [-1, 1]
            p.data.normal_(0, 2.0)
        means[bounded] = module.factor_means(obs)
    assert max(means[False][k].abs().max() for k in "UV") > 1.5
    for k in "UV":
        torch.testing.assert_close(means[True][k], means[False][k].tanh())
        assert means[True][k].abs().max() <= 1


# ----------------------------------------------------------------------------- the CLI path
@pytest.fixture(scope="module")
def generalist_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("generalist")
    cfg = root / "g.yaml"
    cfg.write_text(yaml.safe_dump(FAST_GENERALIST))
    run = root / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0
    return run


def test_training_reports_every_request(generalist_run):
    m = json.loads((generalist_run / "metrics.json").read_text())
    assert sorted(m["per_request"], key=int) == [str(k) for k in range(10)]
    assert m["heldout_classes"] == [7, 8, 9]
    # "after" is the held-out mean, and checkpoint choice saw training requests only.
    assert m["after"]["forget_acc"] == pytest.approx(np.mean([m["per_request"][k]["forget_acc"] for k in "789"]))
    assert set(m["history"][0]["per_request_val"]) == {str(k) for k in TRAIN}
    assert "| 8 | yes |" in (generalist_run / "report.md").read_text()
    from safetensors import safe_open

    with safe_open(str(generalist_run / "edited_weights.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["rledit"])["forget_class"] == 9  # the last request served


def test_edit_serves_a_held_out_class(generalist_run, tmp_path, capsys):
    out = tmp_path / "edit8"
    assert main(["edit", "--checkpoint", str(generalist_run), "--forget-class", "8", "--repeat", "2",
                 "--out", str(out)]) == 0
    assert "forget class 8: edited in" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["forget_class"] == 8 and not m["seen_in_training"] and 0 < m["edit_seconds"] < 30
    assert len(m["edit_seconds_all"]) == 2 and m["edit_seconds_max"] == max(m["edit_seconds_all"])
    assert m["before"]["forget_acc"] > 0.9 and (out / "edited_weights.safetensors").is_file()
    # The saved weights are the edit: evaluating them reproduces the reported accuracies.
    assert main(["eval", "--dataset", "digits", "--forget-class", "8", "--json",
                 "--edited", str(out / "edited_weights.safetensors")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["forget_acc"] == pytest.approx(m["after"]["forget_acc"])
    assert scored["retain_acc"] == pytest.approx(m["after"]["retain_acc"])


@pytest.mark.parametrize("args, message", [
    (["--forget-class", "12"], "forget class 12 is outside the label set of 'digits' (0..9)"),
    ([], "is a generalist policy: name the request with --forget-class K"),
])
def test_edit_refuses_a_bad_request_in_one_line(generalist_run, tmp_path, capsys, args, message):
    assert main(["edit", "--checkpoint", str(generalist_run), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


def test_forget_class_needs_a_generalist_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "rledit_config.yaml").write_text("dataset: digits\nforget_classes: [3]\n")
    assert main(["edit", "--checkpoint", str(ckpt), "--forget-class", "8", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a generalist checkpoint" in err[0]


def test_compare_requests_scores_the_generalist_beside_a_baseline(generalist_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare-requests", "--checkpoint", str(generalist_run), "--forget-class", "9",
                 "--baselines", "ssd", "--out", str(out)]) == 0
    rows = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in (out / "rows").glob("*.json")}
    assert set(rows) == {"rl_generalist_mask", "ssd"}
    for row in rows.values():
        assert row["forget_class"] == 9 and row["time_s"] > 0 and 0 <= row["forget_acc"] <= 1
    assert not rows["rl_generalist_mask"]["seen_in_training"]
    table = (out / "comparison.md").read_text()
    assert "| 9 | rl_generalist_mask |" in table and "| 9 | ssd |" in table
    assert main(["compare-requests", "--checkpoint", str(generalist_run), "--baselines", "sgd",
                 "--out", str(out)]) == 2
    assert "unknown baseline 'sgd'" in capsys.readouterr().err
