"""Train and sweep refuse or repair bad inputs before the expensive work, and say so."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import train_small

from riskrank.index.tables import SchemaError
from riskrank.rank.app.cli import main
from riskrank.rank.input_checks import ThinHistoryWarning
from riskrank.rank.pipeline import sweep
from riskrank.recall.seeds import SeedSet


def test_history_that_cannot_train_fails_before_embedding(
    tmp_path, history, seeds, hashing_signal, monkeypatch
):
    import riskrank.index.engine as engine  # the local engine embeds through embed_chunk

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded before the history was checked")

    monkeypatch.setattr(engine, "embed_chunk", no_embedding)
    benign = history.set_column(3, "verdict", pa.array([0] * history.num_rows, pa.int8()))
    with pytest.raises(SchemaError, match="0 violating"):
        train_small(benign, seeds, tmp_path / "m", hashing_signal)
    with pytest.raises(SchemaError, match="0 rows"):
        train_small(history.slice(0, 0), seeds, tmp_path / "m", hashing_signal)


def test_thin_history_warns_and_dropped_rows_are_counted(tmp_path, seeds, hashing_signal):
    hist = pa.table(
        {
            "item_id": ["a", "b", "c", "d"],
            "text": ["You won a free iPhone, pay shipping", "Team meeting on Monday", "", None],
            "policy": ["scam"] * 4,
            "verdict": pa.array([2, 0, 2, 0], pa.int8()),
        }
    )
    with pytest.warns(ThinHistoryWarning, match="'scam' has 1 violating and 1 benign"):
        train_small(hist.slice(0, 2), seeds, tmp_path / "m", hashing_signal)
    more = pa.concat_tables(
        [hist]
        + [
            pa.table(
                {
                    "item_id": [f"x{i}", f"y{i}"],
                    "text": [f"win a free prize number {i}", f"library hours change on day {i}"],
                    "policy": ["scam"] * 2,
                    "verdict": pa.array([2, 0], pa.int8()),
                }
            )
            for i in range(30)
        ]
    )
    model = train_small(more, seeds, tmp_path / "m2", hashing_signal)
    assert model.info["history_quarantined"] == 2
    q = pq.read_table(tmp_path / "m2" / "history_quarantine.parquet")
    assert sorted(q["item_id"].to_pylist()) == ["c", "d"]


def test_seed_severity_must_be_a_grade():
    base = {"seed_id": ["s"], "policy": ["p"], "text": ["x"]}
    with pytest.raises(SchemaError, match="severity 3.7"):
        SeedSet.from_table({**base, "severity": [3.7]})
    with pytest.raises(SchemaError, match="severity 'high'"):
        SeedSet.from_table({**base, "severity": ["high"]})
    assert SeedSet.from_table({**base, "severity": [3.0]}).table["severity"].to_pylist() == [3]
    # As a CSV read with dtype=str holds it (what the refusal of a CSV seed file suggests):
    # that file was refused in turn (an outsider's report).
    texts = SeedSet.from_table({**base, "severity": [" 3"]})
    assert texts.table["severity"].to_pylist() == [3]
    with pytest.raises(SchemaError, match="severity"):
        SeedSet.from_table({**base, "severity": ["3.5"]})
    with pytest.raises(SchemaError, match="no content"):
        SeedSet.from_table({**base, "text": ["\u200b\u200b"]})


def test_a_blank_id_or_policy_is_refused_like_an_empty_one():
    """An id of spaces named nothing a reviewer could find, yet passed where "" was refused."""
    from riskrank.index.schema import validate_inventory
    from riskrank.recall.history import validate_history

    ids = ["a", " ", "", "\t ", "\u200b"]  # a zero-width space is as blank (a reviewer's note)
    items, bad = validate_inventory({"item_id": [*ids, "x\x00"], "text": ["x"] * 6})
    assert items["item_id"].to_pylist() == ["a"]
    assert bad["reason"].to_pylist() == ["item_id is null, empty or blank"] * 4 + [
        "item_id 'x\\x00' holds a control character"
    ]
    history = {"item_id": ["a", "  ", "b", "\u200b"], "policy": ["p", "p", " ", "p"]}
    history.update(verdict=[2, 0, 0, 2], text=["x", "y", "z", "w"])
    rows, bad = validate_history(history)
    assert rows["item_id"].to_pylist() == ["a"] and bad.num_rows == 3
    assert set(bad["reason"].to_pylist()) == {"item_id or policy is null, empty or blank"}
    with pytest.raises(SchemaError, match="seed_id is null, empty or blank"):
        SeedSet.from_table({"seed_id": ["\u200b"], "policy": ["p"], "text": ["x"]})
    with pytest.raises(SchemaError, match="policy is null, empty or blank"):
        SeedSet.from_table({"seed_id": ["s"], "policy": [" "], "text": ["x"]})


def test_ids_and_policies_with_control_characters_are_refused_everywhere():
    """An inventory id holding a NUL or a line break was quarantined, but a seed, a policy or
    a history row carried one into the queue, the reasons and report.md's tables."""
    from riskrank.recall.history import validate_history

    with pytest.raises(SchemaError, match=r"seed_id 's\\x00' holds a control character"):
        SeedSet.from_table({"seed_id": ["s\x00"], "policy": ["p"], "text": ["x"]})
    with pytest.raises(SchemaError, match=r"policy 'sp\\nam' holds a control character"):
        SeedSet.from_table({"seed_id": ["s"], "policy": ["sp\nam"], "text": ["x"]})
    history = {"item_id": ["a", "b\x1b", "c"], "policy": ["p", "p", "p\u2028"]}
    history.update(verdict=[2, 0, 0], text=["x", "y", "z"])
    rows, bad = validate_history(history)
    assert rows["item_id"].to_pylist() == ["a"]
    assert bad["reason"].to_pylist() == [
        "item_id 'b\\x1b' holds a control character",
        "policy 'p\\u2028' holds a control character",
    ]
    with pytest.raises(SchemaError, match=r"action 'remove\\r' holds a control character"):
        SeedSet.from_table(
            {"seed_id": ["s"], "policy": ["p"], "text": ["x"], "action": ["remove\r"]}
        )
    # A policy name read as Latin-1 (C1 characters, no line break) is a name all the same: a
    # model trained on one was refused (a reviewer's upgrade repro).
    mojibake = "children\u00e2\x80\x99s safety"
    assert SeedSet.from_table({"seed_id": ["s"], "policy": [mojibake], "text": ["x"]}).policies


def test_a_seed_policy_named_like_a_reviewed_one_but_for_case_is_called_a_slip(
    inventory_items, seeds, hashing_model
):
    """Seeds saying `Scam` for the model's `scam` ran cold, escalating everything, with only
    the usual cold-start warning (an outsider's note)."""
    slipped = seeds.set_column(1, "policy", pa.array(["Scam"] * seeds.num_rows))
    warnings = sweep(inventory_items, slipped, hashing_model, show_progress=False).report[
        "warnings"
    ]
    assert any("policy 'Scam' has no review history" in w for w in warnings)
    assert any(
        "seed policy 'Scam' has no reviews, but the model has reviews under 'scam'" in w
        for w in warnings
    )
    right = sweep(inventory_items, seeds, hashing_model, show_progress=False)
    assert not any("seed policy" in w for w in right.report["warnings"])


def test_budget_must_be_positive(inventory_items, seeds, hashing_model, tmp_path):
    for budget in (0, -5, np.int64(0), 2.0, True):
        with pytest.raises(ValueError, match="budget"):
            sweep(inventory_items, seeds, hashing_model, budget=budget, show_progress=False)
    # A NumPy integer, as pandas sums give (it was refused: an outsider), is an int from here:
    # the report is written as JSON.
    res = sweep(inventory_items, seeds, hashing_model, budget=np.int64(3), out_dir=tmp_path / "o",
                show_progress=False)  # fmt: skip
    assert res.queue.num_rows == 3 and json.loads((tmp_path / "o" / "report.json").read_text())


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_metadata_named_like_queue_columns_is_kept_with_a_prefix(
    inventory_items, seeds, hashing_model
):
    n = inventory_items.num_rows
    inv = (
        inventory_items.append_column("rank", pa.array(range(n)))
        .append_column("model", pa.array(["mine"] * n))
        .append_column("text_best_sim", pa.array([9.0] * n))
        .append_column("meta_rank", pa.array(["taken"] * n))
    )
    records = _Records()  # pytest's log capture is off in this suite (-p no:logging)
    logging.getLogger("riskrank").addHandler(records)
    try:
        res = sweep(inv, seeds, hashing_model, k=200, show_progress=False)
    finally:
        logging.getLogger("riskrank").removeHandler(records)
    said = " ".join(records.lines)
    assert "rank -> meta_meta_rank" in said and "model -> meta_model" in said
    q = res.queue.to_pandas()
    assert list(q["rank"]) == list(range(1, len(q) + 1))
    assert set(q["meta_model"]) == {"mine"} and set(q["model"]) <= {"full", "cold"}
    assert set(q["meta_text_best_sim"]) == {9.0} and q["text_best_sim"].max() <= 1.0 + 1e-6
    assert set(q["meta_rank"]) == {"taken"}  # the user's own meta_rank is untouched
    orig = dict(zip(inv["item_id"].to_pylist(), inv["rank"].to_pylist()))
    assert all(orig[i] == r for i, r in zip(q["item_id"], q["meta_meta_rank"]))


def test_cli_sweep_with_every_row_quarantined_is_refused(tmp_path, seeds, hashing_model, capsys):
    """Every row quarantined used to sweep into an empty queue with exit 0 and no warning,
    emptying a standing index (an outsider's fuzz: a broken export looked like a quiet day):
    refused, naming the reasons."""
    hashing_model.save(tmp_path / "m")
    pq.write_table(seeds, tmp_path / "s.parquet")
    pq.write_table(
        pa.table({"item_id": ["a", "b"], "text": ["", "\u200b"]}), tmp_path / "i.parquet"
    )
    argv = ["sweep", "--inventory", str(tmp_path / "i.parquet"), "--seeds"]
    argv += [str(tmp_path / "s.parquet"), "--model", str(tmp_path / "m"), "--out"]
    assert main(argv + [str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "every row (2) was quarantined" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "queue.parquet").exists()
    assert main(argv + [str(tmp_path / "o2"), "--budget", "0"]) == 2
    assert "budget=0" in capsys.readouterr().err


def test_a_bad_explore_share_is_refused_before_the_index_moves(
    tmp_path, seeds, inventory_items, hashing_model, capsys
):
    """--explore is checked with --budget, before anything is embedded: a standing index
    is not moved to a new version by a sweep that then fails."""
    hashing_model.save(tmp_path / "m")
    pq.write_table(seeds, tmp_path / "s.parquet")
    pq.write_table(inventory_items.drop(["label"]), tmp_path / "i.parquet")
    argv = ["sweep", "--inventory", str(tmp_path / "i.parquet"), "--seeds"]
    argv += [str(tmp_path / "s.parquet"), "--model", str(tmp_path / "m")]
    argv += ["--index", str(tmp_path / "standing")]
    for share in ("1.5", "-0.5", "nan"):
        assert main(argv + ["--out", str(tmp_path / "o"), "--explore", share]) == 2
        assert "expected a share in [0, 1)" in capsys.readouterr().err
        assert not (tmp_path / "standing").exists()
    with pytest.raises(ValueError, match="explore=True"):
        sweep(inventory_items.drop(["label"]), seeds, hashing_model, explore=True)
    from riskrank.rank.input_checks import check_explore

    check_explore(np.float32(0.1))  # a numpy share is a share


def test_a_refused_first_sweep_leaves_no_index_folder(
    tmp_path, seeds, inventory_items, hashing_model, capsys
):
    """An inventory refused for its schema (integer texts, no ids, no rows) left ``--index``
    holding only its lock, which the next run took for a standing index (an outsider's
    week); a folder that was there before is kept."""
    hashing_model.save(tmp_path / "m")
    pq.write_table(seeds, tmp_path / "s.parquet")
    inv = inventory_items.drop(["label"])
    bad = {
        "int_text": inv.set_column(1, "text", pa.array(range(inv.num_rows))),
        "no_ids": inv.drop(["item_id"]),
        "no_rows": inv.slice(0, 0),
    }
    for name, table in bad.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
        argv = ["sweep", "--inventory", str(tmp_path / f"{name}.parquet"), "--seeds"]
        argv += [str(tmp_path / "s.parquet"), "--model", str(tmp_path / "m")]
        argv += ["--index", str(tmp_path / name), "--out", str(tmp_path / f"o_{name}")]
        assert main(argv) != 0, name
        capsys.readouterr()
        assert not (tmp_path / name).exists(), (name, list((tmp_path / name).iterdir()))
    (tmp_path / "there").mkdir()
    argv[argv.index("--index") + 1] = str(tmp_path / "there")
    assert main(argv) != 0
    assert (tmp_path / "there").is_dir()


def test_an_index_inside_a_model_directory_is_refused(
    tmp_path, seeds, inventory_items, hashing_model, capsys
):
    """A model's history_index is sealed with it: a sweep or an index update pointed there
    is refused before anything is written."""
    hashing_model.save(tmp_path / "m")
    target = tmp_path / "m" / "history_index"
    before = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "m").rglob("*"))
    inv = inventory_items.drop(["label"])
    pq.write_table(inv, tmp_path / "i.parquet")
    with pytest.raises(ValueError, match="inside the model directory"):
        sweep(inv, seeds, hashing_model, index_dir=target, show_progress=False)
    argv = ["index", "update", "--inventory", str(tmp_path / "i.parquet"), "--index", str(target)]
    assert main(argv) == 2
    assert "inside the model directory" in capsys.readouterr().err
    after = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "m").rglob("*"))
    assert after == before


def test_cli_user_errors_are_one_line(tmp_path, seeds, hashing_model, capsys, monkeypatch):
    """What an outsider hit as tracebacks or puzzles: --out naming a file, a missing file
    to eval (the message was the bare path), --engine ray without Ray installed."""
    import sys

    hashing_model.save(tmp_path / "m")
    pq.write_table(seeds, tmp_path / "s.parquet")
    pq.write_table(pa.table({"item_id": ["a"], "text": ["an ad"]}), tmp_path / "i.parquet")
    (tmp_path / "afile").write_text("x")
    argv = ["sweep", "--inventory", str(tmp_path / "i.parquet"), "--seeds"]
    argv += [str(tmp_path / "s.parquet"), "--model", str(tmp_path / "m")]
    assert main(argv + ["--out", str(tmp_path / "afile")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert main(["eval", "--queue", str(tmp_path / "nope.parquet"), "--labels", "x"]) == 2
    assert "queue: no such file or directory" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as without the [ray] extra
    assert main(argv + ["--out", str(tmp_path / "o"), "--engine", "ray"]) == 2
    assert "pip install 'riskrank[ray]'" in capsys.readouterr().err


def test_every_column_a_sweep_writes_is_protected_from_metadata(
    inventory_items, seeds, hashing_model
):
    """Metadata named like a column the sweep writes was overwritten without a word
    (``campaign_id``, ``explanation``...) or crashed the sweep after its embedding (``slot``,
    ``campaign_members``: an outsider's report). Every column of the queue and candidates, in
    item and campaign mode, is one the renaming knows: a new one the pipeline adds fails here
    until it is."""
    from riskrank.rank.input_checks import _reserved

    inv = inventory_items.drop(["label"])
    written = set()
    for campaigns in (False, True):
        res = sweep(inv, seeds, hashing_model, k=200, campaigns=campaigns, budget=20,
                    show_progress=False)  # fmt: skip
        written |= set(res.queue.column_names) | set(res.candidates.column_names)
    written -= {*inv.column_names}
    assert written and " ".join(sorted(c for c in written if not _reserved(c))) == ""
    # Each of them as an inventory column reaches the queue as meta_<name>, in either mode.
    n = inv.num_rows
    mine = inv
    for name in sorted(written):
        mine = mine.append_column(name, pa.array([f"mine-{i}" for i in range(n)]))
    for campaigns in (False, True):
        q = sweep(mine, seeds, hashing_model, k=200, campaigns=campaigns, budget=20,
                  show_progress=False).queue  # fmt: skip
        for name in written:
            assert f"meta_{name}" in q.column_names, name
            assert all(str(v).startswith("mine-") for v in q[f"meta_{name}"].to_pylist()), name


def test_a_history_with_verdicts_in_words_is_read_as_grades(tmp_path):
    """A history exported as words ("violating", "benign") was refused whole ("type
    large_string, expected integer") without saying how to map them."""
    from riskrank.recall.history import validate_history

    history = {
        "item_id": ["a", "b", "c", "d", "e"],
        "policy": ["p"] * 5,
        "text": ["x", "y", "z", "w", "v"],
        "verdict": ["violating", "Benign", " 3 ", "spam", None],
    }
    rows, bad = validate_history(history)
    assert dict(zip(rows["item_id"].to_pylist(), rows["verdict"].to_pylist())) == {
        "a": 2,
        "b": 0,
        "c": 3,
    }
    reasons = dict(zip(bad["item_id"].to_pylist(), bad["reason"].to_pylist()))
    assert "'spam' is not a grade 0-3 (benign = 0, borderline = 1, violating = 2" in reasons["d"]
    assert reasons["e"] == "verdict is null/NaN"
    # A CSV where Parquet is read: said so, with the conversion.
    (tmp_path / "h.csv").write_text("item_id,policy,text,verdict\na,p,x,2\n")
    with pytest.raises(SchemaError, match=r"h\.csv is not Parquet.*pandas\.read_csv"):
        validate_history(tmp_path / "h.csv")
