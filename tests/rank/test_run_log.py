"""Log lines of sweeps run at once in one process say which sweep they came from."""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

import riskrank.rank.pipeline as pipeline
from riskrank.index.run_log import get_logger
from riskrank.rank.pipeline import sweep


def test_concurrent_sweeps_tag_their_own_log_lines(monkeypatch, inventory_items, trained_model):
    # pytest's logging plugin is off (pyproject): listen on the library's logger directly.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    # Both sweeps wait for each other once their inputs are read: they overlap for certain.
    both = threading.Barrier(2, timeout=120)
    unusable = pipeline.refuse_unusable_seeds

    def meet(*args, **kwargs):
        both.wait()
        return unusable(*args, **kwargs)

    monkeypatch.setattr(pipeline, "refuse_unusable_seeds", meet)
    policies = ["counterfeit", "gambling"]  # neither has a review history: each warns

    def run(policy):
        seeds = pa.table({"seed_id": [policy], "policy": [policy], "text": [f"{policy} offer"]})
        return sweep(
            inventory_items.drop(["label"]), seeds, trained_model, k=50, show_progress=False
        )

    logging.getLogger("riskrank").addHandler(handler)
    try:
        with ThreadPoolExecutor(2) as pool:
            results = dict(zip(policies, pool.map(run, policies)))
        get_logger("riskrank").warning("outside any sweep")
    finally:
        logging.getLogger("riskrank").removeHandler(handler)
    run_ids = {p: r.report["run_id"] for p, r in results.items()}
    assert len(set(run_ids.values())) == 2
    for policy, run_id in run_ids.items():
        mine = [r for r in records if f"'{policy}' has no review history" in r.getMessage()]
        assert mine, policy
        for record in mine:
            assert record.riskrank_run == run_id
            assert record.getMessage().startswith(f"[run {run_id[:8]}] ")
    outside = [r for r in records if "outside any sweep" in r.getMessage()]
    assert outside[0].riskrank_run is None and outside[0].getMessage() == "outside any sweep"
