"""One writer per output directory, and no leftovers from writers that died.

Two sweeps into one ``--out`` (or two trains into one model directory, or two updates of
one standing index) interleave their files: a queue from one run beside the candidates of
the other, one day's items lost from the index. ``output_lock`` takes an
exclusive ``filelock`` on ``.<name>.lock`` beside the directory and refuses a second writer
at once with a clear error; the lock dies with its process, so a killed run never leaves
the directory locked. Holding the lock, it removes the temp files (``<file>.<pid>.tmp``)
that killed runs left behind.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout


class OutputLockedError(RuntimeError):
    """Another process is writing into the same output directory."""


def lock_path(directory: str | Path) -> Path:
    directory = Path(directory).absolute()
    return directory.parent / f".{directory.name}.lock"


def _pid_of_tmp(path: Path) -> int | None:
    parts = path.name.rsplit(".", 2)  # <file>.<pid>.tmp
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def process_started(pid: int) -> str | None:
    """When process ``pid`` started, as the kernel counts it (``/proc/<pid>/stat``'s 22nd
    field, clock ticks since boot): with its pid it names one process, where a pid alone may
    name a later process that reused it. None where that cannot be read (not Linux, no such
    process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def clean_temp_files(directory: str | Path) -> list[Path]:
    """Remove ``*.<pid>.tmp`` files under ``directory`` whose writer is dead. The caller holds
    the directory's lock, but a subdirectory can be another writer's (a shared standing
    index, another day's output under this one): a live writer's file is left alone (a
    reviewer saw a sweep into the parent delete them)."""
    removed = []
    root = Path(directory)
    if not root.is_dir():
        return removed
    for path in root.rglob("*.tmp"):
        pid = _pid_of_tmp(path)
        if pid is not None and pid != os.getpid() and not pid_alive(pid) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def output_lock(
    directory: str | Path, *, what: str = "output directory", lock_file: Path | None = None
) -> Iterator[Path]:
    """Hold the exclusive lock of ``directory`` for the block; refuse if another holds it.
    ``lock_file``: where the lock lives (default beside the directory, ``lock_path``)."""
    directory = Path(directory)
    lock_file = lock_file or lock_path(directory)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file, timeout=0)
    try:
        lock.acquire()
    except Timeout as exc:
        if not lock_file.exists():  # not held by anyone: it could not even be created
            raise PermissionError(
                f"cannot write {what} {directory}: its lock file {lock_file} cannot be created "
                "there (not writable?)"
            ) from exc
        advice = (
            "wait for it to finish: a standing index takes one update at a time (another "
            "directory would be a new index, embedding everything again)"
            if what == "standing index"
            else "wait for it to finish or write somewhere else"
        )
        who = _holder(lock_file)
        if f"(pid {os.getpid()} on {socket.gethostname()}," in who:  # a thread of this process
            raise OutputLockedError(
                f"{what} {directory} is in use by another call in this process{who} (lock "
                f"{lock_file}; it is released when that call returns); {advice}"
            ) from exc
        raise OutputLockedError(
            f"{what} {directory} is in use by another riskrank run{who} (lock "
            f"{lock_file}; it is released when that process ends, killed or not); {advice}"
        ) from exc
    holder = lock_file.with_name(lock_file.name + HOLDER)
    with contextlib.suppress(OSError):  # (who holds it is for the message only)
        holder.write_text(json.dumps(_whoami()))
    try:
        clean_temp_files(directory)
        yield directory
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()
        lock.release()


HOLDER = ".holder"  # beside the lock: which process holds it, for a refused run's message


def _whoami() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv)[:300],
    }


def _holder(lock_file: Path) -> str:
    """`` (pid 123 on host, since ...: command)`` from the holder file, or ``""``: the lock
    error named no process, and an operator could not tell which run to wait for (an
    outsider's note)."""
    try:
        who = json.loads(lock_file.with_name(lock_file.name + HOLDER).read_text())
        return f" (pid {who['pid']} on {who['host']}, since {who['since']}: {who['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def holds_output_lock(argument: str, *, what: str) -> Callable:
    """Decorator: run the function holding ``output_lock`` on its ``argument`` (a directory
    path; no lock when it is None)."""

    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            target = signature.bind(*args, **kwargs).arguments.get(argument)
            if target is None:
                return fn(*args, **kwargs)
            with output_lock(target, what=what):
                return fn(*args, **kwargs)

        return locked

    return wrap
