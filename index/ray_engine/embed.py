"""Embedding on Ray: chunks of valid items -> vectors on an actor pool, kept in the object store.

``ItemEmbedder`` is what each actor runs; ``embed_chunks`` runs the pool over the chunks of an
``index.ray_engine.inventory.ValidatedInventory`` and returns where every vector is (``Embedded``),
fetching to the driver only the per-row ok flags, reasons and evidence.
"""

from __future__ import annotations

import ast
import gc
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index.chunks import (
    ChunkCommitter,
    column,
    discard_staged,
    embed_chunk,
    evidence_of,
    flags_of,
    load_chunk,
    save_chunk,
    staged_path,
    vectors_of,
)
from riskrank.index.ray_engine.inventory import SAVE_TO, ValidatedInventory
from riskrank.index.signals.base import Signal
from riskrank.index.signals.registry import BUILT_IN_TYPES, signal_from_manifest
from riskrank.index.store import IndexMismatchError
from riskrank.index.tables import SchemaError


class ItemEmbedder:
    """What each embedding actor runs (``map_batches``): one chunk of valid items -> vectors.

    The signals (encoders) are rebuilt from their manifest entries once per actor and checked
    against them. Output: per signal the vector, ok flag and reason of every row, in order, and
    the per-row evidence the signal records (``batch.evidence``, e.g. PDQ quality).
    Subclass to instrument (the fault test does).
    """

    def __init__(self, signals: Sequence[dict], names: Sequence[str], options: dict | None = None):
        self.signals = dict(zip(names, materialize_signals(signals, options, check=True)))

    def __call__(self, chunk: pa.Table) -> pa.Table:
        save_to = None
        if SAVE_TO in chunk.column_names:
            save_to = chunk.column(SAVE_TO)[0].as_py()
            chunk = chunk.drop([SAVE_TO])
        out = self.embed(chunk)
        if save_to:  # staged; the driver commits it when this output reaches it (resume)
            save_chunk(out, save_to)
        return out

    def embed(self, chunk: pa.Table) -> pa.Table:
        return embed_chunk(self.signals, chunk)


def materialize_signals(
    specs: Sequence[dict], options: dict | None = None, *, check: bool = False
) -> list[Signal]:
    """Signals rebuilt from manifest entries (so workers load their own encoders), with the
    runtime options (``Signal.runtime_options``, e.g. the image base_dir) of ``options[name]``."""
    out = []
    for spec in specs:
        signal = signal_from_manifest(spec)
        signal.set_runtime_options(**(options or {}).get(signal.name, {}))
        why = signal.compatible_with(spec) if check else None
        if why:
            raise IndexMismatchError(f"embedding actor: encoder differs from the model's ({why})")
        out.append(signal)
    return out


def _flags(embedded: pa.Table) -> pa.Table:
    """The ok flags and reasons of an embedded block, without its vectors (a Ray task)."""
    return embedded.select(
        [c for c in embedded.column_names if not c.startswith(column("vec", ""))]
    )


def _gather_vectors(
    name: str, rows: list[np.ndarray], order: np.ndarray | None, *blocks: pa.Table
) -> np.ndarray:
    """``rows[i]`` of ``blocks[i]``'s vectors of signal ``name`` (then put in ``order``)."""
    parts = []
    for r, block in zip(rows, blocks):
        parts.append(vectors_of(block, name)[r])
    out = np.ascontiguousarray(np.concatenate(parts))  # float32 vectors, uint8 hashes, ...
    return out if order is None else out[order]


@dataclass
class Embedded:
    """Where every indexed item's vectors are: output blocks and their global row offsets."""

    blocks: list  # ObjectRef[pa.Table], in valid-row order
    offsets: np.ndarray  # first valid row of each block; offsets[-1] = number of valid rows
    ok: dict[str, np.ndarray]  # per signal: the valid rows it embedded
    evidence: dict[str, dict[str, np.ndarray]]  # per signal: per-row evidence columns
    reasons: dict[str, list]  # per signal: why each valid row has no vector (None if it has)
    chunks: int = 0  # chunks of the build
    resumed: int = 0  # of which loaded from an earlier, killed run

    def gather(self, name: str, rows: np.ndarray, *, task_options: dict):
        """A Ray object ref to the vectors of valid ``rows`` (any order) of signal ``name``."""
        import ray

        task = ray.remote(_gather_vectors).options(**task_options)
        if len(rows) == 0:  # no rows of the first block: the width and dtype of the signal
            return task.remote(name, [np.zeros(0, np.int64)], None, self.blocks[0])
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        block_of = np.searchsorted(self.offsets, srt, side="right") - 1
        which = np.unique(block_of)
        local = [srt[block_of == b] - self.offsets[b] for b in which]
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return task.remote(name, local, inverse, *[self.blocks[b] for b in which])


def embed_chunks(
    inv: ValidatedInventory, specs, names, plan: dict, files: Sequence[Path]
) -> Embedded:
    """Stage 2: chunks gathered by tasks, embedded on the actor pool; vectors stay remote.

    Chunk ``i`` is saved as ``files[i]`` (``index.chunks.chunk_files``, every engine's names):
    one that exists is loaded instead of embedded again, so a killed build resumes where it
    stopped. The actors stage each chunk's file; the driver commits it when its output arrives.
    """
    import ray

    if not files:
        raise ValueError("inventory: no valid items to embed")
    discard_staged(files)
    done = [i for i, path in enumerate(files) if Path(path).exists()]
    todo = [i for i in range(len(files)) if i not in set(done)]
    sizes = [len(ids) for ids in inv.chunk_ids(plan["chunk_size"])]
    fresh = _run_pool(inv, todo, files, sizes, specs, names, plan) if todo else []
    load = ray.remote(load_chunk).options(max_retries=plan["max_retries"])
    loaded = [load.remote(files[i]) for i in done]
    flag = ray.remote(_flags)
    fresh_flags = ray.get([flag.remote(b) for b in fresh])
    loaded_flags = ray.get([flag.remote(b) for b in loaded])
    # Back in chunk order; the pool's output blocks follow its input order, but may be cut
    # differently from the chunks, so they are matched by row counts.
    blocks, flags = [], []
    pending = list(zip(fresh, fresh_flags))
    from_disk = dict(zip(done, zip(loaded, loaded_flags)))
    for i, size in enumerate(sizes):
        if i in from_disk:
            blocks.append(from_disk[i][0])
            flags.append(from_disk[i][1])
            continue
        rows = 0
        while rows < size:
            block, f = pending.pop(0)
            blocks.append(block)
            flags.append(f)
            rows += f.num_rows
    emb = _collect(blocks, flags, inv.num_valid, names)
    emb.chunks, emb.resumed = len(files), len(done)
    return emb


def _run_pool(inv: ValidatedInventory, todo: list[int], files, sizes, specs, names, plan) -> list:
    """Embed chunks ``todo`` on the actor pool; refs to the output blocks, in input order.

    Each chunk's file is committed as soon as its whole output has reached the driver (blocks
    arrive in input order). When a chunk fails, the error is raised after the commits of the
    chunks before it and no later one: what is on disk then is what a resume uses, whatever
    actors still running stage afterwards (a staged file is never read).
    """
    chunks = inv.chunks(
        plan["chunk_size"],
        only=todo,
        save_to=[str(staged_path(f)) for f in files],
        max_retries=plan["max_retries"],
    )
    embedded = _pool(chunks, specs, names, plan, len(todo))
    blocks, failure = [], None
    commit = ChunkCommitter([files[i] for i in todo], [sizes[i] for i in todo])
    try:
        for bundle in embedded.iter_internal_ref_bundles():
            for entry in bundle.blocks:
                blocks.append(entry.ref)
                commit.received(entry.metadata.num_rows)
    except Exception as err:  # noqa: BLE001 - re-raised below, without its traceback
        failure = f"{type(err).__name__}: {err}"
    # Ray Data releases the pool's actors by dropping their handles; whatever still refers to
    # its executor (here: the error's traceback frames, kept by a notebook's last-error record)
    # keeps them and their CPUs, and a retry in this Ray session would wait for CPUs forever.
    # So the error is re-raised as text, and the cycles are collected now.
    del embedded, chunks
    gc.collect()
    if failure is not None:
        raise _embedding_failed(failure, specs)
    return blocks


NOT_REGISTERED = "which is not registered"  # signal_from_manifest's words
# A type name as its repr quotes it: in single quotes, or in double quotes where it holds one.
_QUOTED = r"'(?:[^'\\]|\\.)*'" + "|" + r'"(?:[^"\\]|\\.)*"'
_NAMED = re.compile(rf"signal type ({_QUOTED}), {NOT_REGISTERED}")


def _embedding_failed(failure: str, specs: Sequence[dict]) -> Exception:
    """The error an embedding pool's failure is raised as. A plug-in signal registered in
    this process only: every actor died at its start, and the user read Ray's 295 lines and a
    RuntimeError (an outsider's run) where any other bad input gets one line: said in one."""
    if NOT_REGISTERED in failure:
        # The types the workers named (their message quotes each as Python's repr does),
        # else those of ours they cannot know.
        named = _NAMED.findall(failure)
        types = sorted({ast.literal_eval(t) for t in named})
        types = types or sorted({str(s.get("type")) for s in specs} - set(BUILT_IN_TYPES))
        return SchemaError(
            f"the Ray workers could not load signal type(s) {types}: a plug-in registered in "
            "this process is not registered in the workers; register it there too, e.g. "
            "ray.init(runtime_env={'worker_process_setup_hook': 'mymodule.register'}) with "
            "mymodule importable on the workers (README: adding a signal)"
        )
    return RuntimeError(f"embedding failed: {failure}")


def _pool(chunks: list, specs, names, plan: dict, n_chunks: int):
    """The lazy Ray Dataset that embeds ``chunks`` on an actor pool of ``plan["embedder"]``."""
    import ray

    return ray.data.from_arrow_refs(chunks).map_batches(
        plan["embedder"],
        fn_constructor_kwargs={
            "signals": specs,
            "names": names,
            "options": plan["options"],
            **plan["embedder_kwargs"],
        },
        batch_size=None,  # one call per chunk
        batch_format="pyarrow",
        # One chunk at a time per actor: else the first actor up (the others still load their
        # model) queues several chunks and the rest of the pool idles.
        compute=ray.data.ActorPoolStrategy(
            size=min(plan["actors"], n_chunks), max_tasks_in_flight_per_actor=1
        ),
        num_cpus=plan["cpus_per_actor"],
        num_gpus=1 if plan["use_gpu"] else None,
        # Ray Data's own default for actor pools is -1 (restart and retry without limit);
        # passing it again only draws a deprecation warning (ray_remote_args, Ray 2.60).
        **{knob: plan[knob] for knob in ("max_restarts", "max_task_retries") if plan[knob] != -1},
    )


def _collect(blocks: list, flags: list[pa.Table], n_valid: int, names) -> Embedded:
    """``Embedded`` over the output blocks (in chunk order)."""
    sizes = [f.num_rows for f in flags]
    if sum(sizes) != n_valid:
        raise RuntimeError(f"embedding returned {sum(sizes)} rows for {n_valid} valid items")
    per = [{n: flags_of(f, n) for n in names} for f in flags]
    ok = {n: np.concatenate([p[n][0] for p in per]) for n in names}
    why = {n: [w for p in per for w in p[n][1]] for n in names}
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    evs = [{n: evidence_of(f, n) for n in names} for f in flags]
    evidence = {n: {k: np.concatenate([e[n][k] for e in evs]) for k in evs[0][n]} for n in names}
    return Embedded(blocks, offsets, ok, evidence, why)


__all__ = ["Embedded", "ItemEmbedder", "embed_chunks", "materialize_signals"]
