"""Exercises and grading: `make-exercises` turns solution notebooks into exercises, `grade` runs a
class's submissions in confined processes and writes the gradebook.

    python -m mha_course make-exercises                    # solutions/ -> exercises/
    python -m mha_course grade SUBMISSIONS --out gradebook.csv [--jobs N] [--timeout S]
    python -m mha_course gradescope autograder.zip         # the grader as a Gradescope autograder

Modules: `authoring` (the generator); the instructor's side: `grader` (`grade`, `GradeOptions`:
the whole run), `submissions` (the assignment, the copied and read submissions), `runner` (one
notebook in a forked process, watched), `scoring` (its messages -> points and reasons), `report`
(gradebook, feedback, summary), `gradescope` (the bundle, and one submission graded in
Gradescope's layout); the student's side: `worker` and `sandbox` (a fresh process per
notebook, confined); `codec` (the only format that crosses from the student's process to the
grader's).

Importing this package is cheap (the generator only): `grade` lives in `grading.grader`, which
imports the self-checks and with them torch.
"""

from mha_course.grading.authoring import make_exercises, stale_exercises

__all__ = ["make_exercises", "stale_exercises"]
