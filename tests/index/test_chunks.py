"""index.chunks and index.engine: the one chunk format's commit rule, and picking an engine."""

import numpy as np
import pyarrow as pa
import pytest

from riskrank.index.build import build_index
from riskrank.index.chunks import (
    ChunkCommitter,
    chunk_files,
    discard_staged,
    load_chunk,
    save_chunk,
    staged_path,
)
from riskrank.index.engine import LocalEngine, resolve_engine


def _staged(tmp_path, n):
    files = chunk_files(tmp_path, [[f"i{c}a", f"i{c}b"] for c in range(n)], [{"type": "t"}], ["t"])
    for c, path in enumerate(files):
        save_chunk(pa.table({"x": [c, c]}), staged_path(path))
    return files


def test_staged_chunks_become_chunks_only_when_committed_in_order(tmp_path):
    files = _staged(tmp_path, 3)
    assert not list(tmp_path.glob("chunk-*.parquet"))  # staged files are never taken as chunks
    commit = ChunkCommitter(files, [2, 2, 2])
    commit.received(3)  # chunk 0 whole, chunk 1 half: only chunk 0 is committed
    assert [p.exists() for p in files] == [True, False, False]
    assert load_chunk(files[0]).column("x").to_pylist() == [0, 0]
    commit.received(3)
    assert [p.exists() for p in files] == [True, True, True]
    assert not any(staged_path(p).exists() for p in files)


def test_a_failed_build_leaves_its_uncommitted_chunks_staged_and_the_next_discards_them(tmp_path):
    files = _staged(tmp_path, 3)
    ChunkCommitter(files, [2, 2, 2]).received(2)  # the build died after chunk 0's output
    assert sorted(tmp_path.glob("chunk-*.parquet")) == [files[0]]  # what a resume will use
    discard_staged(files)
    assert sorted(tmp_path.iterdir()) == [files[0]]


def test_engines_are_picked_by_name_or_given_and_a_wrong_one_is_refused(tmp_path):
    assert isinstance(resolve_engine("local"), LocalEngine)
    engine = LocalEngine()
    assert resolve_engine(engine) is engine
    with pytest.raises(ValueError, match="engine: expected one of \\['local', 'ray'\\]"):
        build_index({"item_id": ["a"], "text": ["x"]}, tmp_path / "idx", engine="spark")
    assert not (tmp_path / "idx").exists()  # refused before anything was written


def test_collected_vectors_spill_to_a_file_equal_to_the_held_array(tmp_path, hashing_signal):
    from riskrank.index.chunks import collect_chunks, embed_chunk
    from riskrank.index.vectors.stored import StoredVectors

    texts = [f"ad number {i} cheap watches" for i in range(50)]
    signals, dims = {"text": hashing_signal}, {"text": hashing_signal.dim}
    chunks = [embed_chunk(signals, pa.table({"text": texts[s : s + 16]})) for s in range(0, 50, 16)]
    held = collect_chunks(chunks, 50, ["text"], dims)
    spilled = collect_chunks(chunks, 50, ["text"], dims, spill=tmp_path)
    assert isinstance(spilled.vectors["text"], StoredVectors)
    np.testing.assert_array_equal(np.asarray(spilled.vectors["text"]), held.vectors["text"])
    np.testing.assert_array_equal(spilled.ok["text"], held.ok["text"])
    with pytest.raises(RuntimeError, match="expected 60"):
        collect_chunks(chunks, 60, ["text"], dims, spill=tmp_path)
