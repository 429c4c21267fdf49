"""Which sweep a log line came from.

An analyst's process may run several sweeps at once (a thread pool over policies or
inventories): their warnings ("policy 'spam': every item is escalated", "ignoring the reasons
cache ...") then interleave on one stream with nothing saying whose they are (an outsider's
report). Every riskrank logger carries ``RunTag``: while a sweep runs, the records it logs from
its own thread carry ``record.riskrank_run`` (the run id ``report.json`` and ``_SUCCESS``
record) and their message starts with ``[run <first 8 hex>]``. Outside a sweep nothing
changes (``riskrank_run`` is None).

The id lives in a ``contextvars.ContextVar``: each thread has its own, so two sweeps on two
threads tag their own lines. Work a sweep hands to other threads or to Ray's workers logs
untagged (those processes have their own logs).

Written here rather than with a library: the standard library's filters and context variables
are the whole mechanism; no logging package adds more than a prefix would.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("riskrank_run", default=None)
PREFIX_HEX = 8


class RunTag(logging.Filter):
    """Adds ``riskrank_run`` to every record, and the run's prefix to a sweep's messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        run = _RUN.get()
        if getattr(record, "riskrank_run", None) is None:
            record.riskrank_run = run
            if run is not None:
                # str(): a message may be any object; %-style args still apply after it.
                record.msg = f"[run {run[:PREFIX_HEX]}] {record.msg}"
        return True


_TAG = RunTag()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with ``RunTag`` (added once)."""
    logger = logging.getLogger(name)
    if _TAG not in logger.filters:
        logger.addFilter(_TAG)
    return logger


def current_run() -> str | None:
    """The id of the sweep running in this thread (None outside one)."""
    return _RUN.get()


@contextmanager
def running(run_id: str | None = None) -> Iterator[str]:
    """Tag this thread's riskrank log lines with ``run_id`` (default: a new uuid4 hex) until
    the block ends; an enclosing run's id is restored after it (every sweep is its own run,
    with its own id in its report, even when called inside another's code)."""
    run_id = run_id or uuid.uuid4().hex
    token = _RUN.set(run_id)
    try:
        yield run_id
    finally:
        _RUN.reset(token)


def tagged(fn: Callable) -> Callable:
    """Decorator: run ``fn`` under ``running()``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with running():
            return fn(*args, **kwargs)

    return wrapper
