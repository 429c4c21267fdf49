"""The benchmarks' --data option: a labelled text set of one's own, read and checked.

quality.py / replay.py / explore_variants.py run on it (hidden-set checks run the same way), so
a bad file must stop with what is wrong, before any embedding.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(ROOT / "benchmarks"))


def _set(n: int = 60, **cols) -> dict:
    base = {
        "item_id": [f"m{i}" for i in range(n)],
        "text": [f"text number {i}" for i in range(n)],
        "label": [int(i % 3 == 0) for i in range(n)],
    }
    base.update(cols)
    return base


def _write(tmp_path: Path, cols: dict, name: str = "set.parquet") -> Path:
    path = tmp_path / name
    if name.endswith(".csv"):
        pacsv.write_csv(pa.table(cols), path)
    else:
        pq.write_table(pa.table(cols), path)
    return path


def test_a_set_without_split_is_halved_by_id_hash_whatever_the_row_order(quality, tmp_path):
    cols = _set()
    hist, sweep = quality.read_labelled(_write(tmp_path, cols))
    assert hist.num_rows + sweep.num_rows == 60 and min(hist.num_rows, sweep.num_rows) > 15
    assert set(hist["item_id"].to_pylist()).isdisjoint(sweep["item_id"].to_pylist())
    rev = {k: v[::-1] for k, v in cols.items()}
    hist2, _ = quality.read_labelled(_write(tmp_path, rev, "rev.parquet"))
    assert sorted(hist2["item_id"].to_pylist()) == sorted(hist["item_id"].to_pylist())
    label = dict(zip(cols["item_id"], cols["label"]))
    assert all(
        label[i] == y for i, y in zip(hist["item_id"].to_pylist(), hist["label"].to_pylist())
    )


def test_split_and_graded_verdicts_from_csv(quality, tmp_path):
    cols = _set(48, split=["train" if i < 24 else "test" for i in range(48)])
    cols["verdict"] = [3 if i % 4 == 0 else (1 if i % 4 == 1 else 0) for i in range(48)]
    del cols["label"]
    hist, sweep = quality.read_labelled(_write(tmp_path, cols, "set.csv"))
    assert hist["item_id"].to_pylist() == [f"m{i}" for i in range(24)]
    # verdict >= 2 is violating; a borderline 1 is not
    assert hist["label"].to_pylist() == [int(i % 4 == 0) for i in range(24)]
    assert sweep.num_rows == 24


def test_empty_texts_are_left_out_and_counted(quality, tmp_path, capsys):
    cols = _set()
    cols["text"][1] = "  "
    cols["text"][2] = None
    hist, sweep = quality.read_labelled(_write(tmp_path, cols))
    assert hist.num_rows + sweep.num_rows == 58
    assert "2 row(s) with an empty text left out" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda c: c.pop("text"), "missing column(s) text"),
        (lambda c: c.pop("label"), "label (or verdict)"),
        (lambda c: c["item_id"].__setitem__(5, "m4"), "1 repeated item_id(s), e.g. 'm4'"),
        (lambda c: c["label"].__setitem__(3, 2), "outside [0, 1], e.g. row 3: 2"),
        (lambda c: c["label"].__setitem__(3, None), "e.g. row 3: None"),
        (lambda c: c.__setitem__("split", ["history"] * 59 + ["later"]), "row 59 has 'later'"),
        (lambda c: c.__setitem__("label", [int(i == 0) for i in range(60)]), "needs at least"),
    ],
)
def test_bad_sets_are_refused_naming_the_file_and_the_fault(quality, tmp_path, change, says):
    cols = _set()
    change(cols)
    path = _write(tmp_path, cols)
    with pytest.raises(SystemExit) as err:
        quality.read_labelled(path)
    assert str(path) in str(err.value) and says in str(err.value)


def test_unreadable_or_unknown_files_are_refused(quality, tmp_path):
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"not parquet")
    for path, says in ((bad, "unreadable"), (tmp_path / "none.parquet", "no such file")):
        with pytest.raises(SystemExit, match=says):
            quality.read_labelled(path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(SystemExit, match="parquet or .csv"):
        quality.read_labelled(tmp_path / "x.json")


def test_register_data_names_the_policy_and_its_cold_start_donor(quality, tmp_path):
    path = _write(tmp_path, _set())
    ap = argparse.ArgumentParser()
    quality.add_data_options(ap)
    args = ap.parse_args(["--data", f"mine={path}", "--cold-from", "insults"])
    try:
        assert quality.register_data(args.data, args.cold_from) == ["mine"]
        assert quality.POLICY["mine"] == "mine" and quality.OTHER["mine"] == "insults"
        assert quality.split("mine") == quality.EXTRA["mine"]
        for spec in ("insults=" + str(path), "mine=" + str(path), "a b=x", "nofile"):
            with pytest.raises(SystemExit):
                quality.register_data([spec], "spamassassin")
    finally:
        for table in (quality.EXTRA, quality.POLICY, quality.OTHER):
            table.pop("mine", None)


def test_each_text_model_has_its_own_index_cache(quality, tmp_path):
    """--text-model: another model's vectors never land in (or are read from) the default
    model's cache, and two models do not share one."""
    from riskrank.index.signals import TextEncoder

    default = quality.encoder_cache(TextEncoder())
    assert default == quality.CACHE  # the default keeps its place
    a = quality.encoder_cache(TextEncoder(str(tmp_path / "a")))
    b = quality.encoder_cache(TextEncoder(str(tmp_path / "b")))
    assert len({default, a, b}) == 3
    assert quality.encoder_cache(TextEncoder(str(tmp_path / "a"), backend="onnx-int8")) not in {
        default,
        a,
        b,
    }
