"""A sweep's output directory holds one run's files, and ``_SUCCESS`` says when they are all
written (rank/sweep_output.py): a run killed while writing leaves no marker and none of the
previous run's files beside its own."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import riskrank as rr
from riskrank.index.standing import StandingIndex
from riskrank.rank.app.cli import main
from riskrank.rank.pipeline import sweep
from riskrank.rank.sweep_output import MARKER

SWEEP = dict(k=200, show_progress=False, chunk_size=32)


def _listed(out) -> list[str]:
    return json.loads((out / MARKER).read_text())["files"]


def test_a_finished_sweep_lists_its_files_in_the_marker(tmp_path, inventory_items, seeds,
                                                        hashing_model):  # fmt: skip
    out = tmp_path / "run"
    result = sweep(inventory_items, seeds, hashing_model, out_dir=out, **SWEEP)
    assert rr.sweep_complete(out)
    assert _listed(out) == [
        "queue.parquet", "candidates.parquet", "quarantine.parquet", "signal_failures.parquet",
        "swept_ids.parquet", "report.json",
    ]  # fmt: skip
    # write_reports beside the sweep's files: the marker then lists them too.
    rr.write_reports(result, seeds)
    assert {"report.md", "report.html", "report.png"} <= set(_listed(out))
    # Written elsewhere, they are not a finished run's outputs: no marker there.
    other = tmp_path / "elsewhere"
    rr.write_reports(result, seeds, out_dir=other)
    assert (other / "report.md").is_file() and not rr.sweep_complete(other)
    assert json.loads((out / MARKER).read_text())["run_id"] == result.report["run_id"]


def test_reports_true_writes_them_before_the_marker(tmp_path, inventory_items, seeds,
                                                   hashing_model):  # fmt: skip
    out = tmp_path / "run"
    sweep(inventory_items, seeds, hashing_model, out_dir=out, reports=True, **SWEEP)
    assert {"queue.parquet", "report.json", "report.md", "report.html", "report.png"} <= set(
        _listed(out)
    )


def test_a_run_that_dies_while_writing_leaves_no_marker_and_no_stale_report(
    tmp_path, inventory_items, seeds, hashing_model, monkeypatch
):
    out = tmp_path / "run"
    sweep(inventory_items, seeds, hashing_model, out_dir=out, reports=True, **SWEEP)
    yesterday = (out / "report.md").read_text()
    assert rr.sweep_complete(out)

    # Today's inventory is smaller; the run dies after its queue, before its reports (as a
    # kill -9 there did: the outsider found today's queue beside no report, and nothing said
    # the run had died).
    import riskrank.rank.evaluation.report as report_module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the reports")

    monkeypatch.setattr(report_module, "write_reports_into", killed)
    today = inventory_items.slice(0, 50)
    with pytest.raises(KeyboardInterrupt):
        sweep(today, seeds, hashing_model, out_dir=out, reports=True, **SWEEP)
    assert not rr.sweep_complete(out)
    assert pq.read_table(out / "queue.parquet").num_rows <= 50  # today's, whole
    for name in ("report.md", "report.html", "report.png"):
        assert not (out / name).exists(), name  # yesterday's would pass for today's
    monkeypatch.undo()

    # Run again: complete, with today's report.
    sweep(today, seeds, hashing_model, out_dir=out, reports=True, **SWEEP)
    assert rr.sweep_complete(out)
    assert (out / "report.md").read_text() != yesterday


def test_a_run_that_fails_after_reading_its_inputs_takes_the_marker_off(
    tmp_path, inventory_items, seeds, hashing_model, monkeypatch
):
    """A file sensor started for today's run must not fire on yesterday's marker, during the
    run or after it died; yesterday's files stay as they were."""
    import riskrank.rank.pipeline as pipeline

    out = tmp_path / "run"
    sweep(inventory_items, seeds, hashing_model, out_dir=out, **SWEEP)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != MARKER}
    seen = []

    def recall(*args, **kwargs):
        seen.append(rr.sweep_complete(out))
        raise RuntimeError("died while recalling")

    monkeypatch.setattr(pipeline, "recall_and_score", recall)
    with pytest.raises(RuntimeError, match="died while recalling"):
        sweep(inventory_items.slice(0, 50), seeds, hashing_model, out_dir=out, **SWEEP)
    assert seen == [False] and not rr.sweep_complete(out)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # nothing of yesterday's was removed or rewritten
    # Refused while reading its arguments (before its inputs): the previous run stays whole.
    monkeypatch.undo()
    sweep(inventory_items, seeds, hashing_model, out_dir=out, **SWEEP)
    with pytest.raises(ValueError, match="budget"):
        sweep(inventory_items, seeds, hashing_model, out_dir=out, budget=-1, **SWEEP)
    assert rr.sweep_complete(out)


def test_write_reports_marks_only_its_own_finished_run(tmp_path, inventory_items, seeds,
                                                       hashing_model, monkeypatch):  # fmt: skip
    out = tmp_path / "run"
    yesterday = sweep(inventory_items, seeds, hashing_model, out_dir=out, **SWEEP)
    assert json.loads((out / MARKER).read_text())["run_id"] == yesterday.report["run_id"]
    today = sweep(inventory_items.slice(0, 40), seeds, hashing_model, out_dir=out, **SWEEP)
    # Yesterday's result would put yesterday's reports beside today's queue: refused.
    with pytest.raises(ValueError, match="another sweep run"):
        rr.write_reports(yesterday, seeds)
    # Into another sweep's directory: refused too (its report.json would be overwritten).
    other = tmp_path / "other"
    sweep(inventory_items, seeds, hashing_model, out_dir=other, **SWEEP)
    with pytest.raises(ValueError, match="another sweep run"):
        rr.write_reports(today, seeds, out_dir=other)
    rr.write_reports(today, seeds)
    assert rr.sweep_complete(out) and "report.md" in _listed(out)
    # A run that died while writing: reports of a result beside it make no marker.
    import riskrank.rank.pipeline as pipeline

    def died(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_parquet", died)
    with pytest.raises(KeyboardInterrupt):
        sweep(inventory_items, seeds, hashing_model, out_dir=out, **SWEEP)
    monkeypatch.undo()
    rr.write_reports(today, seeds)
    assert (out / "report.md").is_file() and not rr.sweep_complete(out)


def test_a_relative_out_dir_is_the_same_directory_after_a_chdir(
    tmp_path, inventory_items, seeds, hashing_model, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = sweep(inventory_items, seeds, hashing_model, out_dir="runs/today", **SWEEP)
    assert result.out_dir == tmp_path / "runs" / "today"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    rr.write_reports(result, seeds)
    assert not (tmp_path / "elsewhere" / "runs").exists()
    assert "report.md" in _listed(tmp_path / "runs" / "today")


def test_reports_take_labels_and_need_an_out_dir(tmp_path, inventory_items, seeds,
                                                hashing_model):  # fmt: skip
    labels = inventory_items.select(["item_id", "label"])
    out = tmp_path / "run"
    result = sweep(inventory_items, seeds, hashing_model, out_dir=out, reports={"labels": labels},
                   **SWEEP)  # fmt: skip
    assert "Quality against the labels" in (out / "report.md").read_text()
    # The result carries the quality report.json has (it lacked it: an outsider's report).
    assert result.report["quality"] == json.loads((out / "report.json").read_text())["quality"]
    assert "report.md" in _listed(out)
    with pytest.raises(ValueError, match="give out_dir"):
        sweep(inventory_items, seeds, hashing_model, reports=True, **SWEEP)
    with pytest.raises(TypeError, match="labels and quality"):
        sweep(inventory_items, seeds, hashing_model, out_dir=out, reports={"label": 1}, **SWEEP)


def test_cli_sweep_marks_its_run_complete_after_the_reports(tmp_path, inventory_items, seeds,
                                                            hashing_model):  # fmt: skip
    inv, sd, out = tmp_path / "inv.parquet", tmp_path / "seeds.parquet", tmp_path / "out"
    pq.write_table(inventory_items, inv)
    pq.write_table(seeds, sd)
    hashing_model.save(tmp_path / "m")
    args = ["sweep", "--inventory", str(inv), "--seeds", str(sd), "--model", str(tmp_path / "m")]
    assert main([*args, "--out", str(out), "--k", "200"]) == 0
    assert {"queue.parquet", "report.md", "report.html", "report.png", "report.json"} <= set(
        _listed(out)
    )


def test_write_reports_keeps_a_finished_run_whole(tmp_path, inventory_items, seeds,
                                                  hashing_model):  # fmt: skip
    """Found by a reviewer: a bad labels table cost the run its marker and reports; a result
    wrote its reports beside another run's while that run's marker was off."""
    from riskrank.index.output_lock import OutputLockedError, output_lock

    out = tmp_path / "run"
    result = sweep(inventory_items, seeds, hashing_model, out_dir=out, reports=True, **SWEEP)
    bad = pa.table({"item_id": ["x"], "lbl": [1]})
    with pytest.raises(rr.SchemaError, match="labels"):
        rr.write_reports(result, seeds, labels=bad)
    assert rr.sweep_complete(out) and (out / "report.md").is_file()
    # While a sweep (or another writer) holds the directory: refused, nothing written.
    with output_lock(out, what="sweep output directory"):
        with pytest.raises(OutputLockedError):
            rr.write_reports(result, seeds)
    # Marker off (a run in flight or dead) but report.json another run's: refused too.
    other = sweep(inventory_items.slice(0, 30), seeds, hashing_model, **SWEEP)
    (out / MARKER).unlink()
    with pytest.raises(ValueError, match="another sweep run"):
        rr.write_reports(other, seeds, out_dir=out)


def test_arguments_are_refused_before_the_previous_run_is_touched(
    tmp_path, inventory_items, seeds, hashing_model
):
    out = tmp_path / "run"
    sweep(inventory_items, seeds, hashing_model, out_dir=out, index_dir=tmp_path / "st", **SWEEP)
    with pytest.raises(TypeError, match="labels and quality"):
        sweep(inventory_items, seeds, hashing_model, out_dir=out, reports={"label": 1}, **SWEEP)
    with pytest.raises(rr.SchemaError, match="labels"):
        sweep(inventory_items, seeds, hashing_model, out_dir=out,
              reports={"labels": pa.table({"item_id": ["x"]})}, **SWEEP)  # fmt: skip
    with pytest.raises(ValueError, match="deletion list needs today's inventory"):
        sweep(None, seeds, hashing_model, out_dir=out, index_dir=tmp_path / "st",
              deletions=["x"], **SWEEP)  # fmt: skip
    # An index key without an inventory was ignored silently (a reviewer's finding).
    with pytest.raises(ValueError, match=r"an index key \(IVF4,Flat\) needs today's inventory"):
        sweep(None, seeds, hashing_model, out_dir=out, index_dir=tmp_path / "st",
              index_key="IVF4,Flat", **SWEEP)  # fmt: skip
    assert rr.sweep_complete(out)


def test_an_out_dir_in_the_inventory_or_a_model_directory_is_refused(
    tmp_path, inventory_items, seeds, hashing_model, capsys
):
    # The queue, reports and index went in among the inventory's files, and the next sweep
    # of that inventory failed reading report.json as Parquet; into a model directory, they
    # made it neither (an outsider's report). Refused before anything is written.
    ads = tmp_path / "ads"
    ads.mkdir()
    pq.write_table(inventory_items.drop(["label"]), ads / "part-0.parquet")
    for out in (ads, ads / "run"):
        with pytest.raises(ValueError, match="inside the inventory directory"):
            sweep(str(ads), seeds, hashing_model, out_dir=out, **SWEEP)
    # A standing index there too (a reviewer's find: the next read met standing.json).
    with pytest.raises(ValueError, match="the index .*standing is inside the inventory"):
        sweep(str(ads), seeds, hashing_model, index_dir=ads / "standing", **SWEEP)
    with pytest.raises(ValueError, match="the standing index .* is inside the inventory"):
        StandingIndex(ads / "st2").update(str(ads), hashing_model.signals)
    # ... and a folder a path pattern or a list names (reviewer CE: the index went inside it)
    for named in (str(tmp_path / "ad*"), [str(ads)]):
        with pytest.raises(ValueError, match="the index .*standing is inside the inventory"):
            sweep(named, seeds, hashing_model, index_dir=ads / "standing", **SWEEP)
    model_dir = tmp_path / "model"
    hashing_model.save(model_dir)
    args = ["sweep", "--inventory", str(ads), "--seeds", str(tmp_path / "seeds.parquet")]
    pq.write_table(seeds, tmp_path / "seeds.parquet")
    assert main([*args, "--model", str(model_dir), "--out", str(model_dir)]) == 2
    assert "is inside the model directory" in capsys.readouterr().err
    # (The output lock's file, hidden, is all that is left: Parquet readers skip it.)
    assert sorted(p.name for p in ads.iterdir() if p.name[0] != ".") == ["part-0.parquet"]
    assert not (model_dir / "queue.parquet").exists() and not (model_dir / "index").exists()


def test_a_sweep_refuses_to_replace_files_no_sweep_wrote(
    tmp_path, inventory_items, seeds, hashing_model
):
    """A sweep deleted a user's own report.md and overwrote another tool's queue.parquet in
    its out_dir (an outsider's report); train and review import refuse such folders."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("# my own analysis notes\n")
    (out / "queue.parquet").write_text("another tool's export, not Parquet")
    (out / "notes.txt").write_text("kept")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match=r"holds queue\.parquet, report\.md, which"):
        sweep(inventory_items, seeds, hashing_model, out_dir=out, **SWEEP)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # A Parquet table of other columns is not a sweep's either.
    (out / "report.md").unlink()
    pq.write_table(pa.table({"ad": ["a"], "spend": [1.0]}), out / "queue.parquet")
    with pytest.raises(FileExistsError, match=r"holds queue\.parquet,"):
        sweep(inventory_items, seeds, hashing_model, out_dir=out, **SWEEP)
    # The plot rr.write_reports left when killed after it (an outsider's repro) is riskrank's.
    plots = tmp_path / "plots"
    plots.mkdir()
    reports = tmp_path / "reports"
    rr.write_reports(sweep(inventory_items, seeds, hashing_model, **SWEEP), seeds, out_dir=reports)
    (plots / "report.png").write_bytes((reports / "report.png").read_bytes())
    sweep(inventory_items, seeds, hashing_model, out_dir=plots, **SWEEP)
    assert rr.sweep_complete(plots)
    # Files a sweep wrote are replaced: a first run killed before report.json left its
    # tables only, and the run again finishes (files of other names are left alone).
    first = tmp_path / "first"
    sweep(inventory_items, seeds, hashing_model, out_dir=first, **SWEEP)
    for name in (MARKER, "report.json"):
        (first / name).unlink()
    (first / "notes.txt").write_text("kept")
    sweep(inventory_items, seeds, hashing_model, out_dir=first, reports=True, **SWEEP)
    assert rr.sweep_complete(first) and (first / "notes.txt").read_text() == "kept"
    # And a finished run's folder, reports and all, is the next run's to replace.
    sweep(inventory_items.slice(0, 50), seeds, hashing_model, out_dir=first, **SWEEP)
    assert rr.sweep_complete(first)


def test_report_md_says_why_in_the_reviewers_words(tmp_path, inventory_items, seeds,
                                                    hashing_model):  # fmt: skip
    """report.md's "why" column was the ``reasons`` feature values ("log-odds of a linear
    classifier trained on the reviewed items (lexical) = 1.64"), beside report.html's sentence."""
    out = tmp_path / "run"
    result = sweep(inventory_items, seeds, hashing_model, out_dir=out, reports=True, **SWEEP)
    lines = (out / "report.md").read_text().splitlines()
    top = lines[lines.index("| rank | item | policy | P(risk) | action | why |") + 2]
    first = result.queue.slice(0, 1).to_pylist()[0]
    assert first["explanation"] and top.endswith(f"| {first['explanation']} |")
    assert first["reasons"] not in top


def test_an_empty_queue_has_no_ap(inventory_items):
    """An empty queue reported AP 0.891 and NDCG 0.962 against 60 labels (the expected value
    of a random order of them; an outsider's report): a queue holding none has no order."""
    from riskrank.rank.evaluation.report import evaluate
    from riskrank.rank.queue import QUEUE_SCHEMA

    labels = inventory_items.select(["item_id", "label"])
    quality = evaluate(QUEUE_SCHEMA.empty_table(), labels)
    assert quality["coverage"] == 0.0 and quality["AP"] is None and quality["NDCG@100"] is None
    assert quality["items"] == labels.num_rows
