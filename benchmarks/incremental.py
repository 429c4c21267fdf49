#!/usr/bin/env python
"""Daily sweeps over a standing index against from-scratch sweeps of the same day (issue 12).

Data (real texts, MiniLM, the product's default encoder): 1,500 SpamAssassin mails and the
6,594 Insults comments, plus perturbed copies of comments until the pool holds ``--items``
(default 21,000): a copy drops every 8th word (seeded) and appends " #<n>", so it is a
near-duplicate under a new id, as re-posted ads are. (Mails are ~10x slower to embed than
comments on 2 cores; taking all 6,046 would triple the run.) Another 600 SpamAssassin mails
are the model's review history (policy ``spam``) and 5 spam mails its seeds; none of these is
in the inventory.

* **day 0**: the full inventory less 5% held back: a sweep that builds the standing index.
* **day 1**: 5% new items (the held-back ones), 2% edited (a sentence appended), 1% taken
  down: a sweep that updates the standing index, and a from-scratch sweep of the same day
  (a fresh directory, no standing index).
* **day 2**: a new policy (``insult``, 5 seed comments) and nothing else: a retroactive sweep
  of the standing index (``inventory=None``: only the seeds are embedded), and a from-scratch
  sweep of day 1's inventory with the new seeds.

Every sweep runs in its own process (peak RSS is that process's ``ru_maxrss``), one after
the other on this machine; ratios compare runs of this one invocation. Queues are compared
item by item (ids, policies, order) and by the largest probability difference.

    .venv/bin/python benchmarks/incremental.py [--items 21000]

Writes benchmarks/results/incremental.{md,json} (then run benchmarks/make_results.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SEEDS_PER_POLICY = 5
HISTORY = 600
MAILS = 1500  # long mails embed ~10x slower than comments on 2 cores: a share keeps runs short


def perturbed(text: str, n: int, rng: np.random.Generator) -> str:
    words = text.split()
    start = int(rng.integers(8))
    kept = [w for i, w in enumerate(words) if (i + start) % 8 != 0] or words
    return " ".join(kept) + f" #{n}"


def make_data(
    root: Path, items: int, seed: int = 0, sample: int | None = None, spam=None, insults=None
) -> dict:
    """The inventories of each day, the history and the seeds, as Parquet files. ``spam`` and
    ``insults`` (tables with ``item_id``, ``text``, ``label``) default to the whole data sets;
    benchmarks/gpu.py passes subsets it carried to a machine without them."""
    from riskrank.rank.app.datasets import load

    rng = np.random.default_rng(seed)
    spam = load("spamassassin") if spam is None else spam
    insults = load("insults") if insults is None else insults
    s_ids = rng.permutation(spam.num_rows)
    spam_label = spam["label"].to_numpy()
    spam_seed_rows = [int(r) for r in s_ids if spam_label[r] == 1][:SEEDS_PER_POLICY]
    rest = [int(r) for r in s_ids if r not in set(spam_seed_rows)]
    hist_rows, spam_inv = rest[:HISTORY], rest[HISTORY : HISTORY + MAILS]
    i_label = insults["label"].to_numpy()
    i_perm = rng.permutation(insults.num_rows)
    insult_seed_rows = [int(r) for r in i_perm if i_label[r] == 1][:SEEDS_PER_POLICY]
    insult_inv = [int(r) for r in i_perm if r not in set(insult_seed_rows)]
    texts = [spam["text"][r].as_py() for r in spam_inv] + [
        insults["text"][r].as_py() for r in insult_inv
    ]
    ids = [f"sa/{spam['item_id'][r].as_py()}" for r in spam_inv]
    ids += [f"in/{insults['item_id'][r].as_py()}" for r in insult_inv]
    n = 0
    while len(texts) < items:  # near-duplicate copies of comments
        src = len(spam_inv) + n % len(insult_inv)
        texts.append(perturbed(texts[src], n, rng))
        ids.append(f"copy/{n}")
        n += 1
    pool = pa.table({"item_id": ids, "text": texts})
    order = rng.permutation(pool.num_rows)
    pool = pool.take(pa.array(order))
    if sample:  # a smoke run of the script on a slice (not a result)
        pool = pool.slice(0, sample)
    n_new, n_edit, n_del = (int(f * pool.num_rows) for f in (0.05, 0.02, 0.01))
    day0 = pool.slice(0, pool.num_rows - n_new)
    texts0 = day0["text"].to_pylist()
    edit_rows = set(rng.choice(day0.num_rows, n_edit, replace=False).tolist())
    left = [r for r in range(day0.num_rows) if r not in edit_rows]
    del_rows = set(rng.choice(left, n_del, replace=False).tolist())
    texts1 = [t + " Offer updated today." if r in edit_rows else t for r, t in enumerate(texts0)]
    day1 = day0.set_column(1, "text", pa.array(texts1))
    day1 = day1.filter(pa.array([r not in del_rows for r in range(day0.num_rows)]))
    day1 = pa.concat_tables([day1, pool.slice(pool.num_rows - n_new)])
    history = spam.take(pa.array(hist_rows))
    history = pa.table(
        {
            "item_id": history["item_id"],
            "text": history["text"],
            "policy": ["spam"] * history.num_rows,
            "verdict": pa.array([2 * int(v) for v in history["label"].to_pylist()], pa.int8()),
        }
    )
    seeds_spam = pa.table(
        {
            "seed_id": [f"spam-{i}" for i in range(SEEDS_PER_POLICY)],
            "policy": ["spam"] * SEEDS_PER_POLICY,
            "text": [spam["text"][r].as_py() for r in spam_seed_rows],
        }
    )
    seeds_insult = pa.table(
        {
            "seed_id": [f"insult-{i}" for i in range(SEEDS_PER_POLICY)],
            "policy": ["insult"] * SEEDS_PER_POLICY,
            "text": [insults["text"][r].as_py() for r in insult_seed_rows],
        }
    )
    files = {
        "day0": day0,
        "day1": day1,
        "history": history,
        "seeds_day0": seeds_spam,
        "seeds_day2": pa.concat_tables([seeds_spam, seeds_insult]),
    }
    paths = {}
    for name, table in files.items():
        paths[name] = str(root / f"{name}.parquet")
        pq.write_table(table, paths[name])
    paths["counts"] = {
        "pool": pool.num_rows,
        "day0": day0.num_rows,
        "day1": day1.num_rows,
        "new": n_new,
        "edited": n_edit,
        "deleted": n_del,
        "copies": n,
    }
    return paths


# ----------------------------------------------------------------------------- worker


def worker(spec: dict) -> dict:
    """One sweep, in this process; what it cost."""
    from riskrank.rank.pipeline import sweep

    t0, c0 = time.time(), time.process_time()
    inventory = spec["inventory"]
    result = sweep(
        inventory,
        spec["seeds"],
        spec["model"],
        out_dir=spec["out"],
        index_dir=spec.get("index_dir"),
        show_progress=False,
    )
    wall, cpu = time.time() - t0, time.process_time() - c0
    update = result.report.get("index_update") or {}
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),  # all threads of the worker: steadier than wall under load
        "stages_s": result.report["seconds"],
        "update_stages_s": {k: round(v, 2) for k, v in (update.get("seconds") or {}).items()},
        "embedded": update.get("embedded", 0),
        "update": {k: v for k, v in update.items() if k not in ("seconds", "signals")},
        "index_action": update.get("signals"),
        "peak_rss_mib": peak_rss_mib(),
        "items_indexed": result.report["items_indexed"],
        "queued": result.report["queued"],
        "reasons": result.report.get("reasons"),
    }


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). ``ru_maxrss`` is not used: Linux carries it
    over from the parent across fork and exec, so every worker reported the driver's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def run_sweep(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"sweep failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare_queues(a: str, b: str) -> dict:
    qa, qb = pq.read_table(Path(a) / "queue.parquet"), pq.read_table(Path(b) / "queue.parquet")
    ka = list(zip(qa["item_id"].to_pylist(), qa["policy"].to_pylist()))
    kb = list(zip(qb["item_id"].to_pylist(), qb["policy"].to_pylist()))
    same_order = ka == kb
    pa_, pb = (
        dict(zip(ka, qa["risk_probability"].to_pylist())),
        dict(zip(kb, qb["risk_probability"].to_pylist())),
    )
    common = set(pa_) & set(pb)
    first_diff = next((i for i, (x, y) in enumerate(zip(ka, kb)) if x != y), None)
    rank_b = {k: i for i, k in enumerate(kb)}
    shifts = [abs(i - rank_b[k]) for i, k in enumerate(ka) if k in rank_b]
    return {
        "rows": [len(ka), len(kb)],
        "same_rows_same_order": same_order,
        "same_set": set(ka) == set(kb),
        "first_different_rank": first_diff,
        "same_rank_share": round(sum(s == 0 for s in shifts) / max(1, len(shifts)), 4),
        "rows_moved": sum(s > 0 for s in shifts),
        "max_rank_shift": max(shifts, default=0),
        "max_abs_probability_diff": max((abs(pa_[k] - pb[k]) for k in common), default=0.0),
        **same_reasons(qa, qb, ka, kb, common),
        **same_candidates(Path(a), Path(b)),
    }


def campaigns_kept(a: Path, b: Path) -> dict:
    """Of the rows (item, policy) queued on both days: how many kept their ``campaign_id``,
    and how many kept the same campaign members (counting only rows queued on both days)."""
    cols = ["item_id", "policy", "campaign_id"]
    qa, qb = (pq.read_table(Path(d) / "queue.parquet", columns=cols).to_pylist() for d in (a, b))
    ca = {(r["item_id"], r["policy"]): r["campaign_id"] for r in qa}
    cb = {(r["item_id"], r["policy"]): r["campaign_id"] for r in qb}
    both = [key for key in ca if key in cb]

    def members(cid_of: dict) -> dict:
        out: dict = {}
        for key in both:
            out.setdefault(cid_of[key], set()).add(key)
        return {key: frozenset(out[cid_of[key]]) for key in both}

    ma, mb = members(ca), members(cb)
    return {
        "rows_both_days": len(both),
        "same_id": sum(ca[key] == cb[key] for key in both),
        "same_members": sum(ma[key] == mb[key] for key in both),
    }


def same_candidates(a: Path, b: Path) -> dict:
    """Whether both sweeps' candidate tables (every evidence column, e.g. the density that a
    standing index's sweep merges from the last sweep's neighbourhoods) are equal bit for bit;
    the columns that differ, if any."""
    ca, cb = pq.read_table(a / "candidates.parquet"), pq.read_table(b / "candidates.parquet")
    if ca.column_names != cb.column_names or ca.num_rows != cb.num_rows:
        return {"candidates_identical": False, "candidate_columns_differing": ["(shape)"]}
    differ = []
    for name in ca.column_names:
        x, y = ca[name].to_pylist(), cb[name].to_pylist()
        if not all(u == v or (u != u and v != v) for u, v in zip(x, y)):
            differ.append(name)
    return {"candidates_identical": not differ, "candidate_columns_differing": differ}


def same_reasons(qa: pa.Table, qb: pa.Table, ka: list, kb: list, common: set) -> dict:
    """Rows of both queues whose reviewer-facing reasons are identical (NaN equal to NaN)."""
    from riskrank.rank.reasons import EXPLANATION_SCHEMA

    names = [n for n in EXPLANATION_SCHEMA.names if n in qa.column_names]
    ra = dict(zip(ka, zip(*(qa[n].to_pylist() for n in names))))
    rb = dict(zip(kb, zip(*(qb[n].to_pylist() for n in names))))

    def same(x, y) -> bool:
        return all(u == v or (u != u and v != v) for u, v in zip(x, y))

    return {
        "common_rows": len(common),
        "reasons_identical_rows": sum(same(ra[k], rb[k]) for k in common),
    }


def vector_differences(standing: Path, scratch: Path) -> dict:
    """How far the standing index's vectors are from a from-scratch build's, item by item."""
    from riskrank.index.store import current_version

    a, b = current_version(Path(standing)), current_version(Path(scratch))
    ids_a = pq.read_table(a / "text" / "ids.parquet")["item_id"].to_pylist()
    ids_b = pq.read_table(b / "text" / "ids.parquet")["item_id"].to_pylist()
    if ids_a != ids_b:
        return {"same_ids": False}
    diff = np.abs(np.load(a / "text" / "vectors.npy") - np.load(b / "text" / "vectors.npy"))
    worst = diff.max(axis=1)
    return {
        "same_ids": True,
        "rows_differing": int((worst > 0).sum()),
        "rows": len(worst),
        "max_abs_diff": float(worst.max()),
    }


# ----------------------------------------------------------------------------- driver


ENCODER_WORDS = {
    "torch": "PyTorch fp32 (`--text-backend torch`; the default until 2026-12-06)",
    "openvino": "OpenVINO bf16 (`--text-backend openvino`; the default on a CPU since 2026-12-06)",
}


def recorded_precision(index_dir: Path) -> str | None:
    """The text encoder's precision as the standing index's manifest recorded it (OpenVINO
    runs bf16 only where the CPU has it: the label above is what was asked for)."""
    for manifest in sorted(index_dir.glob("versions/*/manifest.json")):
        for entry in json.loads(manifest.read_text()).get("signals", {}).values():
            if isinstance(entry, dict) and entry.get("precision"):
                return str(entry["precision"])
    return None


def train_model(
    paths: dict, model_dir: Path, backend: str = "torch", text_model: str | None = None
) -> float:
    """The model every sweep uses; its text signal's encoder (``backend``; ``text_model``, a
    sentence-transformers folder, instead of MiniLM) embeds them all."""
    from riskrank.index.signals import TextEmbeddingSignal
    from riskrank.rank.pipeline import train

    t0 = time.time()
    signals = [TextEmbeddingSignal(model=text_model, backend=backend)]
    train(paths["history"], paths["seeds_day0"], model_dir, signals=signals, show_progress=False)
    return time.time() - t0


def run(
    root: Path,
    items: int,
    sample: int | None = None,
    backend: str = "torch",
    paths: dict | None = None,
    text_model: str | None = None,
) -> dict:
    paths = paths or make_data(root, items, sample=sample)
    t_train = train_model(paths, root / "model", backend, text_model)
    model, standing = str(root / "model"), str(root / "standing")

    def spec(inv, seeds, out, index_dir=None):
        return {
            "inventory": inv,
            "seeds": paths[seeds],
            "model": model,
            "out": str(root / out),
            "index_dir": index_dir,
        }

    days = {}
    days["day0"] = {"standing": run_sweep(spec(paths["day0"], "seeds_day0", "d0", standing))}
    d1 = run_sweep(spec(paths["day1"], "seeds_day0", "d1", standing))
    d1s = run_sweep(spec(paths["day1"], "seeds_day0", "d1-scratch"))
    days["day1"] = {"standing": d1, "scratch": d1s, "queue": compare_queues(
        root / "d1", root / "d1-scratch")}  # fmt: skip
    days["day1"]["vectors"] = vector_differences(root / "standing", root / "d1-scratch" / "index")
    days["day1"]["campaigns"] = campaigns_kept(root / "d0", root / "d1")
    d2 = run_sweep(spec(None, "seeds_day2", "d2", standing))
    d2s = run_sweep(spec(paths["day1"], "seeds_day2", "d2-scratch"))
    days["day2"] = {"standing": d2, "scratch": d2s, "queue": compare_queues(
        root / "d2", root / "d2-scratch")}  # fmt: skip
    for day in ("day1", "day2"):
        d = days[day]
        d["ratio_wall"] = round(d["standing"]["wall_s"] / d["scratch"]["wall_s"], 4)
        staged = [
            sum(d[k]["stages_s"][s] for s in ("index", "recall", "rank"))
            for k in ("standing", "scratch")
        ]
        d["ratio_staged"] = round(staged[0] / staged[1], 4)
        d["ratio_embedded"] = round(d["standing"]["embedded"] / max(1, d["scratch"]["embedded"]), 4)
    return {
        "counts": paths["counts"],
        "train_s": round(t_train, 1),
        "days": days,
        "text_backend": backend,
        "text_precision": recorded_precision(root / "standing"),
    }


def rerun_day1(kept: Path, out: Path) -> dict:
    """Day 1's standing and scratch sweeps again, back to back, from a kept run: the day-0
    version of the standing index is restored and day 0's sweep re-run on it (nothing is
    embedded) so that day 1 starts from the cache day 0 left. For when the load changed
    between the full run's sweeps."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    standing = out / "standing"
    shutil.copytree(kept / "standing", standing)
    shutil.rmtree(standing / "cache")
    shutil.rmtree(standing / "versions" / "v000002")
    state = json.loads((standing / "standing.json").read_text())
    state["current"] = 1
    state.pop("inventory_digest", None)
    (standing / "standing.json").write_text(json.dumps(state))

    def spec(inv, sub, index_dir=None):
        return {
            "inventory": str(kept / inv),
            "seeds": str(kept / "seeds_day0.parquet"),
            "model": str(kept / "model"),
            "out": str(out / sub),
            "index_dir": index_dir,
        }

    load = [tuple(round(x, 2) for x in os.getloadavg())]
    day0 = run_sweep(spec("day0.parquet", "d0", str(standing)))
    load.append(tuple(round(x, 2) for x in os.getloadavg()))
    d1 = run_sweep(spec("day1.parquet", "d1", str(standing)))
    load.append(tuple(round(x, 2) for x in os.getloadavg()))
    d1s = run_sweep(spec("day1.parquet", "d1-scratch"))
    load.append(tuple(round(x, 2) for x in os.getloadavg()))
    from encoder import cpu_isa  # benchmarks/: this script's directory
    from quality import library_state

    return {
        **library_state(),  # the code measured: the ratio moves with the machine and the code
        "cpu": cpu_isa(),
        "day0_again": day0,
        "standing": d1,
        "scratch": d1s,
        "queue": compare_queues(out / "d1", out / "d1-scratch"),
        "ratio_wall": round(d1["wall_s"] / d1s["wall_s"], 4),
        "ratio_cpu": round(d1["cpu_s"] / d1s["cpu_s"], 4),
        "load": load,
    }


def rerun_lines(reruns: list[dict]) -> list[str]:
    """One paragraph per ``--rerun-day1`` (each one is kept: this machine's speed varies)."""
    return [line for n, r in enumerate(reruns, 1) for line in _rerun_lines(r, n)]


def _cpu(cpu: dict) -> str:
    """``encoder.cpu_isa``'s record in words (its flags are "unknown" off Linux)."""
    flags = cpu.get("flags")
    if isinstance(flags, list):
        flags = ", ".join(flags) or "none of the AVX2/AVX-512/VNNI/bf16/AMX flags"
    return f"{cpu.get('model') or 'a CPU'} (family {cpu.get('family', '?')}; {flags})"


def _rerun_lines(r: dict, n: int) -> list[str]:
    q = r["queue"]
    st, sc = r["standing"], r["scratch"]
    return [
        "",
        f"**Day 1 re-measured back to back, {n}** (`--rerun-day1 KEPT_RUN`: the day-0 version "
        "restored, day 0's sweep re-run on it to rebuild its cache, then day 1's standing and "
        "scratch sweeps one after the other"
        + (f"; at {r['commit'][:7]}" if r.get("commit") else "")
        + (f", on {_cpu(r['cpu'])}" if r.get("cpu") else "")
        + f"; load average before/between/after: {r['load']}): "
        f"standing {st['embedded']:,} embedded, wall {st['wall_s']} s, CPU "
        f"{st['cpu_s']} s (stages {st['stages_s']}); scratch {sc['embedded']:,} embedded, wall "
        f"{sc['wall_s']} s, CPU {sc['cpu_s']} s (stages {sc['stages_s']}). Ratio: wall "
        f"{r['ratio_wall']:.3f}, CPU {r['ratio_cpu']:.3f}. Queues: "
        + ("identical" if q["same_rows_same_order"] else "differ")
        + f" ({q['rows'][1]:,} rows; reasons identical on {q.get('reasons_identical_rows', 0):,}"
        f" of {q.get('common_rows', 0):,}"
        + (
            "; candidate evidence identical"
            if q.get("candidates_identical")
            else f"; candidate columns differing: {q.get('candidate_columns_differing', '?')}"
        )
        + ").",
        "",
    ]


def reruns(res: dict) -> list[dict]:
    """The kept ``--rerun-day1`` results (older files kept one, as ``day1_rerun``)."""
    return res.get("day1_reruns") or ([res["day1_rerun"]] if res.get("day1_rerun") else [])


def markdown(res: dict, args, load_before, load_after, seconds: float) -> str:
    c = res["counts"]
    lines = [
        "# Daily sweeps: standing index vs from-scratch sweeps (issue 12)",
        "",
        f"Command: `.venv/bin/python benchmarks/incremental.py --items {args.items}"
        + ("" if args.text_backend == "torch" else f" --text-backend {args.text_backend}")
        + "`  ",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}; load average at start {load_before}, at end "
        f"{load_after} (other work ran beside it: compare the ratios); {seconds:.0f} s in all.",
        "",
        f"Pool: {c['pool']:,} real texts (1,500 SpamAssassin mails + Insults, "
        f"{c['copies']:,} of them "
        f"perturbed copies, see the script's docstring); day 0: {c['day0']:,} items; day 1: "
        f"{c['new']:,} new, {c['edited']:,} edited, {c['deleted']:,} taken down -> "
        f"{c['day1']:,} items; day 2: a new policy's 5 seeds. Model trained once beforehand "
        f"({res['train_s']} s, not counted). Encoder: MiniLM, "
        + ENCODER_WORDS.get(res.get("text_backend", "torch"), res.get("text_backend", "?"))
        + (
            f"; it ran in {res['text_precision']} (the index manifest's record)"
            if res.get("text_precision")
            else ""
        )
        + ".",
        "",
        "| day | sweep | items embedded | wall s | index s (read / embed / index) | recall s "
        "| rank s | queue + reasons s | peak RSS MiB | ratio to scratch: wall / CPU "
        "(index+recall+rank wall) "
        "| queue equal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for day, d in res["days"].items():
        for kind in ("standing", "scratch"):
            if kind not in d:
                continue
            r = d[kind]
            st = r["stages_s"]
            up = r["update_stages_s"]
            parts = " / ".join(str(up.get(k, "-")) for k in ("read", "embed", "index"))
            ratio = ""
            if kind == "standing" and "ratio_wall" in d:
                cpu = r["cpu_s"] / d["scratch"]["cpu_s"]
                ratio = f"{d['ratio_wall']:.3f} / {cpu:.3f} ({d['ratio_staged']:.3f})"
            staged = st["index"] + st["recall"] + st["rank"]
            post = round(st.get("queue", 0) + st.get("reasons", 0), 2) or round(
                r["wall_s"] - staged, 1
            )
            q = d.get("queue", {})
            equal = ""
            if kind == "standing" and q:
                equal = "yes" if q["same_rows_same_order"] else (
                    f"no: first {q['first_different_rank']:,} of {q['rows'][1]:,} rows "
                    f"identical, same set: {q['same_set']}, "
                    f"{q.get('rows_moved', '?')} rows at another rank "
                    f"(by at most {q.get('max_rank_shift', '?')}), "
                    f"max dp {q['max_abs_probability_diff']:.2g}"
                )  # fmt: skip
                if "reasons_identical_rows" in q:
                    equal += (
                        f"; reasons identical on {q['reasons_identical_rows']:,} of "
                        f"{q['common_rows']:,} common rows"
                    )
                if "candidates_identical" in q:
                    equal += (
                        "; candidate evidence identical"
                        if q["candidates_identical"]
                        else f"; candidate columns differing: {q['candidate_columns_differing']}"
                    )
            lines.append(
                f"| {day} | {kind} | {r['embedded']:,} | {r['wall_s']} | {st['index']} ({parts}) "
                f"| {st['recall']} | {st['rank']} | {post} | {r['peak_rss_mib']} | {ratio} "
                f"| {equal} |"
            )
    v = res["days"]["day1"].get("vectors") or {}
    if v.get("same_ids"):
        lines += [
            "",
            f"Day 1 vectors against the from-scratch build: same ids in the same positions; "
            f"{v['rows_differing']:,} of {v['rows']:,} differ"
            + (
                f", by at most {v['max_abs_diff']:.2g}."
                if v["rows_differing"]
                else " (each text is padded to its own length, so its vector does not depend "
                "on which texts share its batch: index/signals/text.py `encode_padded`)."
            ),
        ]
    kept = res["days"]["day1"].get("campaigns")
    if kept and kept["rows_both_days"]:
        n = kept["rows_both_days"]
        lines += [
            "",
            f"Campaign ids kept from day 0 to day 1 (standing sweeps): {kept['same_id']:,} of "
            f"the {n:,} rows queued on both days ({kept['same_id'] / n:.1%}); "
            f"{kept['same_members']:,} ({kept['same_members'] / n:.1%}) kept the same members "
            "among those rows.",
        ]
    lines += [
        "",
        "Wall = the worker's whole sweep call. `queue + reasons` is the queue, campaign/slot "
        "arrangement and reasons step. A standing index's sweeps reuse the last sweep's "
        "text-only work (rank/sweep_cache.py: the lexical probe's n-gram scores in recall, the "
        "phrase attributions of the reasons) for texts they saw before, and its neighbourhoods "
        "and campaign links for contents it saw (recall/neighbours.py, LinkCache); a "
        "from-scratch sweep has no such cache. Reasons attributed / reused per sweep: "
        + "; ".join(
            f"{day} {kind}: {d[kind].get('reasons')}"
            for day, d in res["days"].items()
            for kind in ("standing", "scratch")
            if kind in d
        )
        + ".",
        *[f"\nNote: {n}" for n in res.get("notes", [])],
        "",
        *rerun_lines(reruns(res)),
        "Goals: day 1 <= 10% of a full sweep, day 2 <= 5%, queues equal to the from-scratch "
        "sweeps. Index actions: "
        + "; ".join(
            f"{day}: {d['standing'].get('index_action')}" for day, d in res["days"].items()
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=21_000)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    p.add_argument(
        "--text-backend",
        default="auto",
        help="TextEncoder backend of the model's text signal (default auto: the product's "
        "default, OpenVINO on a CPU with .[fast], else torch; results get a suffix but torch's)",
    )
    p.add_argument("--sample", type=int, help="smoke run on this many pool items (not a result)")
    p.add_argument("--rebuild", help="kept run directory: recompute the tables from it")
    p.add_argument("--note", action="append", help="with --rebuild: a note to print under it")
    p.add_argument("--rerun-day1", help="kept run directory: re-measure day 1 (see rerun_day1)")
    p.add_argument(
        "--results",
        help="the results file's name without .json/.md (default: incremental plus the run's "
        "suffix; --rerun-day1 and --rebuild add to the file of the run they were given)",
    )
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.text_backend == "auto":  # what the product's default runs here, named from now on
        from riskrank.index.signals.text import DEFAULT_TEXT_MODEL, resolve_backend

        args.text_backend, why = resolve_backend(DEFAULT_TEXT_MODEL)
        print(f"text backend: {args.text_backend} (auto: {why})", flush=True)
    suffix = f"_smoke{args.sample}" if args.sample else ""
    suffix += "" if args.text_backend == "torch" else f"_{args.text_backend}"
    if args.items != 21_000:  # beside the default's
        suffix += f"_{args.items // 1000}k" if args.items % 1000 == 0 else f"_{args.items}"
    # Re-runs went to incremental.json whatever the backend: an OpenVINO run's day-1 re-run
    # landed among PyTorch's results.
    stem = args.results or f"incremental{suffix}"
    if args.rerun_day1:
        res = json.loads((RESULTS / f"{stem}.json").read_text())
        res["day1_reruns"] = reruns(res) + [
            rerun_day1(Path(args.rerun_day1), Path(args.rerun_day1 + "-day1"))
        ]
        res.pop("day1_rerun", None)
        (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=2))
        text = markdown(res, args, res["load_before"], res["load_after"], res["seconds"])
        (RESULTS / f"{stem}.md").write_text(text)
        print(text)
        return
    if args.rebuild:  # the tables again from a kept run (new comparisons, no new sweeps)
        res = json.loads((RESULTS / f"{stem}.json").read_text())
        res["notes"] = res.get("notes", []) + (args.note or [])
        for day, d in res["days"].items():
            if "scratch" in d:
                root = Path(args.rebuild)
                d["queue"] = compare_queues(root / f"d{day[-1]}", root / f"d{day[-1]}-scratch")
                staged = [
                    sum(d[k]["stages_s"][s] for s in ("index", "recall", "rank"))
                    for k in ("standing", "scratch")
                ]
                d["ratio_staged"] = round(staged[0] / staged[1], 4)
        res["days"]["day1"]["vectors"] = vector_differences(
            Path(args.rebuild) / "standing", Path(args.rebuild) / "d1-scratch" / "index"
        )
        (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=2))
        text = markdown(res, args, res["load_before"], res["load_after"], res["seconds"])
        (RESULTS / f"{stem}.md").write_text(text)
        print(text)
        return
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        res = run(root, args.items, args.sample, args.text_backend)
    seconds = time.time() - t0
    load_after = tuple(round(x, 2) for x in os.getloadavg())
    res.update(load_before=load_before, load_after=load_after, seconds=round(seconds, 1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=2))
    text = markdown(res, args, load_before, load_after, seconds)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
