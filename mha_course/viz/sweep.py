"""Is it always the same head? Views of a seed sweep (notebook 04): each seed's best-head score per
role next to an untrained model's (`plot_role_scores`), where each role's best head sits, counted
over seeds (`role_places`, `plot_role_places`), and the numbers of both as a table (`role_table`,
`format_role_table`).

They take the rows of a sweep file (`experiments.toy_sweep` writes them): dicts with "seed",
"best" {role: score or None}, "where" {role: "L1H6"} and "control" {role: score or None}, where
None (null in the file) is a role the run could not measure. They only count and draw.

    runs = toy_sweep.load_sweep()
    print(format_role_table(role_table(runs, roles)))
    plot_role_scores(runs, roles); plot_role_places(runs, roles, n_layers=2, n_heads=8)
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mha_course.viz.heatmap import annotate_cells
from mha_course.viz.palette import BLACK, BLUE, MID_GREY, ORANGE, SCORE_CMAP

__all__ = ["role_places", "role_table", "format_role_table", "plot_role_scores",
           "plot_role_places"]

_PLACE = re.compile(r"L(\d+)H(\d+)")  # "L1H6": layer 1, head 6
_PANELS_PER_ROW = 4


def _checked(runs, roles) -> tuple[list[dict], list[str]]:
    runs, roles = list(runs), list(roles)
    if not runs or not roles:
        raise ValueError(f"expected at least one run and one role; got {len(runs)} runs and "
                         f"roles {roles}")
    missing = sorted({r for run in runs for r in roles
                      if r not in run["best"] or r not in run["where"]})
    if missing:
        raise ValueError(f"the runs have no best head for {missing}; their roles are "
                         f"{sorted(runs[0]['best'])}")
    return runs, roles


def _scores(runs, role: str, key: str = "best") -> np.ndarray:
    """(n_runs,) each run's `key` score for `role`, NaN where the run has none."""
    return np.array([np.nan if run[key].get(role) is None else run[key][role] for run in runs],
                    dtype=float)  # (n_runs,)


def _places(runs, role: str) -> list[str]:
    """The best head's place ("L1H6") of each run that measured `role`."""
    return [run["where"][role] for run in runs if run["best"][role] is not None]


def role_places(runs, roles, n_layers: int, n_heads: int) -> dict[str, np.ndarray]:
    """{role: counts (n_layers, n_heads)}: how many runs put that role's best head at each
    (layer, head). Runs that could not measure the role (score None) are not counted."""
    runs, roles = _checked(runs, roles)
    counts = {}
    for role in roles:
        grid = np.zeros((n_layers, n_heads), dtype=int)  # (n_layers, n_heads)
        for place in _places(runs, role):
            match = _PLACE.fullmatch(place)
            if match is None or int(match[1]) >= n_layers or int(match[2]) >= n_heads:
                raise ValueError(f"a {role} head at {place!r}: expected a place like 'L1H6' "
                                 f"inside {n_layers} layers x {n_heads} heads")
            grid[int(match[1]), int(match[2])] += 1
        counts[role] = grid
    return counts


def role_table(runs, roles, role_min: float = 0.7) -> list[dict]:
    """One row per role, over the runs that measured it: "runs", the best head's "min",
    "median" and "max" score, "passed" (how many >= role_min), "control_max" (the untrained
    model's highest score over the runs), "places" (how many distinct (layer, head) the best head
    took) and the most common place with its count ("top_place", "top_count"). A role no run
    measured has None for each number."""
    runs, roles = _checked(runs, roles)
    rows = []
    for role in roles:
        scores, control = _scores(runs, role), _scores(runs, role, "control")
        measured = scores[np.isfinite(scores)].tolist()
        counted = Counter(_places(runs, role)).most_common(1)
        row = {"role": role, "runs": len(measured), "min": None, "median": None, "max": None,
               "passed": sum(s >= role_min for s in measured),
               "control_max": None if np.isnan(control).all() else float(np.nanmax(control)),
               "places": len(set(_places(runs, role))),
               "top_place": counted[0][0] if counted else None,
               "top_count": counted[0][1] if counted else 0}
        if measured:
            row.update(min=min(measured), median=statistics.median(measured), max=max(measured))
        rows.append(row)
    return rows


def format_role_table(rows, role_min: float = 0.7) -> str:
    """`role_table`'s rows as fixed-width text, one line per role."""
    def number(x):
        return "n/a" if x is None else f"{x:.2f}"

    lines = [f"{'role':<12}{'seeds':>6}{'min':>6}{'median':>7}{'max':>6}"
             f"{f'>= {role_min:g}':>9}{'control max':>13}{'places':>8}  most common place"]
    for r in rows:
        top = ("n/a" if r["top_place"] is None
               else f"{r['top_place']} ({r['top_count']} of {r['runs']})")
        lines.append(f"{r['role']:<12}{r['runs']:>6}{number(r['min']):>6}"
                     f"{number(r['median']):>7}{number(r['max']):>6}"
                     f"{str(r['passed']) + '/' + str(r['runs']):>9}"
                     f"{number(r['control_max']):>13}{r['places']:>8}  {top}")
    return "\n".join(lines)


def plot_role_scores(runs, roles, role_min: float = 0.7, ax=None) -> Figure:
    """Per role, each run's best-head score (blue dots, one per seed, spread sideways in seed
    order) with a black bar at their median, next to the best head of the run's untrained
    control (orange crosses); a dotted line at `role_min`; scores on a fixed 0-1 axis."""
    runs, roles = _checked(runs, roles)
    runs = sorted(runs, key=lambda run: run["seed"])
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * len(roles) + 3, 4), layout="constrained")
    spread = np.linspace(-0.1, 0.1, len(runs)) if len(runs) > 1 else np.zeros(1)  # (n_runs,)
    for k, role in enumerate(roles):
        first = k == 0
        trained, control = _scores(runs, role), _scores(runs, role, "control")  # (n_runs,) each
        ax.scatter(k - 0.17 + spread, trained, s=22, color=BLUE, marker="o", clip_on=False,
                   label="trained: best head (one dot per seed)" if first else None)
        ax.scatter(k + 0.17 + spread, control, s=22, color=ORANGE, marker="x", clip_on=False,
                   label="untrained control: best head" if first else None)
        if np.isfinite(trained).any():
            ax.plot([k - 0.32, k - 0.02], [np.nanmedian(trained)] * 2, color=BLACK, lw=2,
                    label="median over seeds" if first else None)
    ax.axhline(role_min, color=MID_GREY, ls=":", lw=1, label=f"role_min = {role_min:g}")
    ax.set_xticks(np.arange(len(roles)), roles, rotation=20)
    ax.set(xlabel="role", ylabel="best head's score", ylim=(0, 1),
           title=f"each role's best head over {len(runs)} seeds")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside, never on a dot
    return ax.figure


def plot_role_places(runs, roles, n_layers: int, n_heads: int) -> Figure:
    """Small multiples, one per role: a layer x head grid that counts the runs whose best head
    for that role sits there (the number on each cell; blank: no run), one colour scale from 0
    to the number of runs, the number of distinct places in each title."""
    runs, roles = _checked(runs, roles)
    counts = role_places(runs, roles, n_layers, n_heads)
    n_cols = min(_PANELS_PER_ROW, len(roles))
    n_rows = math.ceil(len(roles) / n_cols)
    size = (n_cols * (0.4 * n_heads + 0.8) + 1.2, n_rows * (0.4 * n_layers + 1.1) + 0.5)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=size, layout="constrained", squeeze=False)
    for ax in axes.flat[len(roles):]:
        ax.set_axis_off()
    for ax, role in zip(axes.flat, roles):
        grid = counts[role]  # (n_layers, n_heads)
        image = ax.imshow(np.ma.masked_equal(grid, 0), cmap=SCORE_CMAP, vmin=0, vmax=len(runs))
        annotate_cells(ax, image, grid, lambda value: str(int(value)), hide=grid == 0)
        for text in ax.texts:
            text.set_fontsize(9)
        ax.set_xticks(range(n_heads))
        ax.set_yticks(range(n_layers))
        places = int((grid > 0).sum())
        ax.set(xlabel="head", ylabel="layer",
               title=f"{role}: {places} place{'s' * (places != 1)}" if places
               else f"{role}: not measured")
    bar = fig.colorbar(image, ax=axes, label="seeds whose best head is there", shrink=0.8)
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"where each role's best head sits, over {len(runs)} seeds (blank: no seed)")
    return fig
