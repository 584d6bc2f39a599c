"""The cache of trained networks: keyed by content, and filled with the same bits whoever fills it."""
import torch

from rledit_ray.cache import cached_model, state_fingerprint


def test_a_cached_network_does_not_depend_on_the_callers_thread_count(monkeypatch, tmp_path, digits_target):
    from rledit_ray.targets import load_target

    ds, _ = digits_target
    fingerprints = []
    for threads in (1, 2):
        monkeypatch.setenv("RLEDIT_CACHE_DIR", str(tmp_path / f"cache-{threads}"))
        torch.set_num_threads(threads)
        model, meta = load_target(ds)  # trained here: each cache folder starts empty
        assert torch.get_num_threads() == threads  # the caller's setting is restored
        fingerprints.append(state_fingerprint(model))
    assert fingerprints[0] == fingerprints[1]


def test_a_cached_network_with_another_key_is_trained_again(monkeypatch, tmp_path):
    monkeypatch.setenv("RLEDIT_CACHE_DIR", str(tmp_path))
    built = []

    def build(value):
        def run():
            built.append(value)
            return _linear(value), {"v": value}
        return run

    first, meta = cached_model("net", "key-a", lambda: _linear(0.0), build(1.0))
    again, _ = cached_model("net", "key-a", lambda: _linear(0.0), build(2.0))
    other, _ = cached_model("net", "key-b", lambda: _linear(0.0), build(3.0))
    assert built == [1.0, 3.0] and meta["cache_key"] == "key-a"
    assert float(again.weight) == 1.0 and float(other.weight) == 3.0


def _linear(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.zero_()
    return layer


def test_a_big_pools_prefix_activations_are_cached_by_content(monkeypatch, tmp_path):
    """A Sequential target's prefix on an evaluation pool (persist=True) is read from disk the
    second time; other prefix weights, other inputs or a damaged file compute it again,
    and what comes back is always what the prefix computes (at BUILD_THREADS threads)."""
    from torch import nn

    from rledit_ray.cache import BUILD_THREADS
    from rledit_ray.targets.split import split_model

    monkeypatch.setenv("RLEDIT_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(5000, 1, 8, 8)
    split = split_model(model, ["5"], x[:16])
    calls = []
    conv_forward = model[0].forward
    monkeypatch.setattr(model[0], "forward", lambda t: calls.append(len(t)) or conv_forward(t))

    def direct(inputs):
        previous = torch.get_num_threads()
        torch.set_num_threads(BUILD_THREADS)
        try:
            with torch.inference_mode():
                return model[:5](inputs)
        finally:
            torch.set_num_threads(previous)

    first = split.prefix(x, persist=True)
    assert torch.equal(first, direct(x)) and calls
    files = list((tmp_path / "activations").glob("*.safetensors"))
    assert len(files) == 1
    calls.clear()
    assert torch.equal(split.prefix(x, persist=True), first) and not calls  # from disk

    files[0].write_bytes(b"not a safetensors file")
    assert torch.equal(split.prefix(x, persist=True), first) and calls  # damaged: computed again
    calls.clear()
    with torch.no_grad():
        model[0].weight.add_(0.5)  # another prefix: another key
    assert torch.equal(split.prefix(x, persist=True), direct(x)) and calls
    calls.clear()
    assert torch.equal(split.prefix(x + 1, persist=True), direct(x + 1)) and calls
    assert split.prefix(x[:100]).shape[0] == 100  # reward samples: computed, never written
    assert len(list((tmp_path / "activations").iterdir())) == 3
