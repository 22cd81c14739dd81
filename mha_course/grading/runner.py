"""Running one notebook: a fresh process forked from a pristine server, watched to the end.

Each notebook runs in a process forked from a server that has imported the course once
(`_preload`), so it starts in milliseconds and cannot see the grader's memory. The process
(`worker.run_job`) confines itself (`sandbox`), runs the cells and the hidden cases and sends
`codec` messages down a pipe; this side reads them with a wall-clock limit (the clock starts when
the process says it is ready), bounds their size and number, kills the process at the limit, and
hands the messages to `scoring.score`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mha_course.checks import EXERCISES
from mha_course.grading import codec
from mha_course.grading.scoring import NotebookResult, score
from mha_course.grading.submissions import Assignment
from mha_course.grading.worker import ready, run_job

__all__ = ["Shared", "fork_server_context", "wait_for_fork_server", "run_notebook"]

_GRACE_SECONDS = 3.0  # after the time limit, before the process is killed
_MAX_TRAFFIC_BYTES = 64 * 2**20  # what one notebook's process may send in all (a few KiB is usual)
_MAX_MESSAGES = 10_000


@contextlib.contextmanager
def _environment(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fork_server_context():
    """The forkserver context, its server started with the course preloaded and one thread per
    notebook for BLAS/OpenMP (jobs run in parallel; a thread pool each would fight over cores)."""
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:
        raise RuntimeError("grading needs a POSIX system with fork (Linux or macOS)") from None
    ctx.set_forkserver_preload(["mha_course.grading._preload"])
    with _environment(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                      VECLIB_MAXIMUM_THREADS="1", MPLBACKEND="Agg"):
        multiprocessing.forkserver.ensure_running()
    return ctx


def wait_for_fork_server(ctx, seconds: float = 600.0) -> None:
    """Fork one process that does nothing: it starts once the server has imported everything."""
    process = ctx.Process(target=ready, daemon=True)
    process.start()
    process.join(seconds)
    if process.exitcode != 0:
        process.kill()
        raise RuntimeError(f"the grader's fork server did not start a process within "
                           f"{seconds:g} s (exit code {process.exitcode}); is the course "
                           "installed in this Python?")


@dataclass(frozen=True)
class Shared:
    """What every job shares: the limits, the references, the process context, the sandbox
    settings (the folders a notebook may not touch, the folders it may read)."""

    timeout: float  # wall-clock seconds per notebook
    memory_mb: int
    references: dict  # exercise id -> (hidden cases, reference outputs)
    ctx: object  # the forkserver context
    scratch: Path
    denied: list[str]
    read_roots: list[str] | None


def run_notebook(shared: Shared, student: str, spec: Assignment, cells: list[str]
                 ) -> NotebookResult:
    """Run one student's notebook (the sources of its code cells) and score it."""
    started = time.monotonic()
    workdir = shared.scratch / "work" / student / spec.stem
    shutil.copytree(shared.scratch / "copies" / student, workdir)
    limits = {"memory_mb": shared.memory_mb, "cpu_seconds": int(shared.timeout) + 10,
              "file_mb": 64, "open_files": 512}
    job = {"cells": cells, "workdir": str(workdir), "timeout": shared.timeout, "limits": limits,
           "denied": shared.denied, "read_roots": shared.read_roots,
           "exercises": [{"id": ex_id, "cases": shared.references[ex_id][0]}
                         for ex_id, _ in spec.exercises]}
    receive, send = shared.ctx.Pipe(duplex=False)
    process = shared.ctx.Process(target=run_job, args=(job, send), daemon=True)
    process.start()
    send.close()
    # The clock starts when the process says it is ready (confined, before the first cell): the
    # time it waited for a free core or for the fork server is not the student's.
    deadline = started + max(60.0, shared.timeout) + _GRACE_SECONDS
    messages, timed_out, protocol_error, traffic = [], False, None, 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        try:
            if not receive.poll(min(remaining, 1.0)):
                if not process.is_alive() and not receive.poll(0):
                    break
                continue
            raw = receive.recv_bytes(codec.MAX_MESSAGE_BYTES)
        except EOFError:
            break  # the process ended
        except OSError as error:  # more than the grader accepts, or a broken pipe
            protocol_error = f"the notebook's process sent an unreadable message ({error})"
            break
        traffic += len(raw)
        if traffic > _MAX_TRAFFIC_BYTES or len(messages) >= _MAX_MESSAGES:
            protocol_error = "the notebook's process sent far more messages than a notebook needs"
            break
        try:
            message = codec.decode(raw)
            if not isinstance(message, dict):
                raise codec.CodecError("a message must be an object")
        except codec.CodecError as error:
            protocol_error = f"the notebook's process sent a malformed message ({error})"
            break
        messages.append(message)
        if message.get("kind") == "start" and len(messages) == 1:
            deadline = time.monotonic() + shared.timeout + _GRACE_SECONDS
        if message.get("kind") == "done":
            break
    if process.is_alive():
        process.kill()
    process.join(10)
    receive.close()
    result = score(spec, cells, messages, timed_out, process.exitcode, protocol_error,
                   shared.references, shared.timeout, EXERCISES, shared.memory_mb)
    result.seconds = time.monotonic() - started
    shutil.rmtree(workdir, ignore_errors=True)
    return result

