"""The short import (``import riskrank as rr``) and the stage packages live side by side."""

import types

import riskrank as rr


def test_stage_packages_are_not_hidden_by_the_facades_names():
    import riskrank.recall

    for stage in ("index", "recall", "rank"):
        assert isinstance(getattr(rr, stage), types.ModuleType), stage
    assert riskrank.recall.SeedSet is rr.SeedSet  # (was a function: AttributeError)
    assert rr.recall_candidates is riskrank.recall.recall


def test_every_exported_name_exists():
    assert not [name for name in rr.__all__ if not hasattr(rr, name)]


def test_a_library_sweep_writes_the_clis_reports(tmp_path, hashing_model, seeds, inventory_items):
    """The reports were the CLI's alone: an analyst had to copy its glue to get them."""
    inv = inventory_items.drop(["label"])
    labels = inventory_items.select(["item_id", "label"])
    result = rr.sweep(inv, seeds, hashing_model, out_dir=tmp_path / "today", show_progress=False)
    written = rr.write_reports(result, seeds, labels=labels)
    assert {p.name for p in written.values()} == {"report.md", "report.png", "report.html"}
    assert all(p.parent == tmp_path / "today" and p.stat().st_size for p in written.values())
    assert "AP" in written["markdown"].read_text()  # the quality against the labels
    html = written["html"].read_text()
    assert result.queue["item_id"][0].as_py() in html
