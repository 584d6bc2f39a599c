"""Bad files, by cause: data, weights, checkpoints and run metrics that are damaged, truncated
or of the wrong kind, and comparisons resumed with other settings. Each is one line naming the
file, exit status 2, no traceback, nothing written (see test_bad_inputs.py for the harness)."""
import json
import shutil
from pathlib import Path

import pytest
from conftest import refused

TINY_CNN = f"{Path(__file__).parent / 'conftest.py'}:TinyCNN"
TEXT_COLUMNS = '{"text": "text", "label": "label", "groups": "g"}'

# ----------------------------------------------------------------------------- data files
IMAGE_DATA = [
    ("idx header cut", "idx_header", "its header is truncated"),
    ("idx images cut", "idx_body", "is truncated: expected 1280 values"),
    ("idx named .gz, not gzip", "idx_notgz", "it is not gzip-compressed"),
    ("idx .gz cut short", "idx_gzcut", "the file is truncated"),
    ("npz that is not zip", "notzip.npz", "it is not a zip archive"),
    ("npz of one array", "array.npz", "holds a single array"),
    ("images PIL cannot read", "images", "cannot read image"),
    ("unknown kind of file", "file", "cannot tell the format"),
    ("parquet that is not parquet", "bad.parquet", "Parquet magic bytes not found"),
    ("arrow file cut short", "bad.arrow", "File is too small"),
    ("JSON lines that do not parse", "bad.jsonl", "JSON parse error"),
    ("binary CSV table", "binary.csv", "is binary, not csv text"),
    ("empty CSV table", "empty.csv", "is empty"),
    ("missing folder", "nowhere", "does not exist"),
]
TEXT_DATA = [
    ("empty CSV", ["--dataset", "mine", "--data-columns", TEXT_COLUMNS], "empty.csv", "is empty"),
    ("binary CSV", ["--dataset", "mine", "--data-columns", TEXT_COLUMNS], "binary.csv", "is binary, not text"),
    ("CSV without the columns", ["--dataset", "mine", "--data-columns", TEXT_COLUMNS], "header_only.csv",
     "has no column 'text'"),
    ("parquet that is not parquet", ["--dataset", "mine", "--data-columns", TEXT_COLUMNS], "bad.parquet",
     "Parquet magic bytes not found"),
    ("arrow file cut short", ["--dataset", "mine", "--data-columns", TEXT_COLUMNS], "bad.arrow", "File is too small"),
    ("JSON lines that do not parse", ["--dataset", "mine", "--data-columns", TEXT_COLUMNS], "bad.jsonl",
     "JSON parse error"),
    ("empty Jigsaw CSV", ["--dataset", "jigsaw"], "empty.csv", "is empty"),
    ("binary Jigsaw CSV", ["--dataset", "jigsaw"], "binary.csv", "is binary, not text"),
    ("Jigsaw CSV without identities", ["--dataset", "jigsaw"], "header_only.csv", "lacks column 'female'"),
    ("RedditBias folder missing", ["--dataset", "redditbias"], "nowhere", "missing data file"),
]
VERBS = {"train": lambda p, flags: ["train", *flags, "--out", p.new], "eval": lambda p, flags: ["eval", *flags]}


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("name, expected", [d[1:] for d in IMAGE_DATA], ids=[d[0] for d in IMAGE_DATA])
def test_image_data_that_cannot_be_read(verb, name, expected, places, capsys):
    refused(capsys, VERBS[verb](places, ["--dataset", "mine", "--data-root", places.bad.root / name]), expected)
    assert not places.new.exists()


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("flags, name, expected", [d[1:] for d in TEXT_DATA], ids=[d[0] for d in TEXT_DATA])
def test_text_data_that_cannot_be_read(verb, flags, name, expected, places, capsys):
    refused(capsys, VERBS[verb](places, ["--task", "bias", *flags, "--data-root", places.bad.root / name]), expected)
    assert not places.new.exists()


# ----------------------------------------------------------------------------- weights
WEIGHTS = [
    ("corrupt.safetensors", "is not a readable safetensors file"), ("truncated.safetensors", "invalid header length"),
    ("empty.safetensors", "header too small"), ("huge_header.safetensors", "header too large"),
    ("body_cut.safetensors", "file not fully covered"),
    ("garbage.pt", "holds a pickled object"), ("empty.pt", "cannot be read: EOFError"),
    ("missing.safetensors", "does not exist"), ("file", "expected one of .safetensors"),
]


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("name, expected", WEIGHTS, ids=[w for w, _ in WEIGHTS])
def test_model_weights_that_cannot_be_read(verb, name, expected, places, capsys):
    flags = ["--dataset", "digits", "--model", TINY_CNN, "--weights", places.bad.root / name]
    refused(capsys, VERBS[verb](places, flags), expected)


EDITED = [*WEIGHTS[:7], ("missing.safetensors", "does not exist"), ("images", "does not exist")]


@pytest.mark.parametrize("name, expected", EDITED, ids=[w for w, _ in EDITED])
def test_edited_weights_that_cannot_be_read(name, expected, places, capsys):
    refused(capsys, ["eval", "--dataset", "digits", "--edited", places.bad.root / name], expected)


# ----------------------------------------------------------------------------- checkpoints
CHECKPOINTS = [
    ("damaged", lambda p: p.damaged, "cannot be loaded ("),
    ("partial", lambda p: p.partial, "cannot be loaded (FileNotFoundError"),
    ("missing", lambda p: p.root / "nowhere", "does not exist"),
    ("a file", lambda p: p.bad.file, "is neither a run directory nor an rledit checkpoint"),
    ("a data folder", lambda p: p.bad.images, "is neither a run directory nor an rledit checkpoint"),
]


@pytest.mark.parametrize("verb", ["edit", "compare-requests"])
@pytest.mark.parametrize("where, expected", [c[1:] for c in CHECKPOINTS], ids=[c[0] for c in CHECKPOINTS])
def test_a_checkpoint_that_cannot_be_loaded(verb, where, expected, places, capsys):
    extra = ["--baselines"] if verb == "compare-requests" else []
    refused(capsys, [verb, "--checkpoint", where(places), *extra, "--out", places.new], expected)
    assert not places.new.exists()


def test_a_checkpoint_config_that_is_not_utf8(places, capsys):
    ckpt = shutil.copytree(places.run / "checkpoint", places.tmp / "checkpoint")
    (ckpt / "rledit_config.yaml").write_bytes("seed: 0  # café\n".encode("latin-1"))
    refused(capsys, ["edit", "--checkpoint", ckpt, "--out", places.new], "is not UTF-8 text")


# ----------------------------------------------------------------------------- run metrics
METRICS = [
    ("invalid JSON", b"{not json", "is not valid JSON"),
    ("not UTF-8", b'{"task": "caf\xe9"}', "is not valid JSON (UnicodeDecodeError)"),
    ("a list", b"[1, 2]", "holds a list, not the metrics of a run"),
    ("an edit's metrics", json.dumps({"task": "unlearning", "world": "mask", "seed": 0, "before": {}, "after": {},
                                      "edit_seconds": 0.1}).encode(), "lacks 'env_steps'"),
    ("after is not a table", json.dumps({"task": "unlearning", "world": "mask", "seed": 0, "before": {}, "after": 3,
                                         "env_steps": 1, "wall_time_s": 1}).encode(), "must be tables of metrics"),
    ("env steps as text", json.dumps({"task": "unlearning", "world": "mask", "seed": 0, "before": {},
                                      "after": {"forget_acc": 0.1, "retain_acc": 0.9}, "env_steps": "many",
                                      "wall_time_s": 1}).encode(), "env_steps is 'many', not a number"),
    ("accuracy missing", json.dumps({"task": "unlearning", "world": "mask", "seed": 0, "before": {},
                                     "after": {"retain_acc": 0.9}, "env_steps": 1, "wall_time_s": 1}).encode(),
     "after.forget_acc is None"),
]


@pytest.mark.parametrize("content, expected", [m[1:] for m in METRICS], ids=[m[0] for m in METRICS])
def test_summarize_a_run_with_damaged_metrics(content, expected, places, capsys):
    (places.tmp / "run").mkdir()
    (places.tmp / "run" / "metrics.json").write_bytes(content)
    refused(capsys, ["summarize", places.run, places.tmp / "run"], expected)


SUMMARIZE = [
    ("a folder that does not exist", lambda p: [p.run, p.root / "nowhere"], "summarize: '"),
    ("only missing folders", lambda p: [p.root / "nowhere"], "does not exist"),
    ("a file", lambda p: [p.bad.file], "holds no finished run (no metrics.json)"),
    ("an unfinished run", lambda p: [p.run, p.interrupted], "finish it with `rledit train --resume"),
    ("a comparison", lambda p: [p.bad.comparison], "holds no finished run"),
    ("no run at all", lambda p: [], "the following arguments are required: runs"),
]


@pytest.mark.parametrize("runs, expected", [s[1:] for s in SUMMARIZE], ids=[s[0] for s in SUMMARIZE])
def test_summarize_refuses_what_is_not_a_finished_run(runs, expected, places, capsys):
    refused(capsys, ["summarize", *runs(places)], expected)


# ----------------------------------------------------------------------------- comparisons
COMPARE = ["compare", "--dataset", "digits", "--forget-class", "3", "--seeds", "1"]
RL_RUNS = [
    ("a run of the other world", ["rl_shift"], lambda p: f"rl_shift:0={p.run}", "has world=mask, the comparison needs shift"),
    ("a run of another class", ["rl_mask"], lambda p: f"rl_mask:0={p.gen}", "has forget_classes=[7]"),
    ("a run of another layer", ["rl_mask_fc1"], lambda p: f"rl_mask_fc1:0={p.run}", "the row rl_mask_fc1 edits ['fc1']"),
    ("a run of the other algorithm", ["es_mask"], lambda p: f"es_mask:0={p.run}",
     "trained with ppo, the row es_mask with es"),
    ("a missing run", ["rl_mask"], lambda p: f"rl_mask:0={p.root / 'nowhere'}", "does not exist"),
    ("an unfinished run", ["rl_mask"], lambda p: f"rl_mask:0={p.interrupted}", "holds no finished run"),
    ("a row not compared", ["original"], lambda p: f"rl_mask:5={p.run}", "the comparison has no such row"),
    ("a seed not compared", ["rl_mask"], lambda p: f"rl_mask:7={p.run}", "the comparison has no such row"),
    ("no seed", ["rl_mask"], lambda p: f"rl_mask={p.run}", "expected METHOD:SEED=RUN_DIR"),
    ("no run", ["rl_mask"], lambda p: "rl_mask:0=", "expected METHOD:SEED=RUN_DIR"),
]


@pytest.mark.parametrize("methods, rl_run, expected", [r[1:] for r in RL_RUNS], ids=[r[0] for r in RL_RUNS])
def test_compare_reuses_only_a_matching_finished_run(methods, rl_run, expected, places, capsys):
    refused(capsys, [*COMPARE, "--methods", *methods, "--rl-run", rl_run(places), "--out", places.new], expected)
    assert not places.new.exists()


OTHER_SETTINGS = [
    ("another forget class", {"--forget-class": "5"}, "config.forget_classes: [3] there, [5] now"),
    ("another dataset", {"--dataset": "mnist"}, "config.dataset: digits there, mnist now"),
    ("other RL iterations", {"--rl-iterations": "5"}, "rl_iterations: None there, 5 now"),
    ("another task", {"--task": "bias"}, "holds a --task unlearning comparison"),
    ("other metrics", {"--metrics": "targets"}, "metrics: all there, targets now"),
]


@pytest.mark.parametrize("changes, expected", [o[1:] for o in OTHER_SETTINGS], ids=[o[0] for o in OTHER_SETTINGS])
def test_compare_out_at_a_comparison_of_other_settings(changes, expected, places, capsys):
    flags = {"--dataset": "digits", "--forget-class": "3", "--seeds": "1", "--methods": "original", **changes}
    refused(capsys, ["compare", *[x for item in flags.items() for x in item], "--out", places.bad.comparison], expected)


COUNTS = [
    ("zero seeds", ["--seeds", "0"], "--seeds must be >= 1"),
    ("negative seeds", ["--seeds", "-2"], "--seeds must be >= 1"),
    ("negative first seed", ["--first-seed", "-1"], "--first-seed must be in 0.."),
    ("zero RL iterations", ["--rl-iterations", "0"], "--rl-iterations must be >= 1"),
    ("unknown method", ["--methods", "magic"], "unknown method 'magic'"),
    ("--seed instead of --seeds", ["--seed", "1"], "use --seeds N"),
    ("unknown extra layer", ["--layer", "fc9"], "unknown layer or parameter 'fc9'"),
    ("unknown task", ["--task", "painting"], "unknown task 'painting'"),
    ("unknown metrics", ["--metrics", "most"], "--metrics 'most': choose all or targets"),
]


@pytest.mark.parametrize("flags, expected", [c[1:] for c in COUNTS], ids=[c[0] for c in COUNTS])
def test_compare_options_that_make_no_sense(flags, expected, places, capsys):
    refused(capsys, [*COMPARE, "--methods", "original", "rl_mask", *flags, "--out", places.new], expected)
    assert not places.new.exists()


REQUESTS = [
    ("negative seed", lambda p: [p.gen, "--seed", "-1"], "--seed must be in 0.."),
    ("class 99", lambda p: [p.gen, "--forget-class", "99"], "forget class 99 is outside"),
    ("unknown baseline", lambda p: [p.gen, "--baselines", "magic"], "unknown baseline 'magic'"),
    ("one-request checkpoint", lambda p: [p.run], "is not a generalist checkpoint"),
]


@pytest.mark.parametrize("args, expected", [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS])
def test_compare_requests_options_that_make_no_sense(args, expected, places, capsys):
    checkpoint, *rest = args(places)
    refused(capsys, ["compare-requests", "--checkpoint", checkpoint, *rest, "--out", places.new], expected)
    assert not places.new.exists()
