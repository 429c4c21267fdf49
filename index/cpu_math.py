"""Float math on the CPU that gives each row the same bits whatever shares its batch.

A standing index embeds only new and changed items and must hold the vectors a rebuild would
(index/standing.py), so a text's vector may not depend on its batchmates. Padding each text to
its own length (index/signals/text.py ``encode_padded``) is enough where the matrix products
sum each row the same way at any batch size. PyTorch's CPU matrix products are Intel MKL's,
and on a CPU with AVX-512 (an Intel Xeon with AMX, 2026-12-05) MKL picks its kernels by the
shape of the product: a text alone and the same text among six others came out up to 2.2e-7
apart, 42% of the numbers differing. MKL's Conditional Numerical Reproducibility in strict
mode (``MKL_CBWR=AUTO,STRICT``: the best code path of the CPU, summed in a fixed order) gave
them bitwise equal there at about the same CPU time per text: 20.5 against 20.8 texts per
CPU-second, four runs each in their own processes on an otherwise idle machine (each mode's
runs spread over 19.6-21.9; benchmarks/mkl_mode.py, results/mkl_mode.md).

MKL reads the setting once, at its first call, so it is set on import of riskrank, before any
encoder runs; a value the user set is kept. Where MKL had run before riskrank was imported the
setting cannot take effect, and the encoders say so once (``warn_if_not_reproducible``).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

from riskrank.index.run_log import get_logger

MKL_ENV = "MKL_CBWR"
STRICT_MODE = "AUTO,STRICT"
_MKL_STRICT = 0x10000  # mkl_service.h: MKL_CBWR_STRICT
_MKL_ALL = -1  # mkl_service.h: MKL_CBWR_ALL (~0)

log = get_logger("riskrank")


def request_reproducible_math() -> None:
    """Ask MKL for its strict reproducible mode, unless the user chose a mode themselves."""
    os.environ.setdefault(MKL_ENV, STRICT_MODE)


@functools.lru_cache(maxsize=1)
def _mkl_mode_getter():
    """MKL's mode query inside PyTorch's CPU library, or None (no MKL: an ARM or macOS build)."""
    import torch

    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        path = Path(torch.__file__).parent / "lib" / name
        if path.exists():
            try:
                get = ctypes.CDLL(str(path)).mkl_serv_cbwr_get
            except (OSError, AttributeError):
                return None
            get.argtypes, get.restype = [ctypes.c_int], ctypes.c_int
            return get
    return None


def mkl_strict() -> bool | None:
    """Whether PyTorch's MKL runs in strict reproducible mode; None where it cannot be told."""
    get = _mkl_mode_getter()
    return None if get is None else bool(get(_MKL_ALL) & _MKL_STRICT)


@functools.lru_cache(maxsize=1)
def warn_if_not_reproducible() -> bool | None:
    """Warn once per process where MKL is not in strict mode; returns ``mkl_strict()``."""
    strict = mkl_strict()
    if strict is False:
        log.warning(
            "Intel MKL is not in its strict reproducible mode (%s=%r; or MKL ran before riskrank "
            "was imported, and reads the setting only once): on CPUs with AVX-512 a vector then "
            "depends on what shares its batch (by ~1e-7), and a standing index's vectors may "
            "differ from a rebuild's. Import riskrank before running torch, or set %s=%s.",
            MKL_ENV,
            os.environ.get(MKL_ENV),
            MKL_ENV,
            STRICT_MODE,
        )
    return strict


request_reproducible_math()


def rows_dot(rows, v, block: int = 8192):
    """Each row of ``rows`` (n, d) times the vector ``v`` (d,), in float64, each row summed
    along its own axis: a value depends on that row and ``v`` alone. A BLAS matrix-vector
    product's does not: OpenBLAS on 2 threads splits the sums otherwise than on 1, and a local
    sweep wrote other centroid similarities and probe scores than a Ray worker (one thread) by
    up to 1.4e-6 (an outsider's run)."""
    import numpy as np

    out = np.empty(len(rows), np.float64)
    w = np.asarray(v, np.float64)
    for i in range(0, len(rows), block):
        out[i : i + block] = (np.asarray(rows[i : i + block], np.float64) * w).sum(axis=1)
    return out


def queries_dot(queries, items, budget: int = 32 << 20):
    """``queries @ items.T`` as float32, each entry summed in float64 over its own pair
    (``rows_dot``'s rule): an entry does not depend on the BLAS threads or on where an item
    sits among the others. A BLAS product's did: an export's row order moved a copy's
    similarity to its seed by an ulp, and two copies traded values.

    The pairwise products are formed a block of queries by a block of items at a time, at most
    ``budget`` bytes of them and of the items' float64 copy: a thousand seeds against 1,024
    items at a time were 3 GiB."""
    import numpy as np

    q = np.asarray(queries, np.float64)
    n, d = len(items), q.shape[1] if q.ndim == 2 else 0
    out = np.empty((len(q), n), np.float32)
    per_pair = max(8 * d, 1)
    q_block = max(1, min(len(q), budget // (per_pair * 64)))  # room for >= 64 items a block
    i_block = max(1, budget // (per_pair * (q_block + 1)))  # the products and the copy
    for a in range(0, len(q), q_block):
        qa = q[a : a + q_block, None, :]
        for i in range(0, n, i_block):
            x = np.asarray(items[i : i + i_block], np.float64)
            out[a : a + q_block, i : i + i_block] = (qa * x[None, :, :]).sum(axis=2)
    return out


def logistic_fit(X, y, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-4):
    """A binary logistic regression, ``(coef, intercept)`` in float64, whose coefficients
    depend on ``X`` and ``y`` alone, not on the machine's threads.

    scikit-learn's ``LogisticRegression`` (lbfgs) minimises this objective, the mean log-loss
    plus ``||coef||^2 / (2 C n)``, but sums it with numpy's BLAS, whose thread count changes
    the sums: a 1,500-row fit's coefficients moved by 4.8e-7 from one thread to two. Holding
    BLAS to one thread (threadpoolctl) flips every native thread pool in the process, which is
    not safe while other threads compute (threadpoolctl's issue 205), and a library's caller
    may run sweeps in threads. So the products are numpy's einsum loops (no BLAS: each row
    summed in one fixed order) and the same scipy L-BFGS-B, from zero, with scikit-learn's
    settings; the problem's own vectors (d + 1 numbers) are too short for BLAS to thread."""
    import numpy as np
    from scipy.optimize import minimize
    from scipy.special import expit

    X = np.ascontiguousarray(X, np.float64)
    t = np.asarray(y, np.float64)
    n, d = X.shape
    # scikit-learn refuses these too: a fit on them would return NaN or run off to infinity.
    if not (np.isfinite(X).all() and np.isfinite(t).all()):
        raise ValueError("logistic_fit: the rows or labels hold NaN or infinity")
    if t.shape != (n,) or not np.isin(t, (0.0, 1.0)).all() or len(np.unique(t)) < 2:
        raise ValueError("logistic_fit: needs one 0/1 label per row, both classes present")
    l2 = 1.0 / (C * n)

    def loss_grad(wb):
        w, b = wb[:d], wb[d]
        z = np.einsum("ij,j->i", X, w) + b
        r = (expit(z) - t) / n
        loss = np.logaddexp(0.0, z).sum() / n - (t * z).sum() / n + 0.5 * l2 * (w * w).sum()
        g = np.empty(d + 1)
        g[:d] = np.einsum("ij,i->j", X, r) + l2 * w
        g[d] = r.sum()
        return loss, g

    opts = {"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps}
    fit = minimize(loss_grad, np.zeros(d + 1), jac=True, method="L-BFGS-B", options=opts)
    if not fit.success:  # scikit-learn warned (ConvergenceWarning); the fit is still used
        log.info("logistic_fit: L-BFGS-B stopped after %d iterations: %s", fit.nit, fit.message)
    return fit.x[:d], float(fit.x[d])
