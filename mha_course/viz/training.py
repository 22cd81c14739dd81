"""Role scores as static figures (notebook 04): how each role's best head grows during training
(`role_history_plot`, `first_step_above`) and the trained heads next to an untrained model's and
the fixed-offset baseline (`role_score_bars`). Functions of scores only; they never train.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mha_course.viz.palette import (
    BLACK,
    BLUE,
    MID_GREY,
    OKABE_ITO,
    ORANGE,
    YELLOW,
    categorical,
)

__all__ = ["role_history_plot", "first_step_above", "role_score_bars"]

_MARKERS = "osD^v<>P*X"  # one marker per role, so that the lines differ without colour too


def _history_scores(history, roles) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(steps (n_logs,), {role: best head's score at each log (n_logs,)}) of a training history."""
    history, roles = list(history), list(roles)
    if not history:
        raise ValueError("history is empty: train with log_every > 0 to record role scores")
    if not roles:
        raise ValueError("roles is empty: name at least one role, e.g. ['local']")
    missing = sorted({r for h in history for r in roles if r not in h.get("best", {})})
    if missing:
        raise ValueError(f"the history has no score for {missing}; its roles are "
                         f"{sorted(history[0].get('best', {}))}")
    steps = np.array([h["steps"] for h in history])  # (n_logs,)
    return steps, {r: np.array([h["best"][r]["score"] for h in history], dtype=float)
                   for r in roles}


def first_step_above(history, roles, threshold: float = 0.7) -> dict[str, int | None]:
    """For each role, the first logged training step at which its best head scores at least
    `threshold`, or None if it never does. `history` is `experiments.toy_training.train`'s list of
    {"steps": int, "best": {role: {"score": float, ...}}}."""
    steps, scores = _history_scores(history, roles)
    return {role: (int(steps[np.argmax(s >= threshold)]) if (s >= threshold).any() else None)
            for role, s in scores.items()}


def role_history_plot(history, roles, *, threshold: float = 0.7, ax=None) -> Figure:
    """Each role's best-head score during training: one line per role against the training
    step, a dotted reference line at `threshold`. `history` as for `first_step_above`."""
    steps, scores = _history_scores(history, roles)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    for (role, s), colour, marker in zip(scores.items(), _line_colours(len(scores)),
                                         _MARKERS * len(scores)):
        ax.plot(steps, s, marker=marker, color=colour, label=role)
    ax.axhline(threshold, color=MID_GREY, ls=":", lw=1)
    ax.set(xlabel="training step", ylabel="best head's score", ylim=(0, 1.05),
           title=f"each role's best head during training (dotted: {threshold:g})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside, never on a line
    return ax.figure


def _line_colours(n: int) -> list[str]:
    """n Okabe-Ito colours for thin lines: yellow, hard to see on white, only when all are
    needed."""
    without_yellow = [c for c in OKABE_ITO if c != YELLOW]
    return without_yellow[:n] if n <= len(without_yellow) else categorical(n)


def role_score_bars(best, control, roles, *, baselines=None, threshold: float = 0.7,
                    ax=None) -> Figure:
    """For each role, the trained model's best head (blue) next to the best head of a randomly
    initialised model of the same shape (orange), and, for the roles in `baselines`, the best
    fixed offset as a black line across both bars.

    best: {role: {"score": float, ...}} (heads.json's "best"); control: {role: float};
    baselines: {role: (offset, score)} as `analysis.heads.fixed_offset_baseline` returns.
    """
    roles, baselines = list(roles), dict(baselines or {})
    missing = [r for r in roles if r not in best or r not in control]
    if missing or not roles:
        raise ValueError(f"best and control need a score for every role; missing {missing} "
                         f"of {roles}")
    x = np.arange(len(roles))  # (n_roles,)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    ax.bar(x - 0.2, [best[r]["score"] for r in roles], 0.4, color=BLUE, label="trained: best head")
    ax.bar(x + 0.2, [control[r] for r in roles], 0.4, color=ORANGE, hatch="//",
           label="random init: best head")
    shown = [(k, baselines[r][1]) for k, r in enumerate(roles) if r in baselines]
    for i, (k, score) in enumerate(shown):
        ax.plot([k - 0.4, k + 0.4], [score] * 2, color=BLACK, lw=2,
                label="best fixed offset" if i == 0 else None)
    ax.axhline(threshold, color=MID_GREY, ls=":", lw=1)
    ax.set_xticks(x, roles, rotation=20)
    ax.set(ylabel="score", ylim=(0, 1.05),
           title="trained heads vs an untrained model of the same shape")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax.figure
