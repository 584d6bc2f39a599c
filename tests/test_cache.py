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
