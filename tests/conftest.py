"""Shared fixtures and helpers of the test suite, and its tiers.

Tiers (markers, registered in pyproject.toml) are given here, in one place, by what a test needs:

- `kernel`: starts a Jupyter kernel (nbval runs of notebooks/ and solutions/, nbclient runs);
- `grader`: runs the sandboxed grader or the exercise pipeline;
- `minilm`: loads MiniLM (the 22 M-parameter pretrained model);
- `browser`: drives JupyterLab or the site in Chromium (tests/browser/);
- `slow`: a run of more than a few seconds (marked at the test, or below for a whole module).

`make test-fast` runs what has none of them (the attention cores, the toy world, the metrics,
the views, the checks' logic) in about a minute; `make test` (CI) runs everything.

The reference helpers below are written independently of ``mha_course`` (plain NumPy / torch),
so that they serve as a reference and do not merely echo the implementation.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from mha_course.np_attention import MHAParams

# Figures in this process draw off-screen. Notebook kernels started by the tests (nbval, nbclient)
# inherit the environment: with MPLBACKEND=Agg (common in CI) a notebook without
# `%matplotlib inline` draws its widgets' figures into nothing and still passes, so unset it to
# make kernels always draw inline.
matplotlib.use("Agg")
os.environ.pop("MPLBACKEND", None)

TESTS = Path(__file__).resolve().parent

# Test modules whose every test is in a tier (the other tiers are found per test, below).
MODULE_TIERS = {
    "test_pretrained.py": "minilm",
    "test_real_roles.py": "minilm",
    "test_syntax.py": "minilm",
    "test_notebook05.py": "kernel",
    "test_notebook07.py": "kernel",
    "test_notebook08.py": "kernel",
    "test_widgets.py": "kernel",
    "test_explorer.py": "kernel",
    "test_exercises.py": "grader",
    "test_grading.py": "grader",
    "test_cli.py": "slow",  # each test starts `python -m mha_course` in a new process
}
# Fixtures (defined here or in a test module) whose use puts a test in a tier.
FIXTURE_TIERS = {
    "minilm": "minilm", "minilm_backends": "minilm", "minilm_models": "minilm",
    "models": "minilm", "real_model": "minilm", "minilm_task": "minilm",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath))
        tiers = set()
        if path.suffix == ".ipynb":  # nbval: notebooks/ and solutions/ run in a kernel
            tiers.add("kernel")
        elif TESTS / "browser" in path.parents:
            tiers.add("browser")
        elif path.name in MODULE_TIERS:
            tiers.add(MODULE_TIERS[path.name])
        tiers |= {FIXTURE_TIERS[f] for f in getattr(item, "fixturenames", ()) if f in FIXTURE_TIERS}
        for tier in sorted(tiers):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One torch thread and one BLAS thread for the session, restored at the end: the tests'
    small arrays gain nothing from more, CI's two cores are shared with the notebook kernels
    (with OpenBLAS's default of a thread per core, a core taken by another process stalls every
    matmul: a MiniLM forward of 15 ms took 700 ms beside a training run), and sums then come out
    in the same order on every run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _close_figures():
    """Every figure a test draws is closed after it (matplotlib keeps them otherwise)."""
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def minilm():
    """MiniLM, NumPy backend, float32, loaded once for the session."""
    # imported here, not at the top: the core's tests must not depend on the models importing
    from mha_course.models.minilm import load_minilm

    return load_minilm("numpy", "float32")


@pytest.fixture(scope="session")
def minilm_backends():
    """MiniLM in both backends (float32), loaded once for the session:
    {"numpy": ..., "torch": ...}."""
    from mha_course.models.minilm import load_minilm

    return {backend: load_minilm(backend) for backend in ("numpy", "torch")}


@pytest.fixture(scope="session")
def shipped():
    """The toy Transformer checkpoint shipped in the package (eval mode), loaded once: tests
    that change it (a gate, a bias shift) restore it."""
    from mha_course.models import toy_model

    return toy_model.load()


BIAS_NAMES = ("b_Q", "b_K", "b_V", "b_O")
WEIGHT_NAMES = ("W_Q", "W_K", "W_V", "W_O")
PARAM_NAMES = WEIGHT_NAMES + BIAS_NAMES


# --------------------------------------------------------------------------- arrays
def to_numpy(x):
    """A NumPy array from a NumPy array or a (possibly grad-requiring, possibly CUDA) tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def max_abs_diff(a, b) -> float:
    a, b = to_numpy(a), to_numpy(b)
    assert a.shape == b.shape, f"shape mismatch: {a.shape} vs {b.shape}"
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def assert_close(actual, expected, atol, what=""):
    """max |actual - expected| <= atol (NaN anywhere fails)."""
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    assert np.all(np.isfinite(a)), f"{what}: non-finite values in result"
    d = max_abs_diff(a, e)
    assert d <= atol, f"{what}: max abs diff {d:.3e} > {atol:.1e}"


def rel_error(a, b) -> float:
    """||a - b|| / max(||a||, ||b||, tiny): the usual gradient-check relative error."""
    a = to_numpy(a).astype(np.float64).ravel()
    b = to_numpy(b).astype(np.float64).ravel()
    den = max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / den)


# --------------------------------------------------------------------------- params
def random_params(
    d_model=8, n_heads=2, d_k=None, d_v=None, *, bias=False, seed=0, dtype=np.float64
):
    """An MHAParams with random (normal, ~unit-variance outputs) weights and random,
    *non-zero* biases -- independent of ``init_params``."""
    d_k = d_model // n_heads if d_k is None else d_k
    d_v = d_model // n_heads if d_v is None else d_v
    rng = np.random.default_rng(seed)

    def w(*shape, fan_in):
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(dtype)

    kw = dict(
        W_Q=w(n_heads, d_model, d_k, fan_in=d_model),
        W_K=w(n_heads, d_model, d_k, fan_in=d_model),
        W_V=w(n_heads, d_model, d_v, fan_in=d_model),
        W_O=w(n_heads * d_v, d_model, fan_in=n_heads * d_v),
        b_Q=None,
        b_K=None,
        b_V=None,
        b_O=None,
    )
    if bias:
        kw.update(
            b_Q=(0.5 * rng.standard_normal((n_heads, d_k))).astype(dtype),
            b_K=(0.5 * rng.standard_normal((n_heads, d_k))).astype(dtype),
            b_V=(0.5 * rng.standard_normal((n_heads, d_v))).astype(dtype),
            b_O=(0.5 * rng.standard_normal((d_model,))).astype(dtype),
        )
    return MHAParams(**kw)


def params_dict(params) -> dict:
    return {name: getattr(params, name) for name in PARAM_NAMES}


def torch_params(params, *, requires_grad=False, device="cpu", dtype=None):
    """An MHAParams of torch tensors built from one of NumPy arrays."""
    out = {}
    for name, v in params_dict(params).items():
        if v is None:
            out[name] = None
            continue
        t = torch.as_tensor(np.array(v), device=device)
        if dtype is not None:
            t = t.to(dtype)
        out[name] = t.requires_grad_(requires_grad)
    return MHAParams(**out)


# --------------------------------------------------------------------------- references
def ref_softmax(x, axis=-1):
    """Textbook softmax in float64 with fully -inf rows mapped to 0."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    s = np.sum(e, axis=axis, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def ref_sdpa(Q, K, V, mask=None):
    """Reference attention, one query row at a time (float64)."""
    Q, K, V = (np.asarray(a, dtype=np.float64) for a in (Q, K, V))
    d_k = Q.shape[-1]
    S = np.einsum("...qd,...kd->...qk", Q, K) / np.sqrt(d_k)
    if mask is not None:
        mask = np.broadcast_to(mask, S.shape)
        S = np.where(mask, S, -np.inf)
    A = ref_softmax(S, axis=-1)
    Z = np.einsum("...qk,...kv->...qv", A, V)
    return Z, A


def ref_mha(X_q, X_kv, params, mask=None):
    """Reference multi-head attention with an explicit head loop, float64.

    Returns (out, weights (..., h, n_q, n_k), heads (..., h, n_q, d_v))."""
    p = {k: (None if v is None else np.asarray(to_numpy(v), dtype=np.float64))
         for k, v in params_dict(params).items()}
    X_q = np.asarray(X_q, dtype=np.float64)
    X_kv = np.asarray(X_kv, dtype=np.float64)
    n_heads = p["W_Q"].shape[0]
    d_v = p["W_V"].shape[-1]
    Ws, Zs = [], []
    for i in range(n_heads):
        Q = X_q @ p["W_Q"][i] + (0 if p["b_Q"] is None else p["b_Q"][i])
        K = X_kv @ p["W_K"][i] + (0 if p["b_K"] is None else p["b_K"][i])
        V = X_kv @ p["W_V"][i] + (0 if p["b_V"] is None else p["b_V"][i])
        Z, A = ref_sdpa(Q, K, V, mask)
        Ws.append(A)
        Zs.append(Z)
    out = sum(Zs[i] @ p["W_O"][i * d_v:(i + 1) * d_v] for i in range(n_heads))
    if p["b_O"] is not None:
        out = out + p["b_O"]
    return out, np.stack(Ws, axis=-3), np.stack(Zs, axis=-3)


def ref_causal(n):
    return np.tril(np.ones((n, n), dtype=bool))


def ref_padding(lengths, n):
    lengths = np.asarray(lengths)
    return (np.arange(n)[None, :] < lengths[:, None])[:, None, :]


# --------------------------------------------------------------------------- numerical grads
def numerical_grad(f, x, h=1e-6):
    """Central differences of the scalar f() w.r.t. the float64 array x (perturbed in place)."""
    g = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + h
        fp = f()
        x[idx] = old - h
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g
