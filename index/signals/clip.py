"""CLIP (open_clip) image and text signals sharing one joint embedding space.

``ClipImageSignal`` ("image") embeds item images; a seed is embedded from its image when it has
one, else from its text through CLIP's text tower, so a text seed such as "fake designer
handbag" recalls images. ``ClipTextSignal`` ("clip_text") embeds item captions with the text
tower, so an image seed can recall captions. Pass the same ``ClipEncoder`` to both to load the
model once.

The default model is an open_clip pretrained tag, downloaded on first use on machines that reach
the model hubs; ``pretrained`` may also be a local checkpoint file. ``pretrained=None`` gives
random weights (tests, speed runs): the encoder warns, and the manifest says so.

>>> enc = ClipEncoder()                                   # doctest: +SKIP
>>> image_sig, text_sig = ClipImageSignal(enc), ClipTextSignal(enc)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from riskrank.index import progress
from riskrank.index.manifest import package_version, sha256_file
from riskrank.index.run_log import get_logger
from riskrank.index.schema import IMAGE_BYTES, IMAGE_PATH, TEXT
from riskrank.index.signals.base import CliOption, SignalBatch
from riskrank.index.signals.embedding import EmbeddingSignal
from riskrank.index.signals.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_BASE_DIR_OPTION,
    decode_images,
)

log = get_logger(__name__)

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
TINY_CLIP_MODEL = "riskrank-tiny-clip"
# A few-MB CLIP for tests: same code path as ViT-B-32, milliseconds per batch on a CPU.
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
_PRECISIONS = ("fp32", "fp16", "bf16")


@contextlib.contextmanager
def one_torch_thread():
    """torch's intra-op threads at 1 inside the block (process-wide), restored after.

    Per-image ops are tiny: with intra-op threads they spend their time in thread barriers, and
    on a shared CPU that collapsed preprocessing throughput 35x (498 -> 14 images/s). Images are
    prepared in parallel by the decode threads instead.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def register_tiny_clip_config(name: str = TINY_CLIP_MODEL, embed_dim: int = 32) -> str:
    """Register a tiny random-weight open_clip architecture under ``name``; returns the name.

    Idempotent. Use with ``pretrained=None``; it exists for tests and never says anything about
    CLIP quality.
    """
    import open_clip

    if name in open_clip.list_models():
        return name
    config = {**TINY_CLIP_CONFIG, "embed_dim": embed_dim}
    folder = Path(tempfile.gettempdir()) / f"riskrank-open-clip-configs-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"  # open_clip names a config after its file
    text = json.dumps(config)
    # Never written in place: Ray's workers on one machine (and other processes) register it
    # at once, and open_clip's rescan read a file another had just truncated (JSONDecodeError
    # in a CI-like run of the Ray tests). Written beside it and renamed over it (atomic), and
    # only where it differs. (The temporary name does not end in .json: rescans skip it.)
    if not path.exists() or path.read_text() != text:
        tmp = folder / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)
    open_clip.add_model_config(path)
    return name


class ClipEncoder:
    """Batched, L2-normalised CLIP image and text embeddings (open_clip).

    ``pretrained``: an open_clip tag (downloaded on first use), a local checkpoint path, or None
    for random weights (seeded by ``init_seed``, so the same random model can be rebuilt from a
    manifest). ``precision`` defaults to fp16 on CUDA and fp32 on CPU. The model loads lazily.
    """

    def __init__(
        self,
        model: str = DEFAULT_CLIP_MODEL,
        pretrained: str | os.PathLike | None = DEFAULT_CLIP_PRETRAINED,
        *,
        device: str | None = None,
        batch_size: int = 32,
        precision: str | None = None,
        init_seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        if precision is not None and precision not in _PRECISIONS:
            raise ValueError(f"precision: expected one of {_PRECISIONS} or None, got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        if model.startswith(("hf-hub:", "local-dir:")):
            # Those carry their own weights and config; describe() could not pin them yet.
            raise ValueError(
                f"model: {model!r} is not supported; pass an open_clip architecture name and "
                f"pretrained=<tag or checkpoint file>"
            )
        self.model = model
        self.pretrained = None if pretrained is None else str(pretrained)
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.init_seed = init_seed
        self.cache_dir = cache_dir
        self._net = None
        self._preprocess = None
        self._tokenizer = None
        self._sha: str | None = None
        # Where a manifest recorded the checkpoint, when it was found elsewhere (``from_manifest``):
        # describe() says that path, so an index's content keys stay what they were.
        self._recorded_path: str | None = None
        # Decided once: describe() must not change if the file moves after loading.
        self._is_path = pretrained is not None and (
            os.path.isfile(pretrained)
            or os.sep in str(pretrained)
            or str(pretrained).endswith((".pt", ".pth", ".bin", ".safetensors"))
        )
        if model == TINY_CLIP_MODEL:
            register_tiny_clip_config()

    @property
    def pretrained_is_path(self) -> bool:
        """True when ``pretrained`` names a checkpoint file rather than an open_clip tag."""
        return self._is_path

    def _config(self) -> dict:
        import open_clip

        config = open_clip.get_model_config(self.model)
        if config is None:
            raise ValueError(
                f"model: open_clip knows no architecture {self.model!r} "
                f"(e.g. {DEFAULT_CLIP_MODEL!r}; see open_clip.list_models())"
            )
        return config

    @property
    def dim(self) -> int:
        return int(self._config()["embed_dim"])

    @property
    def image_size(self) -> int:
        size = self._config()["vision_cfg"].get("image_size", 224)
        return int(size if isinstance(size, int) else max(size))

    def _load(self):
        if self._net is not None:
            return self._net
        import open_clip
        import torch

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        precision = self.precision or ("fp16" if device.startswith("cuda") else "fp32")
        if precision != "fp32" and not device.startswith("cuda"):
            log.warning("ClipEncoder: %s on %s is slow; fp32 is the CPU default", precision, device)
        if self.pretrained is None:
            log.warning(
                "ClipEncoder: model %r has RANDOM weights (pretrained=None, init_seed=%d): "
                "embeddings are only good for tests and speed runs",
                self.model,
                self.init_seed,
            )
            # Seeded and on the CPU so that the same random model can be rebuilt anywhere.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.init_seed)
                net, _, preprocess = open_clip.create_model_and_transforms(
                    self.model, pretrained=None, precision=precision, device="cpu"
                )
            net = net.to(device)
        else:
            if self.pretrained_is_path and not os.path.isfile(self.pretrained):
                raise FileNotFoundError(f"pretrained: no checkpoint file {self.pretrained!r}")
            if not self.pretrained_is_path:
                tags = open_clip.list_pretrained_tags_by_model(self.model)
                if self.pretrained not in tags:
                    raise ValueError(
                        f"pretrained: {self.pretrained!r} is neither a checkpoint file nor an "
                        f"open_clip tag for {self.model!r} (tags: {tags})"
                    )
            try:
                net, _, preprocess = open_clip.create_model_and_transforms(
                    self.model,
                    pretrained=self.pretrained,
                    precision=precision,
                    device=device,
                    cache_dir=self.cache_dir,
                )
            except RuntimeError as exc:
                if self.pretrained_is_path or "download" not in str(exc).lower():
                    raise
                # Offline, the tag's download ended in three chained tracebacks from the hub
                # client (an outsider's report): one line, and the way round it.
                raise FileNotFoundError(
                    f"CLIP weights for {self.model!r} / {self.pretrained!r} could not be "
                    f"downloaded (no network to the model hub?): pass a local checkpoint "
                    f"(--clip-pretrained /path/to/file.pt; pretrained= in Python) ({exc})"
                ) from None
        net.eval()
        self._device = device
        # Pixels must match the weights' dtype under fp16/bf16 (open_clip casts the weights only).
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(self.model)
        self._net = net
        return net

    def _run(self, batches, tower, total: int, desc: str, show_progress: bool) -> np.ndarray:
        import torch

        out = []
        with (
            torch.inference_mode(),
            progress.bar(
                show=show_progress, total=total, desc=desc, unit="item", leave=False
            ) as bar,
        ):
            for batch in batches:
                real = len(batch)
                emb = tower(self._full(batch))[:real]
                emb = torch.nn.functional.normalize(emb.float(), dim=-1)
                out.append(emb.cpu().numpy())
                bar.update(real)
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def _full(self, batch):
        """``batch`` made up to ``batch_size`` rows with copies of its last: a CPU's kernels
        sum a row otherwise when the batch has another number of rows (vectors moved in
        their last bits, ~6e-8), so a picture's vector depended on how many shared its batch
        and a standing index's few new pictures differed from a rebuild's (an outsider's
        report). With one batch shape the vector is the picture's alone; the padding costs
        at most one batch of work per call."""
        import torch

        missing = self.batch_size - len(batch)
        if missing <= 0:
            return batch
        return torch.cat([batch, batch[-1:].expand(missing, *batch.shape[1:])])

    def prepare(self, image):
        """The model's resize/crop/normalise of one RGB ``PIL.Image``: a CPU tensor. Thread-safe;
        run it with torch's intra-op threads at 1 (``one_torch_thread``), as ``preprocess`` does."""
        self._load()
        return self._preprocess(image)

    def preprocess(self, images: Sequence):
        """The model's resize/crop/normalise of RGB ``PIL.Image``s, as one CPU tensor."""
        import torch

        self._load()
        with one_torch_thread():
            return torch.stack([self._preprocess(im) for im in images])

    def encode_pixels(self, pixels: Sequence, *, show_progress: bool = False) -> np.ndarray:
        """Embed images already through ``prepare`` (CPU tensors, one per image, or one stacked
        tensor) to an ``(n, dim)`` float32 array of unit vectors, ``batch_size`` at a time."""
        import torch

        net = self._load()
        n = len(pixels)
        pin = self._device.startswith("cuda")

        def batches():
            for start in range(0, n, self.batch_size):
                chunk = pixels[start : start + self.batch_size]
                batch = chunk if isinstance(chunk, torch.Tensor) else torch.stack(list(chunk))
                if pin:  # page-locked: the copy to the GPU runs without a staging copy
                    batch = batch.pin_memory()
                yield batch.to(self._device, dtype=self._dtype, non_blocking=pin)

        return self._run(batches(), net.encode_image, n, "clip images", show_progress)

    def encode_images(self, images: Sequence, *, show_progress: bool = False) -> np.ndarray:
        """Embed RGB ``PIL.Image``s to an ``(n, dim)`` float32 array of unit vectors."""
        self._load()
        images = list(images)
        with one_torch_thread():
            pixels = [self._preprocess(im) for im in images]
        return self.encode_pixels(pixels, show_progress=show_progress)

    def encode_texts(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed strings with the text tower to an ``(n, dim)`` float32 array of unit vectors."""
        net = self._load()
        texts = list(texts)

        def batches():
            for start in range(0, len(texts), self.batch_size):
                yield self._tokenizer(texts[start : start + self.batch_size]).to(self._device)

        return self._run(batches(), net.encode_text, len(texts), "clip texts", show_progress)

    def describe(self) -> dict:
        """What a manifest records. ``model_version`` names the weights: the open_clip tag, the
        checkpoint's sha256 prefix (so a moved file still matches) or the random-init seed."""
        out = {
            "model": self.model,
            "pretrained": self._recorded_path or self.pretrained,
            "dim": self.dim,
            "image_size": self.image_size,
            "library": "open_clip_torch==" + package_version("open_clip_torch", "unknown"),
        }
        if self.pretrained is None:
            out["init_seed"] = self.init_seed
            out["model_version"] = f"random-init:seed={self.init_seed}"
        elif self.pretrained_is_path:
            if self._sha is None:
                if not os.path.isfile(self.pretrained):
                    raise FileNotFoundError(f"pretrained: no checkpoint file {self.pretrained!r}")
                self._sha = sha256_file(self.pretrained, 16)
            out["pretrained_sha256"] = self._sha
            out["model_version"] = f"sha256:{self._sha}"
        else:
            out["model_version"] = self.pretrained
        return out

    @classmethod
    def from_manifest(cls, entry: dict) -> ClipEncoder:
        """Rebuild the encoder a manifest entry describes (cached: signals share the model)."""
        pretrained = entry.get("pretrained")
        sha = entry.get("pretrained_sha256")
        if sha and not (pretrained and os.path.isfile(pretrained)):
            moved = _moved_checkpoint(pretrained, sha)
            if moved is None:
                # (A model copied to another machine, or its checkpoint moved on disk, could be
                # used only by putting the file back at its old path: an outsider's report.)
                raise FileNotFoundError(
                    f"this index or model was built with CLIP checkpoint {pretrained!r} "
                    f"(sha256 {sha[:16]}...), which is not there on this machine: put the file "
                    f"in a directory named by {CHECKPOINTS_ENV} (searched by its file name; "
                    "its sha256 must match), or back at that path"
                )
            encoder = _shared_encoder(entry["model"], moved, int(entry.get("init_seed", 0)))
            # The same weights found elsewhere: recorded as where the manifest had them, so
            # an index's content keys (which digest describe()) stay what they were; a
            # moved checkpoint re-embedded every picture (an outsider's report).
            encoder._recorded_path = pretrained
            return encoder
        return _shared_encoder(entry["model"], pretrained, int(entry.get("init_seed", 0)))


# Directories (os.pathsep-separated) searched for a checkpoint that is not where a manifest
# recorded it, by its file name; used only if its sha256 is the one recorded.
CHECKPOINTS_ENV = "RISKRANK_CLIP_CHECKPOINTS"


def _moved_checkpoint(recorded: str | None, sha: str) -> str | None:
    """The recorded checkpoint's file found under ``$RISKRANK_CLIP_CHECKPOINTS`` with the
    recorded sha256, else None."""
    if not recorded:
        return None
    for folder in filter(None, os.environ.get(CHECKPOINTS_ENV, "").split(os.pathsep)):
        candidate = os.path.join(folder, os.path.basename(recorded))
        if os.path.isfile(candidate) and sha256_file(candidate).startswith(sha):
            return candidate
    return None


@functools.lru_cache(maxsize=4)
def _shared_encoder(model: str, pretrained: str | None, init_seed: int) -> ClipEncoder:
    return ClipEncoder(model, pretrained, init_seed=init_seed)


CLIP_CLI_OPTIONS = (
    CliOption("--clip-model", "model", f"open_clip model (default {DEFAULT_CLIP_MODEL})"),
    CliOption(
        "--clip-pretrained",
        "pretrained",
        f"open_clip pretrained tag, or a local checkpoint path (default {DEFAULT_CLIP_PRETRAINED})",
    ),
    IMAGE_BASE_DIR_OPTION,
)


class _ClipSignal(EmbeddingSignal):
    """Shared plumbing: one encoder, image decoding options, manifest checks."""

    cli_options = CLIP_CLI_OPTIONS
    runtime_options = ("base_dir", "decode_workers")

    def __init__(
        self,
        encoder: ClipEncoder | None = None,
        *,
        base_dir: str | os.PathLike | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        decode_workers: int | None = None,
        **encoder_kwargs,
    ) -> None:
        self.encoder = encoder or ClipEncoder(**encoder_kwargs)
        self.base_dir = base_dir
        self.max_pixels = max_pixels
        self.decode_workers = decode_workers

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def describe(self) -> dict:
        return {"type": self.type_name, **self.encoder.describe()}

    def compatible_with(self, recorded: dict) -> str | None:
        # Weights are named by model_version (tag / checkpoint sha256 / random seed), not by the
        # path string, so an index stays usable after its checkpoint file moves.
        mine = self.describe()
        for key in ("type", "model", "model_version", "dim"):
            if recorded.get(key) != mine.get(key):
                return (
                    f"{key}: index has {recorded.get(key)!r}, query encoder has {mine.get(key)!r}"
                )
        return None

    @classmethod
    def from_manifest(cls, entry: dict) -> _ClipSignal:
        return cls(ClipEncoder.from_manifest(entry))

    def _empty(self, n: int) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        return np.zeros((n, self.dim), np.float32), np.zeros(n, bool), [None] * n

    def _embed_images(
        self, table: pa.Table, show_progress: bool
    ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """Image vectors, row mask and reasons ("no image" where a row has none)."""
        vectors, ok, reasons = self._empty(table.num_rows)
        encoder = self.encoder
        encoder._load()
        step = max(encoder.batch_size * 4, 64)  # bounded: prepared images live in memory
        bar = progress.bar(
            show=show_progress,
            total=table.num_rows,
            desc=f"{self.name} images",
            unit="item",
            leave=False,
        )
        for start in range(0, table.num_rows, step):
            # Decoding and the model's resize/crop/normalise run together in the decode threads
            # (on a GPU machine they are the bound: benchmarks/results/gpu.md, images). Preparing
            # the next chunk while the model ran on this one was slower there (GIL).
            with one_torch_thread():
                pixels, why = decode_images(
                    table.slice(start, step),
                    base_dir=self.base_dir,
                    max_pixels=self.max_pixels,
                    draft_size=encoder.image_size,
                    workers=self.decode_workers,
                    transform=encoder.prepare,
                )
            good = [i for i, px in enumerate(pixels) if px is not None]
            if good:
                rows = np.asarray(good) + start
                vectors[rows] = encoder.encode_pixels([pixels[i] for i in good])
                ok[rows] = True
            for i, (px, r) in enumerate(zip(pixels, why, strict=True)):
                if px is None:
                    reasons[start + i] = r or "no image"
            bar.update(len(pixels))
        bar.close()
        return vectors, ok, reasons

    def _embed_texts(
        self, table: pa.Table, show_progress: bool
    ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        vectors, ok, reasons = self._empty(table.num_rows)
        texts = table.column(TEXT).to_pylist() if TEXT in table.column_names else [None] * len(ok)
        ok[:] = [t is not None and bool(str(t).strip()) for t in texts]
        if ok.any():
            vectors[ok] = self.encoder.encode_texts(
                [t for t, good in zip(texts, ok, strict=True) if good], show_progress=show_progress
            )
        reasons = [None if good else "no text" for good in ok]
        return vectors, ok, reasons

    def embed_queries(self, table: pa.Table, *, show_progress: bool = False) -> SignalBatch:
        """A seed's image if it has a usable one, else its text through the text tower."""
        vectors, ok, reasons = self._embed_images(table, show_progress)
        if not ok.all():
            missing = np.flatnonzero(~ok)
            tv, tok, treasons = self._embed_texts(table.take(pa.array(missing)), show_progress)
            vectors[missing[tok]] = tv[tok]
            ok[missing[tok]] = True
            for j, row in enumerate(missing):
                reasons[row] = None if tok[j] else f"{reasons[row]}; {treasons[j]}"
        return SignalBatch(vectors, ok, reasons)


class ClipImageSignal(_ClipSignal):
    """CLIP image embedding of ``image_bytes`` / ``image_path`` (cosine).

    Items: their image (rows without a usable one are ``ok=False`` with the reason). Seeds: their
    image, else their text through the text tower (text-to-image recall).
    """

    name = "image"
    type_name = "clip_image"
    content_columns = (IMAGE_BYTES, IMAGE_PATH)
    summary = "CLIP (open_clip) embedding of the image; text seeds go through the text tower"

    def embed_items(self, table: pa.Table, *, show_progress: bool = False) -> SignalBatch:
        return SignalBatch(*self._embed_images(table, show_progress))


class ClipTextSignal(_ClipSignal):
    """CLIP text-tower embedding of the ``text`` column (cosine), in the image space.

    Items: their caption. Seeds: their image if any (image-to-caption recall), else their text.
    """

    name = "clip_text"
    type_name = "clip_text"
    content_columns = (TEXT,)
    summary = "CLIP text-tower embedding of the caption, in the image space"

    def embed_items(self, table: pa.Table, *, show_progress: bool = False) -> SignalBatch:
        return SignalBatch(*self._embed_texts(table, show_progress))


def tiny_clip_encoder(**kwargs) -> ClipEncoder:
    """A random-weight tiny CLIP (``TINY_CLIP_MODEL``) for tests: fast, deterministic, useless
    for quality."""
    return ClipEncoder(register_tiny_clip_config(), pretrained=None, **kwargs)
