"""One training run; prints one JSON line (research sweep on many cores)."""
import json, sys, time
import numpy as np
import torch
torch.set_num_threads(1)
from mha_course.models import toy_model
from mha_course.analysis import heads as H

name, seed, steps, overrides = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
config = toy_model.ToyConfig(steps=steps, **overrides)
model, rep = toy_model.train(config, seed=seed, progress=False)
best = {r: round(rep["best"][r]["score"], 3) for r in H.ROLES}
where = {r: f'L{rep["best"][r]["layer"]}H{rep["best"][r]["head"]}' for r in H.ROLES}
acc = {k: round(v, 3) for k, v in rep["accuracy"].items()}
ok_roles = all(v >= 0.7 for v in best.values())
ok_syn = best["syntactic"] >= rep["syntactic_baseline"]["score"] + 0.2
ok_acc = all(v >= 0.95 for v in acc.values())
print(json.dumps({"name": name, "seed": seed, "s": rep["seconds"], "best": best, "where": where, "acc": acc,
                  "control": rep["control"], "pass": ok_roles and ok_syn and ok_acc}), flush=True)
