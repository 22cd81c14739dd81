"""A Hugging Face BERT folder on disk, checked before anything is read: what `load_bert` needs.

    config.json           model_type "bert": the sizes (any number of layers, heads, d_model)
    model.safetensors     the weights; else pytorch_model.bin (read with torch.load(...,
                          weights_only=True)); sharded (*.index.json) checkpoints too
    tokenizer.json        the fast tokenizer; else vocab.txt (WordPiece, built as transformers
                          builds it), cased or uncased per tokenizer_config.json's do_lower_case

A folder of another architecture (RoBERTa, GPT-2, DistilBERT ...) or without weights or a tokenizer
is refused with an error that names what is missing or unsupported and what the folder holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BertFolder", "inspect_folder", "WEIGHT_FILES", "TOKENIZER_FILES"]

# in the order transformers prefers them
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
OTHER_WEIGHTS = ("tf_model.h5", "flax_model.msgpack", "model.ckpt.index", "onnx/model.onnx")


@dataclass(frozen=True)
class BertFolder:
    """What a checked folder offers: its config.json (as a dict), the weights file to read, the
    tokenizer file (tokenizer.json or vocab.txt) and tokenizer_config.json ({} when absent)."""
    path: Path
    config: dict
    weights: Path
    tokenizer: Path
    tokenizer_config: dict


def _listing(path: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    return ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "") \
        if names else "nothing"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object; got {type(data).__name__}")
    return data


def _check_model_type(path: Path, config: dict) -> None:
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if model_type == "bert" or (model_type is None and architectures
                                and all(a.startswith("Bert") for a in architectures)):
        return
    raise ValueError(
        f"{path}/config.json describes model_type={model_type!r} (architectures {architectures}); "
        f"load_bert reads BERT-architecture checkpoints only (model_type 'bert': BERT-base, "
        f"BERT-large, MiniLM, a fine-tuned BERT). RoBERTa, DistilBERT, GPT-2 and other families "
        f"differ in their layers or their tokenizer and are not supported")


def inspect_folder(path) -> BertFolder:
    """Check that `path` is a BERT folder load_bert can read; FileNotFoundError or ValueError
    naming what is missing or unsupported, and what the folder holds, if not."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or pathlib.Path (a model folder); "
                        f"got {type(path).__name__}")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder: give the folder that holds config.json, "
                                f"the weights and the tokenizer (as save_pretrained writes it)")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json (a Hugging Face model folder needs "
                                f"one); the folder holds {_listing(path)}")
    config = _read_json(path / "config.json")
    _check_model_type(path, config)
    weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
    if weights is None:
        others = [f for f in OTHER_WEIGHTS if (path / f).is_file()]
        found = (f"it has only {others}: convert them with transformers "
                 f"(from_pretrained(..., from_tf=True) then save_pretrained)") if others \
            else f"the folder holds {_listing(path)}"
        raise FileNotFoundError(f"{path} has no PyTorch weights: expected one of "
                                f"{list(WEIGHT_FILES)}; {found}")
    tokenizer = next((path / f for f in TOKENIZER_FILES if (path / f).is_file()), None)
    if tokenizer is None:
        raise FileNotFoundError(f"{path} has no tokenizer: expected tokenizer.json or vocab.txt "
                                f"(save the tokenizer with tokenizer.save_pretrained into the same "
                                f"folder); the folder holds {_listing(path)}")
    tok_config = path / "tokenizer_config.json"
    return BertFolder(path=path, config=config, weights=weights, tokenizer=tokenizer,
                      tokenizer_config=_read_json(tok_config) if tok_config.is_file() else {})
