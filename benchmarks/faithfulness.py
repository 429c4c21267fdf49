#!/usr/bin/env python
"""Faithfulness of the highlighted phrases: do they really move the score?

For the top ``--top`` (50) items of the demo sweep (``riskrank demo --out runs/demo``: model
trained on SpamAssassin's old groups, sweep over the new ones), cut out every highlighted span
(``highlight_spans``: the lexical probe's strongest words and the runs shared with the closest
seed), sweep the edited inventory again with the same model and seeds, and compare each item's
raw ranker score (``risk_score``) before and after. Control: instead, cut as many random words
of the same lengths (each highlighted word is matched by a random non-highlighted word of the
closest length in the same item), ``--trials`` draws.

All ``--top`` items are edited in one sweep (one sweep per variant, not one per item): their
inventory-level evidence (neighbour density, the seeds' neighbour lists) changes together. The
control edits the same items the same way, so the comparison is like for like.

The text encoder is memoised by text for this script (unchanged items are not re-embedded;
vectors are the encoder's own) and primed from the demo's sweep index when it is there.

    .venv/bin/python benchmarks/faithfulness.py                 # needs runs/demo (riskrank demo)
    .venv/bin/python benchmarks/faithfulness.py --demo runs/demo --top 50 --trials 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared 2-core machine: no spin-waiting
ROOT = Path(__file__).resolve().parents[1]

from riskrank.index.store import InventoryIndex  # noqa: E402
from riskrank.rank.model import RiskModel  # noqa: E402
from riskrank.rank.phrases import WORD, Span, delete_spans  # noqa: E402
from riskrank.rank.pipeline import sweep  # noqa: E402
from riskrank.recall.seeds import SeedSet  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


class MemoEncoder:
    """The model's text encoder, remembering vectors by text (identical text, identical
    vector), so a sweep of a lightly edited inventory embeds only the edited items."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.memo: dict[str, np.ndarray] = {}
        self.encoded = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def describe(self) -> dict:
        return self.inner.describe()

    def encode(self, texts, *, show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        todo = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if todo:
            for t, v in zip(todo, self.inner.encode(todo, show_progress=show_progress)):
                self.memo[t] = v
            self.encoded += len(todo)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.memo[t] for t in texts]).astype(np.float32)

    def prime(self, index_dir: Path) -> int:
        """Take the vectors the demo's own sweep stored (same model, same encoder)."""
        if not (index_dir / "manifest.json").exists():
            return 0
        index = InventoryIndex.load(index_dir)
        si = index.signals.get("text")
        if si is None:
            return 0
        text_of = dict(zip(index.items["item_id"].to_pylist(), index.items["text"].to_pylist()))
        for item_id, vec in zip(si.ids, np.asarray(si.vectors)):
            if text_of.get(item_id):
                self.memo[text_of[item_id]] = vec
        return len(self.memo)


def random_deletion(text: str, spans: list[dict], rng: np.random.Generator) -> str:
    """Cut random whitespace words outside the highlights, one per highlighted word, each of
    the closest available length."""
    words = [(m.start(), m.end()) for m in WORD.finditer(text)]
    covered = np.zeros(len(text), bool)
    for s in spans:
        covered[s["start"] : s["end"]] = True
    hit = [w for w in words if covered[w[0] : w[1]].any()]
    pool = [w for w in words if not covered[w[0] : w[1]].any()]
    cut = []
    for s, e in hit:
        if not pool:
            break
        lengths = np.array([b - a for a, b in pool])
        gap = np.abs(lengths - (e - s))
        choice = rng.choice(np.flatnonzero(gap == gap.min()))
        cut.append(pool.pop(int(choice)))
    return delete_spans(text, [Span(a, b, text[a:b], "random") for a, b in cut])


# Evidence recorded per item before and after each cut, to say why a score did not drop.
WATCHED = ("hist_lexical_probe_score", "text_best_sim", "hist_text_nearest_sim")


def scores_of(
    model: RiskModel, cands: pa.Table, ids: list[str], policy_of: dict, evidence: dict | None = None
) -> np.ndarray:
    """Raw ranker score of each (item, its queue policy) row; -inf when no longer recalled.
    ``evidence``: filled with the ``WATCHED`` columns of those rows (name -> list)."""
    scores = model.ranker.score(cands, calibrate=False).scores  # raw scores need no calibration
    keys = list(zip(cands["item_id"].to_pylist(), cands["policy"].to_pylist()))
    row_of = {key: r for r, key in enumerate(keys)}
    rows = [row_of.get((i, policy_of[i])) for i in ids]
    if evidence is not None:
        for name in (c for c in WATCHED if c in cands.column_names):
            col = cands[name].to_pylist()
            evidence[name] = [None if r is None else col[r] for r in rows]
    return np.array([-np.inf if r is None else scores[r] for r in rows])


def run_variant(inventory, seeds, model, texts: dict[str, str], work: Path, name: str):
    ids = inventory["item_id"].to_pylist()
    edited = [texts.get(i, t) for i, t in zip(ids, inventory["text"].to_pylist())]
    inv = inventory.set_column(inventory.column_names.index("text"), "text", pa.array(edited))
    t0 = time.time()
    result = sweep(inv, seeds, model, out_dir=work / name, budget=1, show_progress=False)
    return result, time.time() - t0


def summarise(before: np.ndarray, after: np.ndarray, population: np.ndarray) -> dict:
    """Share of items whose score dropped, and where the item would now rank among the
    unedited sweep's scores (``population``: every queued item's score before editing)."""
    delta = np.where(np.isfinite(after), after - before, np.nan)
    rank_after = [1 + int((population > a).sum()) - int(b > a) for a, b in zip(after, before)]
    return {
        "median_rank_after": float(np.median(rank_after)),
        "share_dropped": float(np.mean(after < before)),
        "share_unchanged": float(np.mean(after == before)),
        "share_rose": float(np.mean(after > before)),
        "no_longer_recalled": int((~np.isfinite(after)).sum()),
        "mean_score_change": float(np.nanmean(delta)),
        "median_score_change": float(np.nanmedian(delta)),
    }


def prepare_reduced(demo: Path, n_history: int, n_sweep: int) -> None:
    """The demo's inputs (same split, same seeds) with a random ``n_history`` reviewed items
    and ``n_sweep`` inventory items, and a model trained on them: the demo at a size a
    shared 2-core machine embeds in minutes."""
    from riskrank.rank.app.demo import prepare
    from riskrank.rank.pipeline import train

    paths = prepare("spamassassin", demo / "inputs")
    rng = np.random.default_rng(0)
    for key, n in (("history", n_history), ("inventory", n_sweep), ("labels", None)):
        table = pq.read_table(paths[key])
        if key == "labels":  # the labels of the items kept
            keep = set(pq.read_table(paths["inventory"])["item_id"].to_pylist())
            rows = [i for i, x in enumerate(table["item_id"].to_pylist()) if x in keep]
        else:
            rows = np.sort(rng.choice(table.num_rows, size=min(n, table.num_rows), replace=False))
        pq.write_table(table.take(pa.array(rows, pa.int64())), paths[key])
    train(paths["history"], paths["seeds"], demo / "model", show_progress=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", default=str(ROOT / "runs" / "demo"), help="riskrank demo --out dir")
    ap.add_argument("--top", type=int, default=50)
    ap.add_argument("--trials", type=int, default=3, help="random-deletion draws")
    ap.add_argument("--out", default=str(RESULTS / "faithfulness.json"))
    ap.add_argument(
        "--base-out",
        help="where the unedited sweep goes (default: a temp dir); runs/demo/sweep leaves an "
        "index `riskrank sweep --out runs/demo/sweep` reuses",
    )
    ap.add_argument(
        "--reduced",
        metavar="HISTORY,SWEEP",
        help="build a reduced demo in --demo first (e.g. 1000,800 items; see prepare_reduced)",
    )
    args = ap.parse_args(argv)
    demo = Path(args.demo)
    if args.reduced and not (demo / "model" / "model.json").exists():
        n_history, n_sweep = (int(x) for x in args.reduced.split(","))
        prepare_reduced(demo, n_history, n_sweep)
    if not (demo / "model" / "model.json").exists():
        raise SystemExit(f"{demo}: no trained demo model; run `riskrank demo --out {demo}` first")
    inventory = pq.read_table(demo / "inputs" / "inventory.parquet")
    seeds = SeedSet.from_table(demo / "inputs" / "seeds.parquet")
    model = RiskModel.load(demo / "model")
    memo = MemoEncoder(model.signals[0].encoder)
    model.signals[0].encoder = memo
    primed = memo.prime(demo / "sweep" / "index")
    work = Path(tempfile.mkdtemp(prefix="riskrank-faithfulness-"))
    t0 = time.time()
    base_out = Path(args.base_out) if args.base_out else work / "base"
    base = sweep(inventory, seeds, model, out_dir=base_out, show_progress=False)
    t_base = time.time() - t0
    top = base.queue.slice(0, args.top).to_pylist()
    ids = [r["item_id"] for r in top]
    policy_of = {r["item_id"]: r["policy"] for r in top}
    full = dict(zip(inventory["item_id"].to_pylist(), inventory["text"].to_pylist()))
    before = scores_of(model, base.candidates, ids, policy_of)
    population = np.asarray(base.queue["risk_score"].to_numpy(), float)
    assert np.allclose(before, [r["risk_score"] for r in top])  # same rows as the queue's
    n_spans = [len(r["highlight_spans"]) for r in top]
    cut = {
        r["item_id"]: delete_spans(full[r["item_id"]], [Span(**s) for s in r["highlight_spans"]])
        for r in top
    }
    variants = {}
    per_item = {i: {"before": float(b), "words_cut": 0} for i, b in zip(ids, before)}
    watched: dict[str, dict] = {"before": {}}
    scores_of(model, base.candidates, ids, policy_of, watched["before"])
    res, secs = run_variant(inventory, seeds, model, cut, work, "highlights")
    watched["highlights"] = {}
    after = scores_of(model, res.candidates, ids, policy_of, watched["highlights"])
    variants["highlights"] = summarise(before, after, population)
    variants["highlights"]["seconds"] = round(secs, 1)
    for i, a in zip(ids, after):
        per_item[i]["highlights"] = float(a)
    for source in ("lexical", "seed"):
        part = {
            r["item_id"]: delete_spans(
                full[r["item_id"]],
                [Span(**s) for s in r["highlight_spans"] if s["source"] == source],
            )
            for r in top
        }
        res, _ = run_variant(inventory, seeds, model, part, work, f"only-{source}")
        watched[f"only {source}"] = {}
        after = scores_of(model, res.candidates, ids, policy_of, watched[f"only {source}"])
        variants[f"only {source} spans"] = summarise(before, after, population)
        for i, a in zip(ids, after):
            per_item[i][f"only {source}"] = float(a)
    randoms = []
    for trial in range(args.trials):
        rng = np.random.default_rng(trial)
        rand = {
            r["item_id"]: random_deletion(full[r["item_id"]], r["highlight_spans"], rng)
            for r in top
        }
        res, _ = run_variant(inventory, seeds, model, rand, work, f"random-{trial}")
        randoms.append(
            summarise(before, scores_of(model, res.candidates, ids, policy_of), population)
        )
    variants["random words, same lengths"] = {
        k: float(np.mean([r[k] for r in randoms])) for k in randoms[0]
    }
    words_cut = [len(WORD.findall(full[i])) - len(WORD.findall(cut[i])) for i in ids]
    for n, (i, row) in enumerate(zip(ids, top)):
        per_item[i]["words_cut"] = words_cut[n]
        per_item[i]["words"] = len(WORD.findall(full[i]))
        per_item[i]["rank"] = n + 1
        per_item[i]["flagged_phrases"] = len(row["flagged_phrases"])  # no corpus text in results
        for variant, cols in watched.items():
            per_item[i].update({f"{c} {variant}": v[n] for c, v in cols.items()})
    out = {
        "demo": str(demo),
        "reduced": args.reduced,
        "inventory_items": inventory.num_rows,
        "top": args.top,
        "trials": args.trials,
        "items_with_highlights": int(sum(n > 0 for n in n_spans)),
        "mean_spans_per_item": float(np.mean(n_spans)),
        "mean_words_cut": float(np.mean(words_cut)),
        "variants": variants,
        "texts_encoded": memo.encoded,
        "primed_from_demo_index": primed,
        "seconds": round(time.time() - t0, 1),
        "seconds_base_sweep": round(t_base, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "items": per_item,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(
        f"top {args.top} of the demo queue ({inventory.num_rows} items); "
        f"{out['mean_words_cut']:.1f} words cut per item; median rank before "
        f"{np.median(np.arange(1, len(ids) + 1)):.0f}"
    )
    print(
        f"{'deleted':32} {'score dropped':>14} {'unchanged':>10} {'mean change':>12} "
        f"{'median rank after':>18}"
    )
    for name, v in variants.items():
        print(
            f"{name:32} {v['share_dropped']:>14.0%} {v['share_unchanged']:>10.0%} "
            f"{v['mean_score_change']:>12.3f} {v['median_rank_after']:>18.0f}"
        )
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
