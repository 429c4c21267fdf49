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
