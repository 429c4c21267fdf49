"""``riskrank info`` / ``rr.info``: what a directory riskrank wrote is, and its state."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pytest
from conftest import make_items, train_small

import riskrank as rr
from riskrank.rank.app.cli import main
from riskrank.rank.pipeline import sweep
from riskrank.rank.review import import_verdicts

SWEEP = {"show_progress": False}


def test_a_standing_index_a_model_and_a_sweep_say_what_they_are(
    tmp_path, hashing_signal, seeds, history, capsys
):
    hashing_model = train_small(history, seeds, tmp_path / "model", hashing_signal)
    day0 = make_items(10, 20, prefix="i", seed=1).drop(["label"])
    day1 = pa.concat_tables([day0.slice(3), make_items(2, 3, prefix="n", seed=2).drop(["label"])])
    standing, out = tmp_path / "standing", tmp_path / "run"
    sweep(day0, seeds, hashing_model, index_dir=standing, **SWEEP)
    today = sweep(day1, seeds, hashing_model, index_dir=standing, out_dir=out, **SWEEP)

    about = rr.info(standing)
    assert about["kind"] == "standing index"
    assert (about["version"], about["versions_kept"]) == (2, [1, 2])
    update = today.report["index_update"]
    for key in ("added", "removed", "unchanged", "embedded"):
        assert about["last_update"][key] == update[key], key
    assert (update["added"], update["removed"]) == (5, 3)
    assert about["items"]["indexed"] == day1.num_rows
    assert about["signals"]["text"]["count"] == day1.num_rows
    assert about["disk_bytes"] > 0

    model = rr.info(tmp_path / "model")
    assert model["kind"] == "model" and model["version"] == 1 and model["parent_version"] is None
    verdicts = history["verdict"].to_pylist()
    assert model["reviews"]["scam"] == {
        "reviews": sum(p == "scam" for p in history["policy"].to_pylist()),
        "violating": sum(v >= 2 for v, p in zip(verdicts, history["policy"].to_pylist())
                         if p == "scam"),
    }  # fmt: skip

    run = rr.info(out)
    assert (run["kind"], run["complete"], run["run_id"]) == (
        "sweep output",
        True,
        today.report["run_id"],
    )
    assert run["queued"] == today.queue.num_rows
    marker = (out / "_SUCCESS").read_bytes()
    (out / "_SUCCESS").unlink()  # a run that died before its marker
    assert rr.info(out)["complete"] is False

    # The command line: the same, for a person or as JSON.
    assert main(["info", str(standing)]) == 0
    text = capsys.readouterr().out
    assert "version 2 (kept: v1, v2)" in text and "5 added" in text and "3 removed" in text
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["complete"] is False
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "not marked complete" in text and today.report["run_id"] in text  # whose counts
    # How each policy was calibrated and whether it acts (only report.md said so before).
    assert today.report["decisions"]
    for policy, d in today.report["decisions"].items():
        assert f"policy {policy}: model {d['model']}, calibration {d['calibration']}, " in text

    # An update that has not committed (killed, or running now): its version is not kept,
    # readers see the current one (a reviewer's report: "kept: v1, v2, v3" at version 2).
    shutil.copytree(standing / "versions" / "v000002", standing / "versions" / "v000003")
    (standing / "_delta").mkdir()
    about = rr.info(standing)
    assert (about["version"], about["versions_kept"], about["versions_unfinished"]) == (
        2, [1, 2], [3]
    )  # fmt: skip
    assert about["updating"] and about["items"]["indexed"] == day1.num_rows
    assert main(["info", str(standing)]) == 0
    assert "an update has not committed (v3)" in capsys.readouterr().out

    # What review import --no-retrain leaves: a history waiting for its retrain (of a run
    # that finished: the import refuses one that did not).
    (out / "_SUCCESS").write_bytes(marker)
    top = today.queue.slice(0, 4)
    verdicts = pa.table({"item_id": top["item_id"], "policy": top["policy"],
                         "verdict": pa.array([3, 0, 2, 1], pa.int8())})  # fmt: skip
    import_verdicts(verdicts, out / "queue.parquet", tmp_path / "model",
                    out_dir=tmp_path / "pending", retrain=False)  # fmt: skip
    pending = rr.info(tmp_path / "pending")
    assert (pending["kind"], pending["parent_version"], pending["imported"]) == (
        "pending import",
        1,
        4,
    )
    assert sum(n["reviews"] for n in pending["reviews"].values()) == history.num_rows + 4
    # Swept as if it were a model: the error says how to train it (it said `riskrank train`).
    with pytest.raises(FileNotFoundError, match="riskrank review retrain"):
        sweep(day1, seeds, tmp_path / "pending", **SWEEP)
    assert rr.import_verdicts is import_verdicts and callable(rr.retrain_pending)


def test_a_directory_riskrank_did_not_write_is_named_as_such(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(rr.SchemaError, match="not a riskrank directory"):
        rr.info(tmp_path)
    assert main(["info", str(tmp_path)]) == 2
    assert "not a riskrank directory" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "absent")]) == 2
    (tmp_path / "standing.json").write_text("{not json")
    with pytest.raises(rr.SchemaError, match="unreadable"):
        rr.info(tmp_path)
    assert main(["info", str(tmp_path / "notes.txt")]) == 2
    assert "a file, not a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, body",
    [
        ("manifest.json", '{"a": 1}'),  # any tool's manifest
        ("_SUCCESS", ""),  # Hadoop's and Spark's marker
        ("model.json", '{"modelTopology": {}, "weightsManifest": []}'),  # TensorFlow.js
        ("report.json", '{"title": "Q3"}'),
        ("pending.json", "[]"),
    ],
)
def test_another_tools_files_are_not_taken_for_riskranks(name, body, tmp_path):
    """These are common names: other tools' folders were called a riskrank index, a finished
    sweep and a model (an outsider's report)."""
    (tmp_path / name).write_text(body)
    (tmp_path / "part-00000.parquet").write_bytes(b"PAR1")
    with pytest.raises(rr.SchemaError, match=f"its {name} is not riskrank's"):
        rr.info(tmp_path)
    assert not rr.sweep_complete(tmp_path)


def test_a_killed_first_sweep_or_import_is_named(tmp_path):
    """A first sweep killed while embedding leaves only index/_delta/, and a first import
    killed mid-way a history_index/ without model.json: both were "not a riskrank
    directory" (an outsider's report)."""
    (tmp_path / "run" / "index" / "_delta").mkdir(parents=True)
    with pytest.raises(rr.SchemaError, match="a sweep whose first run has not finished"):
        rr.info(tmp_path / "run")
    (tmp_path / "v2" / "history_index").mkdir(parents=True)
    with pytest.raises(rr.SchemaError, match="an unfinished model directory"):
        rr.info(tmp_path / "v2")


def test_a_deletion_list_is_counted_as_read_and_deleted(
    tmp_path, hashing_signal, seeds, history, capsys
):
    # An update that deleted 2 of 300 rows read 300: info said "of 298 read" (an outsider).
    model = train_small(history, seeds, tmp_path / "model", hashing_signal)
    day = make_items(12, 20, prefix="i", seed=1).drop(["label"])
    standing = tmp_path / "standing"
    ids = day["item_id"].to_pylist()
    sweep(day, seeds, model, index_dir=standing, deletions=ids[:2], **SWEEP)
    items = rr.info(standing)["items"]
    n = day.num_rows
    assert (items["read"], items["deleted"], items["indexed"]) == (n, 2, n - 2)
    assert items["read"] == items["indexed"] + items["quarantined"] + items["deleted"]
    main(["info", str(standing)])
    assert f"{n - 2} indexed, 0 quarantined, 2 deleted (deletion list), of {n} read" in (
        capsys.readouterr().out
    )


def test_a_reader_gone_ends_the_command_quietly(tmp_path):
    """`riskrank info ... | head` printed a BrokenPipeError traceback (an outsider's report):
    the command's stdout here is a pipe whose reader is already gone, so any write fails."""
    import os
    import subprocess
    import sys

    (tmp_path / "report.json").write_text('{"items_in": 5}')  # a sweep's report, alone
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "riskrank.rank.app.cli", "info", str(tmp_path)],
            stdout=write,
            stderr=subprocess.PIPE,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr.decode()
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr


def test_a_standing_ivf_index_says_how_its_quantizer_is_doing(tmp_path, capsys):
    """The retrain rules' bookkeeping (index/standing.py): when the quantizer was trained,
    what was added since, its sampled recall then and now."""
    from hashing_signal import HashingTextSignal

    from riskrank.index.standing import StandingIndex

    day0 = make_items(100, 200, prefix="i", seed=1).select(["item_id", "text"])
    day1 = pa.concat_tables(
        [day0, make_items(10, 20, prefix="n", seed=2).select(day0.column_names)]
    )
    standing = StandingIndex(tmp_path / "st")
    for day in (day0, day1):
        standing.update(day, [HashingTextSignal()], key="IVF4,Flat", show_progress=False)
    ivf = rr.info(tmp_path / "st")["signals"]["text"]["ivf"]
    assert (ivf["trained_version"], ivf["added_since_training"]) == (1, 30)
    main(["info", str(tmp_path / "st")])
    out = capsys.readouterr().out
    assert "IVF4,Flat over 330 items (quantizer trained at v1 on 300 items, 30 added since; " in out
    assert (
        f"sampled recall@10 {ivf['recall_at_training']} after training, {ivf['recall']} now)" in out
    )


def test_the_last_update_line_counts_vectors_taken_from_another_index():
    """A history index an import updated took its reviewed items' vectors from the sweep's
    index: the line said "0 embedded, 3,252 vectors reused" for 3,946 items, leaving the 694
    donated out (an outsider's audit of the README)."""
    from riskrank.rank.app.info import _index_lines

    last = {"added": 697, "changed": 0, "removed": 0, "unchanged": 3250, "embedded": 0,
            "reused_vectors": 3252, "donated_vectors": 694}  # fmt: skip
    about = {"path": "h", "kind": "standing index", "version": 2, "versions_kept": [1, 2],
             "updated_at": "t", "items": {}, "signals": {},
             "last_update": last, "disk_bytes": 0}  # fmt: skip
    lines = [line for line in _index_lines(about) if line.startswith("last update")]
    assert lines[0].endswith("0 embedded, 3,252 vectors reused, 694 donated"), lines
    last["donated_vectors"] = 0
    lines = [line for line in _index_lines(about) if line.startswith("last update")]
    assert lines[0].endswith("vectors reused")


def test_the_cli_says_riskranks_own_warnings_in_one_line(capsys):
    """`riskrank review retrain` printed a ThinHistoryWarning as Python does: a file path,
    a line number and a line of riskrank's source (an outsider's audit of the README)."""
    import warnings
    from functools import partial

    from riskrank.rank.app.cli import _show_warning
    from riskrank.rank.input_checks import ThinHistoryWarning

    seen = []
    show = partial(_show_warning, lambda *a: seen.append(a[0]))
    show(ThinHistoryWarning("history: policy 'x' has 1 violating"), ThinHistoryWarning, "f", 1)
    assert capsys.readouterr().err == "riskrank: warning: history: policy 'x' has 1 violating\n"
    show(UserWarning("another library's"), UserWarning, "f", 1)  # shown as Python shows it
    assert [str(w) for w in seen] == ["another library's"]
    before = warnings.showwarning
    assert main(["info", "/nonexistent/riskrank-dir"]) == 2
    assert warnings.showwarning is before  # (main installs it for its run only)
