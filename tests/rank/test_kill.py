"""kill -9 at random (seeded) points of a retrain and a sweep: nothing half-written is ever
loaded, and the re-run's outputs equal an uninterrupted run's. benchmarks/kill_trials.py
runs many more trials."""

from __future__ import annotations

from kill_harness import run_trials, run_update_trials


def test_killed_retrains_and_sweeps_recover_exactly(tmp_path):
    # Delays within 0.8x of an uninterrupted run: most kills land inside the work. Whether
    # one does is up to the machine's load; the assertions hold either way.
    trials = run_trials(tmp_path, 2, seed=7, spread=0.8)
    assert len(trials) == 4
    for t in trials:
        assert t.equal, t
        if t.kind == "train":
            assert t.after_kill in ("old model", "new model") or t.after_kill.startswith(
                "refused"
            ), t


def test_killed_standing_index_updates_leave_a_whole_version_and_resume(tmp_path):
    trials = run_update_trials(tmp_path, 3, seed=3, spread=0.8)
    assert len(trials) == 3
    for t in trials:
        assert t.equal, t
        assert t.after_kill in ("previous version", "new version"), t
