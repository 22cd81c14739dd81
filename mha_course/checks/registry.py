"""Every exercise the course checks, by the topic module that holds it (one module per exercise
notebook's topic: ex05 has two, `probing` and `ablation`).

A new topic is a new module here and a line in `TOPICS`: `EXERCISES` (keyed by the `grade_id` of
the exercise's graded cell) and `CHECKS` (its `check_*` functions, re-exported by
`mha_course.checks`) follow.
"""

from __future__ import annotations

from mha_course.checks import (
    ablation,
    attention,
    backward,
    contributions,
    head_metrics,
    induction,
    positional,
    probing,
    pruning_order,
    word_pieces,
)
from mha_course.checks._framework import Exercise

__all__ = ["TOPICS", "EXERCISES", "CHECKS"]

TOPICS = {  # topic -> its module, in the order of the exercise notebooks
    "attention": attention,  # ex01, ex02
    "backward": backward,  # ex03
    "head_metrics": head_metrics,  # ex04
    "probing": probing,  # ex05
    "ablation": ablation,  # ex05
    "positional": positional,  # ex06
    "word_pieces": word_pieces,  # ex07
    "pruning_order": pruning_order,  # ex08
    "contributions": contributions,  # ex09
    "induction": induction,  # ex10
}


def _exercises() -> dict[str, Exercise]:
    exercises: dict[str, Exercise] = {}
    for module in TOPICS.values():
        for ex in module.EXERCISES:
            if ex.id in exercises:
                raise RuntimeError(f"exercise id {ex.id!r} is defined twice (in {module.__name__})")
            exercises[ex.id] = ex
    return exercises


EXERCISES = _exercises()
CHECKS = {name: getattr(module, name) for module in TOPICS.values()
          for name in module.__all__ if name.startswith("check_")}
