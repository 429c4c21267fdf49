#!/usr/bin/env python
"""The GPU paths, measured on a GPU machine (issue 15, item 5): the text encoder in fp16
against the model alone, and exact top-k with faiss-gpu against torch and faiss on the CPU.

Two steps, because the GPU machines here have no network and no model weights:

    .venv/bin/python benchmarks/gpu.py prepare          # here: writes .gpucarry/ (ignored)
    # there, with .gpu/ (../shared/gpu/pack) and .gpucarry/ carried along:
    source .gpu/activate.sh && python3 benchmarks/gpu.py run --out $OUT/gpu.json
    .venv/bin/python benchmarks/gpu.py render RUN.json  # here: benchmarks/results/gpu.md

``prepare`` copies the shipped MiniLM's configuration and tokenizer (not its weights: 87 MB
would not travel) and ``--texts`` SpamAssassin mails (the texts issue 15 profiled on the CPU)
into ``.gpucarry/``. ``run`` builds MiniLM's architecture with **random weights** from that
configuration (speed does not depend on the weights; quality is never measured here) and
saves it as a sentence-transformers folder, then times:

* text: riskrank's ``TextEncoder`` (fp16 on CUDA, each text padded to its own length rounded
  up to 8, one padded length per batch: ``index/signals/text.py`` ``encode_padded``) at two
  batch sizes; sentence-transformers' own ``encode`` (a batch padded to its longest text);
  the model alone on the same padded batches already on the GPU (no tokenising, no copies);
  tokenising alone. Also whether a text's fp16 vector depends on its batchmates (a standing
  index must equal a rebuild), and fp16 against fp32 vectors (cosine; a numerical check).
* pipeline (``--sections pipeline``): tokenising alone (transformers' wrapper, the Rust
  tokenizer uncut and cut: ``index/signals/text_tokens.py``) and ``encode_padded`` with the
  wrapper against today's path (``PIPELINE_VARIANTS``), per batch size, each variant's vectors
  against the wrapper's, and a text alone against the same text among 512.
* image (``--sections image``; ``prepare`` also carries real photos and open_clip's wheels):
  CLIP ViT-B-32 with random weights on JPEG creatives, riskrank's image signal against the
  path before it and against its parts (``image_section``).
* sweep (``--sections sweep``): ``benchmarks/incremental.py``'s three days of daily sweeps,
  the text encoder on the GPU (``sweep_section``).
* top-k: ``--items`` clustered unit vectors (``--dim``; ``clustered``: how they are made) and
  ``--queries`` new points from the same clusters, k=``--k``. Exact fp32 top-k by torch on the
  GPU is the reference; then torch fp16, faiss-gpu Flat fp32 and fp16 codes, riskrank's
  ``VectorIndex`` on the GPU (its codes, ties ordered by position), faiss on the CPU (all
  cores, ``--cpu-queries`` queries), and riskrank's default IVF index for that size built on
  the CPU and searched on the GPU and the CPU. Each: seconds, queries/s and the overlap of its
  top-k with the reference.

Every timed step runs once to warm up first; GPU steps end with ``torch.cuda.synchronize``.
A section that fails records its error and the rest still runs; results are written after
each section, so a run cut short still returns what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".gpucarry"
RESULTS = ROOT / "benchmarks" / "results"


# -- here: what travels ---------------------------------------------------------------------
def prepare(n_texts: int, images: bool = True) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from riskrank.index.signals.text import resolve_text_model
    from riskrank.rank.app import datasets

    path, version = resolve_text_model("all-MiniLM-L6-v2")
    shutil.rmtree(CARRY, ignore_errors=True)
    model = CARRY / "minilm-config"
    shutil.copytree(
        path, model, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "README.md")
    )
    (model / "SOURCE").write_text(f"{version}: configuration and tokenizer only, no weights\n")
    texts = datasets.load("spamassassin").column("text").to_pylist()
    rows = np.random.default_rng(0).permutation(len(texts))[:n_texts]
    pq.write_table(pa.table({"text": [texts[i] for i in rows]}), CARRY / "texts.parquet")
    n_images = prepare_images(CARRY) if images else 0
    prepare_sweep(CARRY / "sweep")
    size = sum(f.stat().st_size for f in CARRY.rglob("*") if f.is_file())
    print(
        f"wrote {CARRY} ({size / 1e6:.1f} MB): {len(rows)} mails, {n_images} images, {model.name}/"
    )


# What the image section needs beyond the GPU machines' own packages (open_clip and the two
# packages its tokenizer imports); torchvision only goes in if theirs is missing.
CLIP_WHEELS = ["open_clip_torch==3.3.0", "ftfy==6.3.1", "wcwidth==0.9.4", "regex==2026.11.19"]
TORCHVISION_WHEEL = "torchvision==0.26.0"  # the release built against torch 2.11


def prepare_sweep(out: Path, mails: int = 2_400) -> None:
    """For the sweep section: ``mails`` SpamAssassin mails (seeded sample; the daily-sweep
    benchmark takes 5 seeds, 600 for history and 1,500 for the inventory from them) and every
    Insults comment, with ids and labels, zstd-compressed (what travels is capped)."""
    import pyarrow.parquet as pq

    from riskrank.rank.app import datasets

    out.mkdir(parents=True, exist_ok=True)
    spam = datasets.load("spamassassin").select(["item_id", "text", "label"])
    rows = np.sort(np.random.default_rng(1).permutation(spam.num_rows)[:mails])
    for name, table in (
        ("spamassassin", spam.take(rows)),
        ("insults", datasets.load("insults").select(["item_id", "text", "label"])),
    ):
        pq.write_table(table, out / f"{name}.parquet", compression="zstd", compression_level=19)


def prepare_images(carry: Path) -> int:
    """Real photos as ad creatives: every JPEG/PNG of Debian's ``opencv-doc`` examples (the
    set ``benchmarks/images.py`` uses), centre-cropped square and saved as JPEG q85 at 400x400
    (a feed creative, ~15-40 KB) and at 1080x1080 (a full-size upload); and the wheels above
    for CPython 3.12 (``pip download``, from PyPI)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image, ImageOps

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from images import opencv_photos

    rows: dict[str, list] = {"name": [], "side": [], "image_bytes": []}
    for name, data in opencv_photos(Path.home() / ".cache" / "riskrank").items():
        photo = Image.open(io.BytesIO(data)).convert("RGB")
        if min(photo.size) < 128:
            continue
        for side in (400, 1080):
            square = ImageOps.fit(photo, (side, side), Image.BICUBIC)
            buf = io.BytesIO()
            square.save(buf, format="JPEG", quality=85)
            rows["name"].append(name)
            rows["side"].append(side)
            rows["image_bytes"].append(buf.getvalue())
    pq.write_table(pa.table(rows), carry / "images.parquet")
    wheels = carry / "wheels"
    for extra, specs in (("", CLIP_WHEELS), ("torchvision", [TORCHVISION_WHEEL])):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", "--platform", "manylinux2014_x86_64",
             "--platform", "manylinux_2_28_x86_64", "-q", "-d", str(wheels / extra), *specs],
            check=True,
        )  # fmt: skip
    return len(rows["name"])


# -- there: helpers ---------------------------------------------------------------------------
def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeat: int = 1):
    """(seconds of the fastest of ``repeat`` runs after one warm-up run, last result)."""
    out = fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best, out


def random_weights_model(config_dir: Path, device: str) -> Path:
    """A sentence-transformers folder: ``config_dir``'s architecture, seeded random weights."""
    import torch
    from transformers import AutoConfig, AutoModel

    out = Path(tempfile.mkdtemp(prefix="riskrank-gpu-minilm-"))
    shutil.copytree(config_dir, out, dirs_exist_ok=True)
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(config_dir)).save_pretrained(out)
    return out


def overlap(found: np.ndarray, reference: np.ndarray, k: int | None = None) -> float:
    """Mean share of each query's reference top-k that ``found``'s top-k also lists."""
    k = k or reference.shape[1]
    found, reference = found[:, :k], reference[:, :k]
    hits = [len(np.intersect1d(f[f >= 0], r)) for f, r in zip(found, reference)]
    return float(np.mean(hits) / k)


# -- there: the text encoder ----------------------------------------------------------------
def text_section(args, device: str) -> dict:
    import pyarrow.parquet as pq
    import torch
    from sentence_transformers import SentenceTransformer

    from riskrank.index.signals.text import TextEncoder

    base = pq.read_table(CARRY / "texts.parquet").column("text").to_pylist()
    texts = (base * (-(-args.text_items // len(base))))[: args.text_items]
    model_dir = random_weights_model(CARRY / "minilm-config", device)
    out: dict = {"items": len(texts), "distinct": len(set(texts)), "model": "MiniLM-L6 random"}

    encoders = {}
    for batch in args.text_batches:
        enc = TextEncoder(str(model_dir), device=device, batch_size=batch)
        enc.encode(texts[:64])
        encoders[batch] = enc
        seconds, vectors = timed(lambda e=enc: e.encode(texts))
        out[f"riskrank_b{batch}_items_s"] = len(texts) / seconds
        out["identity"] = enc.identity()
    st = encoders[args.text_batches[0]]._load()  # halved on CUDA by TextEncoder
    out["dtype"] = str(next(st.parameters()).dtype)
    out["max_seq_length"] = st.max_seq_length

    batch = max(args.text_batches)
    seconds, _ = timed(
        lambda: st.encode(texts, batch_size=batch, convert_to_numpy=True, show_progress_bar=False)
    )
    out[f"st_encode_b{batch}_items_s"] = len(texts) / seconds

    tokenize = getattr(st, "preprocess", None) or st.tokenize  # transformers' wrapper
    seconds, tokens = timed(lambda: tokenize(texts))
    out["tokenize_items_s"] = len(texts) / seconds
    lengths = tokens["attention_mask"].sum(1).numpy()
    out["tokens_mean"] = float(lengths.mean())
    out["truncated_share"] = float((lengths >= st.max_seq_length).mean())

    # The model alone: riskrank's padded batches, tokenised and on the GPU beforehand.
    out[f"model_only_b{batch}_items_s"] = model_only_rate(st, texts, lengths, batch, device)
    for length, fixed_batch in ((128, 512), (32, 512)):
        ids = torch.randint(1000, 30000, (fixed_batch, length), device=device)
        mask = torch.ones_like(ids)
        features = {"input_ids": ids, "attention_mask": mask, "token_type_ids": mask * 0}

        def fixed(f=features):
            with torch.inference_mode():
                for _ in range(10):
                    st.forward(dict(f))["sentence_embedding"]

        seconds, _ = timed(fixed, repeat=2)
        out[f"model_only_len{length}_b{fixed_batch}_items_s"] = 10 * fixed_batch / seconds

    # Is a text's fp16 vector its own, whatever shares its batch?
    sample = texts[:512]
    by = {b: encoders[b].encode(sample) for b in args.text_batches}
    alone = np.stack([encoders[args.text_batches[0]].encode([t])[0] for t in sample[:64]])
    first = by[args.text_batches[0]]
    out["batch_independence"] = {
        "alone_vs_batched_rows_differing": int((alone != first[:64]).any(1).sum()),
        "alone_vs_batched_max_abs": float(np.abs(alone - first[:64]).max()),
        "batch_sizes_rows_differing": {
            f"b{b}": int((by[b] != first).any(1).sum()) for b in args.text_batches[1:]
        },
        "rows": len(sample),
    }
    # fp16 against fp32 on the same device: a numerical check (random weights).
    if device.startswith("cuda"):
        from riskrank.index.signals.text import encode_padded

        st32 = SentenceTransformer(str(model_dir), device=device)
        st32.max_seq_length = st.max_seq_length
        v32 = encode_padded(st32, sample, 64, False)
        cos = (v32 * first).sum(1)
        out["fp16_vs_fp32_cosine"] = {"mean": float(cos.mean()), "min": float(cos.min())}
        del st32
    shutil.rmtree(model_dir, ignore_errors=True)
    return out


# -- there: is a text's vector its own? -------------------------------------------------------
def independence_section(args, device: str) -> dict:
    """Each of 64 mails encoded alone against the same mail among 512 (``encode_padded``,
    batch 64, fp16), under three attention implementations, and which rows moved: those whose
    token count fills its padded width (no padding, so no attention mask alone) or the rest."""
    import pyarrow.parquet as pq
    from sentence_transformers import SentenceTransformer

    from riskrank.index.signals.text import PAD_MULTIPLE, encode_padded

    texts = (
        pq.read_table(CARRY / "texts.parquet").column("text").to_pylist()[: args.independence_texts]
    )
    model_dir = random_weights_model(CARRY / "minilm-config", device)
    st = SentenceTransformer(str(model_dir), device=device)
    st.max_seq_length = 256
    if device.startswith("cuda"):
        st.half()
    lengths = st.preprocess(texts[:64])["attention_mask"].sum(1).numpy()
    full = lengths % PAD_MULTIPLE == 0
    out: dict = {"rows": 64, "rows_filling_their_width": int(full.sum())}

    def check(label: str) -> None:
        t = time.perf_counter()
        batched = encode_padded(st, texts, 64, False)
        sync()
        seconds = time.perf_counter() - t
        alone = np.stack([encode_padded(st, [x], 64, False)[0] for x in texts[:64]])
        moved = (alone != batched[:64]).any(1)
        out[label] = {
            "rows_differing": int(moved.sum()),
            "of_them_filling_width": int((moved & full).sum()),
            "max_abs": float(np.abs(alone - batched[:64]).max()),
            "items_s": len(texts) / seconds,
        }

    check("sdpa")
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            check("sdpa_math")
    except Exception as exc:  # noqa: BLE001 - recorded
        out["sdpa_math"] = {"error": repr(exc)}
    try:
        bert = st[0].auto_model
        if hasattr(bert, "set_attn_implementation"):
            bert.set_attn_implementation("eager")
        else:
            bert.config._attn_implementation = "eager"
        check("eager")
    except Exception as exc:  # noqa: BLE001 - recorded
        out["eager"] = {"error": repr(exc)}
    shutil.rmtree(model_dir, ignore_errors=True)
    return out


# -- there: the text encoder's pipeline, one change at a time ---------------------------------
PIPELINE_VARIANTS = {  # encode_padded keywords: the wrapper (before e8e1cf0), then today's
    "wrapper": {"fast_tokenizer": False},
    "fast": {},
    "fast_c2048": {"chunk": 2048},
}


def once(fn):
    """(seconds, result) of one run; the caller warms up first."""
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def pipeline_section(args, device: str) -> dict:
    """Tokenising alone (transformers' wrapper, the Rust tokenizer uncut and cut) and
    ``encode_padded`` with each change of ``PIPELINE_VARIANTS``, at each batch size, in one
    process on the same texts; each variant's vectors against the wrapper's, and the default
    path's text alone against the same text among the rest."""
    import pyarrow.parquet as pq

    from riskrank.index.signals.text import (
        CUDA_BATCH,
        DEFAULT_BATCH,
        TextEncoder,
        encode_padded,
        text_tokenizer,
    )
    from riskrank.index.signals.text_tokens import FastTokenizer, same_features

    base = pq.read_table(CARRY / "texts.parquet").column("text").to_pylist()
    texts = (base * (-(-args.text_items // len(base))))[: args.text_items]
    model_dir = random_weights_model(CARRY / "minilm-config", device)
    enc = TextEncoder(str(model_dir), device=device)  # its default batch size
    enc.encode(texts[:256])  # loads, halves on CUDA, warms up
    st = enc._load()
    out: dict = {"items": len(texts), "distinct": len(set(texts)), "model": "MiniLM-L6 random"}
    wrapper = text_tokenizer(st, fast=False)
    fast, uncut = FastTokenizer.for_model(st), FastTokenizer.for_model(st, cut=False)
    out["fast_tokenizer_exact_on_probes"] = fast is not None
    out["default_tokenizer"] = type(text_tokenizer(st)).__name__
    for name, tok in (("wrapper", wrapper), ("fast_uncut", uncut), ("fast_cut", fast)):
        if tok is not None:
            tok(texts[:256])
            seconds, features = once(lambda t=tok: t(texts))
            out[f"tokenize_{name}_items_s"] = len(texts) / seconds
            if name == "wrapper":
                want = features
            else:
                out[f"tokenize_{name}_equals_wrapper"] = same_features(features, want)
    lengths = want["attention_mask"].sum(1).numpy()
    out["tokens_mean"] = float(lengths.mean())
    out["truncated_share"] = float((lengths >= st.max_seq_length).mean())
    del want, features
    vectors = {}
    for batch in args.text_batches:
        for name, kw in PIPELINE_VARIANTS.items():
            seconds, v = timed(
                lambda kw=kw, b=batch: encode_padded(st, texts, b, False, **kw), repeat=2
            )
            out[f"{name}_b{batch}_items_s"] = len(texts) / seconds
            ref = vectors.setdefault(batch, v)
            out[f"{name}_b{batch}_vs_wrapper"] = {
                "rows_differing": int((v != ref).any(1).sum()),
                "max_abs": float(np.abs(v - ref).max()),
            }
    seconds, v = timed(lambda: enc.encode(texts), repeat=2)
    default = CUDA_BATCH if device.startswith("cuda") else DEFAULT_BATCH["torch"]
    out[f"riskrank_default_b{default}_items_s"] = len(texts) / seconds
    among = encode_padded(st, texts[:512], 64, False)
    alone = np.stack([encode_padded(st, [t], 64, False)[0] for t in texts[:64]])
    out["default_alone_vs_batched"] = {
        "rows_differing": int((alone != among[:64]).any(1).sum()),
        "max_abs": float(np.abs(alone - among[:64]).max()),
        "rows": 64,
    }
    for batch in sorted({64, default}):
        out[f"model_only_b{batch}_items_s"] = model_only_rate(st, texts, lengths, batch, device)
    shutil.rmtree(model_dir, ignore_errors=True)
    return out


def model_only_rate(st, texts, lengths, batch: int, device: str) -> float:
    """Texts/s of the model alone on riskrank's padded batches, tokenised and on the GPU
    beforehand."""
    import torch

    from riskrank.index.signals.text import padded_batches

    tokenize = getattr(st, "preprocess", None) or st.tokenize  # transformers' wrapper
    pad = st.tokenizer.pad_token_id or 0
    prepared = []
    for width, rows in padded_batches(lengths, batch):
        features = {}
        for name, value in tokenize([texts[i] for i in rows]).items():
            if torch.is_tensor(value) and value.dim() == 2 and value.shape[1] < width:
                fill = pad if name == "input_ids" else 0
                value = torch.nn.functional.pad(value, (0, width - value.shape[1]), value=fill)
            features[name] = value.to(device) if torch.is_tensor(value) else value
        prepared.append(features)

    def model_only():
        with torch.inference_mode():
            for features in prepared:
                st.forward(dict(features))["sentence_embedding"]

    seconds, _ = timed(model_only, repeat=2)
    return len(texts) / seconds


# -- there: CLIP images ----------------------------------------------------------------------
def clip_importable() -> str:
    """Import open_clip, unpacking the carried wheels into /tmp/clip-site first if needed;
    returns how torchvision came (theirs, or the carried wheel)."""
    import importlib
    import zipfile

    site = Path("/tmp/clip-site")
    source = "the machine's"
    try:
        importlib.import_module("open_clip")
        return source
    except ImportError:
        pass
    try:
        importlib.import_module("torchvision")
    except ImportError:
        for wheel in (CARRY / "wheels" / "torchvision").glob("*.whl"):
            zipfile.ZipFile(wheel).extractall(site)
        source = "carried wheel"
    for wheel in (CARRY / "wheels").glob("*.whl"):
        zipfile.ZipFile(wheel).extractall(site)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    importlib.import_module("open_clip")
    return source


def stand_in_for_absent(names=("faiss", "lightgbm")) -> list[str]:
    """Importing riskrank imports faiss and LightGBM, which the image section never calls; a
    call that leaves ``.gpu/`` behind (to carry photos instead) gets placeholders for the ones
    not importable, which raise if anything calls them. Returns their names."""
    import importlib
    import types

    class Absent(types.ModuleType):
        def __getattr__(self, attr):
            def absent(*args, **kwargs):
                raise ImportError(f"{self.__name__} is not on this machine ({attr})")

            return absent

    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = Absent(name)
            missing.append(name)
    return missing


def gpu_prepare_rates(table, enc, device: str, workers: int) -> dict:
    """Decode in threads (uint8 arrays), then resize (bicubic, antialiased), crop and normalise
    each image on the GPU with torchvision, batch and run the model: images/s, and how far its
    pixels are from the model's own (PIL) preprocessing on the first 256 images."""
    import torch
    from torchvision.transforms.v2 import functional as F

    from riskrank.index.signals.clip import one_torch_thread
    from riskrank.index.signals.images import decode_images

    side = enc.image_size
    mean = torch.tensor(enc._preprocess.transforms[-1].mean, device=device).view(3, 1, 1)
    std = torch.tensor(enc._preprocess.transforms[-1].std, device=device).view(3, 1, 1)

    def on_gpu(arrays):
        out = []
        for a in arrays:
            x = torch.from_numpy(a).to(device, non_blocking=True).permute(2, 0, 1)
            x = F.resize(x, side, interpolation=F.InterpolationMode.BICUBIC, antialias=True)
            x = F.center_crop(x, [side, side]).float().div_(255)
            out.append(x.sub_(mean).div_(std))
        return torch.stack(out)

    def run_all():
        vectors = []
        for start in range(0, table.num_rows, enc.batch_size * 4):
            with one_torch_thread():
                arrays, _ = decode_images(
                    table.slice(start, enc.batch_size * 4), draft_size=side, workers=workers,
                    transform=np.array,
                )  # fmt: skip
            pixels = on_gpu([a for a in arrays if a is not None]).to(enc._dtype)
            with torch.inference_mode():
                for b in range(0, len(pixels), enc.batch_size):
                    vectors.append(enc._net.encode_image(pixels[b : b + enc.batch_size]).cpu())
        return vectors

    run_all_first = table.slice(0, 256)
    seconds, _ = timed(run_all)
    with one_torch_thread():
        images, _ = decode_images(run_all_first, draft_size=side, workers=workers)
    ref = enc.preprocess(images).to(device)
    mine = on_gpu([np.array(im) for im in images])
    diff = (mine - ref).abs()
    return {
        f"gpu_prepare_b{enc.batch_size}_items_s": table.num_rows / seconds,
        "gpu_prepare_pixels_vs_pil": {
            "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "note": "normalised pixel units (about 1/0.27 per unit of [0, 1] intensity)",
        },
    }  # fmt: skip


def image_section(args, device: str) -> dict:
    """CLIP ViT-B-32 (random weights, fp16 on CUDA) on real photos as JPEG creatives, through
    riskrank's image signal and in parts: decoding alone, decoding plus the model's
    resize/crop/normalise in the decode threads, the path before ``92fdd10`` (preprocessing in
    the main thread between decode and model), the signal (8 and 16 decode threads), the model
    alone on pixels already on the GPU, resize/crop/normalise on the GPU instead, and the GPU's
    JPEG decoder. Each at ``--image-batches``; the signal's vectors against the old path's.
    (Run 8 also timed preparing the next chunk while the model ran: slower, since removed.)"""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    out: dict = {"torchvision": clip_importable(), "stand_ins": stand_in_for_absent()}
    import open_clip
    import torchvision

    from riskrank.index.signals.clip import ClipEncoder, ClipImageSignal, one_torch_thread
    from riskrank.index.signals.images import decode_images

    out["open_clip"], out["torchvision_version"] = open_clip.__version__, torchvision.__version__
    photos = pq.read_table(CARRY / "images.parquet")
    for side in args.image_sides:
        part = photos.filter(pa.compute.equal(photos["side"], side))
        n = args.image_items
        reps = -(-n // part.num_rows)
        datas = (part.column("image_bytes").to_pylist() * reps)[:n]
        table = pa.table({"item_id": [f"i{i}" for i in range(n)], "image_bytes": datas})
        res: dict = {"items": n, "distinct": part.num_rows, "kb_mean": float(
            np.mean([len(d) for d in part.column("image_bytes").to_pylist()]) / 1e3
        )}  # fmt: skip
        for batch in args.image_batches:
            enc = ClipEncoder("ViT-B-32", pretrained=None, device=device, batch_size=batch)
            enc._load()
            step = max(batch * 4, 64)
            warm = table.slice(0, min(n, 2 * step))

            def old_path(t, enc=enc, step=step):
                # The signal before: per chunk, decode in threads, then preprocess in this
                # thread, then the model.
                parts = []
                for start in range(0, t.num_rows, step):
                    images, _ = decode_images(t.slice(start, step), draft_size=enc.image_size)
                    parts.append(enc.encode_images([im for im in images if im is not None]))
                return np.concatenate(parts)

            old_path(warm)
            seconds, ref = once(lambda t=table: old_path(t))
            res[f"before_b{batch}_items_s"] = n / seconds
            for label, kw in (("signal", {}), ("signal_w16", {"decode_workers": 16})):
                sig = ClipImageSignal(enc, **kw)
                sig.embed_items(warm)
                seconds, got = once(lambda sig=sig, t=table: sig.embed_items(t))
                res[f"{label}_b{batch}_items_s"] = n / seconds
                res[f"{label}_b{batch}_vs_before"] = {
                    "rows_differing": int((got.vectors != ref).any(1).sum()),
                    "max_abs": float(np.abs(got.vectors - ref).max()),
                    "ok": int(got.ok.sum()),
                }
            # The model alone: one prepared batch, already on the GPU, run n / batch times.
            images, _ = decode_images(table.slice(0, batch), draft_size=enc.image_size)
            pixels = enc.preprocess(images).to(device, dtype=enc._dtype)
            net = enc._net

            def model_only(net=net, pixels=pixels, times=-(-n // batch)):
                with torch.inference_mode():
                    for _ in range(times):
                        net.encode_image(pixels)

            seconds, _ = timed(model_only)
            res[f"model_only_b{batch}_items_s"] = n / seconds
        for workers in args.image_workers:
            seconds, _ = timed(
                lambda w=workers, t=table: decode_images(t, draft_size=224, workers=w)
            )
            res[f"decode_w{workers}_items_s"] = n / seconds

            def prepared(w=workers, t=table, enc=enc):
                with one_torch_thread():
                    return decode_images(t, draft_size=224, workers=w, transform=enc.prepare)

            seconds, _ = timed(prepared)
            res[f"decode_prepare_w{workers}_items_s"] = n / seconds
        if device.startswith("cuda"):
            try:  # resize/crop/normalise on the GPU instead: its speed, and its pixels' distance
                res.update(gpu_prepare_rates(table, enc, device, args.image_workers[-1]))
            except Exception as exc:  # noqa: BLE001 - a reference figure only
                res["gpu_prepare_error"] = repr(exc)[:300]
            try:  # the GPU's own JPEG decoder: what moving decoding there could give
                from torchvision.io import decode_jpeg

                raw = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]

                def gpu_decode(raw=raw, n=n):
                    for start in range(0, n, 256):
                        decode_jpeg(raw[start : start + 256], device=device)

                seconds, _ = timed(gpu_decode)
                res["gpu_decode_jpeg_items_s"] = n / seconds
            except Exception as exc:  # noqa: BLE001 - a reference figure only
                res["gpu_decode_jpeg_error"] = repr(exc)[:300]
        out[f"side{side}"] = res
        print(side, json.dumps(res), flush=True)
    return out


# -- there: a whole daily sweep -----------------------------------------------------------
def sweep_section(args, device: str) -> dict:
    """``benchmarks/incremental.py``'s daily sweeps (day 0 full, day 1 standing and from
    scratch, day 2 a new policy: the product's ``sweep``, each in its own process) with the
    text encoder on this machine's GPU: MiniLM's architecture with random weights, so speed
    only (recall and queues are meaningless). Its pool is made from the mails and comments
    ``prepare`` carried, the way the CPU run makes it from the whole data sets."""
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import incremental

    model_dir = random_weights_model(CARRY / "minilm-config", device)
    root = Path(tempfile.mkdtemp(prefix="riskrank-gpu-sweep-"))
    tables = {
        n: pq.read_table(CARRY / "sweep" / f"{n}.parquet") for n in ("spamassassin", "insults")
    }
    paths = incremental.make_data(
        root, args.sweep_items, spam=tables["spamassassin"], insults=tables["insults"]
    )
    # Where a sweep's embed stage goes (run 10: ~1,100-1,500 texts/s against ~8,700 for the
    # encoder alone in run 7), in a fresh process as a sweep worker is.
    out = subprocess.run(
        [sys.executable, __file__, "attribute", json.dumps(
            {"model": str(model_dir), "inventory": paths["day0"], "root": str(root / "attr")}
        )],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    attribution = (
        json.loads(lines[-1]) if out.returncode == 0 and lines else {"error": out.stderr[-2000:]}
    )
    t0 = time.perf_counter()
    res = incremental.run(root, args.sweep_items, paths=paths, text_model=str(model_dir))
    res["seconds"] = time.perf_counter() - t0
    res["embed_attribution"] = attribution
    res["text_model"] = "MiniLM-L6 architecture, random weights"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(model_dir, ignore_errors=True)
    return res


def attribute(spec: dict) -> dict:
    """Seconds of each part of embedding a day-0 inventory, in this (fresh) process: importing
    the encoder's libraries, loading the model, encoding the distinct texts twice (cold, then
    warm), and the whole ``build_index`` of the inventory with that loaded encoder, its index
    on the CPU and then on the GPU where faiss sees one."""
    import pyarrow.parquet as pq

    t = {}
    t0 = time.perf_counter()
    import torch  # noqa: F401 - timed
    from sentence_transformers import SentenceTransformer  # noqa: F401 - timed

    from riskrank.index.build import build_index
    from riskrank.index.signals.text import TextEmbeddingSignal, TextEncoder
    from riskrank.index.vectors.faiss_index import num_gpus

    t["import_s"] = time.perf_counter() - t0
    enc = TextEncoder(spec["model"])
    t0 = time.perf_counter()
    enc._load()
    sync()
    t["load_s"] = time.perf_counter() - t0
    inventory = pq.read_table(spec["inventory"])
    texts = list(dict.fromkeys(inventory.column("text").to_pylist()))
    t["texts"] = len(texts)
    for label in ("encode_cold_s", "encode_warm_s"):
        t0 = time.perf_counter()
        enc.encode(texts)
        sync()
        t[label] = time.perf_counter() - t0
    signal = TextEmbeddingSignal(enc)
    for use_gpu in (False, True) if num_gpus() else (False,):
        t0 = time.perf_counter()
        build_index(
            inventory, Path(spec["root"]) / f"gpu{use_gpu}", signals=[signal],
            show_progress=False, overwrite=True, use_gpu=use_gpu,
        )  # fmt: skip
        t[f"build_index_gpu_{use_gpu}_s"] = time.perf_counter() - t0
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in t.items()}


# -- there: top-k -----------------------------------------------------------------------------
def clustered(n: int, dim: int, seed: int, device: str, centres=None):
    """Unit vectors around ``n // 400`` random centres (noise of norm 0.6 around a unit centre:
    members of a cluster at cosine ~0.74 to each other, like paraphrases; a query's top-100
    lies in its own cluster, so the reference order is well defined). Made on
    ``device`` with torch (seeded), returned as a float32 torch tensor there."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    if centres is None:
        centres = torch.randn(max(1, n // 400), dim, generator=g, device=device)
        centres = torch.nn.functional.normalize(centres, dim=1)
    pick = torch.randint(0, len(centres), (n,), generator=g, device=device)
    noise = torch.randn(n, dim, generator=g, device=device) * (0.6 / dim**0.5)
    return torch.nn.functional.normalize(centres[pick] + noise, dim=1), centres


def torch_topk(queries, base, k: int, chunk: int = 2048):
    import torch

    scores, positions = [], []
    for start in range(0, len(queries), chunk):
        s, p = (queries[start : start + chunk] @ base.T).topk(k, dim=1)
        scores.append(s)
        positions.append(p)
    return torch.cat(scores), torch.cat(positions)


def topk_section(args, device: str, record) -> dict:
    import faiss
    import torch

    from riskrank.index.vectors.faiss_index import VectorIndex, choose_index_key, num_gpus

    torch.backends.cuda.matmul.allow_tf32 = False
    k = args.k
    base, centres = clustered(args.items, args.dim, 1, device)
    queries, _ = clustered(args.queries, args.dim, 2, device, centres)
    base_np = base.cpu().numpy()
    queries_np = queries.cpu().numpy()
    out: dict = {"items": args.items, "dim": args.dim, "queries": args.queries, "k": k}
    out["gpus_faiss_sees"] = num_gpus()

    seconds, (_, ref) = timed(lambda q=queries, b=base: torch_topk(q, b, k))
    ref = ref.cpu().numpy()
    out["torch_fp32"] = {"s": seconds, "queries_s": args.queries / seconds, "overlap": 1.0}
    out["torch_fp32"]["overlap10"] = 1.0
    record()
    base16, queries16 = base.half(), queries.half()
    seconds, (_, pos) = timed(lambda q=queries16, b=base16: torch_topk(q, b, k))
    out["torch_fp16"] = {
        "s": seconds,
        "queries_s": args.queries / seconds,
        "overlap": overlap(pos.cpu().numpy(), ref),
        "overlap10": overlap(pos.cpu().numpy(), ref, 10),
    }
    del base16, queries16, base, queries
    torch.cuda.empty_cache() if device.startswith("cuda") else None
    record()

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(base_np)
    if num_gpus():
        for name, fp16 in (("faiss_gpu_flat_fp32", False), ("faiss_gpu_flat_fp16", True)):
            opts = faiss.GpuMultipleClonerOptions()
            opts.useFloat16 = fp16
            t = time.perf_counter()
            gpu = faiss.index_cpu_to_all_gpus(flat, co=opts)
            clone_s = time.perf_counter() - t
            seconds, (_, pos) = timed(lambda g=gpu: g.search(queries_np, k))
            out[name] = {
                "s": seconds,
                "queries_s": args.queries / seconds,
                "overlap": overlap(pos, ref),
                "overlap10": overlap(pos, ref, 10),
                "clone_s": clone_s,
            }
            del gpu
            record()
        t = time.perf_counter()
        index = VectorIndex.build(base_np, key="Flat", use_gpu=True)
        build_s = time.perf_counter() - t
        seconds, res = timed(lambda: index.search(queries_np, k))
        out["riskrank_flat_gpu"] = {
            "s": seconds,
            "queries_s": args.queries / seconds,
            "overlap": overlap(res.positions, ref),
            "overlap10": overlap(res.positions, ref, 10),
            "build_s": build_s,
        }
        del index
        record()

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    nq = min(args.cpu_queries, args.queries)
    seconds, (_, pos) = timed(lambda f=flat: f.search(queries_np[:nq], k))
    out["faiss_cpu_flat"] = {
        "s": seconds,
        "queries": nq,
        "queries_s": nq / seconds,
        "overlap": overlap(pos, ref[:nq]),
        "overlap10": overlap(pos, ref[:nq], 10),
        "threads": faiss.omp_get_max_threads(),
    }
    del flat
    record()

    key = choose_index_key(args.items, args.dim)
    t = time.perf_counter()
    ivf = VectorIndex.build(base_np, key=key, use_gpu=False)
    build_s = time.perf_counter() - t
    entry = {"key": key, "nprobe": ivf.nprobe, "build_cpu_s": build_s}
    seconds, res = timed(lambda: ivf.search(queries_np[:nq], k))
    entry["cpu"] = {
        "s": seconds,
        "queries": nq,
        "queries_s": nq / seconds,
        "overlap": overlap(res.positions, ref[:nq]),
        "overlap10": overlap(res.positions, ref[:nq], 10),
    }
    if num_gpus():
        t = time.perf_counter()
        ivf.to_gpu()
        entry["clone_s"] = time.perf_counter() - t
        seconds, res = timed(lambda: ivf.search(queries_np, k))
        entry["gpu"] = {
            "s": seconds,
            "queries_s": args.queries / seconds,
            "overlap": overlap(res.positions, ref),
            "overlap10": overlap(res.positions, ref, 10),
        }
    out["riskrank_default_index"] = entry
    return out


def run(args) -> int:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    result: dict = {
        "argv": sys.argv[1:],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor(),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
    }
    for name in ("faiss", "sentence_transformers", "transformers", "numpy"):
        try:
            result[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 - record and go on
            result[name] = f"not importable: {exc}"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)

    def record():
        result["load_after"] = os.getloadavg()
        Path(args.out).write_text(json.dumps(result, indent=1))

    sections = {
        "text": lambda: text_section(args, device),
        "independence": lambda: independence_section(args, device),
        "pipeline": lambda: pipeline_section(args, device),
        "image": lambda: image_section(args, device),
        "sweep": lambda: sweep_section(args, device),
        "topk": None,
    }
    for name in args.sections:
        t = time.perf_counter()
        try:
            if name == "topk":
                result["topk"] = {}
                result["topk"] = topk_section(args, device, record)
            else:
                result[name] = sections[name]()
        except Exception:  # noqa: BLE001 - the other sections still run
            result.setdefault(name, {})
            result[name] = {**(result[name] or {}), "error": traceback.format_exc()[-3000:]}
        result.setdefault(name, {})["section_s"] = time.perf_counter() - t
        record()
        print(name, json.dumps(result[name])[:2000], flush=True)
    return 0


# -- here: the table --------------------------------------------------------------------------
def render(
    path: str,
    out: str,
    before: str | None,
    independence: list[str],
    note: str | None,
    pipeline: list[str] = (),
    pipeline_note: str | None = None,
    image: list[str] = (),
    image_note: str | None = None,
    sweep: list[str] = (),
    sweep_note: str | None = None,
) -> None:
    r = json.loads(Path(path).read_text())
    lines = [
        "# GPU paths (issue 15, item 5)",
        "",
        f"Machine: {r['device']}, {r['cpus']} CPUs; torch {r['torch']}, faiss {r['faiss']}, "
        f"sentence-transformers {r['sentence_transformers']}, transformers "
        f"{r['transformers']}, Python {r['python']}. Load average before/after: "
        f"{r['load_before']} / {r.get('load_after')}. Command: `python3 benchmarks/gpu.py "
        f"{' '.join(r['argv'])}` (see the script's docstring).",
        "",
    ]
    if note:
        lines += [Path(note).read_text().strip(), ""]

    def failed(section: dict, name: str) -> list[str]:
        return [f"{name} section failed:", "", "```", section["error"], "```", ""]

    t = r.get("text", {})
    lines += failed(t, "Text") if "error" in t else []
    if "items" in t:
        lines += [
            f"## Text encoder: {t['model']} weights, {t.get('dtype')}, "
            f"max_seq_length {t.get('max_seq_length')}",
            "",
            f"{t['items']:,} SpamAssassin mails ({t['distinct']:,} distinct, repeated), mean "
            f"{t.get('tokens_mean', 0):.0f} tokens, {t.get('truncated_share', 0):.0%} cut at "
            "the maximum. Speed does not depend on the weights; no quality is measured here.",
            "",
            "| path | items/s |",
            "|---|---|",
        ]
        for key, value in t.items():
            if key.endswith("_items_s"):
                lines.append(f"| {key[: -len('_items_s')]} | {value:,.0f} |")
        lines += ["", f"Batch independence: `{json.dumps(t.get('batch_independence'))}`", ""]
        if "fp16_vs_fp32_cosine" in t:
            lines += [f"fp16 vs fp32 vectors, cosine: `{t['fp16_vs_fp32_cosine']}`", ""]
    lines += render_pipeline(r.get("pipeline", {}), Path(path).name)
    k = r.get("topk", {})
    lines += failed(k, "Top-k") if "error" in k else []
    if "items" in k:
        lines += [
            f"## Exact top-{k['k']}: {k['items']:,} x {k['dim']} clustered unit vectors, "
            f"{k['queries']:,} queries",
            "",
            "| path | s | queries/s | top-100 overlap with exact fp32 | top-10 overlap |",
            "|---|---|---|---|---|",
        ]
        for key, value in k.items():
            if isinstance(value, dict) and "queries_s" in value:
                note = f" ({value['queries']:,} queries)" if "queries" in value else ""
                lines.append(
                    f"| {key}{note} | {value['s']:.3f} | {value['queries_s']:,.0f} | "
                    f"{value['overlap']:.4f} | {value.get('overlap10', float('nan')):.4f} |"
                )
        ivf = k.get("riskrank_default_index")
        if ivf:
            for where in ("cpu", "gpu"):
                if where in ivf:
                    v = ivf[where]
                    lines.append(
                        f"| riskrank default `{ivf['key']}` nprobe {ivf['nprobe']} on {where} | "
                        f"{v['s']:.3f} | {v['queries_s']:,.0f} | {v['overlap']:.4f} | "
                        f"{v.get('overlap10', float('nan')):.4f} |"
                    )
            lines += ["", f"IVF build on the CPU: {ivf['build_cpu_s']:.1f} s", ""]
    if before:
        b = json.loads(Path(before).read_text())
        lines += [
            f"## Against the run before the changes (`{Path(before).name}`, same machine kind)",
            "",
            "| path | before | this run |",
            "|---|---|---|",
        ]
        for section in ("text", "topk"):
            for key, value in b.get(section, {}).items():
                now = r.get(section, {}).get(key)
                if key.endswith("_items_s") and now:
                    lines.append(
                        f"| {key[: -len('_items_s')]} items/s | {value:,.0f} | {now:,.0f} |"
                    )
                elif isinstance(value, dict) and "queries_s" in value and isinstance(now, dict):
                    lines.append(
                        f"| {key} queries/s (top-100 overlap) | {value['queries_s']:,.0f} "
                        f"({value['overlap']:.4f}) | {now['queries_s']:,.0f} "
                        f"({now['overlap']:.4f}) |"
                    )
        lines.append("")
    for run in independence:
        i = json.loads(Path(run).read_text()).get("independence", {})
        lines += [
            f"## A text alone against the same text among 512 (`{Path(run).name}`)",
            "",
            f"{i.get('rows')} texts, {i.get('rows_filling_their_width')} of them filling their "
            "padded width (no padding of their own).",
            "",
            "| attention | texts whose vector moved | of them filling their width | max abs |",
            "|---|---|---|---|",
        ]
        for name in ("sdpa", "sdpa_math", "eager"):
            v = i.get(name, {})
            if "rows_differing" in v:
                lines.append(
                    f"| {name} | {v['rows_differing']} | {v['of_them_filling_width']} | "
                    f"{v['max_abs']:.2g} |"
                )
        lines.append("")
    if pipeline:
        lines += ["# The text encoder's pipeline on the GPU", ""]
        lines += [Path(pipeline_note).read_text().strip(), ""] if pipeline_note else []
    for run in pipeline:
        p = json.loads(Path(run).read_text())
        lines += render_pipeline(p.get("pipeline", {}), Path(run).name, p)
    if sweep:
        lines += ["# Daily sweeps with the text encoder on the GPU", ""]
        lines += [Path(sweep_note).read_text().strip(), ""] if sweep_note else []
    for run in sweep:
        lines += render_sweep(json.loads(Path(run).read_text()), Path(run).name)
    if image:
        lines += ["# CLIP images on the GPU", ""]
        lines += [Path(image_note).read_text().strip(), ""] if image_note else []
    for run in image:
        lines += render_image(json.loads(Path(run).read_text()), Path(run).name)
    Path(out).write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def render_sweep(run: dict, name: str) -> list[str]:
    """One run's sweep section, in the columns of ``benchmarks/incremental.py``'s table."""
    sw = run.get("sweep", {})
    lines = [
        f"## `{name}`: {run.get('device')}, {run.get('cpus')} CPUs, torch {run.get('torch')}, "
        f"faiss {run.get('faiss')}; load before/after {run.get('load_before')} / "
        f"{run.get('load_after')}",
        "",
    ]
    if "days" not in sw:
        return lines + ["```", sw.get("error", "no result"), "```", ""]
    c = sw["counts"]
    lines += [
        f"Pool {c['pool']:,} ({c['copies']:,} perturbed copies); day 0 {c['day0']:,} items; "
        f"day 1: {c['new']:,} new, {c['edited']:,} edited, {c['deleted']:,} taken down; day 2: "
        f"a new policy's seeds. Model trained beforehand in {sw['train_s']} s. Encoder: "
        f"{sw.get('text_model')}, fp16 on the GPU.",
        "",
        "| day | sweep | items embedded | wall s | index s (read / embed / index) | recall s | "
        "rank s | queue + reasons s | peak RSS MiB | ratio to scratch: wall (index+recall+rank) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for day, d in sw["days"].items():
        for kind in ("standing", "scratch"):
            if kind not in d:
                continue
            x, st = d[kind], d[kind]["stages_s"]
            up = x.get("update_stages_s") or {}
            parts = " / ".join(str(up.get(k, "-")) for k in ("read", "embed", "index"))
            ratio = (
                f"{d['ratio_wall']:.3f} ({d['ratio_staged']:.3f})"
                if kind == "standing" and "ratio_wall" in d
                else ""
            )
            lines.append(
                f"| {day} | {kind} | {x['embedded']:,} | {x['wall_s']} | {st['index']} "
                f"({parts}) | {st['recall']} | {st['rank']} | "
                f"{round(st['queue'] + st['reasons'], 2)} | {x['peak_rss_mib']} | {ratio} |"
            )
    lines.append("")
    a = sw.get("embed_attribution")
    if a:
        lines.append(
            f"- Day 0's embedding in parts (a fresh process, `attribute`): `{json.dumps(a)}`."
        )
    for day, d in sw["days"].items():
        q = d.get("queue")
        if q:
            lines.append(
                f"- {day} queues, standing vs scratch: {q['rows'][0]:,} and {q['rows'][1]:,} rows, "
                f"same set {q['same_set']}, same order {q['same_rows_same_order']} (first "
                f"difference at rank {q.get('first_different_rank')}, {q.get('rows_moved')} rows "
                f"moved, at most {q.get('max_rank_shift')} places), largest probability "
                f"difference {q.get('max_abs_probability_diff', 0):.2g}."
            )
        v = d.get("vectors")
        if v:
            lines.append(
                f"- {day} vectors, standing vs scratch: {v['rows_differing']} of {v['rows']:,} "
                f"rows differ, at most {v['max_abs_diff']:.2g}."
            )
    return lines + [""]


def render_image(run: dict, name: str) -> list[str]:
    """One run's image section: images/s per path, per creative size and batch size."""
    im = run.get("image", {})
    lines = [
        f"## `{name}`: {run.get('device')}, {run.get('cpus')} CPUs, torch {run.get('torch')}, "
        f"torchvision {im.get('torchvision_version')} ({im.get('torchvision')}), open_clip "
        f"{im.get('open_clip')}; load before/after {run.get('load_before')} / "
        f"{run.get('load_after')}",
        "",
    ]
    if "error" in im:
        return lines + ["```", im["error"], "```", ""]
    for key, r in im.items():
        if not key.startswith("side"):
            continue
        lines += [
            f"**{key[4:]}x{key[4:]} JPEG q85** ({r['items']:,} images cycling {r['distinct']} "
            f"photos, {r['kb_mean']:.0f} KB mean)",
            "",
            "| path | batch | images/s | vectors vs before: rows differing (max abs) |",
            "|---|---|---|---|",
        ]
        for k, v in r.items():
            if not k.endswith("_items_s") or "_b" not in k or k.startswith("decode"):
                continue
            path, batch = k[: -len("_items_s")].rsplit("_b", 1)
            d = r.get(f"{path}_b{batch}_vs_before")
            diff = f"{d['rows_differing']} ({d['max_abs']:.2g})" if d else ""
            lines.append(f"| {path} | {batch} | {v:,.0f} | {diff} |")
        for k, v in r.items():
            if k.startswith("decode") or k == "gpu_decode_jpeg_items_s":
                lines.append(f"| {k[: -len('_items_s')]} (no model) | | {v:,.0f} | |")
        px = r.get("gpu_prepare_pixels_vs_pil")
        if px:
            lines += [
                "",
                f"Pixels prepared on the GPU against PIL's (first 256 images, normalised units): "
                f"max abs {px['max_abs']:.3f}, mean abs {px['mean_abs']:.4f}.",
            ]
        lines.append("")
    return lines


def render_pipeline(p: dict, name: str, run: dict | None = None) -> list[str]:
    if "error" in p:
        return [f"Pipeline section of {name} failed:", "", "```", p["error"], "```", ""]
    if "items" not in p:
        return []
    lines = [f"## The text encoder's pipeline, one change at a time (`{name}`)", ""]
    if run:
        lines += [
            f"Machine: {run['device']}, {run['cpus']} CPUs; sentence-transformers "
            f"{run['sentence_transformers']}. Load average before/after: {run['load_before']} "
            f"/ {run.get('load_after')}. Command: `python3 benchmarks/gpu.py "
            f"{' '.join(run['argv'])}`.",
            "",
        ]
    lines += [
        f"{p['items']:,} SpamAssassin mails ({p['distinct']:,} distinct, repeated), mean "
        f"{p['tokens_mean']:.0f} tokens, {p['truncated_share']:.0%} cut at the maximum, all "
        f"in one process. Default tokenizer: {p['default_tokenizer']}.",
        "",
        "| tokenising alone | texts/s | same features as the wrapper |",
        "|---|---|---|",
    ]
    for tok in ("wrapper", "fast_uncut", "fast_cut"):
        if f"tokenize_{tok}_items_s" in p:
            same = p.get(f"tokenize_{tok}_equals_wrapper", "(reference)")
            lines.append(f"| {tok} | {p[f'tokenize_{tok}_items_s']:,.0f} | {same} |")
    lines += [
        "",
        "| encode_padded | texts/s | rows differing from the wrapper's (max abs) |",
        "|---|---|---|",
    ]
    for key, value in p.items():
        if key.endswith("_items_s") and not key.startswith("tokenize_"):
            d = p.get(f"{key[: -len('_items_s')]}_vs_wrapper")
            diff = f"{d['rows_differing']} ({d['max_abs']:.2g})" if d else ""
            lines.append(f"| {key[: -len('_items_s')]} | {value:,.0f} | {diff} |")
    lines += [
        "",
        "A text alone vs the same text among 512, default path: "
        f"`{json.dumps(p.get('default_alone_vs_batched'))}`"
        + (
            "; without filling batches to batch_size rows: "
            f"`{json.dumps(p['nofill_alone_vs_batched'])}`"
            if "nofill_alone_vs_batched" in p
            else ""
        ),
        "",
    ]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("--texts", type=int, default=4096)
    pp.add_argument("--no-images", action="store_true", help="mails and MiniLM's config only")
    pr = sub.add_parser("run")
    pr.add_argument("--out", default="gpu.json")
    pr.add_argument("--sections", nargs="+", default=["text", "topk"])
    pr.add_argument("--text-items", type=int, default=20_000)
    pr.add_argument("--text-batches", type=int, nargs="+", default=[64, 256])
    pr.add_argument("--independence-texts", type=int, default=512)
    pr.add_argument("--items", type=int, default=2_000_000)
    pr.add_argument("--dim", type=int, default=384)
    pr.add_argument("--queries", type=int, default=10_000)
    pr.add_argument("--cpu-queries", type=int, default=1_000)
    pr.add_argument("--k", type=int, default=100)
    pr.add_argument("--image-items", type=int, default=8192)
    pr.add_argument("--sweep-items", type=int, default=21_000)
    pr.add_argument("--image-sides", type=int, nargs="+", default=[400, 1080])
    pr.add_argument("--image-batches", type=int, nargs="+", default=[32, 256])
    pr.add_argument("--image-workers", type=int, nargs="+", default=[8, 16])
    pa_ = sub.add_parser("attribute", help=argparse.SUPPRESS)
    pa_.add_argument("spec")
    pn = sub.add_parser("render")
    pn.add_argument("json")
    pn.add_argument("--out", default=str(RESULTS / "gpu.md"))
    pn.add_argument("--before", help="an earlier run's json, shown beside this one")
    pn.add_argument("--independence", nargs="*", default=[], help="runs of that section")
    pn.add_argument("--note", help="a Markdown file: what the runs were, shown first")
    pn.add_argument("--pipeline", nargs="*", default=[], help="runs of the pipeline section")
    pn.add_argument("--pipeline-note", help="a Markdown file shown before those runs")
    pn.add_argument("--image", nargs="*", default=[], help="runs of the image section")
    pn.add_argument("--image-note", help="a Markdown file shown before those runs")
    pn.add_argument("--sweep", nargs="*", default=[], help="runs of the sweep section")
    pn.add_argument("--sweep-note", help="a Markdown file shown before those runs")
    args = p.parse_args(argv)
    if args.step == "prepare":
        prepare(args.texts, images=not args.no_images)
    elif args.step == "attribute":
        print(json.dumps(attribute(json.loads(args.spec))))
    elif args.step == "run":
        return run(args)
    else:
        render(
            args.json, args.out, args.before, args.independence, args.note,
            args.pipeline, args.pipeline_note, args.image, args.image_note,
            args.sweep, args.sweep_note,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
