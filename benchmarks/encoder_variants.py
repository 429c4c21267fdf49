"""Candidate text encoders that benchmarks/encoder.py times beside the library's backends.

Each is the shipped MiniLM exported by the library's own code (``text_onnx.export_fp32``), run a
different way; none is a product backend, they exist to be measured:

- ``ort-fp32``: the fused fp32 graph in ONNX Runtime (what fusion alone buys).
- ``ort-static-int8``: ``quantize_static`` (QDQ, per-channel int8 weights and int8 activations,
  MinMax ranges calibrated on held-out SpamAssassin mails and Insults comments, one text per
  calibration batch so padding never widens a range).
- ``openvino-f32`` / ``openvino-bf16``: the fp32 export compiled by OpenVINO with that
  inference precision (bf16 runs on CPUs with AVX512-BF16 or AMX).
- ``openvino-int8w``: NNCF's int8 weight compression (per channel), bf16 elsewhere.
- ``openvino-int8-f32``: the library's ``openvino-int8`` IR (default calibration, the same
  cached IR) with its float operations forced to f32, which every x86 CPU runs alike: what an
  int8 encoder not tied to a bf16 CPU would cost.

Exports are cached under ``benchmarks/.cache/encoder_variants/`` (gitignored). OpenVINO and
NNCF are not dependencies of the library: ``pip install openvino nncf`` to time those.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np

from riskrank.index.signals.text import resolve_text_model
from riskrank.index.signals.text_onnx import (
    OnnxSentenceModel,
    SentenceTokenizer,
    export_fp32,
    fuse,
    mean_pool,
)

CACHE = Path(__file__).resolve().parent / ".cache" / "encoder_variants"
VARIANTS = (
    "ort-fp32",
    "ort-static-int8",
    "openvino-f32",
    "openvino-bf16",
    "openvino-int8w",
    "openvino-int8-f32",
)


def _model_dir() -> Path:
    return Path(resolve_text_model("all-MiniLM-L6-v2")[0])


def _fp32_export() -> Path:
    out = CACHE / "fp32.onnx"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        export_fp32(_model_dir(), out)
    return out


def _fused_export() -> Path:
    out = CACHE / "fused.onnx"
    if not out.exists():
        fuse(_model_dir(), _fp32_export(), out)
    return out


def _static_int8_export(calibration: list[str]) -> Path:
    """QDQ int8 from the unfused graph: the quantiser needs plain MatMuls (a fused Attention
    node hides its projections from it), and ONNX Runtime fuses the QDQ pattern at load."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = CACHE / f"static-int8-{len(calibration)}.onnx"
    if out.exists():
        return out
    pre = CACHE / "fp32-pre.onnx"
    fp32 = _fp32_export()
    tokenizer = SentenceTokenizer(_model_dir(), max_seq_length=256)

    class OneTextAtATime(CalibrationDataReader):
        def __init__(self) -> None:
            self.texts = iter(calibration)

        def get_next(self):
            text = next(self.texts, None)
            return None if text is None else tokenizer([text])

    # Both steps leave scratch files in the working directory: give them a throwaway one.
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        # ONNX's shape inference only: the symbolic one stops at the exporter's mask arithmetic.
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            OneTextAtATime(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
    return out


class OpenVinoModel:
    """The fp32 (or NNCF int8-weight) export compiled by OpenVINO at a given precision."""

    def __init__(self, path: Path, *, precision: str, max_seq_length: int, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": precision,
            },
        )
        # What the device actually runs: a CPU without bf16 falls back to f32.
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.request = self.compiled.create_infer_request()
        self.tokenize = SentenceTokenizer(_model_dir(), max_seq_length=max_seq_length)

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        feeds = self.tokenize(texts)
        hidden = self.request.infer(feeds)[0]
        return mean_pool(hidden, feeds["attention_mask"])


def _int8_weights_ir() -> Path:
    import nncf
    import openvino as ov

    out = CACHE / "int8w.xml"
    if not out.exists():
        compressed = nncf.compress_weights(ov.Core().read_model(str(_fp32_export())))
        ov.save_model(compressed, str(out), compress_to_fp16=False)
    return out


class VariantEncoder:
    """``encode(texts)`` with the library's batching (longest first), for one variant."""

    def __init__(
        self,
        variant: str,
        *,
        max_seq_length: int,
        batch_size: int,
        num_threads: int,
        calibration: list[str],
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        self.batch_size = batch_size
        self.library_model = None
        if variant == "openvino-int8-f32":
            from riskrank.index.signals.text_openvino import (
                OpenVinoSentenceModel,
                quantized_ir_path,
            )
            from riskrank.rank.app.encoder_calibration import history_calibration_texts

            calibration = history_calibration_texts()
            ir = quantized_ir_path(_model_dir(), calibration, max_seq_length=max_seq_length)
            self.library_model = OpenVinoSentenceModel(
                _model_dir(),
                max_seq_length=max_seq_length,
                num_threads=num_threads,
                ir=ir,
                precision="f32",
            )
        elif variant.startswith("ort-"):
            path = _fused_export() if variant == "ort-fp32" else _static_int8_export(calibration)
            self.model = OnnxSentenceModel(
                _model_dir(),
                max_seq_length=max_seq_length,
                num_threads=num_threads,
                model_path=path,
            )
        else:
            path = _int8_weights_ir() if variant == "openvino-int8w" else _fp32_export()
            precision = "f32" if variant == "openvino-f32" else "bf16"
            self.model = OpenVinoModel(
                path, precision=precision, max_seq_length=max_seq_length, threads=num_threads
            )

    def identity(self) -> dict:
        """The precision the library's model ran (read back from OpenVINO), as
        ``TextEncoder.identity`` records it; the other variants record none."""
        return {"precision": self.library_model.precision} if self.library_model else {}

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.library_model is not None:  # the library's own padded batches
            return self.library_model.encode(texts, self.batch_size, False)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), 384), np.float32)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self.model.encode_batch([texts[i] for i in rows])
        return out
