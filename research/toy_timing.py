"""ms/step of the toy model's training step (forward, backward, AdamW, batch making), by threads.

    python research/toy_timing.py --threads 2 --steps 60 --set n_layers=2 n_heads=8 d_k=16

Measure in a quiet moment (check `uptime`): the 60 s budget of issue 3 is for 2 threads on an
idle 2-core machine. The first 10 steps are warm-up and are not timed.
"""
import argparse
import ast
import time

import numpy as np
import torch

from mha_course.models import toy_language as lang
from mha_course.models import toy_model


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--set", nargs="*", default=[])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=")
        overrides[k] = ast.literal_eval(v)
    config = toy_model.ToyConfig(**overrides)
    start = time.perf_counter()
    pool = lang.generate(config.n_train_sentences, seed=0)
    data_s = time.perf_counter() - start
    torch.manual_seed(0)
    model = toy_model.ToyTransformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    other = (1 - config.swap_share) / 2
    for step in range(args.steps + 10):
        if step == 10:
            t0 = time.perf_counter()
        batch = [pool[i] for i in rng.integers(len(pool), size=config.batch_size)]
        arrays = lang.corrupt_batch(batch, rng, config.corrupt_rate, kinds=(other, config.swap_share, other),
                                    sentence_flip=config.sentence_flip, transpose=config.transpose,
                                    relation_swap=config.relation_swap,
                                    protect_governors=config.protect_governors,
                                    case_flip=config.case_flip, swap_case=config.swap_case,
                                    case_flip_share=config.case_flip_share)
        loss = toy_model._loss(model, *[torch.from_numpy(a) for a in arrays])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    ms = 1000 * (time.perf_counter() - t0) / args.steps
    print(f"{overrides} threads {args.threads}: {ms:.1f} ms/step, data {data_s:.1f} s, "
          f"-> {config.steps} steps ~ {data_s + ms * config.steps / 1000:.0f} s")


if __name__ == "__main__":
    main()
