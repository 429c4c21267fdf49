"""index/collector.py: the sweep's garbage-collector settings are scoped, never left behind."""

import gc

from riskrank.index import collector


def test_paused_turns_the_collector_off_inside_and_back_as_it_was():
    assert gc.isenabled()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block restores what it found: off
    assert gc.isenabled()
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()  # a caller's own setting is kept
    finally:
        gc.enable()


def test_frozen_freezes_inside_and_unfreezes_on_exit_even_on_error():
    assert gc.get_freeze_count() == 0
    try:
        with collector.frozen():
            assert gc.get_freeze_count() > 0
            before = gc.get_freeze_count()
            made = [[i] for i in range(1000)]
            collector.freeze_more()
            # (a margin: frozen objects freed meanwhile by another thread lower the count)
            assert gc.get_freeze_count() >= before + len(made) // 2
            with collector.frozen():  # nested (a sweep inside a sweep's caller): no change
                assert gc.get_freeze_count() > 0
            assert gc.get_freeze_count() > 0  # the inner exit did not unfreeze the outer
            raise KeyError("boom")
    except KeyError:
        pass
    assert gc.get_freeze_count() == 0
    collector.freeze_more()  # outside a frozen block: nothing
    assert gc.get_freeze_count() == 0


def test_a_process_that_froze_objects_itself_keeps_its_freeze(monkeypatch):
    # What the block calls, not the freeze count: a frozen object freed meanwhile (by another
    # thread of the test session) lowers the count, and CI saw 694,764 for 694,766.
    gc.freeze()
    calls = []
    try:
        monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
        monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
        with collector.frozen():
            collector.freeze_more()
        assert calls == []  # left alone: nothing added, nothing undone
    finally:
        monkeypatch.undo()
        gc.unfreeze()


def test_a_sweep_runs_frozen_and_leaves_nothing_frozen(
    monkeypatch, tmp_path, trained_model, seeds, inventory_items
):
    from riskrank.rank import pipeline

    seen = []
    finish = pipeline.finish_sweep

    def spy(*args, **kwargs):
        seen.append(gc.get_freeze_count())
        return finish(*args, **kwargs)

    monkeypatch.setattr(pipeline, "finish_sweep", spy)
    inv = inventory_items.drop(["label"])
    pipeline.sweep(inv, seeds, trained_model, out_dir=tmp_path / "s", show_progress=False)
    assert seen and seen[0] > 10_000  # the libraries and the model, frozen during the sweep
    assert gc.get_freeze_count() == 0 and gc.isenabled()
