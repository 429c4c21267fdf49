"""One writer per output directory; what killed writers left behind is cleaned."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from riskrank.index.output_lock import OutputLockedError, clean_temp_files, lock_path, output_lock
from riskrank.rank.app.cli import main
from riskrank.rank.pipeline import sweep


def test_a_second_sweep_into_a_busy_directory_is_refused(
    tmp_path, inventory_items, seeds, hashing_model
):
    out = tmp_path / "sw"
    # Another process holds the directory (as a running sweep would).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from riskrank.index.output_lock import output_lock
                with output_lock({str(out)!r}):
                    print("held", flush=True)
                    sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match="in use by another riskrank run"):
            sweep(inventory_items, seeds, hashing_model, out_dir=out, show_progress=False)
    finally:
        holder.communicate("")
    assert not (out / "queue.parquet").exists()
    # The holder is gone: its lock went with it.
    res = sweep(inventory_items, seeds, hashing_model, out_dir=out, k=200, show_progress=False)
    assert res.queue.num_rows > 0


def test_the_lock_is_exclusive_within_a_process_too(tmp_path):
    with output_lock(tmp_path / "x"):
        with pytest.raises(OutputLockedError):
            with output_lock(tmp_path / "x"):
                pass
    assert lock_path(tmp_path / "x") == tmp_path / ".x.lock"


def test_a_refusal_names_the_process_holding_the_lock(tmp_path):
    """The lock error named no process: an operator could not tell which run to wait for,
    and for a standing index "write somewhere else" meant embedding everything again (an
    outsider's note)."""
    import os

    with output_lock(tmp_path / "st", what="standing index"):
        with pytest.raises(OutputLockedError) as err:
            with output_lock(tmp_path / "st", what="standing index"):
                pass
    said = str(err.value)
    assert f"(pid {os.getpid()} on " in said and "one update at a time" in said
    assert not list(tmp_path.glob("*.holder"))  # gone with the lock


def test_cli_refuses_a_busy_model_directory(tmp_path, capsys):
    with output_lock(tmp_path / "model"):
        argv = ["train", "--history", "h.parquet", "--seeds", "s.parquet"]
        assert main(argv + ["--out", str(tmp_path / "model")]) == 2
    assert "in use" in capsys.readouterr().err


def test_temp_files_of_dead_writers_are_removed(tmp_path, inventory_items, seeds, hashing_model):
    out = tmp_path / "sw"
    (out / "index" / "_work").mkdir(parents=True)
    leftovers = [
        out / "queue.parquet.999999999.tmp",
        out / "index" / "items.parquet.999999998.tmp",
        out / "index" / "_work" / "chunk-000000-ab-cd.parquet.999999997.tmp",
    ]
    for p in leftovers:
        p.write_bytes(b"half a file")
    keep = out / "notes.tmp"  # not one of ours (no pid): left alone
    keep.write_text("mine")
    sweep(inventory_items, seeds, hashing_model, out_dir=out, k=200, show_progress=False)
    assert not any(p.exists() for p in leftovers) and keep.exists()
    assert clean_temp_files(tmp_path / "missing") == []


def test_a_live_writers_temp_files_are_left_alone(tmp_path, inventory_items, seeds, hashing_model):
    """A sweep into a parent of another writer's directory (a shared standing index) must
    not delete that writer's in-flight files (a reviewer's finding)."""
    import os

    out = tmp_path / "runs"
    live = out / "shared_index" / f"items.parquet.{os.getppid()}.tmp"  # a live process
    live.parent.mkdir(parents=True)
    live.write_bytes(b"in flight")
    sweep(inventory_items, seeds, hashing_model, out_dir=out, k=200, show_progress=False)
    assert live.read_bytes() == b"in flight"
