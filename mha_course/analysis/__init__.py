"""Analysis of attention heads: functions that take NumPy arrays and annotations, and never draw."""

from mha_course.analysis.heads import ROLES, best_heads, classify_heads, head_scores
from mha_course.analysis.real_roles import minilm_layer_profile, minilm_role_scores, with_syntax

# per-head outputs, probes, redundancy, importance and pruning, W^O (issue 5): used as modules,
# e.g. `from mha_course.analysis import probing; probing.probe_heads(...)`
from mha_course.analysis import (activations, contributions, multihead, probing,  # noqa: E402,F401
                                 pruning, redundancy)

__all__ = ["ROLES", "best_heads", "classify_heads", "head_scores", "minilm_role_scores",
           "minilm_layer_profile", "with_syntax", "activations", "contributions", "multihead",
           "probing", "pruning", "redundancy"]
