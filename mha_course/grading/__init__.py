"""Exercises and grading: `make-exercises` turns solution notebooks into exercises, `grade` runs a
class's submissions in confined processes and writes the gradebook.

    python -m mha_course make-exercises                    # solutions/ -> exercises/
    python -m mha_course grade SUBMISSIONS --out gradebook.csv [--jobs N] [--timeout S]

Modules: `authoring` (the generator), `grader` (the instructor's side: scheduling, comparison,
gradebook and feedback), `worker` and `sandbox` (the student's side: a fresh process per notebook,
confined), `codec` (the only format that crosses from the student's process to the grader's).
Importing this package is cheap: nothing here imports NumPy's heavier neighbours until used.
"""

from mha_course.grading.authoring import make_exercises, stale_exercises

__all__ = ["make_exercises", "stale_exercises", "grade", "GradeOptions"]


def __getattr__(name):  # grade and GradeOptions import the heavier grader module on first use
    if name in ("grade", "GradeOptions"):
        from mha_course.grading import grader

        return getattr(grader, name)
    raise AttributeError(f"module 'mha_course.grading' has no attribute {name!r}")
