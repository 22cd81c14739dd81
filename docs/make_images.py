"""Regenerate the README's pictures from the package: `python docs/make_images.py`.

docs/images/head_grid.png: every head of the trained toy model that ships with the course, on the
running example, each titled with the role it scored best on (notebook 03 draws the same grid).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

from mha_course.models import toy_language, toy_model
from mha_course.viz import head_grid

matplotlib.use("Agg")  # a script, not a notebook: write files, open no window

IMAGES = Path(__file__).resolve().parent / "images"
SENTENCE = "The quick brown fox jumps over the lazy dog."


def head_grid_image(path: Path = IMAGES / "head_grid.png") -> Path:
    model, report = toy_model.load(), toy_model.load_report()
    tokens = toy_language.tokenize(SENTENCE)
    weights = model.attention(tokens)  # (n_layers, n_heads, n, n)
    roles = {(h["layer"], h["head"]): h["role"] if h["role"] == "none" else
             f"{h['role']} {h[h['role']]:.2f}" for h in report["heads"]}
    titles = [f"L{layer}H{h} {roles[layer, h]}" for layer in range(weights.shape[0])
              for h in range(weights.shape[1])]
    fig = head_grid(weights, tokens, titles=titles, vmax=1.0, cell_size=1.9,
                    suptitle=f'"{SENTENCE}" through the toy model: every head, titled with the '
                             "role it scores best on (rows: queries, columns: keys)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no version stamp: stable bytes
    return path


if __name__ == "__main__":
    print("wrote", head_grid_image())
