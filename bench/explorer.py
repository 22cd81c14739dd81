"""How fast does the head explorer redraw when a slider moves? (goal: median <= 100 ms)

Runs the explorer in this process, which is what the kernel does when a slider's value arrives:
the callback draws the figure, renders the PNG and sets the Image widget. The browser's own part
(receiving and painting the PNG) is measured by the browser tests, not here.

Two models plug into the same panel: the toy model of notebooks 03-04 (2 layers x 8 heads) and
MiniLM of notebook 05 (6 layers x 12 heads, `MiniLM.attend`). For MiniLM the first sentence's
forward pass happens when the panel is built and is timed on its own line; the slider moves after
it only redraw (the panel caches each sentence's attention).

    .venv/bin/python bench/explorer.py [--model toy|minilm|both] [--moves 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import matplotlib
import numpy as np
import torch

from mha_course.models import toy_language, toy_model
from mha_course.viz.explorer import VIEWS, explore

matplotlib.use("Agg")  # the explorer renders its own PNGs; no window, no inline display

RUNNING_EXAMPLE = "The quick brown fox jumps over the lazy dog."


def time_moves(panel, moves: int) -> float:
    """Move the head and layer sliders `moves` times in every view; print median, p90 and max
    per view and control; return the slowest median (ms)."""
    n_layers, n_heads = panel.weights.shape[:2]
    print(f"{'view':<11s}{'control':<10s}{'median ms':>10s}{'p90 ms':>8s}{'max ms':>8s}")
    worst = 0.0
    for view in VIEWS:
        panel.view.value = view
        for control, size in (("head", n_heads), ("layer", n_layers)):
            slider = getattr(panel, control)
            times = []
            for i in range(moves):
                start = time.perf_counter()
                slider.value = (slider.value + 1) % size
                times.append((time.perf_counter() - start) * 1e3)
            median = statistics.median(times)
            worst = max(worst, median)
            print(f"{view:<11s}{control:<10s}{median:10.1f}{np.percentile(times, 90):8.1f}"
                  f"{max(times):8.1f}")
    return worst


def bench_toy(moves: int) -> float:
    try:
        model, which = toy_model.load(), "shipped checkpoint"
    except (FileNotFoundError, OSError):  # the redraw cost does not depend on the weights
        torch.manual_seed(0)
        model, which = toy_model.ToyTransformer(toy_model.ToyConfig()).eval(), "random init"
    sentences = {" ".join(s.tokens): s for s in toy_language.generate(8, seed=0)}

    def attend(text):
        sentence = sentences[text]
        return sentence.tokens, model.attention(sentence)

    panel = explore(attend, list(sentences))
    n_layers, n_heads = panel.weights.shape[:2]
    print(f"toy model ({which}): {n_layers} layers x {n_heads} heads, "
          f"{len(panel.tokens)} tokens in the first sentence; {moves} moves per view")
    worst = time_moves(panel, moves)
    start = time.perf_counter()
    panel.sentence.value = list(sentences)[1]
    print(f"new sentence (model run + redraw): {(time.perf_counter() - start) * 1e3:.1f} ms")
    return worst


def bench_minilm(moves: int) -> float:
    from mha_course.analysis.alignment import load_corpus
    from mha_course.models.minilm import load_minilm

    model = load_minilm()  # NumPy backend, float32: what notebook 05 uses
    sentences = [RUNNING_EXAMPLE] + load_corpus()[:5]
    start = time.perf_counter()
    panel = explore(model.attend, sentences)  # runs the model on the first sentence, then draws
    first = (time.perf_counter() - start) * 1e3
    n_layers, n_heads = panel.weights.shape[:2]
    print(f"MiniLM (numpy, float32): {n_layers} layers x {n_heads} heads, {len(panel.tokens)} "
          f"pieces in the first sentence; {moves} moves per view")
    print(f"first sentence (forward pass + first draw): {first:.1f} ms")
    worst = time_moves(panel, moves)
    panel.view.value = "heatmap"
    start = time.perf_counter()
    panel.sentence.value = sentences[1]
    print(f"new sentence, {len(panel.tokens)} pieces (forward pass + redraw): "
          f"{(time.perf_counter() - start) * 1e3:.1f} ms")
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("toy", "minilm", "both"), default="both",
                        help="which model's explorer to time (default: both)")
    parser.add_argument("--moves", type=int, default=30, help="slider moves per view")
    args = parser.parse_args(argv)

    results = {}
    if args.model in ("toy", "both"):
        results["toy model"] = bench_toy(args.moves)
    if args.model in ("minilm", "both"):
        if results:
            print()
        results["MiniLM"] = bench_minilm(args.moves)
    print()
    for name, worst in results.items():
        print(f"{name}: slowest view's median redraw {worst:.1f} ms (goal <= 100 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
