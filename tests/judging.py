"""How the checks' tests judge a function: every case, through the grader's codec, as the grader
would (shared by tests/test_checks.py and tests/test_checks_new.py)."""

from __future__ import annotations

from mha_course.checks import EXERCISES
from mha_course.grading import codec


def judge_all(exercise_id: str, functions, hidden: bool = True, seed: int = 5) -> list[str]:
    """Messages for every case where `functions` go wrong (empty: all right)."""
    ex = EXERCISES[exercise_id]
    messages = []
    for case in ex.cases(hidden=hidden, seed=seed):
        got = codec.decode(codec.encode(ex.run(functions, case)))  # as the grader receives it
        message = ex.judge(case, got)
        if message:
            messages.append(message)
    return messages


def first_problem(exercise_id: str, functions) -> str:
    messages = judge_all(exercise_id, functions, hidden=False) + judge_all(exercise_id, functions)
    assert messages, f"{exercise_id}: the mistake was not caught"
    return messages[0]
