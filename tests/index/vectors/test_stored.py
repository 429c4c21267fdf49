"""StoredVectors: rows of a saved .npy read on demand, equal to the array, never mapped."""

import pickle

import numpy as np
import pytest

from riskrank.index.vectors.faiss_index import VectorIndex
from riskrank.index.vectors.stored import StoredVectors


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((1000, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", vecs)
    return vecs, StoredVectors(tmp_path / "v.npy")


def test_indexing_matches_the_array(saved):
    vecs, stored = saved
    assert stored.shape == vecs.shape and stored.dtype == vecs.dtype and len(stored) == 1000
    picks = np.array([999, 3, 4, 5, 3, -1, 0, 500])  # unsorted, repeats, negative, runs
    mask = np.zeros(1000, bool)
    mask[[7, 8, 300]] = True
    slices = [slice(None), slice(10, 20), slice(None, None, 7), slice(990, 2000)]
    arrays = [picks, picks.tolist(), mask, np.array([], np.int64), (picks, slice(0, 3))]
    for key in [5, -2, *slices, *arrays]:
        np.testing.assert_array_equal(stored[key], vecs[key])
    np.testing.assert_array_equal(np.asarray(stored), vecs)


def test_dense_scattered_rows_are_read_a_block_at_a_time(saved, monkeypatch):
    """~17,000 scattered candidates of 41,580 rows took 100,000 preads; a dense request is
    read as its span, in blocks, and gives the same rows."""
    from riskrank.index.vectors import stored as mod

    vecs, stored = saved
    monkeypatch.setattr(mod, "BLOCK_BYTES", 100 * 16 * 4)  # 100 rows a block: many blocks
    reads = []
    fill = StoredVectors._fill
    monkeypatch.setattr(StoredVectors, "_fill", lambda self, out, first: reads.append(first)
                        or fill(self, out, first))  # fmt: skip
    rng = np.random.default_rng(1)
    picks = rng.choice(1000, 400, replace=False)  # unsorted, 1 in 2.5 of the span
    picks = np.concatenate([picks, picks[:50], [-1]])  # repeats, a negative position
    np.testing.assert_array_equal(stored[picks], vecs[picks])
    assert len(reads) <= 10  # one per block, where the rows' runs would be ~250 reads
    reads.clear()
    sparse = np.arange(0, 1000, 50)  # 20 runs: read run by run
    np.testing.assert_array_equal(stored[sparse], vecs[sparse])
    assert len(reads) == 20
    reads.clear()
    gaps = np.r_[np.arange(0, 300, 2), np.arange(700, 1000, 2)]  # a block with none: skipped
    np.testing.assert_array_equal(stored[gaps], vecs[gaps])
    assert sorted(reads) == [0, 100, 200, 700, 800, 900]


def test_bad_rows_and_files_are_named(saved, tmp_path):
    _, stored = saved
    with pytest.raises(IndexError, match="out of range"):
        stored[[0, 1000]]
    with pytest.raises(IndexError, match="boolean mask"):
        stored[np.ones(3, bool)]
    (tmp_path / "x.npy").write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="x.npy"):
        StoredVectors(tmp_path / "x.npy")
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((4, 3), np.float32)))
    with pytest.raises(ValueError, match="C-ordered 2-d"):
        StoredVectors(tmp_path / "f.npy")


def test_pickles_as_its_path(saved):
    vecs, stored = saved
    data = pickle.dumps(stored)
    assert len(data) < 1000  # the path, not the 64 KB of rows
    np.testing.assert_array_equal(pickle.loads(data)[[1, 2]], vecs[[1, 2]])


def _rss_file_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile"))


def test_scattered_reads_leave_the_file_out_of_the_resident_set(tmp_path):
    # A memory map of this 64 MiB file would make ~all of it resident (one row per 16 KiB
    # read here, and the kernel maps 64 KiB around each fault); preads keep it in the page
    # cache only.
    n, dim = 16_384, 1024
    np.save(tmp_path / "big.npy", np.ones((n, dim), np.float32))
    stored = StoredVectors(tmp_path / "big.npy")
    before = _rss_file_kib()
    rows = stored[np.arange(0, n, 4)]
    assert rows.shape == (n // 4, dim)
    assert _rss_file_kib() - before < 4096


def test_an_index_built_from_the_file_equals_one_built_from_the_array(saved):
    vecs, stored = saved
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    np.save(stored.path, vecs)
    stored = StoredVectors(stored.path)
    a = VectorIndex.build(vecs, key="IVF16,Flat", train_sample=500)
    b = VectorIndex.build(stored, key="IVF16,Flat", train_sample=500)
    ra, rb = a.search(vecs[:50], 10), b.search(vecs[:50], 10)
    np.testing.assert_array_equal(ra.positions, rb.positions)
    np.testing.assert_array_equal(ra.scores, rb.scores)


def test_an_exact_index_filled_in_blocks_is_byte_for_byte_faiss_s_own(saved):
    import faiss

    from riskrank.index.vectors.faiss_index import train_and_add

    vecs, stored = saved
    ours, theirs = faiss.IndexFlatIP(16), faiss.IndexFlatIP(16)
    train_and_add(ours, stored, block=300)  # blocks that do not divide the 1,000 rows
    theirs.add(vecs)
    assert ours.ntotal == 1000
    assert faiss.serialize_index(ours).tobytes() == faiss.serialize_index(theirs).tobytes()


def test_the_file_is_closed_with_the_object(tmp_path):
    """An analyst's session saw "unclosed file vectors.npy" ResourceWarnings after every
    sweep: the file held for reads is closed when the object goes, or by ``close``."""
    import gc
    import warnings

    np.save(tmp_path / "v.npy", np.zeros((4, 2), np.float32))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        stored = StoredVectors(tmp_path / "v.npy")
        del stored
        gc.collect()
        kept = StoredVectors(tmp_path / "v.npy")
        kept.close()
        kept.close()  # (twice is harmless)
        pickle.loads(pickle.dumps(kept))  # (a copy opens its own)
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]
