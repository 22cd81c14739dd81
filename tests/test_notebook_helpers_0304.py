"""Helpers that keep notebook 04's cells short: role scores during training and against
controls."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from mha_course.viz import palette
from mha_course.viz.training import first_step_above, role_history_plot, role_score_bars

# three logs of a made-up run: local rises late, delimiter early, identity never
HISTORY = [
    {"steps": 100, "best": {"local": {"score": 0.2}, "delimiter": {"score": 0.8},
                            "identity": {"score": 0.1}}},
    {"steps": 200, "best": {"local": {"score": 0.69}, "delimiter": {"score": 0.6},
                            "identity": {"score": 0.3}}},
    {"steps": 300, "best": {"local": {"score": 0.7}, "delimiter": {"score": 0.9},
                            "identity": {"score": 0.2}}},
]


def test_first_step_above_is_the_first_log_at_or_over_the_threshold():
    got = first_step_above(HISTORY, ["local", "delimiter", "identity"], threshold=0.7)
    # local reaches 0.7 exactly at step 300 (at or above counts); the delimiter's later dip
    # does not move its first step; identity never gets there
    assert got == {"local": 300, "delimiter": 100, "identity": None}
    assert first_step_above(HISTORY, ["identity"], threshold=0.25) == {"identity": 200}


def test_role_history_plot_draws_each_role_and_the_threshold():
    roles = ["local", "delimiter", "identity"]
    fig = role_history_plot(HISTORY, roles, threshold=0.7)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    for role in roles:
        assert np.array_equal(lines[role].get_xdata(), [100, 200, 300])
        assert np.allclose(lines[role].get_ydata(), [h["best"][role]["score"] for h in HISTORY])
    colours = [lines[r].get_color() for r in roles]
    markers = [lines[r].get_marker() for r in roles]
    assert len(set(colours)) == len(set(markers)) == len(roles)  # told apart with or without colour
    assert all(c in palette.OKABE_ITO and c != palette.YELLOW for c in colours)  # no thin yellow
    flat = [line for line in ax.get_lines() if line.get_label() not in roles]
    assert [tuple(line.get_ydata()) for line in flat] == [(0.7, 0.7)]
    assert ax.get_xlabel() and ax.get_ylabel() and "0.7" in ax.get_title()


def test_role_score_bars_show_scores_controls_and_offsets():
    best = {"local": {"score": 0.9}, "syntactic": {"score": 0.8}}
    control = {"local": 0.1, "syntactic": 0.2}
    fig = role_score_bars(best, control, ["local", "syntactic"], baselines={"syntactic": (-2, 0.3)})
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [0.1, 0.2, 0.8, 0.9]
    trained = [p for p in ax.patches if p.get_facecolor()[:3] == to_rgb(palette.BLUE)]
    assert sorted(round(p.get_height(), 6) for p in trained) == [0.8, 0.9]
    offsets = [line for line in ax.get_lines() if line.get_label() == "best fixed offset"]
    assert len(offsets) == 1 and np.allclose(offsets[0].get_ydata(), 0.3)
    assert np.allclose(offsets[0].get_xdata(), [1 - 0.4, 1 + 0.4])  # across the syntactic bars
    assert [t.get_text() for t in ax.get_xticklabels()] == ["local", "syntactic"]


def test_bad_input_names_what_was_expected():
    with pytest.raises(ValueError, match="history is empty"):
        first_step_above([], ["local"])
    with pytest.raises(ValueError, match=r"no score for \['syntactic'\]"):
        role_history_plot(HISTORY, ["local", "syntactic"])
    with pytest.raises(ValueError, match=r"missing \['delimiter'\]"):
        role_score_bars({"local": {"score": 0.9}}, {"local": 0.1}, ["local", "delimiter"])
