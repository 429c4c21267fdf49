#!/usr/bin/env python
"""A standing IVF index updated in place against a rebuild of the same day (issue 12, item 7).

``benchmarks/incremental.py`` measures daily sweeps with MiniLM at 21,000 items, where the
index is exact (Flat, up to 100,000 items): there the update re-lays the vectors and the queue
equals a rebuild's. Past that size the index is IVF and an update keeps the quantizer it was
trained with (``FaissIndex.update_in_place``), so its search results can differ from a rebuild
whose k-means saw today's vectors. This measures that difference and the update's cost.

Data: ``benchmarks/scale.py``'s synthetic ads and hashing stand-in encoder (MiniLM cannot embed
hundreds of thousands of items on 2 cores in a session). Day 0: ``--items`` ads; day 1: 1%
taken down, 2% edited (a sentence appended), 5% new, as in ``incremental.py``.

Reported: the update's and the rebuild's wall time and what the update did (in place or
retrained, and why); recall@k of both indexes against exact search, at the default nprobe,
for ``--queries`` items of day 1 used as queries; and the updated index's recall@k against the
rebuilt index's results (the issue's goal: >= 0.99). Ties at the k-th place count as hits.

Query kinds (``--kinds``): ``self`` (the original measure: day-1 items as queries; an item
finds itself, which flatters recall at small k), ``heldout`` (synthetic ads made the same way,
2 % scam, but with item numbers no inventory holds, so no query is in either day's inventory,
as seeds are not) and ``heldout-scam`` (the same, all scam templates: what seeds look like).
Each kind is measured at every ``--ks`` and at ``--nprobe-mult`` times the default nprobe
(the ``nprobe`` attribute of both indexes is set before searching; ``VectorIndex.search``
hands it to FAISS). Besides the tie-aware recall, the updated-vs-rebuilt table gives the plain
overlap of the two top-k id sets (|A & B| / k) and the paired mean difference of the two
indexes' per-query recall against exact search (with a 95 % normal interval).
``--key`` forces an index key on both the standing index and the rebuild (e.g. ``IVF128,Flat``
at 50,000 items); default: the product's choice for the size. Controls for whether the updated
index is worse than a rebuild or just different: ``--reseeds N`` more from-scratch indexes of
day 1 with other k-means seeds, ``--stale-reseeds N`` indexes whose k-means (other seeds) saw
day 0's vectors and that hold day 1's (an in-place update with another draw). ``--noise SIGMA``
adds a fixed per-text Gaussian vector to the stand-in encoder's: the synthetic ads are ~100
distinct contents apart from their item numbers, so without it every top-k is a cluster of
near-duplicates in one or two lists and even held-out queries are easy at 200,000 items.

    .venv/bin/python benchmarks/incremental_ivf.py [--items 200000] [--ks 10 50] [--key KEY]

Writes benchmarks/results/incremental_ivf.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from scale import HashingEncoder, make_inventory, make_signal, make_texts  # noqa: E402


class NoisyHashingEncoder(HashingEncoder):
    """The stand-in encoder plus, per text, a fixed Gaussian vector of norm ~``sigma`` (seeded
    by the text's bytes, so an unchanged text always gets the same vector), re-normalised.
    The synthetic ads are ~100 distinct contents apart from their item number, so their
    vectors sit in ~100 tight clusters of near-duplicates and a top-k rarely crosses an IVF
    cell boundary; the noise spreads each cluster so that neighbourhoods are continuous and
    cell boundaries matter, as with a real encoder on real ads (``--noise``)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma
        self.model = f"stand-in-hashing-384+noise{sigma}"

    def encode(self, texts, *, show_progress: bool = False) -> np.ndarray:
        import hashlib

        texts = list(texts)
        out = super().encode(texts)
        scale = self.sigma / np.sqrt(out.shape[1])
        for row, t in zip(out, texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            row += scale * np.random.default_rng(seed).standard_normal(out.shape[1])
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out.astype(np.float32)

    def describe(self) -> dict:
        return {"model": self.model, "model_version": "sklearn-hashing+noise", "dim": self.dim}


def day_one(inv: pa.Table, seed: int = 1) -> pa.Table:
    """1% of the items taken down, 2% edited, 5% new (new ids, new synthetic ads)."""
    n = inv.num_rows
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    gone, edited = set(order[: n // 100]), set(order[n // 100 : n // 100 + n // 50])
    texts = inv["text"].to_pylist()
    texts = [t + " Offer ends Sunday." if i in edited else t for i, t in enumerate(texts)]
    keep = np.array([i not in gone for i in range(n)])
    kept = pa.table({"item_id": inv["item_id"], "text": texts}).filter(pa.array(keep))
    new_texts, _ = make_texts(n // 20, rng, 0.02)
    new = pa.table(
        {
            "item_id": [f"new{i}" for i in range(len(new_texts))],
            "text": [t + " new" for t in new_texts],
        }
    )
    return pa.concat_tables([kept, new])


def top_k(index, queries: np.ndarray, k: int) -> list[list[str]]:
    si = index.signals["text"]
    found = si.index.search(queries, k).positions
    return [[si.ids[p] for p in row if p >= 0] for row in found]


def tie_aware_hits(found: list[list[str]], sims: list[dict], kth: np.ndarray, k: int) -> np.ndarray:
    """Per query, the share of the k results at least as close as the reference's k-th: the
    synthetic ads hold many near-identical texts, so which of several equally close items fills
    the last places is a tie-break, not a miss."""
    return np.array(
        [sum(sims[q][i] >= kth[q] - 1e-6 for i in row) / k for q, row in enumerate(found)]
    )


def tie_aware_recall(found: list[list[str]], sims, kth: np.ndarray, k: int) -> float:
    return round(float(np.mean(tie_aware_hits(found, sims, kth, k))), 4)


class _RowSims:
    """``sims[q][item_id]``: query q's similarity to an item, from one row of the exact
    similarity matrix (positions looked up by id; no per-query dicts of 200,000 entries)."""

    def __init__(self, row: np.ndarray, pos: dict) -> None:
        self.row, self.pos = row, pos

    def __getitem__(self, item_id) -> float:
        return float(self.row[self.pos[item_id]])


def heldout_texts(n: int, taken: set, seed: int, scam_share: float, base: int) -> list[str]:
    """``n`` synthetic ads made as the inventory's are (benchmarks/scale.py ``make_texts``) but
    numbered from ``base`` on, so none is any inventory's text."""
    texts, _ = make_texts(n, np.random.default_rng(seed), scam_share)
    out = [
        re.sub(r" \(item (\d+)\)$", lambda m: f" (item {base + int(m.group(1))})", t) for t in texts
    ]
    assert not taken.intersection(out), "a held-out query is an inventory text"
    return out


def measure(
    updated,
    rebuilt,
    queries: np.ndarray,
    ks: list[int],
    mults: list[int],
    controls=(),
    stale=(),
) -> list[dict]:
    si_new, si_upd = rebuilt.signals["text"], updated.signals["text"]
    assert sorted(si_new.ids) == sorted(si_upd.ids)
    pos = {i: p for p, i in enumerate(si_new.ids)}
    vectors = np.asarray(si_new.vectors[np.arange(len(si_new.ids))])
    all_sims = queries @ vectors.T
    sims = [_RowSims(row, pos) for row in all_sims]
    order = -np.sort(-all_sims, axis=1)
    base_upd, base_new = si_upd.index.nprobe, si_new.index.nprobe
    rows = []
    try:
        for mult in mults:
            si_upd.index.nprobe, si_new.index.nprobe = base_upd * mult, base_new * mult
            for c in (*controls, *stale):
                c.nprobe = base_new * mult
            for k in ks:
                exact_kth = order[:, k - 1]
                got_upd, got_new = top_k(updated, queries, k), top_k(rebuilt, queries, k)
                new_kth = np.array([min(sims[q][i] for i in row) for q, row in enumerate(got_new)])
                upd_kth = np.array([min(sims[q][i] for i in row) for q, row in enumerate(got_upd)])
                h_upd = tie_aware_hits(got_upd, sims, exact_kth, k)
                h_new = tie_aware_hits(got_new, sims, exact_kth, k)
                diff = h_upd - h_new
                half = 1.96 * float(np.std(diff, ddof=1)) / np.sqrt(len(diff))
                overlap = [len(set(a) & set(b)) / k for a, b in zip(got_upd, got_new)]
                ctrl, ctrl_stale = [], []
                for group, into in ((controls, ctrl), (stale, ctrl_stale)):
                    for c in group:
                        found = c.search(queries, k).positions
                        got = [[si_new.ids[p] for p in row if p >= 0] for row in found]
                        into.append(tie_aware_recall(got, sims, exact_kth, k))
                rows.append(
                    {
                        "nprobe": int(si_upd.index.nprobe),
                        "nprobe_rebuilt": int(si_new.index.nprobe),
                        "k": k,
                        "updated_vs_exact": round(float(h_upd.mean()), 4),
                        "rebuilt_vs_exact": round(float(h_new.mean()), 4),
                        "updated_vs_rebuilt": tie_aware_recall(got_upd, sims, new_kth, k),
                        "rebuilt_vs_updated": tie_aware_recall(got_new, sims, upd_kth, k),
                        "overlap": round(float(np.mean(overlap)), 4),
                        "paired_diff": round(float(diff.mean()), 4),
                        "paired_diff_ci95": [
                            round(float(diff.mean()) - half, 4),
                            round(float(diff.mean()) + half, 4),
                        ],
                        "queries_updated_better": int((diff > 0).sum()),
                        "queries_rebuilt_better": int((diff < 0).sum()),
                        "reseeded_rebuilds_vs_exact": ctrl,
                        "stale_reseeded_vs_exact": ctrl_stale,
                    }
                )
    finally:
        si_upd.index.nprobe, si_new.index.nprobe = base_upd, base_new
        for c in (*controls, *stale):
            c.nprobe = base_new
    return rows


def reseeded_rebuilds(rebuilt, n: int) -> list:
    """``n`` more from-scratch IVF indexes of day 1's vectors, as the rebuild's but with other
    k-means seeds (FAISS's ``cp.seed``): the spread of recall a rebuild gets by the luck of its
    quantizer, against which the updated index's difference is read (``--reseeds``)."""
    return _reseeded(rebuilt, n, 1000, None)


def _reseeded(rebuilt, n: int, first_seed: int, train_on: np.ndarray | None) -> list:
    """``n`` IVF indexes of day 1's vectors like ``rebuilt``'s, k-means seeded ``first_seed``
    on, trained on ``train_on`` (None: day 1's vectors themselves)."""
    from riskrank.index.vectors.faiss_index import VectorIndex, new_index, train_and_add

    si = rebuilt.signals["text"]
    key, nprobe = si.index.key, si.index.nprobe
    vectors = np.asarray(si.vectors[np.arange(len(si.ids))])
    out = []
    for s in range(n):
        index = new_index(vectors.shape[1], key)
        faiss_ivf(index).cp.seed = first_seed + s
        if train_on is None:
            train_and_add(index, vectors)
        else:
            index.train(np.ascontiguousarray(train_on))
            index.add(vectors)
        out.append(VectorIndex(index, key, nprobe))
    return out


def stale_reseeded(rebuilt, day0_vectors: np.ndarray, n: int) -> list:
    """``n`` indexes whose quantizer is trained on DAY 0's vectors (other k-means seeds) and
    which then hold day 1's vectors: what an in-place update gets with another draw of its
    k-means, to tell the update's stale training data from the luck of one draw
    (``--stale-reseeds``)."""
    return _reseeded(rebuilt, n, 2000, day0_vectors)


def faiss_ivf(index):
    import faiss

    return faiss.extract_index_ivf(index)


def run(
    root: Path,
    items: int,
    ks: list[int],
    n_queries: int,
    kinds: list[str],
    mults: list[int],
    key: str | None,
    noise: float = 0.0,
    reseeds: int = 0,
    stale_reseeds: int = 0,
) -> dict:
    from riskrank.index import build_index
    from riskrank.index.standing import StandingIndex

    if noise:
        from riskrank.index.signals.text import TextEmbeddingSignal

        signal = TextEmbeddingSignal(NoisyHashingEncoder(noise))
    else:
        signal = make_signal("stand-in")
    day0 = make_inventory(items)
    day1 = day_one(day0)
    standing = StandingIndex(root / "standing")
    t0 = time.time()
    standing.update(day0, [signal], key=key, show_progress=False)
    t_day0 = time.time() - t0
    t0 = time.time()
    updated, stats = standing.update(day1, [signal], key=key, show_progress=False)
    t_update = time.time() - t0
    t0 = time.time()
    rebuilt = build_index(day1, root / "rebuild", signals=[signal], key=key, show_progress=False)
    t_rebuild = time.time() - t0

    controls = reseeded_rebuilds(rebuilt, reseeds)
    stale = []
    if stale_reseeds:
        day0_vectors = signal.encoder.encode(day0["text"].to_pylist())
        stale = stale_reseeded(rebuilt, day0_vectors, stale_reseeds)
        del day0_vectors
    taken = set(day0["text"].to_pylist()) | set(day1["text"].to_pylist())
    results = {}
    for kind in kinds:
        if kind == "self":
            rng = np.random.default_rng(7)
            picks = rng.choice(day1.num_rows, n_queries, replace=False)
            texts = pc.take(day1["text"], pa.array(picks)).to_pylist()
        elif kind == "heldout":
            texts = heldout_texts(n_queries, taken, 4242, 0.02, 10 * items)
        elif kind == "heldout-scam":
            texts = heldout_texts(n_queries, taken, 4343, 1.0, 20 * items)
        else:
            raise SystemExit(f"unknown query kind {kind!r}")
        t0 = time.time()
        results[kind] = measure(
            updated, rebuilt, signal.encoder.encode(texts), ks, mults, controls, stale
        )
        print(f"{kind}: measured in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return {
        "items_day0": day0.num_rows,
        "items_day1": day1.num_rows,
        "noise": noise,
        "index_key": rebuilt.manifest["signals"]["text"]["index_key"],
        "index_key_updated": updated.manifest["signals"]["text"]["index_key"],
        "nprobe_default": int(rebuilt.signals["text"].index.nprobe),
        "wall_s": {
            "day0_build": round(t_day0, 1),
            "update": round(t_update, 1),
            "rebuild": round(t_rebuild, 1),
        },
        "update": {k: v for k, v in stats.as_dict().items() if k != "deletions_unknown_ids"},
        "ivf_updated": updated.manifest["signals"]["text"].get("ivf"),
        "queries": n_queries,
        "results": results,
    }


def _rule4(ivf: dict | None) -> str:
    if not ivf:
        return "not an IVF index."
    after = ivf.get("recall")
    return (
        f"{ivf.get('recall_at_training')} right after training (version "
        f"{ivf.get('trained_version')})"
        + (f", {after} after this update." if after is not None else "; retrained by this update.")
    )


def markdown(res: dict, args, load: tuple, seconds: float) -> str:
    s, u = res["wall_s"], res["update"]
    action = u["signals"].get("text", {})
    lines = [
        "# A standing IVF index updated in place vs a rebuild (issue 12)",
        "",
        f"Command: `.venv/bin/python benchmarks/incremental_ivf.py --items {args.items} "
        f"--ks {' '.join(map(str, args.ks))} --queries {args.queries} --kinds "
        f"{' '.join(args.kinds)} --nprobe-mult {' '.join(map(str, args.nprobe_mult))}"
        + (f" --key {args.key}" if args.key else "")
        + (f" --noise {args.noise}" if args.noise else "")
        + (f" --reseeds {args.reseeds}" if args.reseeds else "")
        + (f" --stale-reseeds {args.stale_reseeds}" if args.stale_reseeds else "")
        + "`  ",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}; load average at start {load[0]}, at end {load[1]} "
        f"(other work ran beside it); {seconds:.0f} s in all.",
        "",
        "Stand-in hashing encoder (benchmarks/scale.py)"
        + (
            f" plus per-text Gaussian noise of norm ~{res['noise']} (``--noise``)"
            if res.get("noise")
            else ""
        )
        + f", synthetic ads. Day 0: "
        f"{res['items_day0']:,} items; day 1: {u['removed']:,} removed, {u['changed']:,} "
        f"edited, {u['added']:,} new -> {res['items_day1']:,} items. Index key of day 1: "
        f"`{res['index_key']}` (rebuilt), `{res['index_key_updated']}` (updated); default "
        f"nprobe {res['nprobe_default']}.",
        "",
        "| | seconds |",
        "|---|---|",
        f"| day 0 first update (build) | {s['day0_build']} |",
        f"| day 1 update ({action.get('index')}: {action.get('why')}) | {s['update']} |",
        f"| day 1 rebuild from scratch | {s['rebuild']} |",
        "",
        f"Update / rebuild: {s['update'] / s['rebuild']:.3f} of the wall time "
        f"({u['embedded']:,} contents embedded by the update).",
        "",
        "Retrain rule 4 (index/standing.py: sampled recall@10 of the index's own contents, "
        "itself left out, against exact search), as the updated index's manifest records it: "
        + _rule4(res.get("ivf_updated")),
        "",
        f"Recall@k, {res['queries']} queries per kind. `self`: day-1 items as queries; "
        "`heldout`: synthetic ads in no inventory (2 % scam); `heldout-scam`: the same, all scam. "
        "upd/reb vs exact: tie-aware recall@k against exact search; upd vs reb: the updated "
        "index's results at least as close as the rebuilt one's k-th (the issue's measure, goal "
        ">= 0.99); reb vs upd: the converse; overlap: |top-k(upd) & top-k(reb)| / k; "
        "paired diff: mean per-query (upd - reb) recall vs exact, 95 % interval; "
        "n+/n-: queries where upd / reb did better against exact; reseeded: recall vs exact of "
        "from-scratch rebuilds with other k-means seeds (``--reseeds``), min-max; stale: "
        "indexes whose k-means (other seeds) saw day 0's vectors, holding day 1's, as an "
        "in-place update does (``--stale-reseeds``), min-max.",
        "",
        "| queries | nprobe | k | upd vs exact | reb vs exact | upd vs reb | reb vs upd "
        "| overlap | paired diff [95 %] | n+ / n- | reseeded | stale |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, rows in res["results"].items():
        for r in rows:
            lo, hi = r["paired_diff_ci95"]
            lines.append(
                f"| {kind} | {r['nprobe']} | {r['k']} | {r['updated_vs_exact']} | "
                f"{r['rebuilt_vs_exact']} | {r['updated_vs_rebuilt']} | {r['rebuilt_vs_updated']} "
                f"| {r['overlap']} | {r['paired_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                f"{r['queries_updated_better']} / {r['queries_rebuilt_better']} | "
                + (
                    f"{min(r['reseeded_rebuilds_vs_exact'])}-{max(r['reseeded_rebuilds_vs_exact'])}"
                    if r["reseeded_rebuilds_vs_exact"]
                    else "-"
                )
                + " | "
                + (
                    f"{min(r['stale_reseeded_vs_exact'])}-{max(r['stale_reseeded_vs_exact'])}"
                    if r.get("stale_reseeded_vs_exact")
                    else "-"
                )
                + " |"
            )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--ks", type=int, nargs="+", default=[10, 50])
    p.add_argument("--queries", type=int, default=500, help="queries per kind")
    p.add_argument("--kinds", nargs="+", default=["self", "heldout", "heldout-scam"])
    p.add_argument("--nprobe-mult", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--key", default=None, help="force an index key (default: by size)")
    p.add_argument("--noise", type=float, default=0.0, help="NoisyHashingEncoder sigma")
    p.add_argument("--reseeds", type=int, default=0, help="control rebuilds, other k-means seeds")
    p.add_argument("--stale-reseeds", type=int, default=0, help="controls trained on day 0")
    p.add_argument("--out", default="incremental_ivf", help="results file stem")
    args = p.parse_args()
    load0 = tuple(round(x, 2) for x in os.getloadavg())
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        res = run(
            Path(tmp),
            args.items,
            args.ks,
            args.queries,
            args.kinds,
            args.nprobe_mult,
            args.key,
            args.noise,
            args.reseeds,
            args.stale_reseeds,
        )
    seconds = time.time() - t0
    load = (load0, tuple(round(x, 2) for x in os.getloadavg()))
    res.update(load=load, seconds=round(seconds, 1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(res, indent=2))
    text = markdown(res, args, load, seconds)
    (RESULTS / f"{args.out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
