"""What the toy model's two auxiliary read-outs buy: its recipe trained with and without them.

The toy model (`mha_course.toy_model`) is trained on three objectives, summed in `toy_model._loss`:

- denoising: restore the clean word at every word position of a corrupted sentence;
- "name your left neighbour" (`ToyConfig.neighbour_loss`): a small read-out at every word names the
  word to its left (its lemma), so that every position needs its left neighbour;
- "name your sentence's closer" (`ToyConfig.closer_loss`): a read-out at every word names the
  sentence's closing delimiter ('.', '?', '!').

The read-outs are output objectives, not attention supervision, but they were added so that a
local head and a delimiter head appear. `readout_ablation` trains the same recipe for each seed
twice, with the read-outs and with both weights set to 0, and records each run's best head per role,
the untrained control and the sub-task accuracies. The command that writes the file shipped as
`mha_course/data/readout_ablation.json`:

    python -m mha_course train-toy-ablation --seeds 0 --out mha_course/data/readout_ablation.json
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import torch

from mha_course import toy_model

__all__ = ["Arm", "ARMS", "ABLATION_FILE", "train_arm", "readout_ablation", "write_readout_ablation",
           "load_readout_ablation", "compare", "format_ablation"]

ABLATION_FILE = "readout_ablation.json"  # under mha_course/data/
COMMAND = "python -m mha_course train-toy-ablation"


@dataclass(frozen=True)
class Arm:
    """One variant of the recipe: the weights of the two read-out losses (0 switches one off)."""
    name: str
    neighbour_loss: float
    closer_loss: float


_DEFAULT = toy_model.ToyConfig()
ARMS = (Arm("with_readouts", _DEFAULT.neighbour_loss, _DEFAULT.closer_loss),
        Arm("without_readouts", 0.0, 0.0))


def train_arm(arm: Arm, seed: int, config: toy_model.ToyConfig | None = None,
              steps: int | None = None, progress: bool = False) -> dict:
    """Train `config` (default: the shipped recipe) with the arm's read-out weights; return the
    run's best head per role, the control, the offset baseline and the sub-task accuracies."""
    config = replace(config or toy_model.ToyConfig(), neighbour_loss=arm.neighbour_loss,
                     closer_loss=arm.closer_loss)
    _, report = toy_model.train(config, seed=seed, steps=steps, progress=progress)
    return {"arm": arm.name, "seed": seed, "neighbour_loss": arm.neighbour_loss,
            "closer_loss": arm.closer_loss, "steps": report["steps"],
            "seconds": report["seconds"], "threads": report["threads"],
            "best": report["best"], "control": report["control"],
            "syntactic_baseline": report["syntactic_baseline"], "accuracy": report["accuracy"]}


def readout_ablation(seeds=(0,), config: toy_model.ToyConfig | None = None,
                     steps: int | None = None, arms=ARMS, progress: bool = False) -> dict:
    """`train_arm` for every seed and arm, with what is needed to repeat it (command, date, torch)."""
    base = config or toy_model.ToyConfig()
    runs = [train_arm(arm, seed, base, steps, progress) for seed in seeds for arm in arms]
    seed_args = " ".join(str(s) for s in seeds)
    step_arg = "" if steps is None else f" --steps {steps}"
    return {"command": f"{COMMAND} --seeds {seed_args}{step_arg} --out FILE",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "torch": torch.__version__, "config": asdict(replace(base, steps=steps or base.steps)),
            "arms": [asdict(a) for a in arms], "runs": runs}


def write_readout_ablation(path, seeds=(0,), steps: int | None = None,
                           config: toy_model.ToyConfig | None = None, progress: bool = False) -> Path:
    """Run `readout_ablation` and write it as JSON to `path`; return the path."""
    path = Path(path)
    result = readout_ablation(seeds, config=config, steps=steps, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return path


def load_readout_ablation(path=None) -> dict:
    """The JSON written by `write_readout_ablation` (None: the one shipped with the course)."""
    if path is None:
        path = resources.files("mha_course") / "data" / ABLATION_FILE
    return json.loads(Path(str(path)).read_text())


def compare(result: dict, roles) -> dict:
    """{seed: {arm: {role: best score}}} for the given roles, from a `readout_ablation` result."""
    table: dict = {}
    for run in result["runs"]:
        table.setdefault(run["seed"], {})[run["arm"]] = {r: run["best"][r]["score"] for r in roles}
    return table


def format_ablation(result: dict, roles) -> str:
    """A table: each role's best score and each sub-task's accuracy (rows), with and without the
    read-outs for every seed (columns), the untrained control's best score alongside."""
    runs = result["runs"]
    columns = [(r["seed"], r["arm"]) for r in runs]
    names = {"with_readouts": "with", "without_readouts": "without"}
    head = f"{'best head':<14}" + "".join(f"{names.get(a, a) + ' s' + str(s):>13}" for s, a in columns)
    lines = [head + f"{'control':>10}"]
    for role in roles:
        control = max(r["control"][role] for r in runs)
        lines.append(f"{role:<14}" + "".join(f"{r['best'][role]['score']:13.2f}" for r in runs)
                     + f"{control:10.2f}")
    lines.append("accuracy")
    for task in runs[0]["accuracy"]:
        lines.append(f"  {task:<12}" + "".join(f"{r['accuracy'][task]:13.2f}" for r in runs))
    return "\n".join(lines)
