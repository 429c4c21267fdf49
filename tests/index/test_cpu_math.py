"""MKL's strict reproducible mode, on which a text's vector being its own rests (cpu_math)."""

import os
import subprocess
import sys

import pytest

from riskrank.index.cpu_math import MKL_ENV, STRICT_MODE, mkl_strict


def test_importing_riskrank_puts_mkl_in_strict_mode():
    # This process imported riskrank before any matrix product ran (conftest), as a CLI run
    # or a notebook that starts with `import riskrank` does.
    strict = mkl_strict()
    if strict is None:
        pytest.skip("this PyTorch has no MKL (an ARM or macOS build)")
    assert os.environ[MKL_ENV] == STRICT_MODE
    assert strict is True


def _run(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != MKL_ENV} | env
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=600
    )


def test_mkl_set_up_before_riskrank_is_said_once_and_a_users_choice_is_kept():
    if mkl_strict() is None:
        pytest.skip("this PyTorch has no MKL (an ARM or macOS build)")
    # torch's MKL ran before riskrank was imported: MKL read its mode then, so the strict
    # mode cannot take effect, and the encoder says so (once) instead of silently giving
    # vectors that depend on their batchmates on an AVX-512 CPU.
    late = _run(
        "import torch; a = torch.ones(64, 64); (a @ a).sum()\n"
        "from riskrank.index.signals import TextEmbeddingSignal\n"
        "from riskrank.index.cpu_math import mkl_strict\n"
        "enc = TextEmbeddingSignal(backend='torch').encoder\n"
        "enc.encode(['win']); enc.encode(['cheap pills'])\n"
        "print('strict', mkl_strict())\n"
    )
    assert late.returncode == 0, late.stderr[-2000:]
    assert "strict False" in late.stdout
    assert late.stderr.count("not in its strict reproducible mode") == 1
    assert "Import riskrank before running torch" in late.stderr
    # A mode the user chose is theirs: riskrank does not overwrite it.
    chosen = _run("import os, riskrank\nprint(os.environ['MKL_CBWR'])\n", **{MKL_ENV: "COMPATIBLE"})
    assert chosen.returncode == 0, chosen.stderr[-2000:]
    assert chosen.stdout.strip() == "COMPATIBLE"


def test_seed_similarities_hold_a_bounded_block_of_products_and_the_same_bits():
    # queries_dot forms every pair's products in float64 before summing them; 400 seeds
    # against 1,024 items at a time held 210 MB of them (a thousand seeds: 3 GiB).
    import tracemalloc

    import numpy as np

    from riskrank.index.cpu_math import queries_dot

    rng = np.random.default_rng(0)
    q = rng.standard_normal((400, 64)).astype(np.float32)
    x = rng.standard_normal((2048, 64)).astype(np.float32)
    tracemalloc.start()
    try:
        got = queries_dot(q, x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48 << 20, peak  # the 32 MiB default budget, the output and the float64 copies
    # Another blocking (one query by three items at a time) gives every entry the same bits.
    assert np.array_equal(got, queries_dot(q, x, budget=3 * 64 * 8))
    assert np.allclose(got, q.astype(np.float64) @ x.T.astype(np.float64), atol=1e-5)
    # One seed (a young policy's): the items' float64 copy is as large as the products, and
    # counts against the budget too (it held 64 MiB for 20,000 items, an outsider saw).
    one, many = rng.standard_normal((1, 384)), rng.standard_normal((20_000, 384)).astype(np.float32)
    tracemalloc.start()
    try:
        queries_dot(one, many)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, peak
