"""Training the induction model *with a report on its heads*: the previous-token score of every
head, the prefix-matching (induction) score, the duplicate-token score, the in-context-learning
score, K-composition between layers 0 and 1, each head's OV copying score, and the same pattern
scores for an untrained model of the same shape (the random-init control).
`models.induction.train` trains; this module measures with `analysis.circuits`.

    model, report = induction_training.train(seed=0, log_every=50)      # notebook 09
    python -m mha_course train-induction --layers 2 --seed 0 --out DIR   # the same, saved
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mha_course.analysis import circuits
from mha_course.models import induction
from mha_course.models.induction import AttnOnlyTransformer, InductionConfig

__all__ = ["train", "head_scores", "best_heads", "score_snapshot", "random_init_control",
           "head_ablation", "add_arguments", "run_cli", "PATTERN_SCORES"]

PATTERN_SCORES = ("previous_token", "prefix_matching", "duplicate_token")


def head_scores(attention: np.ndarray, tokens: np.ndarray) -> dict:
    """Every head's pattern scores, each (n_layers, n_heads), on attention (n_layers, batch,
    n_heads, n, n) over tokens (batch, n)."""
    return {"previous_token": circuits.previous_token_score(attention),
            "prefix_matching": circuits.prefix_matching_score(attention, tokens),
            "duplicate_token": circuits.duplicate_token_score(attention, tokens)}


def best_heads(scores: dict) -> dict:
    """The head that a circuit needs for each role, where it can be: the best previous-token
    head of layer 0 and the best prefix-matching head of the last layer (an induction head
    reads what a previous-token head wrote, so it cannot be in layer 0 of a 2-layer model; in a
    1-layer model the last layer is layer 0, where the control says what chance gives)."""
    out = {}
    for role, layer in (("previous_token", 0), ("prefix_matching", -1)):
        row = np.asarray(scores[role])[layer]  # (n_heads,)
        head = int(np.argmax(row))
        out[role] = {"layer": int(layer % np.asarray(scores[role]).shape[0]), "head": head,
                     "score": round(float(row[head]), 4)}
    return out


def score_snapshot(model: AttnOnlyTransformer, held_out: np.ndarray, step: int,
                   seconds: float) -> dict:
    """What a training snapshot logs: the best previous-token and prefix-matching heads and the
    in-context-learning score on the held-out doubled sequences."""
    scores = head_scores(model.run(held_out).attention, held_out)
    losses = induction.next_token_losses(model, held_out).mean(axis=0)  # (n - 1,)
    return {"best": best_heads(scores),
            "in_context_learning": round(circuits.in_context_learning_score(losses), 4)}


def _circuit_scores(model: AttnOnlyTransformer) -> dict:
    """Each head's OV copying score and, with two layers or more, K-composition scores[h0, h1]
    of the layer-0 heads into the layer-1 heads."""
    w = model.weights()
    copying = [[round(circuits.ov_copying_score(circuits.ov_circuit(
        w["W_E"], w["W_V"][layer, h], w["W_O"][layer, h], w["W_U"])), 4)
        for h in range(model.config.n_heads)] for layer in range(model.config.n_layers)]
    out = {"ov_copying": copying}
    if model.config.n_layers >= 2:
        out["k_composition"] = np.round(circuits.composition_scores(w, "k"), 4).tolist()
    return out


def random_init_control(config: InductionConfig, held_out: np.ndarray, seed: int = 0) -> dict:
    """The best scores (as `best_heads`) of an *untrained* model of the same shape, drawn with
    seed + 1 (not the trained model's initialisation): what chance gives."""
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        untrained = AttnOnlyTransformer(config).eval()
    best = best_heads(head_scores(untrained.run(held_out).attention, held_out))
    return {role: b["score"] for role, b in best.items()}


def head_ablation(model: AttnOnlyTransformer, tokens: np.ndarray, layer: int = 0) -> dict:
    """Remove each head of `layer` in turn (head gate 0) and measure what is left of the last
    layer's induction: {"removed": [None, 0, 1, ...], "prefix_matching": (1 + n_heads, n_heads)
    last-layer scores, "in_context_learning": (1 + n_heads,)}; row 0 is the intact model.
    Removing the previous-token head should destroy both; removing another head should not."""
    c = model.config
    if not 0 <= layer < c.n_layers - 1:
        raise ValueError(f"layer must be below the last layer (0..{c.n_layers - 2}) so that a "
                         f"later layer can lose something; got {layer} in a {c.n_layers}-layer "
                         "model")
    removed, prefix, icl = [None], [], []
    for head in [None, *range(c.n_heads)]:
        gates = np.ones((c.n_layers, c.n_heads))
        if head is not None:
            gates[layer, head] = 0
            removed.append(head)
        attention = model.run(tokens, head_gates=gates).attention
        prefix.append(circuits.prefix_matching_score(attention, tokens)[-1])  # (n_heads,)
        losses = induction.next_token_losses(model, tokens, gates).mean(axis=0)  # (n - 1,)
        icl.append(circuits.in_context_learning_score(losses))
    return {"layer": layer, "removed": removed,
            "prefix_matching": np.round(np.array(prefix), 4).tolist(),  # (1 + n_heads, n_heads)
            "in_context_learning": np.round(icl, 4).tolist()}


def train(config: InductionConfig | None = None, seed: int = 0, out_dir=None,
          steps: int | None = None, progress: bool = True,
          log_every: int = 0) -> tuple[AttnOnlyTransformer, dict]:
    """`models.induction.train` with the heads' scores: return the model and its report, with
    "scores" (every head's pattern scores, (n_layers, n_heads) lists), "best" (`best_heads`),
    "in_context_learning" (late minus early held-out loss, `circuits.in_context_learning_score`),
    "ov_copying" and "k_composition" (`_circuit_scores`), "ablation" (`head_ablation` of layer 0,
    with two layers or more) and "control" (`random_init_control`).
    `log_every` > 0: report["history"] holds the best heads and the in-context-learning score
    every that many steps (the phase change). With `out_dir`, writes the checkpoint there."""
    config = config or InductionConfig()
    model, report = induction.train(config, seed=seed, steps=steps, progress=progress,
                                    log_every=log_every, snapshot=score_snapshot)
    held_out = induction.held_out_sequences(model.config, seed)
    scores = head_scores(model.run(held_out).attention, held_out)
    report["scores"] = {k: np.round(v, 4).tolist() for k, v in scores.items()}
    report["best"] = best_heads(scores)
    report["in_context_learning"] = round(
        circuits.in_context_learning_score(report["position_loss"]), 4)
    report.update(_circuit_scores(model))
    if model.config.n_layers >= 2:
        report["ablation"] = head_ablation(model, held_out)
    report["control"] = random_init_control(model.config, held_out, seed)
    if out_dir is not None:
        induction.save(model, report, out_dir)
    return model, report


# ------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `python -m mha_course train-induction`."""
    parser.add_argument("--layers", type=int, default=2, help="attention layers (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the data and the weights")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder to write the checkpoint to (default: write nothing)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: InductionConfig)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: this model's matrices are too small to "
                             "gain from more, and on a busy machine two threads wait on each "
                             "other, docs/design/induction.md)")
    parser.add_argument("--log-every", type=int, default=0,
                        help="score the heads every this many steps (default: only at the end)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Train, print one JSON line (best heads, control, seconds, ms/step, load average)."""
    if args.threads < 1:
        print(f"error: --threads must be at least 1; got {args.threads}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)  # the float sums, and so the weights, depend on it
    try:
        config = replace(InductionConfig(), n_layers=args.layers)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    _, report = train(config, seed=args.seed, out_dir=args.out, steps=args.steps,
                      progress=not args.quiet, log_every=args.log_every)
    best = report["best"]
    print(json.dumps({
        "layers": args.layers, "seed": args.seed, "steps": report["steps"],
        "previous_token": best["previous_token"], "prefix_matching": best["prefix_matching"],
        "in_context_learning": report["in_context_learning"], "control": report["control"],
        "seconds": report["seconds"], "ms_per_step": report["ms_per_step"],
        "threads": report["threads"],
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "out": None if args.out is None else str(args.out)}))
    return 0
