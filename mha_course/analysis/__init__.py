"""Analysis of attention heads: functions that take NumPy arrays and annotations, and never draw."""

from mha_course.analysis.heads import ROLES, best_heads, classify_heads, head_scores

__all__ = ["ROLES", "best_heads", "classify_heads", "head_scores"]
