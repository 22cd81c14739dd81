"""The machinery shared by every self-check: `Exercise` (one graded exercise: its cases, how to
call the student's function, the reference and the diagnosis), `CheckFailed`, `to_plain` (the plain
data the grader carries out of a student's process) and `run_public` (what a `check_*` runs in the
student's notebook), plus helpers that compare outputs and name the difference.

`to_plain` is the one walker of the grader's data format. It lives here, not in `grading/codec.py`,
because the self-checks are a layer below the grader (the grader imports them, never the other
way round) and both need it: an exercise's output is plain data even in a notebook with no grader,
and the codec encodes exactly that plain data for the pipe (see its docstring).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["CheckFailed", "Exercise", "to_plain", "run_public"]


class CheckFailed(AssertionError):
    """A self-check found a mistake; the message says which and, where it can, why."""


@dataclass(frozen=True)
class Exercise:
    """One graded exercise.

    id: the `grade_id` of its graded cell; functions: the names the student defines;
    make_cases(rng, hidden) -> list of case dicts (inputs, plus "about": a one-line description);
    call(functions, case) -> the student's outputs (runs wherever the student's code runs);
    expected(case) -> the reference outputs; diagnose(case, got, expected) -> None or a message.
    """

    id: str
    title: str
    functions: tuple[str, ...]
    make_cases: Callable[[np.random.Generator, bool], list[dict]]
    call: Callable[[Sequence[Callable], dict], Any]
    expected: Callable[[dict], Any]
    diagnose: Callable[[dict, Any, Any], str | None]

    def cases(self, hidden: bool = False, seed: int = 0) -> list[dict]:
        """Public cases (always the same) or hidden ones (seeded by the grader)."""
        salt = zlib.crc32(self.id.encode())
        return self.make_cases(np.random.default_rng([seed, salt, int(hidden)]), hidden)

    def run(self, functions: Sequence[Callable], case: dict) -> Any:
        """The student's outputs for one case, as plain data (see `to_plain`)."""
        return to_plain(self.call(functions, case))

    def judge(self, case: dict, got: Any, expected: Any = None) -> str | None:
        """None when `got` is right, else what is wrong. Never raises on odd outputs."""
        expected = self.expected(case) if expected is None else expected
        try:
            return self.diagnose(case, got, expected)
        except Exception as error:  # an output of an unexpected form that slipped past the checks
            return f"your output has an unexpected form ({type(error).__name__}: {error})"


RESERVED_KEY = "__ndarray__"  # the grader's codec marks an array with it (grading/codec.py)
MAX_DEPTH = 6  # how deeply an exercise's output may nest


def to_plain(value: Any, max_depth: int = MAX_DEPTH,
             array: Callable[[np.ndarray], Any] | None = None) -> Any:
    """A return value as plain data: NumPy arrays of numbers, lists (from lists and tuples), dicts
    with str keys, str, int, float, bool, None. Torch tensors become arrays, NumPy scalars and 0-d
    arrays numbers. Anything else raises TypeError, since the grader must carry the value out of
    the student's process.

    The one walker of the grader's data format: `Exercise.run` calls it on an output, and the
    codec (`grading/codec.py`) on a whole message, passing `array` to turn each array into its
    wire form (the default keeps the array) and a larger `max_depth` for the message around it.
    """
    return _plain(value, 0, max_depth, array or (lambda a: a))


def _plain(value: Any, depth: int, max_depth: int, array: Callable[[np.ndarray], Any]) -> Any:
    if depth > max_depth:
        raise TypeError("the output is nested too deeply")
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"an array of dtype {value.dtype}; expected numbers")
        return value.item() if value.ndim == 0 else array(value)  # a 0-d array is a number
    if isinstance(value, np.generic):
        return _plain(value.item(), depth + 1, max_depth, array)
    if type(value).__module__ == "torch" and hasattr(value, "detach"):  # a tensor
        return _plain(value.detach().cpu().numpy(), depth + 1, max_depth, array)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1, max_depth, array) for v in value]
    if isinstance(value, dict):
        if RESERVED_KEY in value:
            raise TypeError(f"a dict with the key {RESERVED_KEY!r}, which the grader reserves "
                            "for arrays")
        return {str(k): _plain(v, depth + 1, max_depth, array) for k, v in value.items()}
    raise TypeError(f"a {type(value).__name__}; expected arrays, numbers or strings")


def run_public(ex: Exercise, functions: Sequence[Callable]) -> None:
    """Run the public cases of `ex` on the student's functions: print that they passed, or raise
    CheckFailed with what is most likely wrong (the stub's NotImplementedError passes through)."""
    for name, fn in zip(ex.functions, functions):
        if not callable(fn):
            raise CheckFailed(f"{ex.title}: {name} must be a function; got {type(fn).__name__}")
    cases = ex.cases(hidden=False)
    for case in cases:
        try:
            got = ex.run(functions, case)
        except NotImplementedError:
            raise  # the stub: its message is the hint
        except Exception as error:
            raise CheckFailed(f"{ex.title}: your code raised {type(error).__name__}: {error}\n"
                              f"  case: {case['about']}") from error
        message = ex.judge(case, got)
        if message:
            raise CheckFailed(f"{ex.title}: {message}\n  case: {case['about']}")
    count = f"{len(cases)} case" + ("s" if len(cases) != 1 else "")
    print(f"{ex.title}: public checks passed ({count}). Hidden checks may still fail.")


# ----------------------------------------------------------------------------------------------
# Comparing outputs


def describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, list):
        return f"a sequence of {len(value)} items"
    return f"a {type(value).__name__}"


def shape_problem(got, shape: tuple, what: str) -> str | None:
    if not isinstance(got, np.ndarray):
        return f"{what} should be an array of shape {shape}; got {describe(got)}"
    if got.shape != tuple(shape):
        return f"{what} has shape {got.shape}; expected {tuple(shape)}"
    return None


def close(a, b, tol: float = 1e-6) -> bool:
    return (isinstance(a, np.ndarray) and np.shape(a) == np.shape(b)
            and bool(np.allclose(a, b, rtol=tol, atol=tol)))


def max_diff(a, b) -> float:
    d = np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    return float(np.nanmax(d)) if np.isfinite(d).any() else float("inf")


def first_match(got, variants: dict[str, Callable[[], Any]], tol: float = 1e-6) -> str | None:
    """The message of the first typical mistake whose output `got` reproduces."""
    for message, make in variants.items():
        try:
            candidate = make()
        except Exception:  # a variant that does not apply to this case
            continue
        if close(got, candidate, tol):
            return message
    return None


def pair(got, n: int, names: str) -> str | None:
    if not isinstance(got, list) or len(got) != n:
        return f"return the tuple ({names}); got {describe(got)}"
    return None
