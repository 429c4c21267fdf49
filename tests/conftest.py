"""Fixtures generated in code: a small ad inventory with scam campaigns and benign items."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

# Ray starts its workers at nice 15, so on a machine whose other processes run at nice 0 they
# get a few percent of a core: with two busy neighbours on 2 cores one recall task of the Ray
# tests ran at 3% CPU for minutes. The clusters these tests start (the raylets inherit this
# environment) run their workers at the tests' own priority instead.
os.environ.setdefault("RAY_worker_niceness", "0")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Put pytest's faulthandler back before every test. Ray installs its own SIGSEGV
    handler and ray.shutdown() removes it, leaving none: a segmentation fault after the Ray
    tests (CI, stop 49, in tests/rank/test_review.py) printed no traceback at all."""
    import faulthandler

    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key
    except ImportError:  # (pytest's internals moved: the tests run on, without this)
        return
    fd = item.config.stash.get(fault_handler_stderr_fd_key, None)
    if fd is not None:
        faulthandler.disable()
        faulthandler.enable(file=fd, all_threads=True)


SCAM = [
    "Congratulations! You won a {prize}. Pay a small ${fee} shipping fee to claim it today",
    "Guaranteed loan approval in {n} minutes, no credit check, bad credit ok, apply now",
    "Cheap {brand} replica watches and handbags, 90% off, authentic quality, order now",
    "Work from home and earn ${fee} per day, no experience needed, limited spots, sign up",
    "Lose {n} pounds in a week with this miracle pill, doctors hate it, buy today",
]
BENIGN = [
    "Our team meeting is moved to {day} at {n} pm in the small conference room",
    "Recipe: roast the {food} with garlic and olive oil for {n} minutes",
    "The {team} won the match last night after a late goal in extra time",
    "Library opening hours change on {day}; returns can use the drop box",
    "Quarterly report: revenue grew {n} percent, details in the attached slides",
    "Hiking club trip to the lake on {day}, bring water and sturdy shoes",
]
FILL = {
    "prize": ["iPhone", "car", "cruise", "gift card", "laptop"],
    "fee": ["5", "9.99", "20", "49", "100"],
    "n": ["3", "10", "15", "30", "45"],
    "brand": ["Rolex", "Gucci", "Prada", "Omega"],
    "day": ["Monday", "Tuesday", "Friday", "Sunday"],
    "food": ["chicken", "potatoes", "salmon", "pumpkin"],
    "team": ["home side", "visitors", "under-21s", "city club"],
}


def _fill(template: str, rng: np.random.Generator) -> str:
    out = template
    for key, values in FILL.items():
        while "{" + key + "}" in out:
            out = out.replace("{" + key + "}", str(rng.choice(values)), 1)
    return out


def make_items(n_scam: int, n_benign: int, *, prefix: str, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_scam):
        rows.append(
            {
                "item_id": f"{prefix}-s{i}",
                "text": _fill(SCAM[i % len(SCAM)], rng),
                "label": 1,
                "advertiser": f"adv{rng.integers(20)}",
            }
        )
    for i in range(n_benign):
        rows.append(
            {
                "item_id": f"{prefix}-b{i}",
                "text": _fill(BENIGN[i % len(BENIGN)], rng),
                "label": 0,
                "advertiser": f"adv{rng.integers(20)}",
            }
        )
    order = rng.permutation(len(rows))
    return pa.Table.from_pylist([rows[i] for i in order])


@pytest.fixture(scope="session")
def history_items() -> pa.Table:
    return make_items(40, 80, prefix="h", seed=1)


@pytest.fixture(scope="session")
def inventory_items() -> pa.Table:
    return make_items(30, 60, prefix="i", seed=2)


@pytest.fixture(scope="session")
def history(history_items) -> pa.Table:
    t = history_items
    return pa.table(
        {
            "item_id": t["item_id"],
            "text": t["text"],
            "policy": pa.array(["scam"] * t.num_rows),
            "verdict": pa.array([2 * v for v in t["label"].to_pylist()], pa.int8()),
        }
    )


@pytest.fixture(scope="session")
def seeds() -> pa.Table:
    texts = [
        "You won a free iPhone! Just pay the shipping fee to claim your prize",
        "Instant loan approval guaranteed, no credit check needed",
        "Replica Rolex watches, designer handbags at 90% off",
    ]
    return pa.table(
        {
            "seed_id": ["s1", "s2", "s3"],
            "policy": ["scam"] * 3,
            "text": texts,
            "severity": pa.array([3, 3, 2], pa.int8()),
            "action": ["remove", "remove", "human_review"],
        }
    )


@pytest.fixture(scope="session")
def text_signal():
    """The default text signal: ``backend="auto"``, so OpenVINO where the ``[fast]`` extra is
    installed (``make test`` installs it), PyTorch elsewhere."""
    from riskrank.index.signals import TextEmbeddingSignal

    return TextEmbeddingSignal()


@pytest.fixture(scope="session")
def torch_signal():
    """PyTorch fp32, the reference the other backends are measured against."""
    from riskrank.index.signals import TextEmbeddingSignal

    return TextEmbeddingSignal(backend="torch")


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, history, seeds, text_signal):
    from riskrank.rank.pipeline import train

    return train(
        history,
        seeds,
        tmp_path_factory.mktemp("model"),
        signals=[text_signal],
        k=200,
        show_progress=False,
    )


@pytest.fixture(scope="session")
def hashing_signal():
    """A tiny deterministic text signal (tests/hashing_signal.py) for tests that build often."""
    from hashing_signal import HashingTextSignal

    return HashingTextSignal()


@pytest.fixture(scope="session")
def hashing_model(tmp_path_factory, history, seeds, hashing_signal):
    return train_small(history, seeds, tmp_path_factory.mktemp("hashing-model"), hashing_signal)


def train_small(history, seeds, model_dir, signal, **kwargs):
    """A model trained in seconds: hashing text, 100 trees on one thread, no lexical probe
    (its n-gram logistic regression dominates a small train on shared cores)."""
    from riskrank.rank.pipeline import train
    from riskrank.rank.ranker import RiskRanker

    ranker = RiskRanker(n_estimators=100, min_child_samples=10, n_jobs=1)
    options = {"k": 200, "ranker": ranker, "lexical_probe": False, "show_progress": False}
    return train(history, seeds, model_dir, signals=[signal], **{**options, **kwargs})


HOSTILE_TEXT = "<script>alert(1)</script> Guaranteed loan approval, no credit check & <b>more</b>"


@pytest.fixture(scope="session")
def explained_sweep(tmp_path_factory, inventory_items, seeds, trained_model):
    """A sweep with a second, cold-start policy and one item whose text is hostile HTML:
    (inventory, seeds, SweepResult)."""
    from riskrank.rank.pipeline import sweep

    hostile = pa.table(
        {"item_id": ["evil"], "text": [HOSTILE_TEXT], "label": [1], "advertiser": ["adv0"]}
    )
    inv = pa.concat_tables([inventory_items, hostile])
    diet = pa.table(
        {
            "seed_id": ["d1", "d2"],
            "policy": ["diet"] * 2,
            "text": [
                "Miracle diet pill: lose 30 pounds in a week, doctors hate it",
                "Lose weight fast without exercise, buy the miracle pill today",
            ],
            "severity": pa.array([2, 2], pa.int8()),
            "action": ["human_review"] * 2,
        }
    )
    all_seeds = pa.concat_tables([seeds, diet])
    out = tmp_path_factory.mktemp("explained-sweep")
    return inv, all_seeds, sweep(inv, all_seeds, trained_model, out_dir=out, show_progress=False)
