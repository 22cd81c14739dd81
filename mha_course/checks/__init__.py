"""Self-checks for the exercises: each takes *your* function, runs it on cases with known answers
and says what is most likely wrong.

    from mha_course.checks import check_softmax
    check_softmax(softmax)  # "softmax: public checks passed (4 cases) ..." or CheckFailed

A passing self-check means "public checks passed": the grader runs the same exercise on hidden
inputs, which may still fail. Every exercise is an `Exercise` in `EXERCISES`, keyed by the
`grade_id` of its graded cell in the notebooks. The same object serves three places:

- the student's notebook: `check_*` runs the public cases and the diagnosis in one process;
- the grader (`mha_course.grading`): `Exercise.run` calls the student's function in the student's
  process on hidden cases, and `Exercise.judge` compares in the grader's own process;
- the tests, which feed it the package's reference and typical mistakes.

One module per topic holds its exercises (`attention`, `backward`, `head_metrics`, `probing`,
`ablation`, ...): each defines its `check_*` functions and a list `EXERCISES`. This package collects
every module's list and re-exports its `check_*` functions, so a new topic is a new module and
nothing else. References come from the package (`np_attention`, `analysis`) or, where the package
has no such function, from an independent computation written in the module.
"""

from __future__ import annotations

import importlib
import pkgutil

from mha_course.checks._core import CheckFailed, Exercise, run_public, to_plain

__all__ = ["CheckFailed", "Exercise", "EXERCISES", "TOPICS", "to_plain", "run_public"]


def _collect() -> tuple[dict[str, Exercise], list[str]]:
    exercises: dict[str, Exercise] = {}
    topics = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        topics.append(info.name)
        for ex in module.EXERCISES:
            if ex.id in exercises:
                raise RuntimeError(f"exercise id {ex.id!r} is defined twice (in {module.__name__})")
            exercises[ex.id] = ex
        for name in module.__all__:
            if name.startswith("check_"):
                globals()[name] = getattr(module, name)
                __all__.append(name)
    return exercises, topics


EXERCISES, TOPICS = _collect()
