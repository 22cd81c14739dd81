"""Time multi-head self-attention: the course's NumPy and PyTorch cores against torch's own.

    python bench/attention.py                     # batch 8, n 128 and 512, d_model 256, 8 heads
    python bench/attention.py --n 64 --heads 4    # other sizes (each flag takes one or more values)
    python bench/attention.py --stages            # also split the NumPy batched time by stage

Everything is float32, self-attention (X_kv is X_q), no mask, on the CPU, with biases unless
--no-bias (without them nn.MultiheadAttention cannot take its native fused kernel). Each variant is
timed alone: a pause so the other library's worker threads stop spinning, a few warm-up calls, then
the median of several calls timed with time.perf_counter; the `others` column says how much CPU
other processes took meanwhile. FLOPs count the matmuls only (softmax, bias and reshapes are
ignored), so GFLOP/s is comparable with the plain matmuls measured in the same run. The goal line
takes the median ratio over short alternating NumPy / torch rounds, since the speed of a shared
machine drifts between runs. Before any timing, every variant's output is compared with a float64
NumPy reference.

"F.sdpa + projections" times: F.linear(X, in_proj_weight, in_proj_bias) (one fused QKV projection),
a view/permute to per-head (batch, n_heads, n, d_k), F.scaled_dot_product_attention (no mask, no
dropout, default 1/sqrt(d_k) scale; no attention weights are formed), the transpose/reshape that
concatenates the heads, and F.linear with out_proj.

This script reads the thread settings of the environment (OPENBLAS_*, OMP_*, ...) and never
changes them; it only sets torch's intra-op thread count to the number of usable cores.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import itertools
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mha_course import np_attention, torch_attention
from mha_course.params import MHAParams

SETTLE_S = 0.25  # OpenBLAS workers spin ~0.1 s after a call; on 2 cores they would steal from torch
MIN_WINDOW_S = 0.3  # time fast calls for at least this long
REFERENCE = "nn.MHA need_weights=True"  # the goal's "torch": the same work, per-head weights out
THREAD_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "KMP_", "GOMP_", "GOTO_", "BLIS_", "NPY_")
THREAD_ENV_SHOWN = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Config:
    batch: int
    n: int
    d_model: int
    n_heads: int

    @property
    def d_k(self) -> int:
        return self.d_model // self.n_heads

    def flops(self) -> int:
        """Matmul FLOPs of one forward pass (d_k = d_v = d_model / n_heads, n_q = n_k = n)."""
        B, n, d, h, d_k = self.batch, self.n, self.d_model, self.n_heads, self.d_k
        projections = 4 * 2 * B * n * d * (h * d_k)  # Q, K, V and the output projection
        scores = 2 * B * h * n * n * d_k  # Q K^T
        mix = 2 * B * h * n * n * d_k  # A V (d_v = d_k)
        return projections + scores + mix

    def __str__(self) -> str:
        return (f"batch {self.batch}, n {self.n}, d_model {self.d_model}, {self.n_heads} heads "
                f"(d_k {self.d_k})")


@dataclass
class Timing:
    median_s: float
    min_s: float
    calls: int
    others: float  # share of all cores that other processes used meanwhile (nan if unknown)


def _busy_cpu_s() -> tuple[float, float]:
    """(CPU seconds all processes have used, CPU seconds this process has used) so far."""
    own = os.times()
    try:
        with open("/proc/stat") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        return float("nan"), own.user + own.system
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system


def time_it(fn: Callable[[], object], *, warmup: int, repeat: int, max_s: float) -> Timing:
    """Median of `repeat` calls: at least 3, fewer once `max_s` seconds are spent, more while
    they take under MIN_WINDOW_S (so that `others`, counted in 10 ms clock ticks, means
    something)."""
    time.sleep(SETTLE_S)
    for _ in range(warmup):
        fn()
    times: list[float] = []
    spent = 0.0
    busy0, own0 = _busy_cpu_s()
    while len(times) < 3 or (spent < max_s and (len(times) < repeat or spent < MIN_WINDOW_S)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    busy1, own1 = _busy_cpu_s()
    others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (spent * usable_cores())
    return Timing(statistics.median(times), min(times), len(times), others)


# ----------------------------------------------------------------------------------------------
# What the machine and the libraries are doing


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _openblas_probe() -> list[str]:
    """Core type and thread count straight from the OpenBLAS that NumPy loaded (ctypes)."""
    libs = set()
    try:
        with open("/proc/self/maps") as maps:
            libs = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    lines = []
    for path in sorted(libs):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""),
                               ("openblas_", "64_"), ("openblas_", "")):
            get_core = getattr(lib, f"{prefix}get_corename{suffix}", None)
            if get_core is None:
                continue
            get_core.restype = ctypes.c_char_p
            get_threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
            get_threads.restype = ctypes.c_int
            lines.append(f"{os.path.basename(path)}: core {get_core().decode()}, "
                         f"{get_threads()} threads")
            break
    return lines


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def print_environment(torch_threads: int) -> None:
    print("== Environment")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}; "
          f"{cpu_name()}, {usable_cores()} usable cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    shown = {k: os.environ.get(k, "(unset)") for k in THREAD_ENV_SHOWN}
    shown.update({k: val for k, val in os.environ.items() if k.startswith(THREAD_ENV_PREFIXES)})
    print("thread env: " + ", ".join(f"{k}={val}" for k, val in sorted(shown.items())))

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        for pool in threadpool_info():
            print(f"threadpoolctl: {pool.get('internal_api')} {pool.get('version')} "
                  f"({os.path.basename(pool.get('filepath', ''))}), "
                  f"{pool.get('num_threads')} threads, core {pool.get('architecture')}")
    else:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        config = " ".join(str(blas.get("openblas configuration", "")).split())
        print(f"numpy BLAS (show_config; threadpoolctl not installed): {blas.get('name')} "
              f"{blas.get('version')} {config}")
        for line in _openblas_probe():
            print(f"numpy BLAS at run time: {line}")
    torch_cfg = torch.__config__.show()
    torch_blas = next((part.split("=", 1)[1] for part in torch_cfg.replace(",", " ").split()
                       if part.startswith("BLAS_INFO=")), "?")
    print(f"torch: BLAS {torch_blas}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"intra-op threads {torch.get_num_threads()} (set to {torch_threads}), "
          f"inter-op threads {torch.get_num_interop_threads()}")
    if os.getloadavg()[0] > 0.5 * usable_cores():
        print("WARNING: the machine is busy (load average above half the cores): timings are noisy")
    print()


# ----------------------------------------------------------------------------------------------
# The variants


def make_params(cfg: Config, bias: bool, seed: int) -> MHAParams:
    params = np_attention.init_params(cfg.d_model, cfg.n_heads, bias=bias, seed=seed,
                                      dtype=np.float32)
    if bias:  # init_params gives zero biases; random ones make the agreement check meaningful
        rng = np.random.default_rng(seed + 1)

        def rand(a):
            return (0.1 * rng.standard_normal(a.shape)).astype(np.float32)

        params = dataclasses.replace(params, b_Q=rand(params.b_Q), b_K=rand(params.b_K),
                                     b_V=rand(params.b_V), b_O=rand(params.b_O))
    return params


def torch_path(mha: torch.nn.MultiheadAttention, X: torch.Tensor, **kw) -> str:
    """Which kernel nn.MultiheadAttention dispatches to for these arguments (one tiny call)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class SeenOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    x = X[:1, :4]
    with torch.no_grad(), SeenOps() as seen:
        mha(x, x, x, **kw)
    if "_native_multi_head_attention" in seen.names:
        return "native fused MHA kernel"
    if any("scaled_dot_product" in name for name in seen.names):
        return "F.mha_forward -> sdpa"  # F.multi_head_attention_forward
    return "F.mha_forward, explicit softmax"


def make_variants(cfg: Config, params: MHAParams, X: np.ndarray):
    """[(name, call, how)]: each call() returns (out, per-head weights or None), self-attention."""
    B, n, d, h, d_k = cfg.batch, cfg.n, cfg.d_model, cfg.n_heads, cfg.d_k
    Xt = torch.from_numpy(X)  # shares memory with X
    params_t = params.map(torch.from_numpy)  # tensors, so no conversion is timed
    mha = torch_attention.to_torch_mha(params).eval()
    W_in, b_in = mha.in_proj_weight.detach(), mha.in_proj_bias  # (3 d_model, d_model)
    W_out, b_out = mha.out_proj.weight.detach(), mha.out_proj.bias  # (d_model, d_model)
    b_in = None if b_in is None else b_in.detach()
    b_out = None if b_out is None else b_out.detach()

    def sdpa_mha():
        qkv = F.linear(Xt, W_in, b_in)  # (B, n, 3 d_model), one fused projection
        q, k, v = qkv.view(B, n, 3, h, d_k).permute(2, 0, 3, 1, 4)  # each (B, h, n, d_k)
        z = F.scaled_dot_product_attention(q, k, v)  # (B, h, n, d_k)
        return F.linear(z.transpose(1, 2).reshape(B, n, d), W_out, b_out), None  # (B, n, d_model)

    with_w = {"need_weights": True, "average_attn_weights": False}
    return [
        ("NumPy batched", lambda: np_attention.multi_head_attention(X, X, params)[:2],
         "np_attention.multi_head_attention"),
        ("NumPy per-head loop", lambda: np_attention.multi_head_attention_loop(X, X, params)[:2],
         "np_attention.multi_head_attention_loop"),
        ("course torch", lambda: torch_attention.multi_head_attention(Xt, Xt, params_t)[:2],
         "torch_attention.multi_head_attention"),
        ("nn.MHA need_weights=True", lambda: mha(Xt, Xt, Xt, **with_w),
         torch_path(mha, Xt, **with_w)),
        ("nn.MHA need_weights=False", lambda: mha(Xt, Xt, Xt, need_weights=False),
         torch_path(mha, Xt, need_weights=False)),
        ("F.sdpa + projections", sdpa_mha, "linear(QKV) + sdpa + linear(O)"),
    ]


def check_agreement(cfg: Config, params, X, variants, tol: float) -> bool:
    """Max |difference| of every variant's output (and weights) from a float64 NumPy reference."""
    ref_out, ref_w = np_attention.multi_head_attention(
        X.astype(np.float64), X.astype(np.float64), params.map(lambda a: a.astype(np.float64)))[:2]
    ok = True
    parts = []
    for name, call, _ in variants:
        with torch.no_grad():
            out, weights = call()
        out = np.asarray(out)
        is_float32 = out.dtype == np.float32 and out.shape == ref_out.shape
        d_out = float(np.abs(out.astype(np.float64) - ref_out).max()) if is_float32 else np.inf
        text = f"{name}: out {d_out:.1e}"
        bad = not d_out <= tol
        if weights is not None:
            weights = np.asarray(weights)
            d_w = (float(np.abs(weights.astype(np.float64) - ref_w).max())
                   if weights.dtype == np.float32 and weights.shape == ref_w.shape else np.inf)
            text += f", weights {d_w:.1e}"
            bad |= not d_w <= tol
        ok &= not bad
        parts.append(text + (" MISMATCH" if bad else ""))
    print(f"agreement with float64 NumPy (max abs diff, tolerance {tol:g}): " + "; ".join(parts))
    return ok


# ----------------------------------------------------------------------------------------------
# Plain matmuls, for what this machine can do


def matmul_rate(m: int, k: int, n: int, args) -> tuple[float, float]:
    """(numpy GFLOP/s, torch GFLOP/s) of a float32 (m, k) @ (k, n)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    at, bt = torch.from_numpy(a), torch.from_numpy(b)
    flops = 2 * m * k * n
    t_np = time_it(lambda: a @ b, warmup=args.warmup, repeat=args.repeat, max_s=args.max_time)
    t_torch = time_it(lambda: at @ bt, warmup=args.warmup, repeat=args.repeat, max_s=args.max_time)
    return flops / t_np.median_s / 1e9, flops / t_torch.median_s / 1e9


# ----------------------------------------------------------------------------------------------
# Where the NumPy batched version spends its time (--stages)


def numpy_stages(cfg: Config, params, X, args) -> None:
    """Time each stage of np_attention.multi_head_attention on its own, with the same operations
    (mirrors _check_mha_inputs, _project, _sdpa and _softmax_; update this if those change),
    then a few alternatives to the slow stages."""
    p, h, d, d_k = params, cfg.n_heads, cfg.d_model, cfg.d_k
    scale = np.float32(1.0 / np.sqrt(d_k))
    flat = lambda W: W.transpose(1, 0, 2).reshape(d, h * d_k)  # noqa: E731  (d_model, n_heads * d_k)

    def project(W, b):  # as _project: X is (batch, n, d_model), so matmul runs one GEMM per batch
        P = (X @ flat(W)).reshape(*X.shape[:-1], h, d_k)  # (batch, n, n_heads, d_k)
        if b is not None:
            P += b
        return np.moveaxis(P, -2, -3)  # (batch, n_heads, n, d_k)

    Q, K, V = project(p.W_Q, p.b_Q), project(p.W_K, p.b_K), project(p.W_V, p.b_V)
    scores = Q @ K.swapaxes(-1, -2)  # (batch, n_heads, n, n)
    A = np_attention.softmax(scores * scale)  # (batch, n_heads, n, n)
    Z = A @ V  # (batch, n_heads, n, d_k)
    concat = np.moveaxis(Z, -3, -2).reshape(*X.shape[:-1], h * d_k)  # (batch, n, n_heads * d_k)
    W_QKV = np.concatenate([flat(p.W_Q), flat(p.W_K), flat(p.W_V)], axis=1)  # (d_model, 3 d_model)

    def softmax_in_place(x, where_divide=True):  # _softmax_ on the last axis
        m = x.max(axis=-1, keepdims=True)
        m[~np.isfinite(m)] = 0
        x -= m
        np.exp(x, out=x)
        s = x.sum(axis=-1, keepdims=True)
        if where_divide:
            np.divide(x, s, out=x, where=s > 0)
        else:  # alternative: all-masked rows sum to 0 and are all zeros; dividing by 1 keeps them
            s[s == 0] = 1
            x /= s

    copy = lambda: scores.copy()  # noqa: E731  (the in-place stages work on a fresh copy)
    stages = [
        ("validate X_q and X_kv (2 x isfinite().all())",
         lambda: (np.isfinite(X).all(), np.isfinite(X).all()), False),
        ("Q, K, V projections (3 x 3-D X @ W, bias, moveaxis)",
         lambda: (project(p.W_Q, p.b_Q), project(p.W_K, p.b_K), project(p.W_V, p.b_V)), False),
        ("scores Q K^T (batched matmul on strided Q, K)", lambda: Q @ K.swapaxes(-1, -2), False),
        ("scores *= 1/sqrt(d_k)", lambda: copy().__imul__(scale), True),
        ("softmax in place (max, -=, exp, sum, divide where=)",
         lambda: softmax_in_place(copy()), True),
        ("A V (batched matmul, strided V)", lambda: A @ V, False),
        ("concat heads (moveaxis + reshape copy)",
         lambda: np.moveaxis(Z, -3, -2).reshape(*X.shape[:-1], h * d_k), False),
        ("output projection (3-D concat @ W_O, + b_O)",
         lambda: concat @ p.W_O + (0 if p.b_O is None else p.b_O), False),
        ("= whole np_attention.multi_head_attention",
         lambda: np_attention.multi_head_attention(X, X, p), False),
        ("alt: Q, K, V as one 2-D matmul X.reshape(-1, d) @ W_QKV",
         lambda: X.reshape(-1, d) @ W_QKV, False),
        ("alt: output projection as 2-D concat.reshape(-1, d) @ W_O",
         lambda: concat.reshape(-1, d) @ p.W_O, False),
        ("alt: scale folded into Q: (Q * scale) @ K^T", lambda: (Q * scale) @ K.swapaxes(-1, -2),
         False),
        ("alt: softmax dividing by s with s[s == 0] = 1",
         lambda: softmax_in_place(copy(), where_divide=False), True),
    ]
    t_copy = time_it(copy, warmup=args.warmup, repeat=args.repeat, max_s=args.max_time).median_s
    print(f"-- NumPy batched, time per stage ({cfg}); each stage timed alone; in-place stages "
          f"net of the {t_copy * 1e3:.2f} ms copy of the scores they work on")
    print(f"   {'stage':<60s}{'median ms':>10s}{'others':>8s}")
    for name, fn, on_copy in stages:
        t = time_it(fn, warmup=args.warmup, repeat=args.repeat, max_s=args.max_time)
        print(f"   {name:<60s}{(t.median_s - on_copy * t_copy) * 1e3:10.2f}{t.others:8.0%}")
    print()


# ----------------------------------------------------------------------------------------------


def run_config(cfg: Config, args, ref_rate: dict) -> tuple[bool, float]:
    params = make_params(cfg, args.bias, args.seed)
    X = np.random.default_rng(args.seed).standard_normal((cfg.batch, cfg.n, cfg.d_model),
                                                         dtype=np.float32)
    variants = make_variants(cfg, params, X)
    flops = cfg.flops()
    print(f"== {cfg}, bias={args.bias}: {flops / 1e9:.3f} GFLOP per forward "
          f"(projections {8 * cfg.batch * cfg.n * cfg.d_model ** 2 / 1e9:.3f}, "
          f"QK^T and AV {4 * cfg.batch * cfg.n * cfg.n * cfg.d_model / 1e9:.3f})")
    ok = check_agreement(cfg, params, X, variants, args.tol)

    timings = {}
    with torch.no_grad():
        for name, call, _ in variants:
            timings[name] = time_it(call, warmup=args.warmup, repeat=args.repeat,
                                    max_s=args.max_time)
    ref, course = timings[REFERENCE].median_s, timings["course torch"].median_s
    print(f"{'variant':<27s}{'what runs':<40s}{'median ms':>10s}{'min ms':>9s}{'calls':>6s}"
          f"{'GFLOP/s':>9s}{'/nn.MHA':>9s}{'/course':>9s}{'others':>8s}")
    for name, _, how in variants:
        t = timings[name]
        print(f"{name:<27s}{how:<40s}{t.median_s * 1e3:10.2f}{t.min_s * 1e3:9.2f}{t.calls:6d}"
              f"{flops / t.median_s / 1e9:9.1f}{t.median_s / ref:8.2f}x{t.median_s / course:8.2f}x"
              f"{t.others:7.0%}")
    for label, (np_rate, torch_rate) in ref_rate.items():
        print(f"{'  plain matmul ' + label:<67s}{'':>25s}{np_rate:9.1f}  "
              f"(numpy; torch {torch_rate:.1f})")
    print("(GFLOP/s: matmul FLOPs / median; /nn.MHA and /course: median over the median of "
          f"{REFERENCE} and of course torch; others: share of the cores other processes took "
          "while the row was timed, above ~10% the row is unreliable)")
    # The machine's speed drifts by tens of percent between runs (shared host), so the goal is
    # judged on short alternating rounds: each round's ratio sees the same conditions.
    calls = {name: call for name, call, _ in variants}
    ratio = None
    for label, other in (("torch's native nn.MultiheadAttention", REFERENCE),
                         ("the course's torch version (same algorithm)", "course torch")):
        ratios = []
        with torch.no_grad():
            for _ in range(args.rounds):
                repeat = max(3, args.repeat // args.rounds)
                num, den = (time_it(calls[name], warmup=1, repeat=repeat,
                                    max_s=args.max_time / args.rounds).median_s
                            for name in ("NumPy batched", other))
                ratios.append(num / den)
        r = statistics.median(ratios)
        ratio = r if ratio is None else ratio
        print(f"NumPy batched / {label}: {r:.2f}x (goal <= 1.5x)   [median of {args.rounds} "
              f"alternating rounds, range {min(ratios):.2f}-{max(ratios):.2f}x]")
    print()
    if args.stages:
        numpy_stages(cfg, params, X, args)
    return ok, ratio


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[8])
    ap.add_argument("--n", type=int, nargs="+", default=[128, 512], help="sequence length(s)")
    ap.add_argument("--d-model", type=int, nargs="+", default=[256])
    ap.add_argument("--heads", type=int, nargs="+", default=[8])
    ap.add_argument("--repeat", type=int, default=21, help="timed calls per variant (at most)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    ap.add_argument("--max-time", type=float, default=2.0,
                    help="seconds of timed calls per variant before stopping early (>= 3 calls)")
    ap.add_argument("--square", type=int, default=2048, help="size of the big square matmul")
    ap.add_argument("--no-bias", dest="bias", action="store_false",
                    help="no biases (then nn.MultiheadAttention cannot take its native fused path)")
    ap.add_argument("--tol", type=float, default=1e-4, help="agreement tolerance (max abs diff)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternating NumPy/torch rounds for the goal ratio")
    ap.add_argument("--stages", action="store_true", help="also time each NumPy batched stage")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    cores = usable_cores()
    torch.set_num_threads(cores)
    print_environment(cores)

    configs = [Config(*c) for c in itertools.product(args.batch, args.n, args.d_model, args.heads)]
    for cfg in configs:
        if cfg.d_model % cfg.n_heads:
            ap.error(f"d_model {cfg.d_model} is not divisible by {cfg.n_heads} heads")
    s = args.square
    square = {f"({s}, {s}) @ ({s}, {s})": matmul_rate(s, s, s, args)}
    all_ok = True
    for cfg in configs:
        m, d = cfg.batch * cfg.n, cfg.d_model
        rates = {f"({m}, {d}) @ ({d}, {d})": matmul_rate(m, d, d, args), **square}
        ok, _ = run_config(cfg, args, rates)
        all_ok &= ok
    print(f"total {time.perf_counter() - started:.1f} s" +
          ("" if all_ok else "; SOME VARIANTS DISAGREE: their timings are not comparable"))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
