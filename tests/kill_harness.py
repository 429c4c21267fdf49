"""Kill -9 trials: run a train or a sweep in a subprocess, SIGKILL it at a random point,
check that nothing half-written can be loaded, re-run, and compare with an uninterrupted run.

Used by tests/rank/test_kill.py (a few seeded trials) and benchmarks/kill_trials.py (many).
The runs use the hashing text signal (tests/hashing_signal.py): real FAISS, LightGBM and
Parquet files, no model weights, so a trial costs seconds.

Run as a script it is the worker: ``python kill_harness.py train|sweep ARGS...``; it prints
``ready`` once imported, so the kill lands in the work, not in the imports.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


def small_ranker():
    from riskrank.rank.ranker import RiskRanker

    return RiskRanker(n_estimators=100, min_child_samples=10, n_jobs=1)


def run_train(history, seeds, model_dir) -> None:
    from hashing_signal import HashingTextSignal

    from riskrank.rank.pipeline import train

    train(
        history,
        seeds,
        model_dir,
        signals=[HashingTextSignal()],
        k=200,
        ranker=small_ranker(),
        lexical_probe=False,
        show_progress=False,
    )


def run_sweep(inventory, seeds, model_dir, out_dir) -> None:
    import hashing_signal  # noqa: F401 - registers the signal the model names

    from riskrank.rank.pipeline import sweep

    sweep(
        inventory, seeds, model_dir, out_dir=out_dir, k=200, chunk_size=32, show_progress=False,
        reports=True,  # as the CLI does: a kill can land between the queue and its reports
    )  # fmt: skip


def make_inputs(root: Path, *, n_history: int = 400, n_inventory: int = 800) -> dict[str, Path]:
    """History (two versions: a retrain replaces the first model), seeds and inventory."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from conftest import make_items

    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, seed in (("history_a", 1), ("history_b", 3)):
        t = make_items(n_history // 3, n_history - n_history // 3, prefix="h", seed=seed)
        verdict = pa.array([2 * v for v in t["label"].to_pylist()], pa.int8())
        hist = pa.table(
            {
                "item_id": t["item_id"],
                "text": t["text"],
                "policy": ["scam"] * t.num_rows,
                "verdict": verdict,
            }
        )
        paths[name] = root / f"{name}.parquet"
        pq.write_table(hist, paths[name])
    inv = make_items(n_inventory // 3, n_inventory - n_inventory // 3, prefix="i", seed=2)
    paths["inventory"] = root / "inventory.parquet"
    pq.write_table(inv.drop(["label"]), paths["inventory"])
    seeds = pa.table(
        {
            "seed_id": ["s1", "s2", "s3"],
            "policy": ["scam"] * 3,
            "text": [
                "You won a free iPhone! Just pay the shipping fee to claim your prize",
                "Instant loan approval guaranteed, no credit check needed",
                "Replica Rolex watches, designer handbags at 90% off",
            ],
        }
    )
    paths["seeds"] = root / "seeds.parquet"
    pq.write_table(seeds, paths["seeds"])
    return paths


def model_fingerprint(model_dir: Path) -> dict:
    """The checksums of every model artefact (equal dicts: byte-identical models)."""
    return json.loads((Path(model_dir) / "model.json").read_text())["checksums"]


def sweep_outcome(out_dir: Path) -> dict:
    import pyarrow.parquet as pq

    queue = pq.read_table(Path(out_dir) / "queue.parquet")
    report = json.loads((Path(out_dir) / "report.json").read_text())
    return {
        "ids": queue["item_id"].to_pylist(),
        "proba": queue["risk_probability"].to_pylist(),
        "counts": {k: report[k] for k in ("items_in", "items_indexed", "items_quarantined")},
    }


@dataclass
class Trial:
    kind: str
    delay: float
    killed: bool  # False: the run finished before the kill came
    after_kill: str  # what loading found right after the kill
    equal: bool  # the re-run's outputs equal the uninterrupted run's


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(HERE / "kill_harness.py"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def kill_at(args: list[str], delay: float) -> bool:
    """Start the worker, wait for ``ready``, SIGKILL it ``delay`` seconds later; True if it
    was still running when killed."""
    proc = _spawn(args)
    assert proc.stdout.readline().strip() == "ready", "worker did not start"
    time.sleep(delay)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return alive


def inspect_model(model_dir: Path, old: dict | None, new: dict) -> str:
    """After a kill: the model directory loads as the old model or the new one, or is
    refused with a clear error; anything else (a mixture) is a failure."""
    from riskrank.rank.model import RiskModel

    try:
        RiskModel.load(model_dir)
    except (FileNotFoundError, ValueError) as exc:
        return f"refused: {type(exc).__name__}"
    found = model_fingerprint(model_dir)
    if found == new:
        return "new model"
    if old is not None and found == old:
        return "old model"
    raise AssertionError(f"{model_dir} loaded a model that is neither the old nor the new one")


def inspect_sweep(out_dir: Path, reference: dict) -> str:
    """After a kill: the index opens whole or is refused; every table present is readable;
    where the run's ``_SUCCESS`` marker is, every file it lists is there and the run's."""
    import pyarrow.parquet as pq

    from riskrank.index.store import InventoryIndex
    from riskrank.rank.sweep_output import MARKER

    state = []
    try:
        InventoryIndex.load(Path(out_dir) / "index")
        state.append("index whole")
    except (FileNotFoundError, ValueError) as exc:
        state.append(f"index refused: {type(exc).__name__}")
    for name in ("candidates", "queue", "quarantine"):
        path = Path(out_dir) / f"{name}.parquet"
        if path.exists():
            pq.read_table(path)  # written atomically: never half a file
            state.append(name)
    marker = Path(out_dir) / MARKER
    if marker.exists():
        listed = json.loads(marker.read_text())["files"]
        missing = [f for f in listed if not (Path(out_dir) / f).is_file()]
        assert not missing and "report.md" in listed, (listed, missing)
        assert sweep_outcome(out_dir) == reference, "a marked run differs from the reference"
        state.append("complete")
    return ", ".join(state)


def train_trial(root: Path, paths: dict, reference: dict, old: dict, delay: float) -> Trial:
    """Retrain over an existing model (history A -> B), killed after ``delay`` seconds."""
    import shutil

    model_dir = root / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(root / "ref_model_a", model_dir)
    killed = kill_at(["train", paths["history_b"], paths["seeds"], model_dir], delay)
    after = inspect_model(model_dir, old, reference)
    run_train(paths["history_b"], paths["seeds"], model_dir)
    return Trial("train", delay, killed, after, model_fingerprint(model_dir) == reference)


def sweep_trial(root: Path, paths: dict, reference: dict, delay: float) -> Trial:
    import shutil

    out = root / "sweep"
    shutil.rmtree(out, ignore_errors=True)
    args = ["sweep", paths["inventory"], paths["seeds"], root / "ref_model_b", out]
    killed = kill_at(args, delay)
    after = inspect_sweep(out, reference)
    run_sweep(paths["inventory"], paths["seeds"], root / "ref_model_b", out)
    return Trial("sweep", delay, killed, after, sweep_outcome(out) == reference)


def references(root: Path, paths: dict) -> dict:
    """Uninterrupted runs: model A, model B (the retrain target) and a sweep with model B;
    also the wall time of each worker's work, to draw kill points from."""
    t = time.time()
    run_train(paths["history_a"], paths["seeds"], root / "ref_model_a")
    t_train = time.time() - t
    run_train(paths["history_b"], paths["seeds"], root / "ref_model_b")
    t = time.time()
    run_sweep(paths["inventory"], paths["seeds"], root / "ref_model_b", root / "ref_sweep")
    return {
        "model_a": model_fingerprint(root / "ref_model_a"),
        "model_b": model_fingerprint(root / "ref_model_b"),
        "sweep": sweep_outcome(root / "ref_sweep"),
        "t_train": t_train,
        "t_sweep": time.time() - t,
    }


def run_trials(root: Path, n: int, seed: int, spread: float = 1.5) -> list[Trial]:
    """``n`` train and ``n`` sweep trials, kill delays drawn (seeded) over ``spread`` times
    each run's uninterrupted duration (above 1, some kills land after the end)."""
    paths = make_inputs(root / "inputs")
    ref = references(root, paths)
    rng = random.Random(seed)
    trials = []
    for _ in range(n):
        delay = rng.uniform(0, spread * ref["t_train"])
        trials.append(train_trial(root, paths, ref["model_b"], ref["model_a"], delay))
        delay = rng.uniform(0, spread * ref["t_sweep"])
        trials.append(sweep_trial(root, paths, ref["sweep"], delay))
    return trials


def run_update(inventory, standing_dir) -> None:
    """One standing-index update (index/standing.py) to ``inventory``, in small chunks so a
    kill can land between them."""
    from hashing_signal import HashingTextSignal

    from riskrank.index.standing import StandingIndex

    StandingIndex(standing_dir).update(
        inventory, [HashingTextSignal()], chunk_size=32, show_progress=False
    )


def standing_fingerprint(standing_dir: Path) -> dict:
    """What a reader of the standing index sees: the version's ids, vectors and items."""
    import hashlib

    import numpy as np

    from riskrank.index.standing import StandingIndex

    idx = StandingIndex(standing_dir).load()  # checksums verified
    text = idx.signals["text"]
    return {
        "ids": [str(i) for i in text.ids],
        "vectors": hashlib.sha256(np.ascontiguousarray(text.vectors).tobytes()).hexdigest(),
        "items": idx.items.num_rows,
        "quarantined": idx.quarantine.num_rows,
    }


def update_inputs(root: Path, n: int = 3000) -> dict[str, Path]:
    """Day 0 and day 1 inventories (day 1: 10% edited, 5% taken down, 15% new)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from conftest import make_items

    root.mkdir(parents=True, exist_ok=True)
    day0 = make_items(n // 3, n - n // 3, prefix="i", seed=4).drop(["label"])
    texts = [f"{t} (v2)" if i % 10 == 0 else t for i, t in enumerate(day0["text"].to_pylist())]
    day1 = day0.set_column(1, "text", pa.array(texts))
    day1 = day1.filter(pa.array([i % 20 != 1 for i in range(n)]))
    fresh = make_items(n // 20, n // 10, prefix="n", seed=8).drop(["label"])
    day1 = pa.concat_tables([day1, fresh])
    paths = {"day0": root / "day0.parquet", "day1": root / "day1.parquet"}
    pq.write_table(day0, paths["day0"])
    pq.write_table(day1, paths["day1"])
    return paths


def update_trial(root: Path, paths: dict, ref: dict, delay: float) -> Trial:
    """Update a copy of the day-0 standing index to day 1, killed after ``delay`` seconds:
    a reader then sees day 0 or day 1, whole; the re-run gives the uninterrupted day 1."""
    import shutil

    target = root / "standing"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(root / "ref_standing_day0", target)
    killed = kill_at(["update", paths["day1"], target], delay)
    seen = standing_fingerprint(target)
    if seen == ref["day0"]:
        after = "previous version"
    elif seen == ref["day1"]:
        after = "new version"
    else:
        raise AssertionError(f"{target}: a reader saw neither day 0 nor day 1")
    run_update(paths["day1"], target)
    return Trial("update", delay, killed, after, standing_fingerprint(target) == ref["day1"])


def run_update_trials(root: Path, n: int, seed: int, spread: float = 1.5) -> list[Trial]:
    """``n`` update trials, kill delays drawn (seeded) over ``spread`` times an uninterrupted
    update's duration."""
    import shutil

    paths = update_inputs(root / "inputs")
    run_update(paths["day0"], root / "ref_standing_day0")
    shutil.copytree(root / "ref_standing_day0", root / "ref_standing_day1")
    t = time.time()
    run_update(paths["day1"], root / "ref_standing_day1")
    t_update = time.time() - t
    ref = {
        "day0": standing_fingerprint(root / "ref_standing_day0"),
        "day1": standing_fingerprint(root / "ref_standing_day1"),
    }
    rng = random.Random(seed)
    return [update_trial(root, paths, ref, rng.uniform(0, spread * t_update)) for _ in range(n)]


def _worker(argv: list[str]) -> None:
    import hashing_signal  # noqa: F401 - imported before "ready": the kill lands in the work

    import riskrank.rank.pipeline  # noqa: F401

    print("ready", flush=True)
    if argv[0] == "train":
        run_train(*argv[1:])
    elif argv[0] == "sweep":
        run_sweep(*argv[1:])
    elif argv[0] == "update":
        run_update(*argv[1:])
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    _worker(sys.argv[1:])
