"""Train one seed with periodic snapshots; print the best score per role and accuracies per snapshot."""
import ast
import sys
import torch
from mha_course.models import toy_model
from mha_course.analysis.heads import ROLES

torch.set_num_threads(1)
seed, steps, every = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
overrides = dict(kv.split("=") for kv in sys.argv[4:])
cfg = toy_model.ToyConfig(steps=steps, **{k: ast.literal_eval(v) for k, v in overrides.items()})
print(overrides, flush=True)
model, rep = toy_model.train(cfg, seed=seed, progress=False, log_every=every, out_dir=f"/tmp/toy_runs/{seed}_" + "_".join(sys.argv[4:]))
for snap in rep["history"]:
    best = {r: f'{snap["best"][r]["score"]:.2f}@L{snap["best"][r]["layer"]}H{snap["best"][r]["head"]}' for r in ROLES}
    acc = {k: round(v, 2) for k, v in snap["accuracy"].items()}
    print(snap["steps"], f'{snap["seconds"]:.0f}s', best, acc, flush=True)
import numpy as np
s = rep["scores"]
for r in ROLES + ("entropy",):
    print(r, np.round(np.array(s[r]), 2).tolist())
