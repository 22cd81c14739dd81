"""Command line: `python -m mha_course COMMAND` (see `python -m mha_course --help`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mha_course.analysis import heads
from mha_course.analysis import pruning as analysis_pruning
from mha_course.experiments import (
    head_counts,
    induction_training,
    objectives,
    pruning,
    several_heads,
    toy_sweep,
    toy_training,
)
from mha_course.models import toy_model


def _train_toy(args: argparse.Namespace) -> int:
    config = toy_model.ToyConfig() if args.steps is None else toy_model.ToyConfig(steps=args.steps)
    if args.threads is not None:
        if args.threads < 1:
            print(f"error: --threads must be at least 1; got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)  # the float sums, and so the weights, depend on it
    _, report = toy_training.train(config, seed=args.seed, out_dir=args.out, seconds=args.seconds,
                                progress=not args.quiet)
    best = {role: f"L{b['layer']}H{b['head']} {b['score']:.2f}"
            for role, b in report["best"].items()}
    accuracy = {k: round(v, 3) for k, v in report["accuracy"].items()}
    print(json.dumps({"out": str(args.out), "seconds": round(report["seconds"], 1),
                      "steps": report["steps"], "best_heads": best, "accuracy": accuracy},
                     indent=1))
    return 0


def _train_toy_ablation(args: argparse.Namespace) -> int:
    path = objectives.write_readout_ablation(args.out, seeds=args.seeds, steps=args.steps,
                                             with_readouts=args.with_readouts,
                                             progress=not args.quiet)
    print(objectives.format_ablation(objectives.load_readout_ablation(path), heads.ROLES))
    return 0


def _compare_heads(args: argparse.Namespace) -> int:
    return head_counts.run_comparison_cli(args)


def _several_heads(args: argparse.Namespace) -> int:
    return several_heads.run_cli(args)


def _sweep_toy(args: argparse.Namespace) -> int:
    return toy_sweep.run_cli(args)


def _train_induction(args: argparse.Namespace) -> int:
    return induction_training.run_cli(args)


_NEEDS_JUPYTER = ("needs Jupyter's nbformat and IPython, which come with the course's dev extra "
                  "(make lab, or pip install 'mha-course[dev]')")


# The two grading commands import their modules when run: they need nbformat and IPython, which
# come with the optional dev extra, and every other command must work without them.
def _make_exercises(args: argparse.Namespace) -> int:
    try:
        from mha_course.grading import authoring
    except ImportError as error:
        print(f"error: make-exercises {_NEEDS_JUPYTER}: {error}", file=sys.stderr)
        return 2

    try:
        if args.check:
            stale = authoring.stale_exercises(args.solutions, args.out)
            if stale:
                print(f"{args.out} is out of date with {args.solutions}: {', '.join(stale)}; run "
                      "`python -m mha_course make-exercises`", file=sys.stderr)
                return 1
            print(f"{args.out} is up to date with {args.solutions}")
            return 0
        for path in authoring.make_exercises(args.solutions, args.out):
            print(path)
    except (FileNotFoundError, authoring.SolutionFormatError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _grade(args: argparse.Namespace) -> int:
    try:
        import IPython  # noqa: F401  (the notebooks' cells run in IPython's shell)

        from mha_course.grading import grader, report
    except ImportError as error:
        print(f"error: grade {_NEEDS_JUPYTER}: {error}", file=sys.stderr)
        return 2

    options = grader.GradeOptions(
        submissions=args.submissions, out=args.out, exercises=args.exercises,
        feedback=args.feedback, jobs=args.jobs, timeout=args.timeout, memory_mb=args.memory_mb,
        seed=args.seed, progress=not args.quiet, scratch=args.scratch)
    try:
        run = grader.grade(options)
    except (FileNotFoundError, NotADirectoryError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.format_summary(run))
    return 0


def _gradescope(args: argparse.Namespace) -> int:
    try:
        from mha_course.grading import gradescope
    except ImportError as error:
        print(f"error: gradescope {_NEEDS_JUPYTER}: {error}", file=sys.stderr)
        return 2
    try:
        path = gradescope.build_bundle(args.out, exercises=args.exercises, seed=args.seed,
                                       timeout=args.timeout, memory_mb=args.memory_mb,
                                       jobs=args.jobs, visibility=args.visibility)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}: upload it as the assignment's autograder on Gradescope")
    print(gradescope.timing_note(args.exercises, args.timeout, args.jobs))
    return 0


def _prune_toy(args: argparse.Namespace) -> int:
    try:
        model = toy_model.load(args.model)
        importance, curves = pruning.toy_pruning(model, args.sentences, args.seed, args.n_random,
                                                 args.ablation)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"gradient score (Michel et al. 2019), {curves.ablation} ablation, accuracy on "
          f"{args.sentences} sentences (seed {args.seed}), {args.n_random} random orders:")
    print(analysis_pruning.curve_table(curves, at=curves.n_total // 2))
    if args.out is not None:
        args.out.write_text(json.dumps(pruning.curves_json(importance, curves), indent=1))
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mha_course", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train-toy", help="train the toy Transformer on the "
                                "planted-relation language and write model.safetensors, "
                                "config.json, heads.json")
    train.add_argument("--seed", type=int, default=0, help="seed for data, corruption and weights")
    train.add_argument("--out", type=Path, required=True, help="folder to write the checkpoint to")
    train.add_argument("--steps", type=int, default=None,
                       help="training steps (default: ToyConfig)")
    train.add_argument("--seconds", type=float, default=None,
                       help="stop early after this many seconds (then no longer deterministic)")
    train.add_argument("--threads", type=int, default=None,
                       help="torch threads (default: torch's; a sweep-toy row is trained with 1)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train_toy)
    ablation = commands.add_parser("train-toy-ablation", help="train the toy recipe without its "
                                   "read-outs (neighbour, closer, world, subject) and write "
                                   "role scores and sub-task accuracies to a JSON file "
                                   "(notebook 04)")
    ablation.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    ablation.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    ablation.add_argument("--steps", type=int, default=None,
                          help="training steps (default: ToyConfig)")
    ablation.add_argument("--with-readouts", action="store_true",
                          help="also train the recipe with its read-outs, for the same seeds")
    ablation.add_argument("--quiet", action="store_true", help="no progress bar")
    ablation.set_defaults(run=_train_toy_ablation)
    sweep = commands.add_parser("sweep-toy", help="train variants of the toy recipe for several "
                                "seeds; one JSON line per run (best head per role, control, "
                                "sub-task accuracies) and a table over seeds "
                                "(docs/design/toy_language.md)")
    toy_sweep.add_arguments(sweep).set_defaults(run=_sweep_toy)
    inducing = commands.add_parser("train-induction", help="train the causal attention-only "
                                   "model on repeated random tokens; print its best "
                                   "previous-token and induction heads and the random-init "
                                   "control; with --out, write model.safetensors, config.json, "
                                   "report.json")
    induction_training.add_arguments(inducing).set_defaults(run=_train_induction)
    prune = commands.add_parser("prune-toy", help="remove the toy model's heads one after another "
                                "in the order of the gradient score, at random and in reverse; "
                                "print how many can go (notebook 07)")
    prune.add_argument("--model", type=Path, default=None,
                       help="a checkpoint folder written by train-toy (default: the shipped one)")
    prune.add_argument("--sentences", type=int, default=64, help="fresh sentences (default 64)")
    prune.add_argument("--seed", type=int, default=0, help="seed of the sentences and orders")
    prune.add_argument("--n-random", type=int, default=5, help="random orders (default 5)")
    prune.add_argument("--ablation", choices=("zero", "mean"), default="zero",
                       help="how a head is removed (default: zero)")
    prune.add_argument("--out", type=Path, default=None, help="also write the curves as JSON")
    prune.set_defaults(run=_prune_toy)
    compare = commands.add_parser("compare-heads", help="train the toy Transformer with several "
                                  "heads and with one head at the same parameter count; print "
                                  "held-out accuracy per sub-task")
    head_counts.add_arguments(compare).set_defaults(run=_compare_heads)
    several = commands.add_parser("several-heads", help="one head vs several at the same parameter "
                                  "count on a task where each token needs two places (notebook 07)")
    several_heads.add_arguments(several).set_defaults(run=_several_heads)
    make = commands.add_parser("make-exercises", help="generate the exercise notebooks from the "
                               "solution notebooks (solution regions become stubs, outputs "
                               "cleared)")
    make.add_argument("--solutions", type=Path, default=Path("solutions"),
                      help="folder of solution notebooks (default: solutions)")
    make.add_argument("--out", type=Path, default=Path("exercises"),
                      help="folder to write the exercises to (default: exercises)")
    make.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 if the exercises are out of date")
    make.set_defaults(run=_make_exercises)
    grade = commands.add_parser("grade", help="grade SUBMISSIONS/<student>/<notebook>.ipynb: "
                                "each notebook in a confined process, hidden inputs, gradebook.csv "
                                "and feedback/<student>.md")
    grade.add_argument("submissions", type=Path, help="folder with one sub-folder per student")
    grade.add_argument("--out", type=Path, default=Path("gradebook.csv"),
                       help="the gradebook to write (default: gradebook.csv)")
    grade.add_argument("--jobs", type=int, default=1, help="notebooks run in parallel (default 1)")
    grade.add_argument("--timeout", type=float, default=120.0,
                       help="wall-clock seconds per notebook (default 120)")
    grade.add_argument("--memory-mb", type=int, default=2048,
                       help="memory a notebook may allocate beyond the course's libraries "
                            "(default 2048 MiB)")
    grade.add_argument("--exercises", type=Path, default=None,
                       help="the exercise notebooks handed out (default: exercises/ of the course)")
    grade.add_argument("--feedback", type=Path, default=None,
                       help="folder for feedback/<student>.md (default: feedback next to --out)")
    grade.add_argument("--seed", type=int, default=0,
                       help="seed of the hidden inputs; pick your own to keep them unguessable")
    grade.add_argument("--scratch", type=Path, default=None,
                       help="where to put the scratch copies (default: the system's temp folder)")
    grade.add_argument("--quiet", action="store_true", help="no progress bar")
    grade.set_defaults(run=_grade)
    scope = commands.add_parser("gradescope", help="write a Gradescope autograder (setup.sh, "
                                "run_autograder, the course, the exercises) that grades a "
                                "submission as `grade` does and writes results.json")
    scope.add_argument("out", type=Path, help="the zip to write, e.g. autograder.zip")
    scope.add_argument("--exercises", type=Path, default=None,
                       help="the exercise notebooks handed out (default: exercises/ of the course)")
    scope.add_argument("--seed", type=int, default=None,
                       help="seed of the hidden inputs (default: a random one, kept in the zip)")
    scope.add_argument("--timeout", type=float, default=45.0,
                       help="wall-clock seconds per notebook (default 45)")
    scope.add_argument("--memory-mb", type=int, default=512,
                       help="memory a notebook may allocate beyond the course's libraries "
                            "(default 512 MiB)")
    scope.add_argument("--jobs", type=int, default=1,
                       help="notebooks run in parallel per submission (default 1; Gradescope "
                            "gives half a CPU unless its settings give more)")
    scope.add_argument("--visibility", default="visible",
                       choices=("visible", "after_due_date", "after_published", "hidden"),
                       help="when students see the results (default: visible)")
    scope.set_defaults(run=_gradescope)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
