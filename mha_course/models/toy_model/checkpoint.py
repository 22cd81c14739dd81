"""Saving and loading toy Transformer checkpoints: model.safetensors, config.json and heads.json
(the measured roles, written by `mha_course.experiments.toy_training`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from safetensors.torch import load_file, save_file

from mha_course.models import toy_language as lang
from mha_course.models.toy_model.config import ToyConfig
from mha_course.models.toy_model.model import ToyTransformer

__all__ = ["DEFAULT_CHECKPOINT", "save", "load", "load_report", "checkpoint_dir", "attend_text"]

DEFAULT_CHECKPOINT = "toy_model"  # folder under mha_course/data/


def save(model: ToyTransformer, out_dir, report: dict | None = None) -> Path:
    """Write model.safetensors, config.json and (with a report: the content of heads.json, see
    `experiments.toy_training.heads_json`) heads.json to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(asdict(model.config), indent=2))
    if report is not None:
        (out / "heads.json").write_text(json.dumps(report, indent=1))
    return out


def load(path=None) -> ToyTransformer:
    """A trained model from a folder written by `save` (None: the checkpoint shipped in the
    package). A config.json written before a field existed loads with that field's old meaning:
    pre-LN blocks without `post_ln`, the default `Grammar` without `grammar`, values as wide as
    queries and keys without `d_v`."""
    path = checkpoint_dir(path)
    settings = json.loads((path / "config.json").read_text())
    settings.setdefault("post_ln", False)  # checkpoints written before post_ln existed are pre-LN
    settings.setdefault("d_v", None)  # ... and before d_v existed, d_v = d_k
    settings["grammar"] = lang.Grammar.from_dict(settings.get("grammar", {}))
    config = ToyConfig(**settings)
    model = ToyTransformer(config)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval()


def checkpoint_dir(path=None) -> Path:
    """The folder of a checkpoint (None: the one shipped in the package)."""
    if path is None:
        path = resources.files("mha_course") / "data" / DEFAULT_CHECKPOINT
    return Path(str(path))


def load_report(path=None) -> dict:
    """heads.json of a checkpoint (None: the shipped one): every head's role scores and role, the
    best head of each role, the offset baseline, sub-task accuracies, training time, the control."""
    return json.loads((checkpoint_dir(path) / "heads.json").read_text())


def attend_text(model: ToyTransformer):
    """A function text -> (tokens, weights (n_layers, n_heads, n, n)) for the head explorer."""
    def attend(text: str):
        tokens = lang.tokenize(text)
        return tokens, model.attention(tokens)
    return attend
