"""Regenerate the README's pictures from the package: `python docs/make_images.py`.

docs/images/head_grid.png: every head of a freshly initialised 4-head layer (init_params, seed 0)
on the running example, the picture notebook 02 starts from. When a trained model ships, its
heads are the better picture; draw them here with the same `head_grid` call.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script, not a notebook: write files, open no window

from mha_course.examples import running_example  # noqa: E402
from mha_course.np_attention import init_params, multi_head_attention  # noqa: E402
from mha_course.viz import head_grid  # noqa: E402

IMAGES = Path(__file__).resolve().parent / "images"


def head_grid_image(path: Path = IMAGES / "head_grid.png") -> Path:
    ex = running_example()
    params = init_params(d_model=16, n_heads=4, seed=0)
    weights = multi_head_attention(ex.X, ex.X, params).weights  # (n_heads, n, n)
    fig = head_grid(weights, ex.tokens, cell_size=2.4,
                    suptitle=f'"{ex.sentence}": four randomly initialised heads, four views '
                             "(rows: queries, columns: keys)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, metadata={"Software": None})  # no version stamp: stable bytes
    return path


if __name__ == "__main__":
    print("wrote", head_grid_image())
