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
`ablation`, ...): each defines its `check_*` functions and a list `EXERCISES`; `registry` lists
the topics and collects them, and this package re-exports every `check_*`. The shared machinery
(`Exercise`, `CheckFailed`, case comparison, the plain-data walker) is `_framework`. References
come from the package (`np_attention`, `analysis`) or, where the package has no such function,
from an independent computation written in the module.
"""

from __future__ import annotations

from mha_course.checks._framework import CheckFailed, Exercise, run_public, to_plain
from mha_course.checks.registry import CHECKS, EXERCISES, TOPICS

globals().update(CHECKS)  # check_softmax, check_multi_head_attention, ...

__all__ = ["CheckFailed", "Exercise", "EXERCISES", "TOPICS", "to_plain", "run_public",
           *CHECKS]
