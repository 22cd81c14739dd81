"""Time MiniLM's forward pass: the course's from-scratch NumPy and PyTorch encoders against
Hugging Face transformers' BertModel (eager attention), all float32, same local weights.

    python bench/pretrained.py                 # one thread per library (the default)
    python bench/pretrained.py --threads 2     # BLAS and torch on two threads
    python bench/pretrained.py --rounds 40     # more alternating rounds

The input is one sentence of exactly 16 word pieces ([CLS] and [SEP] included). All three return
the same things: the attention weights of every layer and head and every hidden state (the
transformers call asks for them with output_attentions and output_hidden_states; a line without
them is printed for reference). Timing: a few warm-up calls, then short alternating rounds
(NumPy, torch, transformers, ...), each round timing a block of calls with time.perf_counter; a
variant's time is the median over rounds, and each ratio is the median of the per-round ratios,
since the speed of a shared machine drifts. Outputs are compared before any timing.

Goal: NumPy <= 1.5x and torch <= 1.1x the time of transformers.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
import transformers
from threadpoolctl import threadpool_info, threadpool_limits

from mha_course.models.minilm import load_minilm, model_path, np_bert, torch_bert

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
N_PIECES = 16
GOALS = {"numpy": 1.5, "torch": 1.1}
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def print_environment(threads: int) -> None:
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    print(f"cores usable {len(os.sched_getaffinity(0))}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("thread env: " + ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in THREAD_ENV))
    for pool in threadpool_info():
        print(f"threadpoolctl: {pool['internal_api']} {pool.get('version')} "
              f"num_threads={pool['num_threads']} ({pool['user_api']})")
    print(f"torch intra-op threads {torch.get_num_threads()}, inter-op "
          f"{torch.get_num_interop_threads()}; requested --threads {threads}")


def block_time(fn, calls: int) -> float:
    """Seconds per call over a block of `calls` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (1)")
    parser.add_argument("--rounds", type=int, default=30, help="alternating rounds (30)")
    parser.add_argument("--calls", type=int, default=10, help="calls per variant and round (10)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    transformers.logging.disable_progress_bar()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        print_environment(args.threads)
        ours_np, ours_torch = load_minilm("numpy", "float32"), load_minilm("torch", "float32")
        hf = transformers.BertModel.from_pretrained(
            str(model_path()), attn_implementation="eager", local_files_only=True).eval()
        enc = ours_np.encode(SENTENCE)
        assert len(enc.tokens) == N_PIECES, f"{len(enc.tokens)} pieces: {enc.tokens}"
        eps = ours_np.config.layer_norm_eps
        ids, types = enc.input_ids[None], enc.token_type_ids[None]  # (1, n)
        ids_t, types_t = torch.as_tensor(ids), torch.as_tensor(types)

        def numpy_forward():
            return np_bert.encode(ours_np.params, ids, types, eps)

        @torch.inference_mode()  # as transformers' below: no graph is built
        def torch_forward():
            return torch_bert.encode(ours_torch.params, ids_t, types_t, eps)

        @torch.inference_mode()
        def hf_forward(outputs=True):
            return hf(input_ids=ids_t, token_type_ids=types_t, output_attentions=outputs,
                      output_hidden_states=outputs)

        variants = {"numpy": numpy_forward, "torch": torch_forward, "transformers": hf_forward,
                    "transformers (no attentions/hidden out)": lambda: hf_forward(False)}

        reference = torch.stack(hf_forward().attentions)[:, 0].numpy()  # (n_layers, n_heads, n, n)
        for name, out in (("numpy", numpy_forward().attentions[:, 0]),
                          ("torch", torch_forward().attentions[:, 0].numpy())):
            diff = float(np.abs(out - reference).max())
            print(f"{name}: max |attention - transformers| = {diff:.1e}")
            assert diff < 1e-4, f"{name} does not match transformers"

        for fn in variants.values():  # warm-up
            block_time(fn, 5)
        times = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                times[name].append(block_time(fn, args.calls))

    base = times["transformers"]
    print(f"\n{N_PIECES}-piece sentence, float32, {args.rounds} rounds x {args.calls} calls")
    print(f"{'variant':<42s}{'median ms':>10s}{'min ms':>9s}{'x transformers':>16s}")
    ratios = {}
    for name, ts in times.items():
        ratios[name] = statistics.median(t / b for t, b in zip(ts, base))
        print(f"{name:<42s}{statistics.median(ts) * 1e3:10.2f}{min(ts) * 1e3:9.2f}"
              f"{ratios[name]:16.2f}")
    for name, goal in GOALS.items():
        verdict = "met" if ratios[name] <= goal else "NOT met"
        print(f"{name} / transformers: {ratios[name]:.2f}x (goal <= {goal}x): {verdict}")


if __name__ == "__main__":
    main()
