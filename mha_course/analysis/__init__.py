"""Analysis of attention heads: functions that take NumPy arrays (a model's `Cache`, attention
weights, per-head outputs) and annotations, and never draw, run or train a model."""

import importlib

from mha_course.analysis import activations, circuits, contributions, pruning
from mha_course.analysis.heads import ROLES, best_heads, classify_heads, head_scores
from mha_course.analysis.real_roles import minilm_layer_profile, minilm_role_scores, with_syntax

# Probes and redundancy are built on scikit-learn and SciPy, whose import takes seconds
# (`import sklearn.linear_model`: 5.7 s, `scipy.stats`: 4.2 s, against 0.5 s for NumPy, on the
# course's 2-core test machine, 2026-12-05). Every notebook imports the head metrics; only
# notebooks 06 and 07 probe or cluster heads, so these two modules load on first use:
# `from mha_course.analysis import probing` or `analysis.probing` both work.
_LAZY = ("probing", "redundancy")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ROLES", "best_heads", "classify_heads", "head_scores", "minilm_role_scores",
           "minilm_layer_profile", "with_syntax", "activations", "circuits", "contributions",
           "probing", "pruning", "redundancy"]
