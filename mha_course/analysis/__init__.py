"""Analysis of attention heads: functions that take NumPy arrays and annotations, and never draw."""

from mha_course.analysis.heads import ROLES, best_heads, classify_heads, head_scores
from mha_course.analysis.real_roles import minilm_layer_profile, minilm_role_scores, with_syntax

# per-head outputs, probes, redundancy, importance and pruning, W^O (issue 5): used as modules,
# e.g. `from mha_course.analysis import probing; probing.probe_heads(...)`. Loaded on first use,
# so that importing the head metrics (every notebook does) does not also import scikit-learn.
_LAZY = ("activations", "contributions", "probing", "pruning", "redundancy")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["ROLES", "best_heads", "classify_heads", "head_scores", "minilm_role_scores",
           "minilm_layer_profile", "with_syntax", "activations", "contributions",
           "probing", "pruning", "redundancy"]
