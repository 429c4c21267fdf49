"""PDQ: re-uploads match within the threshold, different images do not, the index is exact."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from riskrank.index.signals.pdq import (
    PDQ_MATCH_THRESHOLD,
    PdqSignal,
    hamming_distances,
    pdq_from_hex,
    pdq_hex,
)
from riskrank.index.vectors.hamming import BinaryHashIndex


def scene(seed: int, size: int = 256) -> Image.Image:
    """A photo-like picture: gradient background, coloured shapes, soft edges."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)[None, :, None]
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    base = (a * (1 - ramp) + b * ramp).repeat(size, axis=0).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x0, y0 = rng.integers(-20, size - 20, 2)
        w, h = rng.integers(20, size // 2, 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(1.5))


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def table(images: list[bytes | None]) -> pa.Table:
    return pa.table(
        {
            "item_id": [f"i{k}" for k in range(len(images))],
            "image_bytes": pa.array(images, pa.binary()),
        }
    )


@pytest.fixture(scope="module")
def originals() -> list[Image.Image]:
    return [scene(s) for s in range(6)]


def test_reencoded_resized_copy_matches_and_other_images_do_not(originals):
    sig = PdqSignal()
    copy = originals[0].resize((128, 128), Image.BILINEAR)
    batch = sig.embed_items(table([jpeg(im) for im in originals] + [jpeg(copy, quality=40)]))
    assert batch.ok.all() and batch.vectors.shape == (7, 32) and batch.vectors.dtype == np.uint8
    dist = hamming_distances(batch.vectors[6:], batch.vectors[:6])[0]
    assert dist[0] <= PDQ_MATCH_THRESHOLD
    assert dist[1:].min() > 2 * PDQ_MATCH_THRESHOLD
    sim = sig.similarity(batch.vectors[6:], batch.vectors[:6])[0]
    np.testing.assert_allclose(sim, 1 - dist / 256, rtol=1e-6)
    assert np.all(batch.quality[:7] >= 50) and not batch.low_quality.any()


def test_flat_image_is_hashed_but_flagged_and_bad_rows_have_reasons():
    flat = jpeg(Image.new("RGB", (64, 64), (120, 120, 120)))
    batch = PdqSignal().embed_items(table([flat, None, b"\xff\xd8\xff broken jpeg"]))
    assert batch.ok.tolist() == [True, False, False]
    assert batch.quality[0] < 50 and batch.low_quality.tolist() == [True, False, False]
    assert batch.quality[1] == -1
    assert batch.reasons[1] == "no image"
    assert "corrupt" in batch.reasons[2] or "not a recognised" in batch.reasons[2]
    assert batch.evidence["pdq_quality"] is batch.quality


def test_index_search_scores_distances_and_round_trip(originals, tmp_path):
    sig = PdqSignal()
    items = sig.embed_items(table([jpeg(im) for im in originals]))
    index = sig.build_index(items.vectors)
    assert index.key == "BFlat" and index.ntotal == 6 and index.dim == 256
    query = sig.embed_queries(table([jpeg(originals[3].resize((200, 200)), 60)]))
    result = index.search(query.vectors, k=3)
    assert result.positions[0, 0] == 3 and result.distances[0, 0] <= PDQ_MATCH_THRESHOLD
    assert np.all(np.diff(result.distances[0]) >= 0)
    np.testing.assert_allclose(result.scores, 1 - result.distances / 256, rtol=1e-6)
    np.testing.assert_array_equal(
        result.distances[0], np.sort(hamming_distances(query.vectors, items.vectors)[0])[:3]
    )
    lims, dists, positions = index.range_search(query.vectors, PDQ_MATCH_THRESHOLD)
    assert positions[lims[0] : lims[1]].tolist() == [3]

    index.save(tmp_path / "pdq.faiss")
    again = BinaryHashIndex.load(tmp_path / "pdq.faiss", index.key, index.nprobe)
    np.testing.assert_array_equal(again.search(query.vectors, 3).positions, result.positions)
    assert again.memory_bytes() >= 6 * 32


def test_a_binary_index_pickles_as_faiss_bytes(originals):
    """Ray sends an index to its recall tasks by pickling it: FAISS's binary indexes have no
    pickle support, and a Ray sweep of any model with PDQ died there (an outsider's report)."""
    import pickle

    from riskrank.index.vectors.faiss_index import VectorIndex

    sig = PdqSignal()
    items = sig.embed_items(table([jpeg(im) for im in originals]))
    query = sig.embed_queries(table([jpeg(originals[3].resize((200, 200)), 60)])).vectors
    for index in (sig.build_index(items.vectors), BinaryHashIndex.build(
            np.tile(items.vectors, (700, 1)), key="BIVF4", nprobe=2)):  # fmt: skip
        copy = pickle.loads(pickle.dumps(index))
        assert (type(copy), copy.key, copy.nprobe, copy.on_gpu) == (
            BinaryHashIndex,
            index.key,
            index.nprobe,
            False,
        )
        for a, b in zip(
            copy.search(query, 5).__dict__.values(), index.search(query, 5).__dict__.values()
        ):
            np.testing.assert_array_equal(a, b)
    vectors = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    ivf = VectorIndex.build(vectors, key="IVF4,Flat", nprobe=3)
    copy = pickle.loads(pickle.dumps(ivf))
    assert (copy.key, copy.nprobe) == ("IVF4,Flat", 3)
    np.testing.assert_array_equal(
        copy.search(vectors[:4], 7).positions, ivf.search(vectors[:4], 7).positions
    )


def test_forced_ivf_key_and_float_keys_are_ignored(originals):
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    ivf = BinaryHashIndex.build(hashes, key="BIVF16", nprobe=16)
    assert ivf.search(hashes[:50], 1).positions[:, 0].tolist() == list(range(50))
    assert PdqSignal().build_index(hashes[:10], key="IVF64,Flat").key == "BFlat"
    with pytest.raises(ValueError, match="packed hashes"):
        BinaryHashIndex.build(np.zeros((4, 256), np.float32))


def test_dihedral_queries_find_a_mirrored_copy(originals):
    sig = PdqSignal(dihedral_queries=True)
    items = sig.embed_items(table([jpeg(im) for im in originals]))
    index = sig.build_index(items.vectors)
    query = sig.embed_queries(table([jpeg(ImageOps.mirror(originals[2]))]))
    assert query.dihedral.shape == (1, 8, 32)
    plain = index.search(query.vectors, k=6)
    assert plain.distances[0, plain.positions[0] == 2][0] > PDQ_MATCH_THRESHOLD  # PDQ's weak spot
    variants = index.search(query.dihedral, k=6)
    assert variants.positions[0, 0] == 2 and variants.distances[0, 0] <= PDQ_MATCH_THRESHOLD
    assert sorted(variants.positions[0].tolist()) == list(range(6))  # each item once


def test_hex_round_trip_and_manifest(originals):
    vec = PdqSignal().embed_items(table([jpeg(originals[0])])).vectors[0]
    text = pdq_hex(vec)
    assert len(text) == 64 and np.array_equal(pdq_from_hex(text), vec)
    entry = PdqSignal(match_threshold=20).describe()
    rebuilt = PdqSignal.from_manifest(entry)
    assert rebuilt.match_threshold == 20 and rebuilt.compatible_with(entry) is None
    with pytest.raises(ValueError, match="64 hex digits"):
        pdq_from_hex("abcd")


def test_a_pdq_signals_settings_come_back_from_its_manifest(originals, tmp_path):
    """A model saved without ``dihedral_queries`` swept mirrored seed copies as 114-124 bits
    away, and ``draft_size`` (which changes the hashes) was not recorded, so one index could
    hold both kinds (an outsider's report). Defaults are not recorded: the content keys of
    indexes made with them stay what they were."""
    from riskrank.index.signals.pdq import DEFAULT_MAX_PIXELS
    from riskrank.index.standing import signal_content_keys

    plain = PdqSignal()
    assert set(plain.describe()) == {
        "type", "model", "dim", "match_threshold", "quality_floor", "library"
    }  # fmt: skip
    tuned = PdqSignal(dihedral_queries=True, draft_size=64, max_pixels=DEFAULT_MAX_PIXELS // 2)
    back = PdqSignal.from_manifest(tuned.describe())
    assert (back.dihedral_queries, back.draft_size, back.max_pixels) == (
        True, 64, DEFAULT_MAX_PIXELS // 2
    )  # fmt: skip
    assert back.compatible_with(tuned.describe()) is None
    assert "draft_size" in (plain.compatible_with(tuned.describe()) or "")
    # Dihedral queries change no item's hash, so no item's key; draft_size does.
    items = table([jpeg(originals[0])])
    key = signal_content_keys(items, plain)
    assert signal_content_keys(items, PdqSignal(dihedral_queries=True)) == key
    assert signal_content_keys(items, PdqSignal(draft_size=64)) != key


def test_empty_index_searches_cleanly():
    index = BinaryHashIndex.build(np.zeros((0, 256), np.float32))  # the store's empty shape
    result = index.search(np.zeros((2, 32), np.uint8), k=5)
    assert result.positions.shape == (2, 0) and result.distances.shape == (2, 0)
