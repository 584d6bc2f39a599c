"""Users' own text tables for the bias task (CSV, parquet, Hugging Face) read through a
column mapping, and their mistakes as one-line errors. All data is made under tmp_path."""
import numpy as np
import pandas as pd
import pytest

from rledit_ray.data.text import load_text_dataset, load_text_table
from rledit_ray.errors import UserError


def raises_one_line(call, match: str) -> None:
    with pytest.raises(UserError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def comments(rows=40, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"comment": [f"comment {i} é" for i in range(rows)], "toxic": rng.uniform(0, 1, rows),
                          "women": np.where(rng.uniform(size=rows) < 0.4, 0.8, 0.1),
                          "muslims": rng.uniform(size=rows) < 0.3})
    frame.loc[:2, "women"] = np.nan  # not annotated: a member of no group
    return frame


COMMENT_COLUMNS = {"text": "comment", "label": "toxic", "groups": ["women", "muslims"]}


@pytest.mark.parametrize("fmt", ["csv", "latin-1 csv", "parquet"])
def test_text_table_reads_groups_as_fractions_or_booleans(tmp_path, fmt):
    frame = comments()
    path = tmp_path / ("t.parquet" if fmt == "parquet" else "t.csv")
    if fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, encoding="latin-1" if fmt == "latin-1 csv" else "utf-8")
    ds = load_text_dataset("forum", str(path), columns=COMMENT_COLUMNS)
    assert ds.name == "forum" and ds.groups == ("women", "muslims") and ds.pairs == []
    assert ds.texts[0] == "comment 0 é" and len(ds) == 40
    assert ds.labels.tolist() == (frame["toxic"] >= 0.5).astype(int).tolist()
    assert ds.membership[:, 0].tolist() == (frame["women"].fillna(0) >= 0.5).tolist()
    assert ds.membership[:, 1].tolist() == frame["muslims"].tolist()


def test_text_table_one_group_column_from_a_hf_dataset(tmp_path):
    import datasets

    frame = comments()
    frame["identity"] = [["women", "muslims", None][i % 3] for i in range(len(frame))]
    frame["toxic"] = (frame["toxic"] >= 0.5).astype(int)
    rows = datasets.Dataset.from_pandas(frame, preserve_index=False)
    datasets.DatasetDict({"train": rows.select(range(30)), "test": rows.select(range(30, 40))}) \
        .save_to_disk(str(tmp_path / "hf"))
    ds = load_text_table(tmp_path / "hf", {"text": "comment", "label": "toxic", "group": "identity"})
    assert ds.name == "hf" and ds.groups == ("muslims", "women") and len(ds) == 40
    assert ds.membership.sum(1).tolist() == [1, 1, 0] * 13 + [1]
    assert ds.membership[0].tolist() == [False, True]


def _table(tmp, frame=None, columns=COMMENT_COLUMNS, name="t.csv"):
    (comments() if frame is None else frame).to_csv(tmp / name, index=False)
    return lambda: load_text_table(tmp / name, columns)


def _broken_parquet(tmp):
    (tmp / "b.parquet").write_bytes(b"PAR1 x")
    return lambda: load_text_table(tmp / "b.parquet", COMMENT_COLUMNS)


def _raw_table(tmp, data: bytes):
    (tmp / "t.csv").write_bytes(data)
    return lambda: load_text_table(tmp / "t.csv", COMMENT_COLUMNS)


TEXT_MISTAKES = {
    "missing column": (lambda t: _table(t, comments().drop(columns=["women"])),
                       r"'.*t.csv' has no column 'women' \(columns: comment, toxic, muslims\)"),
    "empty csv": (lambda t: _raw_table(t, b""), r"CSV '.*t.csv' is empty"),
    "binary csv": (lambda t: _raw_table(t, bytes(range(256)) * 4), r"CSV '.*t.csv' is binary"),
    "unparsable csv": (lambda t: _raw_table(t, b'comment,toxic,women,muslims\n"a,1,0,0\nb,0,1,1'),
                       r"cannot read CSV '.*t.csv'"),
    "header only": (lambda t: _raw_table(t, b"comment,toxic,women,muslims\n"), r"'.*t.csv' has no row"),
    "one class": (lambda t: _table(t, comments().assign(toxic=0.1)), r"label column 'toxic' .* only class 0"),
    "labels that are words": (lambda t: _table(t, comments().assign(toxic="yes")),
                              r"label column 'toxic' of '.*t.csv' holds 'yes'"),
    "group that is counts": (lambda t: _table(t, comments().assign(women=3)),
                             r"group column 'women' of '.*t.csv' holds 3"),
    "group without members": (lambda t: _table(t, comments().assign(muslims=False)),
                              r"group 'muslims' of '.*t.csv' has no member"),
    "no group columns": (lambda t: _table(t, columns={"text": "comment", "label": "toxic"}),
                         r"names no group columns"),
    "groups and group": (lambda t: _table(t, columns={**COMMENT_COLUMNS, "group": "women"}), r"either 'groups'"),
    "pair columns": (lambda t: _table(t, columns={**COMMENT_COLUMNS, "pair_original": "comment"}),
                     r"unknown column role 'pair_original'"),
    "file that does not exist": (lambda t: lambda: load_text_table(t / "nope.csv", COMMENT_COLUMNS),
                                 r"table '.*nope.csv' does not exist"),
    "broken parquet": (_broken_parquet, r"cannot read parquet file '.*b.parquet'"),
    "unknown text dataset": (lambda t: lambda: load_text_dataset("forum"), r"unknown text dataset 'forum'"),
}


@pytest.mark.parametrize("cause", list(TEXT_MISTAKES))
def test_text_table_mistakes_are_one_line_naming_the_file_or_column(cause, tmp_path):
    make, match = TEXT_MISTAKES[cause]
    raises_one_line(make(tmp_path), match)
