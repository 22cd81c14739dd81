"""Training the toy Transformer *with a report on its heads*: the role scores on held-out clean
sentences (every `log_every` steps and at the end), the offset baseline, the random-init control,
and heads.json next to the weights. `models.toy_model.train` trains; this module measures.

    model, report = toy_training.train(seed=1, steps=500, log_every=100)   # notebook 04
    python -m mha_course train-toy --out my_model                          # the same, saved
"""

from __future__ import annotations

import json

import numpy as np

from mha_course.analysis import heads as head_metrics
from mha_course.experiments import controls
from mha_course.models import toy_model
from mha_course.models.toy_model import ToyConfig, ToyTransformer

__all__ = ["train", "role_snapshot", "random_init_control", "heads_json", "rescore"]


def train(config: ToyConfig | None = None, seed: int = 0, out_dir=None,
          seconds: float | None = None, steps: int | None = None, progress: bool = True,
          log_every: int = 0) -> tuple[ToyTransformer, dict]:
    """`toy_model.train` with role reports: return the model and a report (time, steps,
    accuracies, every head's role scores, the best head per role, the offset baseline, and the
    same scores for a random-init model of the same shape: the control). `log_every` > 0 adds
    a snapshot every that many steps to report["history"] (roles emerging during training).
    With `out_dir`, writes model.safetensors, config.json and heads.json there."""
    config = config or ToyConfig()
    model, report = toy_model.train(config, seed=seed, seconds=seconds, steps=steps,
                                    progress=progress, log_every=log_every, snapshot=role_snapshot)
    held_out = toy_model.held_out_sentences(config, seed)
    report["control"] = random_init_control(model.config, held_out, seed)
    if out_dir is not None:
        toy_model.save(model, out_dir, heads_json(report))
    return model, report


def role_snapshot(model: ToyTransformer, sentences, steps: int, seconds: float) -> dict:
    """Accuracies and every head's role scores on held-out clean sentences."""
    model.eval()
    scores = head_metrics.head_scores(model.attentions(sentences), sentences)
    offset, baseline = head_metrics.fixed_offset_baseline(sentences)
    rare_offset, rare_baseline = head_metrics.fixed_offset_baseline(sentences, "rare_context")
    return {
        **toy_model.accuracy_snapshot(model, sentences, steps, seconds),
        "best": head_metrics.best_heads(scores),
        "syntactic_baseline": {"offset": offset, "score": baseline},
        "rare_word_baseline": {"offset": rare_offset, "score": rare_baseline},
        "scores": {k: np.round(np.asarray(v, dtype=float), 4).tolist() for k, v in scores.items()},
    }


def random_init_control(config: ToyConfig, sentences, seed: int = 0) -> dict:
    """The best score per role of an *untrained* model of the same shape: what chance gives."""
    model = controls.random_init_toy(config, seed + 1)  # not the trained model's initialisation
    scores = head_metrics.head_scores(model.attentions(sentences), sentences)
    best = head_metrics.best_heads(scores)  # NaN for a role the sentences cannot measure
    return {r: round(best[r]["score"], 4) for r in head_metrics.ROLES}


def heads_json(report: dict) -> dict:
    """The content of a checkpoint's heads.json from a `train` report: every head's scores and
    role (`analysis.heads.classify_heads`), the best heads, accuracies, time, control, history."""
    scores = report["scores"]
    roles = head_metrics.classify_heads({k: np.asarray(v, dtype=float) for k, v in scores.items()},
                                        syntactic_baseline=report["syntactic_baseline"]["score"])
    per_head = [{"layer": r["layer"], "head": r["head"], "role": r["role"],
                 **{k: scores[k][r["layer"]][r["head"]] for k in scores}} for r in roles]
    return {"heads": per_head, "best": report["best"],
            "syntactic_baseline": report["syntactic_baseline"],
            "rare_word_baseline": report.get("rare_word_baseline"),
            "accuracy": report["accuracy"], "training_seconds": report["seconds"],
            "training_steps": report["steps"], "ms_per_step": report.get("ms_per_step"),
            "threads": report.get("threads"), "control": report.get("control"),
            "history": report.get("history", [])}


def rescore(path=None, seed: int = 0) -> dict:
    """Measure a saved checkpoint's heads again with today's metrics (`analysis.heads`) on the
    held-out sentences of its training run (`seed`: the seed it was trained with) and rewrite its
    heads.json; the training fields (time, steps, threads, history) are kept. Returns the new
    heads.json content. For when the metrics change and the weights do not."""
    path = toy_model.checkpoint_dir(path)
    model = toy_model.load(path)
    old = toy_model.load_report(path)
    held_out = toy_model.held_out_sentences(model.config, seed)
    report = role_snapshot(model, held_out, old["training_steps"], old["training_seconds"])
    report.update(ms_per_step=old.get("ms_per_step"), threads=old.get("threads"),
                  history=old.get("history", []),
                  control=random_init_control(model.config, held_out, seed))
    content = heads_json(report)
    (path / "heads.json").write_text(json.dumps(content, indent=1))
    return content


