"""A sweep's output directory holds one run's files, and ``_SUCCESS`` says when they are all
written (rank/sweep_output.py): a run killed while writing leaves no marker and none of the
previous run's files beside its own."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

import riskrank as rr
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
        "report.json",
    ]  # fmt: skip
    # write_reports beside the sweep's files: the marker then lists them too.
    rr.write_reports(result, seeds)
    assert {"report.md", "report.html", "report.png"} <= set(_listed(out))
    # Written elsewhere, they are not this run's outputs: no marker there.
    other = tmp_path / "elsewhere"
    rr.write_reports(result, seeds, out_dir=other)
    assert (other / "report.md").is_file() and not rr.sweep_complete(other)


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


def test_a_sweep_refused_before_writing_keeps_the_previous_run(tmp_path, inventory_items, seeds,
                                                               hashing_model):  # fmt: skip
    out = tmp_path / "run"
    sweep(inventory_items, seeds, hashing_model, out_dir=out, **SWEEP)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    bad = inventory_items.drop(["item_id"])
    with pytest.raises(rr.SchemaError):
        sweep(bad, seeds, hashing_model, out_dir=out, **SWEEP)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before and rr.sweep_complete(out)


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
