"""Views of a seed sweep (`viz.sweep`, notebook 04's "Is it always the same head?"), on run dicts
made up here: what they count and what they draw."""

from __future__ import annotations

import statistics
from collections import Counter

import numpy as np
import pytest
from matplotlib.colors import to_hex

from mha_course.viz import palette
from mha_course.viz.sweep import (
    format_role_table,
    plot_role_places,
    plot_role_scores,
    role_places,
    role_table,
)

ROLES = ("local", "syntactic", "rare_word")
N_LAYERS, N_HEADS, N_RUNS = 2, 4, 9


def make_runs(seed: int = 0) -> list[dict]:
    """N_RUNS rows like a sweep file's, seeds in shuffled order; rare_word measured by none."""
    rng = np.random.default_rng(seed)
    runs = []
    for s in rng.permutation(N_RUNS):
        best = {"local": float(rng.uniform(0.6, 1.0)), "syntactic": float(rng.uniform(0, 1)),
                "rare_word": None}
        where = {r: f"L{rng.integers(N_LAYERS)}H{rng.integers(N_HEADS)}" for r in ROLES}
        where["local"] = "L1H0" if s % 3 else "L1H2"  # two places, 6 and 3 runs
        control = {"local": float(rng.uniform(0, 0.3)), "syntactic": float(rng.uniform(0, 0.3)),
                   "rare_word": None}
        runs.append({"seed": int(s), "best": best, "where": where, "control": control})
    return runs


def test_places_count_every_run_that_measured_the_role_once():
    runs = make_runs()
    counts = role_places(runs, ROLES, N_LAYERS, N_HEADS)
    for role in ("local", "syntactic"):
        assert counts[role].shape == (N_LAYERS, N_HEADS) and counts[role].sum() == N_RUNS
        expected = Counter(run["where"][role] for run in runs)
        for place, n in expected.items():
            assert counts[role][int(place[1]), int(place[3])] == n
    assert counts["local"][1, 0] == 6 and counts["local"][1, 2] == 3
    assert counts["rare_word"].sum() == 0  # None scores: not measured, not counted


@pytest.mark.parametrize("place", ["L2H0", "L0H4", "layer1", "L1H"])
def test_a_place_outside_the_grid_or_badly_written_is_refused(place):
    runs = make_runs()
    runs[0]["where"]["local"] = place
    with pytest.raises(ValueError, match=f"'{place}'.*{N_LAYERS} layers x {N_HEADS} heads"):
        role_places(runs, ["local"], N_LAYERS, N_HEADS)


def test_a_role_the_runs_lack_is_refused():
    with pytest.raises(ValueError, match=r"no best head for \['copy'\]"):
        role_table(make_runs(), ["local", "copy"])
    with pytest.raises(ValueError, match="at least one run"):
        plot_role_scores([], ROLES)


def test_the_table_gives_each_roles_spread_passes_control_and_places():
    runs = make_runs()
    rows = {row["role"]: row for row in role_table(runs, ROLES, role_min=0.7)}
    for role in ("local", "syntactic"):
        scores = [run["best"][role] for run in runs]
        row = rows[role]
        assert (row["runs"], row["min"], row["median"], row["max"]) == (
            N_RUNS, min(scores), statistics.median(scores), max(scores))
        assert row["passed"] == sum(s >= 0.7 for s in scores)
        assert row["control_max"] == max(run["control"][role] for run in runs)
        assert row["places"] == len({run["where"][role] for run in runs})
    assert (rows["local"]["places"], rows["local"]["top_place"], rows["local"]["top_count"]) == (
        2, "L1H0", 6)
    assert rows["rare_word"] | {"role": None} == {
        "role": None, "runs": 0, "min": None, "median": None, "max": None, "passed": 0,
        "control_max": None, "places": 0, "top_place": None, "top_count": 0}
    lines = format_role_table(list(rows.values()), role_min=0.7).splitlines()
    assert len(lines) == 1 + len(ROLES) and ">= 0.7" in lines[0]
    assert lines[1].split()[:2] == ["local", str(N_RUNS)] and "L1H0 (6 of 9)" in lines[1]
    assert lines[3].split()[1:3] == ["0", "n/a"]


def test_the_score_plot_shows_each_seed_and_its_control_on_a_fixed_0_1_axis():
    runs = make_runs()
    fig = plot_role_scores(runs, ROLES, role_min=0.7)
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(ROLES)
    assert ax.get_xlabel() and ax.get_ylabel() and str(N_RUNS) in ax.get_title()
    by_seed = sorted(runs, key=lambda run: run["seed"])
    colours = [to_hex(c.get_facecolor()[0]).upper() for c in ax.collections]
    trained = [c for c, colour in zip(ax.collections, colours) if colour == palette.BLUE]
    control = [c for c, colour in zip(ax.collections, colours) if colour == palette.ORANGE]
    assert len(trained) == len(control) == len(ROLES)
    for k, role in enumerate(ROLES):
        for dots, key, side in ((trained[k], "best", -1), (control[k], "control", 1)):
            points = np.ma.filled(np.ma.asarray(dots.get_offsets(), dtype=float), np.nan)
            assert points.shape == (N_RUNS, 2)  # one per seed, in seed order; NaN: not measured
            np.testing.assert_array_equal(points[:, 1], [np.nan if r[key][role] is None
                                                         else r[key][role] for r in by_seed])
            x = np.ma.getdata(dots.get_offsets())[:, 0]  # (N_RUNS,)
            assert np.all((side * (x - k) > 0) & (np.abs(x - k) < 0.5))  # beside its tick
    assert any(np.allclose(line.get_ydata(), 0.7) for line in ax.lines)  # the role_min line
    assert ax.get_legend() is not None and len(ax.get_legend().get_texts()) == 4


def test_the_place_plot_draws_one_count_grid_per_role_summing_to_the_runs():
    runs = make_runs()
    fig = plot_role_places(runs, ROLES, N_LAYERS, N_HEADS)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == len(ROLES)
    for ax, role in zip(panels, ROLES):
        grid = np.ma.filled(ax.images[0].get_array(), 0)  # (N_LAYERS, N_HEADS)
        assert grid.shape == (N_LAYERS, N_HEADS)
        assert grid.sum() == (0 if role == "rare_word" else N_RUNS)
        assert sum(int(t.get_text()) for t in ax.texts) == grid.sum()  # the numbers on the cells
        assert ax.images[0].get_clim() == (0, N_RUNS)  # one colour scale for every role
        assert ax.get_title().startswith(role) and ax.get_xlabel() == "head"
    assert panels[0].get_title() == "local: 2 places"
    assert panels[2].get_title() == "rare_word: not measured"
