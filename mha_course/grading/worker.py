"""The student's side: one fresh process per notebook, which runs the cells and the hidden cases.

`run_job` is the target of a process forked from a pristine server that has only imported the
course's libraries (see `runner`), so a notebook starts in milliseconds and cannot see the grader's
memory. It confines itself (`sandbox.confine`), runs every code cell with IPython's shell (the
engine inside a Jupyter kernel, without the messaging), then calls the student's functions on the
hidden cases it was given and sends the outputs, never a verdict, to the grader as `codec`
messages. The grader compares them with the references in its own process.

Time: the cells may use `cells_share` of the notebook's time limit; a cell that runs past it is
interrupted (SIGALRM) and the remaining cells are skipped, so that the functions defined so far are
still graded. The hidden cases get the rest, up to `eval_share`. The grader kills the process at
the full limit whatever it is doing.
"""

from __future__ import annotations

import os
import signal
import time
import traceback

import torch

from mha_course.checks import EXERCISES
from mha_course.grading import codec, sandbox

__all__ = ["run_job", "ready", "GradingTimeout"]

cells_share, eval_share = 0.6, 0.92


class GradingTimeout(BaseException):
    """Raised by the alarm; a BaseException so that `except Exception` in student code misses it."""


def _alarm(signum, frame):
    raise GradingTimeout()


def _set_alarm(seconds: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))


def _clear_alarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


def _short(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text if len(text) <= 400 else text[:400] + "..."


def _make_shell():
    """IPython's InteractiveShell, as a kernel runs it: magics work, no history, displays go to
    text only (figures are not rendered to PNG: nobody looks at them here)."""
    # imported here: only a notebook's process builds a shell; the grader's own process imports
    # this module for `run_job` and `ready` alone (the fork server has IPython preloaded)
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class GradingShell(InteractiveShell):
        def enable_gui(self, gui=None):  # `%matplotlib inline` asks; there is no event loop
            pass

    config = Config()
    config.HistoryManager.enabled = False
    shell = GradingShell.instance(config=config)
    shell.display_formatter.active_types = ["text/plain"]
    return shell


class _Channel:
    def __init__(self, conn):
        self.conn = conn
        self.memory_reported = False

    def out_of_memory(self, where: dict) -> None:
        """Tell the grader at once that the notebook ran out of memory (where: {"cell": index} or
        {"exercise": id}), so that the feedback names it even if the process dies soon after.
        Only the first report counts; a message this small is encoded even when memory is short,
        and if it cannot be sent the process ends without it."""
        if self.memory_reported:
            return
        self.memory_reported = True
        try:
            self.conn.send_bytes(codec.encode({"kind": "memory", **where}))
        except BaseException:  # nothing is left to report the failure with
            pass

    def send(self, message: dict) -> None:
        try:
            data = codec.encode(message)
        except codec.CodecError as error:
            data = codec.encode({"kind": message.get("kind"), "id": message.get("id"),
                                 "error": f"could not send the output: {error}"})
        self.conn.send_bytes(data)


def ready() -> None:
    """A process that does nothing: the grader forks one to wait until the server is ready."""


def run_job(job: dict, conn) -> None:
    """Run one notebook (job: cells, exercises and their hidden cases, limits) and report on
    conn."""
    channel = _Channel(conn)
    try:
        _run(job, channel)
    except BaseException as error:  # the worker itself failed, or the student broke it
        if isinstance(error, MemoryError):
            channel.out_of_memory({})
        try:
            channel.send({"kind": "fatal", "error": _short(error),
                          "trace": traceback.format_exc(limit=-3)[-800:]})
        except BaseException:
            pass
    finally:
        os._exit(0)


def _run(job: dict, channel: _Channel) -> None:
    start = time.monotonic()
    limit = float(job["timeout"])
    workdir = job["workdir"]
    os.chdir(workdir)
    os.makedirs("tmp", exist_ok=True)
    os.environ.update({"TMPDIR": os.path.join(workdir, "tmp"), "MPLBACKEND": "Agg",
                       "IPYTHONDIR": os.path.join(workdir, ".ipython")})
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the student's prints must not reach the grader's terminal
    os.dup2(devnull, 2)
    torch.set_num_threads(1)
    exercises = [(spec, EXERCISES[spec["id"]]) for spec in job["exercises"]]  # taken before any
    shell = _make_shell()  # student code runs, so that patching the registry changes nothing here
    signal.signal(signal.SIGALRM, _alarm)
    confinement = sandbox.confine(workdir, sandbox.Limits(**job["limits"]), job["denied"],
                                  job["read_roots"])
    channel.send({"kind": "start", "sandbox": confinement})

    errors, stopped = [], None
    for index, source in enumerate(job["cells"]):
        remaining = start + cells_share * limit - time.monotonic()
        if remaining <= 0:
            stopped = {"cell": index, "reason": "time"}
            break
        channel.send({"kind": "cell", "index": index})
        try:
            _set_alarm(remaining)
            result = shell.run_cell(source, store_history=False)
            _clear_alarm()
        except GradingTimeout:  # landed outside the student's code, inside IPython
            error = GradingTimeout()
        except MemoryError as exhausted:  # IPython itself ran out while reporting the cell's error
            _clear_alarm()
            error = exhausted
        else:
            error = result.error_before_exec or result.error_in_exec
        if isinstance(error, GradingTimeout):
            stopped = {"cell": index, "reason": "time"}
            break
        if isinstance(error, MemoryError):
            channel.out_of_memory({"cell": index})
        if error is not None:
            errors.append({"cell": index, "error": _short(error)})
    _clear_alarm()
    channel.send({"kind": "cells", "errors": errors, "stopped": stopped})

    namespace = shell.user_ns
    for spec, exercise in exercises:
        missing = [name for name in exercise.functions if not callable(namespace.get(name))]
        if missing:
            channel.send({"kind": "exercise", "id": spec["id"], "missing": missing})
            continue
        functions = [namespace[name] for name in exercise.functions]
        outputs = []
        for case in spec["cases"]:
            remaining = start + eval_share * limit - time.monotonic()
            if remaining <= 0:
                outputs.append({"error": "GradingTimeout"})
                break
            try:
                _set_alarm(remaining)
                outputs.append({"ok": exercise.run(functions, case)})
            except GradingTimeout:
                outputs.append({"error": "GradingTimeout"})
                break
            except BaseException as error:  # SystemExit and KeyboardInterrupt count as failures
                if isinstance(error, MemoryError):
                    channel.out_of_memory({"exercise": spec["id"]})
                outputs.append({"error": _short(error)})
            finally:
                _clear_alarm()
        channel.send({"kind": "exercise", "id": spec["id"], "outputs": outputs})
    channel.send({"kind": "done", "blocked": list(sandbox.BLOCKED),
                  "cpu_seconds": time.process_time()})  # this process's CPU time since the fork
