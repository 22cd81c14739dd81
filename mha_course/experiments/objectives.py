"""What the toy model's auxiliary read-outs buy: its recipe trained with and without them.

The toy model (`mha_course.models.toy_model`) is trained on three objectives, summed in
`toy_model.training._loss`:

- denoising: restore the clean word at every word position of a corrupted sentence;
- "name your left neighbour" (`ToyConfig.neighbour_loss`): a small read-out at every word names the
  word to its left (its lemma), so that every position needs its left neighbour;
- "name your sentence's closer" (`ToyConfig.closer_loss`): a read-out at every word names the
  sentence's closing delimiter ('.', '?', '!');
- "name your sentence's world" (`ToyConfig.world_loss`): a read-out at every word names the
  sentence's world (land or sea), which a sentence-wide flip leaves only its names to tell;
- "name your subject" (`ToyConfig.subject_loss`): a read-out at every verb names the lemma of its
  subject.

The read-outs are output objectives, not attention supervision, but they were added so that a
local head, a delimiter head, a head on the rare words and a verb -> subject head appear.
`readout_ablation` trains the same recipe with every read-out weight set to 0 (optionally also
as shipped, `arms=ARMS`), and records each run's best head per role, the untrained control and
the sub-task accuracies. The shipped checkpoint is the recipe
with the read-outs for seed 0, so the file shipped as `mha_course/data/readout_ablation.json` holds
the run without them for seed 0, written by

    python -m mha_course train-toy-ablation --seeds 0 --out mha_course/data/readout_ablation.json

(add `--with-readouts` to train the shipped recipe as well, for seeds other than the checkpoint's).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import torch

from mha_course.experiments import toy_training
from mha_course.models import toy_model

__all__ = ["Arm", "ARMS", "WITH_READOUTS", "WITHOUT_READOUTS", "checkpoint_run", "ABLATION_FILE",
           "train_arm", "readout_ablation", "write_readout_ablation",
           "load_readout_ablation", "compare", "format_ablation"]

ABLATION_FILE = "readout_ablation.json"  # under mha_course/data/
COMMAND = "python -m mha_course train-toy-ablation"


@dataclass(frozen=True)
class Arm:
    """One variant of the recipe: the weights of the read-out losses (0 switches one off)."""
    name: str
    neighbour_loss: float
    closer_loss: float
    world_loss: float = 0.0
    subject_loss: float = 0.0


_DEFAULT = toy_model.ToyConfig()
WITH_READOUTS = Arm("with_readouts", _DEFAULT.neighbour_loss, _DEFAULT.closer_loss,
                    _DEFAULT.world_loss, _DEFAULT.subject_loss)
WITHOUT_READOUTS = Arm("without_readouts", 0.0, 0.0, 0.0, 0.0)
ARMS = (WITH_READOUTS, WITHOUT_READOUTS)


def train_arm(arm: Arm, seed: int, config: toy_model.ToyConfig | None = None,
              steps: int | None = None, progress: bool = False) -> dict:
    """Train `config` (default: the shipped recipe) with the arm's read-out weights; return the
    run's best head per role, the control, the offset baseline and the sub-task accuracies."""
    config = replace(config or toy_model.ToyConfig(), neighbour_loss=arm.neighbour_loss,
                     closer_loss=arm.closer_loss, world_loss=arm.world_loss,
                     subject_loss=arm.subject_loss)
    _, report = toy_training.train(config, seed=seed, steps=steps, progress=progress)
    return {"arm": arm.name, "seed": seed, "neighbour_loss": arm.neighbour_loss,
            "closer_loss": arm.closer_loss, "world_loss": arm.world_loss,
            "subject_loss": arm.subject_loss, "steps": report["steps"],
            "seconds": report["seconds"], "threads": report["threads"],
            "best": report["best"], "control": report["control"],
            "syntactic_baseline": report["syntactic_baseline"], "accuracy": report["accuracy"]}


def readout_ablation(seeds=(0,), config: toy_model.ToyConfig | None = None,
                     steps: int | None = None, arms=(WITHOUT_READOUTS,),
                     progress: bool = False) -> dict:
    """`train_arm` for every seed and arm, with what is needed to repeat it (command, date,
    torch)."""
    base = config or toy_model.ToyConfig()
    runs = [train_arm(arm, seed, base, steps, progress) for seed in seeds for arm in arms]
    seed_args = " ".join(str(s) for s in seeds)
    step_arg = "" if steps is None else f" --steps {steps}"
    with_arg = " --with-readouts" if WITH_READOUTS in arms else ""
    return {"command": f"{COMMAND} --seeds {seed_args}{step_arg}{with_arg} --out FILE",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "torch": torch.__version__, "config": asdict(replace(base, steps=steps or base.steps)),
            "arms": [asdict(a) for a in arms], "runs": runs}


def write_readout_ablation(path, seeds=(0,), steps: int | None = None,
                           config: toy_model.ToyConfig | None = None, with_readouts: bool = False,
                           progress: bool = False) -> Path:
    """Run `readout_ablation` (both arms if `with_readouts`) and write it as JSON to `path`."""
    path = Path(path)
    arms = ARMS if with_readouts else (WITHOUT_READOUTS,)
    result = readout_ablation(seeds, config=config, steps=steps, arms=arms, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return path


def load_readout_ablation(path=None) -> dict:
    """The JSON written by `write_readout_ablation` (None: the one shipped with the course)."""
    if path is None:
        path = resources.files("mha_course") / "data" / ABLATION_FILE
    return json.loads(Path(str(path)).read_text())


def checkpoint_run(report: dict, seed: int = 0) -> dict:
    """The shipped checkpoint's report (`toy_model.load_report()`) as a run of the arm with the
    read-outs, to put next to the runs of a `readout_ablation` result."""
    return {"arm": WITH_READOUTS.name, "seed": seed, "neighbour_loss": WITH_READOUTS.neighbour_loss,
            "closer_loss": WITH_READOUTS.closer_loss, "world_loss": WITH_READOUTS.world_loss,
            "subject_loss": WITH_READOUTS.subject_loss, "steps": report["training_steps"],
            "seconds": report["training_seconds"], "threads": report["threads"],
            "best": report["best"], "control": report["control"],
            "syntactic_baseline": report["syntactic_baseline"], "accuracy": report["accuracy"]}


def compare(result: dict, roles) -> dict:
    """{seed: {arm: {role: best score}}} for the given roles, from a `readout_ablation` result."""
    table: dict = {}
    for run in result["runs"]:
        table.setdefault(run["seed"], {})[run["arm"]] = {r: run["best"][r]["score"] for r in roles}
    return table


def format_ablation(result: dict, roles, extra_runs=()) -> str:
    """A table: each role's best score and each sub-task's accuracy (rows), for `extra_runs` (e.g.
    `checkpoint_run`) and every run of `result` (columns), the untrained control's best
    alongside."""
    runs = [*extra_runs, *result["runs"]]
    columns = [(r["seed"], r["arm"]) for r in runs]
    names = {"with_readouts": "with", "without_readouts": "without"}
    head = f"{'best head':<14}" + "".join(f"{names.get(a, a) + ' s' + str(s):>13}"
                                          for s, a in columns)
    lines = [head + f"{'control':>10}"]
    for role in roles:
        control = max(r["control"][role] for r in runs)
        lines.append(f"{role:<14}" + "".join(f"{r['best'][role]['score']:13.2f}" for r in runs)
                     + f"{control:10.2f}")
    lines.append("accuracy")
    for task in runs[0]["accuracy"]:
        lines.append(f"  {task:<12}" + "".join(f"{r['accuracy'].get(task, float('nan')):13.2f}"
                                               for r in runs))
    return "\n".join(lines)
