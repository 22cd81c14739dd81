"""The read-out ablation: the recipe with and without its four auxiliary read-outs."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from mha_course.analysis import heads as H
from mha_course.experiments import objectives
from mha_course.models import toy_language, toy_model

TINY = toy_model.ToyConfig(n_layers=1, n_heads=2, d_model=16, d_k=8, d_v=8, d_ff=32,
                           n_train_sentences=60, n_eval_sentences=20, batch_size=4)


def test_arms_switch_only_the_readouts():
    with_readouts, without = objectives.ARMS
    default = toy_model.ToyConfig()
    weights = ("neighbour_loss", "closer_loss", "world_loss", "subject_loss")
    assert [getattr(with_readouts, w) for w in weights] == [getattr(default, w) for w in weights]
    assert [getattr(without, w) for w in weights] == [0.0] * 4


@pytest.mark.slow
def test_ablation_file_round_trips(tmp_path):
    path = objectives.write_readout_ablation(tmp_path / "ablation.json", seeds=(3,), steps=2,
                                             config=TINY, with_readouts=True)
    result = objectives.load_readout_ablation(path)
    assert [(r["seed"], r["arm"]) for r in result["runs"]] == [(3, "with_readouts"),
                                                                (3, "without_readouts")]
    assert result["command"] == ("python -m mha_course train-toy-ablation --seeds 3 --steps 2 "
                                 "--with-readouts --out FILE")
    assert result["config"]["steps"] == 2
    for run in result["runs"]:
        assert set(run["best"]) == set(H.ROLES)
        assert set(run["accuracy"]) == set(toy_language.SUBTASKS)
    without = result["runs"][1]
    assert without["neighbour_loss"] == without["closer_loss"] == 0.0
    assert without["world_loss"] == without["subject_loss"] == 0.0
    table = objectives.compare(result, ["local", "delimiter"])
    assert set(table[3]) == {"with_readouts", "without_readouts"}
    header = objectives.format_ablation(result, ["local"]).splitlines()[0]
    assert header.index("with s3") < header.index("without s3")


def test_the_checkpoint_is_the_arm_with_the_readouts():
    report = toy_model.load_report()
    run = objectives.checkpoint_run(report)
    config = toy_model.load().config
    for weight in ("neighbour_loss", "closer_loss", "world_loss", "subject_loss"):
        assert run[weight] == getattr(config, weight), weight
    assert asdict(config) == asdict(toy_model.ToyConfig()), "the checkpoint is not today's recipe"
    assert run["steps"] == config.steps and run["best"] is report["best"]


def test_the_shipped_ablation_trained_todays_recipe():
    result = objectives.load_readout_ablation()
    recipe = json.loads(json.dumps(asdict(toy_model.ToyConfig())))  # as JSON holds it
    stored = dict(result["config"])
    # written before the grammar was part of ToyConfig: it was the default grammar
    stored.setdefault("grammar", recipe["grammar"])
    stored.setdefault("head_dropout", 0.0)  # written before it existed: trained without it
    stored.setdefault("early_neighbour", 0.0)  # the same
    stored.setdefault("early_closer", 0.0)
    for key, off in (("head_overlap", 0.0), ("head_overlap_steps", None),
                     ("head_overlap_last", False), ("head_overlap_window", 0),
                     ("d_v", None), ("fused_optimizer", False), ("head_entropy", 0.0),
                     ("head_entropy_last", 0.0), ("head_entropy_warmup", 0),
                     ("right_neighbour", 0.0), ("order_loss", 0.0),
                     ("naming_loss", 0.0), ("apposition_loss", 0.0)):
        stored.setdefault(key, off)  # written before they existed: trained without them
    for key, value in recipe.items():
        assert stored[key] == value, f"readout_ablation.json is stale: {key}"
    assert (0, "without_readouts") in {(r["seed"], r["arm"]) for r in result["runs"]}
    assert result["command"].startswith("python -m mha_course train-toy-ablation --seeds 0")
    for run in result["runs"]:
        assert run["steps"] == recipe["steps"]
        # the toy sentences annotate every role, the subject's rare-word head included
        assert all(np.isfinite(run["best"][r]["score"]) for r in H.ROLES), run["arm"]
