"""Run toy-model training experiments and print one line per seed (used for research/toy_lab_log.md).

    python research/toy_experiment.py --seeds 0 1 --steps 2000 --set n_heads=6 lr=0.003
"""
import argparse
import ast
import json
import sys

import numpy as np
import torch

from mha_course.models import toy_language as lang
from mha_course.models import toy_model
from mha_course.analysis import heads as H


def control(config, seed, sentences):
    torch.manual_seed(seed)
    model = toy_model.ToyTransformer(config).eval()
    scores = H.head_scores(model.attentions(sentences), sentences)
    return {r: round(float(np.nanmax(scores[r])), 3) for r in H.ROLES}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=None, help="default: ToyConfig().steps")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--control", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lang", nargs="*", default=[], help="toy_language constants, e.g. REPEAT_PROB=0.3")
    p.add_argument("--out", default=None, help="save each seed's model under OUT/seedS")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {}
    for kv in args.set:  # values are Python literals: 3, 0.003, None, True, 'sinusoid'
        k, v = kv.split("=")
        try:
            overrides[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            overrides[k] = v
    for kv in args.lang:  # research switches of the grammar (module constants)
        k, v = kv.split("=")
        setattr(lang, k, ast.literal_eval(v))
    if args.steps is not None:
        overrides["steps"] = args.steps
    config = toy_model.ToyConfig(**overrides)
    print("config", overrides, args.lang, "steps", config.steps, flush=True)
    results = []
    for seed in args.seeds:
        out_dir = None if args.out is None else f"{args.out}/seed{seed}"
        model, rep = toy_model.train(config, seed=seed, seconds=args.seconds, progress=False,
                                     out_dir=out_dir)
        best = {r: round(rep["best"][r]["score"], 2) for r in H.ROLES}
        where = {r: f'L{rep["best"][r]["layer"]}H{rep["best"][r]["head"]}' for r in H.ROLES}
        acc = {k: round(v, 3) for k, v in rep["accuracy"].items()}
        ok = all(v >= 0.7 for v in best.values()) and all(v >= 0.95 for v in acc.values())
        print(f"seed {seed}: {rep['seconds']:.1f}s {rep['steps']} steps "
              f"{1000 * rep['seconds'] / rep['steps']:.1f} ms/step ({args.threads} thr)  best {best}  at {where}  "
              f"acc {acc}  baseline {rep['syntactic_baseline']}  PASS={ok}", flush=True)
        if args.control:
            print("  control", control(config, seed, lang.generate(400, 10_000 + seed)), flush=True)
        results.append(rep)
    if args.json:
        json.dump(results, open(args.json, "w"))


if __name__ == "__main__":
    sys.exit(main())
