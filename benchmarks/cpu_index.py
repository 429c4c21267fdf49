"""CPU benchmark of the budgeted FAISS index (index/vector_index.py) on synthetic MiniLM-width data.

For each inventory size N it builds, through the product code (``VectorIndex.build(key=...)``):

* ``Flat``: exact search, the reference for recall;
* the IVF key the budget picker (``choose_index_key``) chooses for N under ``--max-memory``
  (for N <= ``EXACT_MAX_ITEMS`` the picker returns ``Flat``; the IVF key it *would* choose for that
  N is then measured instead, so the exact/IVF crossover can be judged);
* from ``--extras-min-n`` items on (default 1,000,000), that IVF with ``--extra-codes`` (default
  ``SQ8``, ``PQ48`` and ``PQ48np``: PQ48 without faiss's polysemous training);

and measures build time, serialized size (``memory_bytes()``), the "sweep" search (``--queries``
seed queries, k=``--k``, the recall step of a sweep) and recall against the exact top-10 at the
product's default ``nprobe`` and at nprobe / 16, / 4 and x 4.

Data (fixed seed): ``--topics`` random unit topic vectors; ``--clusters`` unit cluster centres,
each a random topic plus gaussian noise of expected norm ``--topic-noise`` (``--topics 0``: plain
random centres); uneven (log-normal) cluster sizes; item = normalise(centre + gaussian noise of
expected norm ``--noise``); query = normalise(random distinct item + gaussian noise of expected
norm ``--query-noise``), i.e. seeds that resemble inventory. Isotropic noise without clusters
would make ANN unrealistically hard.

    .venv/bin/python benchmarks/cpu_index.py            # full: ~10 CPU-min (18 min at load ~8)
    .venv/bin/python benchmarks/cpu_index.py --quick    # N=20,000 smoke test, seconds
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from riskrank.index.vectors import faiss_index as vector_index  # noqa: E402
from riskrank.index.vectors.faiss_index import VectorIndex, choose_index_key, default_nprobe  # noqa: E402

DIM = 384  # all-MiniLM-L6-v2 width
RESULTS = ROOT / "benchmarks" / "results"


# ----------------------------------------------------------------------------- data


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(
    n: int,
    n_queries: int,
    *,
    dim: int,
    topics: int,
    topic_noise: float,
    clusters: int,
    noise: float,
    query_noise: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors and queries that are perturbed copies of random items."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    if topics > 0:  # two-level: clusters are noisy copies of a few broad topics
        tops = _normalise(rng.standard_normal((topics, dim), dtype=np.float32))
        centres *= np.float32(topic_noise / np.sqrt(dim))
        centres += tops[rng.integers(0, topics, clusters)]
    centres = _normalise(centres)
    weights = rng.lognormal(0.0, 1.0, clusters)
    labels = rng.choice(clusters, size=n, p=weights / weights.sum())
    sigma = np.float32(noise / np.sqrt(dim))  # E||noise|| ~= noise (centres have norm 1)
    items = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # chunked: no n x dim temporaries beyond the output
        stop = min(n, start + 100_000)
        block = rng.standard_normal((stop - start, dim), dtype=np.float32)
        block *= sigma
        block += centres[labels[start:stop]]
        items[start:stop] = _normalise(block)
    src = rng.choice(n, size=n_queries, replace=False)
    q_sigma = np.float32(query_noise / np.sqrt(dim))
    queries = items[src] + q_sigma * rng.standard_normal((n_queries, dim), dtype=np.float32)
    return items, _normalise(queries)


def describe_data(args: argparse.Namespace) -> str:
    if args.topics > 0:
        centres = (
            f"{args.topics} topic vectors ~ N(0, I_{DIM}) normalised; {args.clusters} cluster "
            f"centres = normalise(random topic + N(0, ({args.topic_noise}/sqrt({DIM}))^2 I)) "
            f"(cos(centre, topic) ~ {1 / np.sqrt(1 + args.topic_noise**2):.2f}, so clusters of "
            f"one topic are related: multi-scale neighbourhoods as in real embeddings)"
        )
    else:
        centres = f"{args.clusters} cluster centres ~ N(0, I_{DIM}) normalised to unit norm"
    return (
        f"seed={args.seed}; {centres}; cluster sizes uneven, cluster drawn with probability "
        f"proportional to LogNormal(0, 1) weights; item = normalise(centre + "
        f"N(0, ({args.noise}/sqrt({DIM}))^2 I)) (noise norm ~{args.noise} x centre norm: "
        f"cos(item, centre) ~ "
        f"{1 / np.sqrt(1 + args.noise**2):.2f}); queries = normalise(item + N(0, "
        f"({args.query_noise}/sqrt({DIM}))^2 I)) for {args.queries} distinct random items "
        f"(cos(query, source item) ~ {1 / np.sqrt(1 + args.query_noise**2):.2f}); float32, "
        f"inner product = cosine"
    )


# ----------------------------------------------------------------------------- keys


def picker_ivf_key(n: int, dim: int, max_memory: str) -> str:
    """The IVF key ``choose_index_key`` picks for ``n`` with the exact-search threshold lowered.

    Reads the product's own rule instead of copying its formula; restored afterwards.
    """
    saved = vector_index.EXACT_MAX_ITEMS
    try:
        vector_index.EXACT_MAX_ITEMS = 0
        return choose_index_key(n, dim, max_memory)
    finally:
        vector_index.EXACT_MAX_ITEMS = saved


def keys_for(n: int, args: argparse.Namespace) -> list[tuple[str, str]]:
    """(key, role) pairs to measure at size ``n``."""
    default = choose_index_key(n, DIM, args.max_memory)
    out = [("Flat", "exact reference")]
    if default == "Flat":
        ivf = picker_ivf_key(n, DIM, args.max_memory)
        out.append((ivf, f"picker's IVF for this N (default at {args.max_memory} is Flat)"))
    else:
        ivf = default
        out.append((ivf, f"picker default at max_memory={args.max_memory}"))
    if n >= args.extras_min_n:
        nlist_part = ivf.split(",")[0]
        for codes in args.extra_codes:
            key = f"{nlist_part},{codes}"
            if key != ivf:
                role = "compressed codes"
                if codes.endswith("np"):
                    role += " (no polysemous training: faiss factory 'np' suffix)"
                out.append((key, role))
    return out


def picks_by_budget(n: int) -> dict[str, str]:
    picks = {}
    for budget in ("8G", "4G", "2G", "1G", "512M", "256M", "128M", "64M"):
        try:
            picks[budget] = choose_index_key(n, DIM, budget)
        except ValueError as e:
            picks[budget] = f"error: {e}"
    return picks


def nprobe_grid(key: str, nlist: int) -> list[int]:
    d = default_nprobe(key)
    grid = {max(1, d // 16), max(1, d // 4), d, min(nlist, d * 4)}
    return sorted(grid)


# ----------------------------------------------------------------------------- measuring


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    hits = 0
    for a, e in zip(approx[:, :k], exact[:, :k], strict=True):
        hits += len(np.intersect1d(a[a >= 0], e, assume_unique=True))
    return hits / (exact.shape[0] * k)


def rerank_exact(
    items: np.ndarray, queries: np.ndarray, positions: np.ndarray, k: int
) -> np.ndarray:
    """Re-score the returned candidates with the raw vectors, keep the best ``k`` positions."""
    safe = np.where(positions >= 0, positions, 0)
    scores = np.einsum("qkd,qd->qk", items[safe], queries)
    scores[positions < 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(positions, order, axis=1)


def timed_search(index: VectorIndex, queries: np.ndarray, k: int, repeats: int):
    """Best wall time of ``repeats`` batch searches, the process CPU seconds of that one, result."""
    best, cpu, res = float("inf"), 0.0, None
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        res = index.search(queries, k)
        wall = time.perf_counter() - t
        if wall < best:
            best, cpu = wall, time.process_time() - c
    return best, cpu, res


def measure_size(n: int, args: argparse.Namespace) -> dict:
    t = time.perf_counter()
    items, queries = make_data(
        n,
        args.queries,
        dim=DIM,
        topics=args.topics,
        topic_noise=args.topic_noise,
        clusters=args.clusters,
        noise=args.noise,
        query_noise=args.query_noise,
        seed=args.seed,
    )
    gen_s = time.perf_counter() - t
    print(f"\n== N={n:,}: data made in {gen_s:.1f}s", flush=True)
    entry: dict = {
        "n": n,
        "data_gen_s": round(gen_s, 2),
        "picker_default_key": choose_index_key(n, DIM, args.max_memory),
        "picker_by_budget": picks_by_budget(n),
        "indexes": [],
    }
    exact = None
    for key, role in keys_for(n, args):
        gc.collect()
        load = [round(x, 2) for x in os.getloadavg()]
        c, t = time.process_time(), time.perf_counter()
        idx = VectorIndex.build(items, key=key, use_gpu=False, seed=args.seed)
        build_s, build_cpu = time.perf_counter() - t, time.process_time() - c
        nbytes = idx.memory_bytes()
        idx.search(queries[:16], args.k)  # warm-up (page faults, thread pool), untimed
        rec: dict = {
            "key": key,
            "role": role,
            "build_s": round(build_s, 3),
            "build_cpu_s": round(build_cpu, 3),
            "loadavg_before_build": load,
            "memory_bytes": nbytes,
            "bytes_per_item": round(nbytes / n, 2),
            "default_nprobe": idx.nprobe if key != "Flat" else None,
        }
        print(f"  {key:<16} build {build_s:7.2f}s  {nbytes / n:7.1f} B/item", flush=True)
        if key == "Flat":
            sec, cpu, res = timed_search(idx, queries, args.k, args.repeats)
            exact = res.positions
            rec.update(
                search_ms_1000q_k100=round(sec * 1e3, 1),
                search_cpu_ms=round(cpu * 1e3, 1),
                qps=round(len(queries) / sec, 1),
                recall_at_10={"exact": 1.0},
                sweep=[],
            )
            print(f"    exact search {sec * 1e3:9.1f} ms  {len(queries) / sec:8.1f} q/s")
        else:
            assert exact is not None
            nlist = faiss.extract_index_ivf(idx.index).nlist
            default = idx.nprobe
            compressed = not key.endswith(",Flat")
            sweep = []
            for nprobe in nprobe_grid(key, nlist):
                idx.nprobe = nprobe
                sec, cpu, res = timed_search(idx, queries, args.k, args.repeats)
                row = {
                    "nprobe": nprobe,
                    "is_default": nprobe == default,
                    "search_ms": round(sec * 1e3, 1),
                    "search_cpu_ms": round(cpu * 1e3, 1),
                    "qps": round(len(queries) / sec, 1),
                    "recall_at_10": round(recall_at(res.positions, exact, 10), 4),
                    "recall_at_100": round(recall_at(res.positions, exact, args.k), 4),
                }
                if compressed:
                    top = rerank_exact(items, queries, res.positions, 10)
                    row["recall_at_10_reranked"] = round(recall_at(top, exact, 10), 4)
                sweep.append(row)
                print(
                    f"    nprobe {nprobe:5d}{'*' if nprobe == default else ' '} "
                    f"{row['search_ms']:9.1f} ms  {row['qps']:8.1f} q/s  "
                    f"R@10 {row['recall_at_10']:.4f}  R@100 {row['recall_at_100']:.4f}"
                    + (f"  R@10 reranked {row['recall_at_10_reranked']:.4f}" if compressed else ""),
                    flush=True,
                )
            idx.nprobe = default
            d_row = next(r for r in sweep if r["is_default"])
            rec.update(
                nlist=nlist,
                search_ms_1000q_k100=d_row["search_ms"],
                qps=d_row["qps"],
                recall_at_10={str(r["nprobe"]): r["recall_at_10"] for r in sweep},
                sweep=sweep,
            )
        entry["indexes"].append(rec)
        del idx, res
    del items, queries, exact
    gc.collect()
    return entry


# ----------------------------------------------------------------------------- reporting


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem_gib = round(kb / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gib": mem_gib,
        "faiss_version": faiss.__version__,
        "faiss_compile_options": faiss.get_compile_options(),
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def markdown(report: dict) -> str:
    p, m = report["parameters"], report["machine"]
    lines = [
        "# CPU index benchmark (index/vector_index.py)",
        "",
        f"- machine: {m['cpu_model']}, {m['cpus_usable']} usable cores, "
        f"{m['mem_total_gib']} GiB RAM; faiss {m['faiss_version']} "
        f"({m['faiss_compile_options'].strip()}), {m['faiss_omp_threads']} OpenMP threads",
        f"- load average (1/5/15 min) at start {report['loadavg_start']}, "
        f"at end {report['loadavg_end']}; total wall {report['total_s']} s; "
        f"peak RSS {report['peak_rss_gib']} GiB",
        f"- search: {p['queries']} queries, k={p['k']}, one batch call, best of "
        f"{p['repeats']}; cpu/wall = process CPU s / wall s of that search (2.0 = both cores "
        "ours; lower = contention or serial work); recall = fraction of the exact (Flat) "
        "top-10 / top-100 found",
        "- build cpu s: process CPU seconds of the build (wall ~ cpu / 2 on an idle 2-core "
        "machine)",
        "- R@10 reranked: the k=100 candidates re-scored with the raw vectors, then top-10 "
        "(compressed codes only; the store keeps vectors.npy for this)",
        f"- data: {report['data']}",
        f"- command: `{report['command']}`",
        "",
        "| N | index | build s | build cpu s | bytes/item | nprobe | search ms (1000q, k=100) "
        "| q/s | cpu/wall | R@10 | R@100 | R@10 reranked |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in report["results"]:
        n = f"{size['n']:,}"
        for rec in size["indexes"]:
            head = (
                f"| {n} | {rec['key']} | {rec['build_s']:.1f} | {rec['build_cpu_s']:.1f} "
                f"| {rec['bytes_per_item']:.1f} "
            )
            if not rec["sweep"]:
                ratio = rec["search_cpu_ms"] / rec["search_ms_1000q_k100"]
                lines.append(
                    head + f"| exact | {rec['search_ms_1000q_k100']:.1f} | {rec['qps']:.0f} "
                    f"| {ratio:.2f} | 1.0000 | 1.0000 | |"
                )
            for r in rec["sweep"]:
                rr = r.get("recall_at_10_reranked")
                lines.append(
                    head + f"| {r['nprobe']}{' (default)' if r['is_default'] else ''} "
                    f"| {r['search_ms']:.1f} | {r['qps']:.0f} "
                    f"| {r['search_cpu_ms'] / r['search_ms']:.2f} | {r['recall_at_10']:.4f} "
                    f"| {r['recall_at_100']:.4f} | {'' if rr is None else f'{rr:.4f}'} |"
                )
    lines.append("")
    for size in report["results"]:
        picks = ", ".join(f"{b}: {k}" for b, k in size["picker_by_budget"].items())
        lines.append(f"- picker at N={size['n']:,} by max_memory: {picks}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None, help="JSON path (markdown written beside)")
    ap.add_argument("--quick", action="store_true", help="N=20,000 with every key: smoke test")
    ap.add_argument("--max-memory", default="4G", help="budget given to choose_index_key")
    ap.add_argument("--extras-min-n", type=int, default=1_000_000, help="add SQ8/PQ48 from N")
    ap.add_argument(
        "--extra-codes",
        nargs="+",
        default=["SQ8", "PQ48", "PQ48np"],
        help="codes measured with the picker's IVF from --extras-min-n items on",
    )
    ap.add_argument("--repeats", type=int, default=1, help="timed searches per point (best of)")
    ap.add_argument("--topics", type=int, default=100, help="0: clusters are unrelated")
    ap.add_argument("--topic-noise", type=float, default=1.0)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--query-noise", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        # PQ48 (polysemous training, ~40 s whatever N) is left out to keep this fast.
        args.sizes, args.extras_min_n, args.extra_codes = [20_000], 0, ["SQ8", "PQ48np"]
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "cpu_index_quick.json"
            if args.quick
            else RESULTS / "cpu_index.json"
        )
    if args.queries > min(args.sizes):
        ap.error("--queries must not exceed the smallest size (queries are distinct items)")

    t0 = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    machine = machine_info()
    print(
        f"{machine['cpu_model']}, {machine['cpus_usable']} cores, faiss {machine['faiss_version']}"
        f", {machine['faiss_omp_threads']} threads; load average {load_start}",
        flush=True,
    )
    results = [measure_size(n, args) for n in args.sizes]
    report = {
        "benchmark": "benchmarks/cpu_index.py",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([".venv/bin/python", "benchmarks/cpu_index.py", *sys.argv[1:]])
        if argv is None
        else "main(" + repr(argv) + ")",
        "machine": machine,
        "loadavg_start": load_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.perf_counter() - t0, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "parameters": {
            "dim": DIM,
            "sizes": args.sizes,
            "queries": args.queries,
            "k": args.k,
            "repeats": args.repeats,
            "max_memory": args.max_memory,
            "extras_min_n": args.extras_min_n,
            "extra_codes": args.extra_codes,
            "topics": args.topics,
            "topic_noise": args.topic_noise,
            "clusters": args.clusters,
            "noise": args.noise,
            "query_noise": args.query_noise,
            "seed": args.seed,
            "exact_max_items": vector_index.EXACT_MAX_ITEMS,
            "train_sample": inspect.signature(VectorIndex.build).parameters["train_sample"].default,
        },
        "data": describe_data(args),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    args.out.with_suffix(".md").write_text(md)
    print("\n" + md)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
