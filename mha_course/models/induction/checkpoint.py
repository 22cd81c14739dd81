"""Saving and loading induction-model checkpoints: model.safetensors, config.json and
report.json (the training report, with the heads' scores when
`mha_course.experiments.induction_training` trained it)."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from safetensors.torch import load_file, save_file

from mha_course.models.induction.config import InductionConfig
from mha_course.models.induction.model import AttnOnlyTransformer

__all__ = ["DEFAULT_CHECKPOINT", "save", "load_induction", "load_report", "checkpoint_dir"]

DEFAULT_CHECKPOINT = "induction"  # folder under mha_course/data/


def save(model: AttnOnlyTransformer, report: dict | None, out_dir) -> Path:
    """Write model.safetensors, config.json and (with a report) report.json to out_dir."""
    if not isinstance(model, AttnOnlyTransformer):
        raise TypeError(f"model must be an AttnOnlyTransformer; got {type(model).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(asdict(model.config), indent=2))
    if report is not None:
        (out / "report.json").write_text(json.dumps(report, indent=1))
    return out


def checkpoint_dir(path=None) -> Path:
    """The folder of a checkpoint (None: the one shipped in the package)."""
    if path is None:
        path = resources.files("mha_course") / "data" / DEFAULT_CHECKPOINT
    path = Path(str(path))
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} is not an induction checkpoint: it needs config.json and "
                                "model.safetensors (written by `python -m mha_course "
                                "train-induction --out DIR`)")
    return path


def load_induction(path=None) -> AttnOnlyTransformer:
    """A trained model, in eval mode, from a folder written by `save` (None: the checkpoint
    shipped in the package)."""
    path = checkpoint_dir(path)
    model = AttnOnlyTransformer(InductionConfig(**json.loads((path / "config.json").read_text())))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval()


def load_report(path=None) -> dict:
    """report.json of a checkpoint (None: the shipped one)."""
    return json.loads((checkpoint_dir(path) / "report.json").read_text())
