"""Suffix-only evaluation (targets/split.py): for any module, the cached split must equal the
full forward pass, before and after the edited weights change, and must actually skip work."""
import copy
import logging
import pickle

import numpy as np
import pytest
import torch
import torch.utils._pytree as pytree
from torch import nn

from rledit_ray.targets import digits_cnn, memo
from rledit_ray.targets.forward import LowRankEdit
from rledit_ray.targets.split import PACKED_INPUTS, FullSplit, call_model, split_model
from rledit_ray.worlds import MaskWorld, ShiftWorld, WorldBatch, WorldSettings
from rledit_ray.worlds import base as world_base


# ---------------------------------------------------------------------- target networks
class SkipMLP(nn.Module):
    """y = fc2(relu(fc1(x))) + proj(x): the skip path runs after the edited fc2."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.proj = nn.Linear(12, 16), nn.Linear(16, 5), nn.Linear(12, 5)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x))) + self.proj(x)


class InPlaceSkip(SkipMLP):
    """The skip path runs first and the glue adds the edited branch onto its output in place."""

    def forward(self, x):
        out = self.proj(x)
        out += self.fc2(torch.relu(self.fc1(x)))
        return out


class Block(nn.Module):
    """A ResNet basic block, written the way torchvision writes it (in-place ReLU, `out += identity`)."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(inplace=True))
        self.block1, self.block2 = Block(8), Block(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class CNN(nn.Module):
    """A third-party MNIST CNN: nested Sequentials and a reshape in forward."""

    def __init__(self):
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc_layers = nn.Sequential(nn.Linear(1152, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
        x = self.conv_layers(x)
        x = x.view(x.size(0), -1)
        return self.fc_layers(x)


class Tied(nn.Module):
    """`late` shares its weight with the edited `early`: the weight reaches it without a call."""

    def __init__(self):
        super().__init__()
        self.early, self.late, self.pre = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6)
        self.late.weight = self.early.weight

    def forward(self, x):
        return self.early(self.late(self.pre(x)))


class FunctionalHead(nn.Module):
    """The head's weights are used through F.linear: its forward is never called."""

    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        return nn.functional.linear(torch.relu(self.body(x)), self.head.weight, self.head.bias)


class GlueReadsWeights(nn.Module):
    """Glue code reads the edited weights before a frozen module that runs before the head."""

    def __init__(self):
        super().__init__()
        self.pre, self.post, self.head = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.post(self.pre(x) * self.head.weight.mean())
        return self.head(h)


# ---------------------------------------------------------------------- the check every case runs
def frozen(model):
    torch.manual_seed(0)
    return model.eval().requires_grad_(False)


def edit_in_place(model, edited, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in edited:
            for p in model.get_submodule(name).parameters(recurse=False):
                p.mul_(torch.rand(p.shape, generator=gen) * 1.5).add_(0.1 * torch.randn(p.shape, generator=gen))


def assert_split_is_exact(model, edited, x, kind):
    split = split_model(model, edited, x[:2])
    assert split.kind == kind
    cached = split.prefix(x)
    assert split.rows(cached) == len(x)
    with torch.inference_mode():
        before = call_model(model, x)
        torch.testing.assert_close(split.suffix(cached), before, atol=1e-5, rtol=1e-5)
        edit_in_place(model, edited)
        after = call_model(model, x)
        assert (after - before).abs().max() > 1e-2 * before.abs().max()  # the edit mattered
        torch.testing.assert_close(split.suffix(cached), after, atol=1e-5, rtol=1e-5)
        edit_in_place(model, edited, seed=2)  # and again: no state carried over from the last step
        torch.testing.assert_close(split.suffix(cached), call_model(model, x), atol=1e-5, rtol=1e-5)
    return split, cached


IMAGES_28 = torch.randn(48, 1, 28, 28, generator=torch.Generator().manual_seed(0))
IMAGES_8 = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
ROWS_12 = torch.randn(40, 12, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------- exactness
@pytest.mark.parametrize("model, edited", [
    (SkipMLP, ["fc2"]),
    (SkipMLP, ["fc1"]),
    (InPlaceSkip, ["fc2"]),
    (InPlaceSkip, ["fc1", "fc2"]),
])
def test_skip_connections_around_the_edited_layer(model, edited):
    split, cached = assert_split_is_exact(frozen(model()), edited, ROWS_12, "memo")
    if model is InPlaceSkip:
        assert split.clone  # the recorded proj(x) is changed in place by `out += ...`


@pytest.mark.parametrize("edited", [["fc"], ["block2.conv2"], ["block1.conv1", "fc"]])
def test_resnet_blocks_with_in_place_adds(edited):
    assert_split_is_exact(frozen(TinyResNet()), edited, IMAGES_8, "memo")


@pytest.mark.parametrize("edited", [["fc_layers.2"], ["fc_layers.0"], ["conv_layers.6"]])
def test_nested_sequentials_with_a_reshape_in_forward(edited):
    split, cached = assert_split_is_exact(frozen(CNN()), edited, IMAGES_28, "memo")
    if edited == ["fc_layers.2"]:  # the cache reaches up to the edited layer's input
        (inputs, records), = cached.chunks
        assert ("fc_layers.1", 0) in records and ("conv_layers", 0) in records


def test_a_sequential_target_keeps_its_sequential_split():
    model = frozen(digits_cnn())
    split, cached = assert_split_is_exact(model, ["fc2"], IMAGES_8, "sequential")
    assert isinstance(cached, torch.Tensor) and cached.shape == (len(IMAGES_8), 64)
    assert list(dict(split.sequential_suffix.named_children())) == ["fc2"]


def test_tied_weights_are_edits_too():
    model = frozen(Tied())
    split, cached = assert_split_is_exact(model, ["early"], ROWS_12[:, :6], "memo")
    (_, records), = cached.chunks
    assert list(records) == [("pre", 0)]  # `late` shares the edited weight: never cached


@pytest.fixture(scope="module")
def bert():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, num_labels=2)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval().requires_grad_(False)
    setattr(model, PACKED_INPUTS, ("input_ids", "attention_mask"))
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 100, (24, 12), generator=gen)
    mask = (torch.arange(12) < torch.randint(4, 13, (24, 1), generator=gen)).long()  # right padding
    return model, torch.stack([ids, mask], 1)


@pytest.mark.parametrize("edited, recorded", [
    (["classifier"], ["bert", "dropout"]),
    (["bert.encoder.layer.1.output.dense"], ["bert.embeddings", "bert.encoder.layer.0",
                                             "bert.encoder.layer.1.attention", "bert.encoder.layer.1.intermediate"]),
])
def test_a_transformers_classifier_is_split_by_recording(bert, edited, recorded):
    model, x = bert
    model = copy.deepcopy(model)
    assert call_model(model, x).shape == (len(x), 2)
    split, cached = assert_split_is_exact(model, edited, x, "memo")
    (_, records), = cached.chunks
    assert sorted(records) == sorted((name, 0) for name in recorded)


def test_transformer_records_hold_only_what_the_edit_reads_and_texts_are_cut_by_length(bert, monkeypatch):
    model, x = bert
    model = copy.deepcopy(model)
    monkeypatch.setattr(memo, "TEXT_CHUNK", 8)  # 24 texts: three chunks of their own lengths
    split, cached = assert_split_is_exact(model, ["bert.encoder.layer.1.output.dense"], x, "memo")
    ends = x[:, 1].sum(1)  # right padding: a text ends after its mask's ones
    widths = [inputs.shape[-1] for inputs, _ in cached.chunks]
    assert widths == sorted(widths) and widths[0] < x.shape[-1]
    assert widths == [int(ends[cached.restore.argsort()[i:i + 8]].max()) for i in (0, 8, 16)]
    for _, records in cached.chunks:
        held = {key for key, value in records.items()
                if any(t.untyped_storage().nbytes() > t.element_size() for t in pytree.tree_leaves(value)
                       if isinstance(t, torch.Tensor))}
        # The embeddings and layer 0 only feed stubbed modules; what layer 1's FFN output reads stays.
        assert held == {("bert.encoder.layer.1.attention", 0), ("bert.encoder.layer.1.intermediate", 0)}


@pytest.mark.parametrize("with_bias", [True, False])
def test_a_low_rank_edit_of_a_transformer_layer_replays_as_its_weights_do(bert, with_bias):
    model, x = bert
    model = copy.deepcopy(model)
    name = "bert.encoder.layer.1.output.dense"
    split = split_model(model, [name], x[:2])
    cached = split.prefix(x)
    layer = model.get_submodule(name)
    w0, b0 = layer.weight.clone(), layer.bias.clone()
    gen = torch.Generator().manual_seed(1)
    for rank in (2, 5):  # the second edit reuses the original outputs the first one cached
        a = torch.randn(w0.shape[0], rank, generator=gen)
        b = torch.randn(w0.shape[1] + with_bias, rank, generator=gen) * 0.3
        delta = a @ b.T
        with torch.no_grad():
            layer.weight.copy_(w0 + delta[:, :w0.shape[1]])
            layer.bias.copy_(b0 + (delta[:, -1] if with_bias else 0))
        edit = LowRankEdit(name, w0, b0, a, b, key="w0")
        with torch.inference_mode():
            expected = call_model(model, x)
            torch.testing.assert_close(split.suffix(cached, edit), expected, atol=1e-5, rtol=1e-5)
    (_, records), = cached.chunks
    assert ("<original output>", "w0", 0) in records


@pytest.mark.parametrize("basis", [0, 8, (4, 16), (0, 16)])
def test_a_shift_world_on_a_memo_split_evaluates_its_layer_factored_until_that_stops_paying(
        digits_task, tiny_cnn, monkeypatch, basis):
    edit = ["fc_layers.0"]  # 32 x 129 with its bias: factored up to rank 12 (0.5 of the product)
    settings = WorldSettings(rank=2, episode_length=8, factor_basis=basis)
    world = ShiftWorld(copy.deepcopy(tiny_cnn), edit, digits_task, settings)
    monkeypatch.setattr(world_base, "split_model", lambda model, *_args, **_kw: FullSplit(model))
    full_world = ShiftWorld(copy.deepcopy(tiny_cnn), edit, digits_task, settings)
    assert world.split.kind == "memo" and full_world.low_rank_edit() is None

    rng = np.random.default_rng(0)
    world.reset(seed=0), full_world.reset(seed=0)
    factored = []
    for _ in range(8):
        action = rng.uniform(-1, 1, world.action_space.shape).astype(np.float32)
        (o, r, *_), (o_full, r_full, *_) = world.step(action), full_world.step(action)
        factored.append(world.low_rank_edit() is not None)
        np.testing.assert_allclose(o, o_full, rtol=1e-5, atol=1e-5)
        assert r == pytest.approx(r_full, abs=1e-5)
    assert factored == [True] * 6 + [False] * 2
    kept = {key[0] for _, records in world.reward_h.chunks for key in records if key[0].startswith("<")}
    assert kept == ({"<original output>", "<projected input>"} if basis else {"<original output>"})
    assert world.task_metrics(pools=("validation",)) == full_world.task_metrics(pools=("validation",))
    world.reset(seed=1)
    assert world.low_rank_edit() is None  # a reset forgets the factors with the edit


# ---------------------------------------------------------------------- fallbacks
@pytest.mark.parametrize("model, why", [
    (FunctionalHead, "forward never calls head"),
    (GlueReadsWeights, "depends on the edited weights"),
])
def test_what_cannot_be_split_is_evaluated_in_full_with_one_log_line(model, why, caplog):
    with caplog.at_level(logging.INFO, logger="rledit_ray.targets.split"):
        assert_split_is_exact(frozen(model()), ["head"], ROWS_12[:, :6], "full")
    lines = [r.getMessage() for r in caplog.records if r.name == "rledit_ray.targets.split"]
    assert len(lines) == 1
    assert f"cannot split {model.__name__} at head" in lines[0] and why in lines[0]
    assert "evaluating the whole model at every step" in lines[0]


def test_records_over_the_memory_budget_evaluate_that_set_in_full(caplog):
    model = frozen(CNN())
    split = split_model(model, ["fc_layers.2"], IMAGES_28[:2], memo_budget=1000)
    assert split.kind == "memo"
    with caplog.at_level(logging.INFO, logger="rledit_ray.targets.split"):
        cached = split.prefix(IMAGES_28)
    assert all(records is None for _, records in cached.chunks)
    assert sum("exceed" in r.getMessage() for r in caplog.records) == 1
    edit_in_place(model, ["fc_layers.2"])
    with torch.inference_mode():
        torch.testing.assert_close(split.suffix(cached), call_model(model, IMAGES_28), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- cost and sharing
def test_the_suffix_does_not_run_the_frozen_prefix(monkeypatch):
    model = frozen(CNN())
    split = split_model(model, ["fc_layers.2"], IMAGES_28[:2])
    conv, fc0, edited = model.conv_layers[0], model.fc_layers[0], model.fc_layers[2]
    runs = {conv: 0, fc0: 0, edited: 0}
    # Counted in the class's forward: a stub answering a call does not reach it.
    for cls in (nn.Conv2d, nn.Linear):
        def counting(self, x, _forward=cls.forward):
            runs[self] = runs.get(self, 0) + 1
            return _forward(self, x)
        monkeypatch.setattr(cls, "forward", counting)
    cached = split.prefix(IMAGES_28)
    assert [runs[conv], runs[fc0], runs[edited]] == [1, 1, 1]
    for _ in range(10):
        split.suffix(cached)
    assert [runs[conv], runs[fc0], runs[edited]] == [1, 1, 11]


def test_records_serve_every_copy_and_leave_the_model_an_ordinary_module():
    model = frozen(CNN())
    twin = copy.deepcopy(model)  # a world's private copy, made before any split
    mine, theirs = split_model(model, ["fc_layers.2"], IMAGES_28[:2]), split_model(twin, ["fc_layers.2"], IMAGES_28[:2])
    cached = mine.prefix(IMAGES_28)
    edit_in_place(twin, ["fc_layers.2"])
    with torch.inference_mode():
        torch.testing.assert_close(theirs.suffix(cached), call_model(twin, IMAGES_28), atol=1e-5, rtol=1e-5)
        mine.suffix(cached)
        # No stub is left behind: copies and the model itself compute their own full pass.
        assert not any("forward" in vars(m) for m in model.modules())
        again = pickle.loads(pickle.dumps(model))
        torch.testing.assert_close(again(IMAGES_28), model(IMAGES_28))
        fresh = CNN().eval()
        fresh.load_state_dict(twin.state_dict())
        torch.testing.assert_close(twin(IMAGES_28), fresh(IMAGES_28))


# ---------------------------------------------------------------------- in a world
def test_a_world_on_a_non_sequential_model_steps_like_full_evaluation(digits_task, tiny_cnn, monkeypatch):
    model = tiny_cnn
    edit = ["fc_layers.2.weight", "fc_layers.2.bias"]
    settings = WorldSettings(episode_length=4)
    split_world = MaskWorld(copy.deepcopy(model), edit, digits_task, settings)
    assert split_world.split.kind == "memo"
    monkeypatch.setattr(world_base, "split_model", lambda model, *_args, **_kw: FullSplit(model))
    full_world = MaskWorld(copy.deepcopy(model), edit, digits_task, settings)
    assert full_world.split.kind == "full"

    rng = np.random.default_rng(0)
    np.testing.assert_allclose(split_world.reset(seed=0)[0], full_world.reset(seed=0)[0])
    for _ in range(4):
        action = rng.uniform(-1, 1, split_world.action_space.shape).astype(np.float32)
        (o_split, r_split, *_), (o_full, r_full, *_) = split_world.step(action), full_world.step(action)
        np.testing.assert_allclose(o_split, o_full, rtol=1e-5, atol=1e-6)
        assert r_split == pytest.approx(r_full, abs=1e-6)
    assert split_world.task_metrics(pools=("validation",)) == full_world.task_metrics(pools=("validation",))


def test_a_batch_of_non_sequential_worlds_shares_one_cache_and_steps_world_by_world(digits_task, tiny_cnn):
    model, shared = tiny_cnn, {}
    batch = WorldBatch(lambda: MaskWorld(copy.deepcopy(model), ["fc_layers.2"], digits_task,
                                         WorldSettings(episode_length=2), prefix_cache=shared), 2)
    assert batch.batched_layer is None and list(shared) == ["reward"]
    assert batch.worlds[0].reward_h is batch.worlds[1].reward_h
    batch.reset(seed=0)
    _, rewards, *_ = batch.step(np.ones(batch.action_space.shape, np.float32))
    assert np.isfinite(rewards).all() and rewards[0] == rewards[1]
