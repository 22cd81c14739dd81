"""The circuit views (notebook 09) draw what they are given: the circuits they show equal the
products of the weights computed here independently, attention is on the fixed 0-1 scale,
circuits on a symmetric diverging scale that the title names, and the panel redraws per head."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (after matplotlib.use)
import numpy as np  # noqa: E402 (after matplotlib.use)
import pytest  # noqa: E402 (after matplotlib.use)

from mha_course.viz import circuits as views  # noqa: E402 (after matplotlib.use)
from mha_course.viz.palette import DIVERGING_CMAP  # noqa: E402 (after matplotlib.use)

VOCAB, N_CTX, D = 5, 6, 5


def hand_weights(seed=0) -> dict:
    """2 layers x 2 heads, d_model = d_head = vocab = 5: head (1, 0) copies (W_E, W_V, W_O, W_U
    all the identity, so its OV circuit is I); head (1, 1) anti-copies (W_O = -I)."""
    rng = np.random.default_rng(seed)
    W = {name: rng.standard_normal((2, 2, D, D)) for name in ("W_Q", "W_K", "W_V", "W_O")}
    W["W_V"][1], W["W_O"][1, 0], W["W_O"][1, 1] = np.eye(D), np.eye(D), -np.eye(D)
    return {"W_E": np.eye(VOCAB, D), "W_pos": rng.standard_normal((N_CTX, D)),
            "W_U": np.eye(D, VOCAB), **W}


def report(scores, icl, loss=(4.0, 3.0, 2.0)) -> dict:
    steps = [25 * (k + 1) for k in range(len(scores))]
    history = [{"step": s, "in_context_learning": i,
                "best": {"prefix_matching": {"score": p}, "previous_token": {"score": q}}}
               for s, (p, q), i in zip(steps, scores, icl)]
    return {"loss_history": [[10 * k, v] for k, v in enumerate(loss)], "history": history}


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_phase_change_plot_draws_each_run_from_its_report():
    runs = {"2 layers": report([(0.1, 0.1), (0.9, 0.8)], [-0.5, -3.0]),
            "1 layer": report([(0.05, 0.05), (0.08, 0.05)], [-0.2, -0.6])}
    fig = views.phase_change_plot(runs)
    ax_loss, ax_score, ax_icl = fig.axes
    assert [line.get_label() for line in ax_loss.lines] == ["2 layers", "1 layer"]
    np.testing.assert_array_equal(ax_loss.lines[1].get_ydata(), [4.0, 3.0, 2.0])
    prefix = [line for line in ax_score.lines if line.get_label() == "2 layers: prefix-matching"]
    np.testing.assert_array_equal(prefix[0].get_ydata(), [0.1, 0.9])
    np.testing.assert_array_equal(ax_icl.lines[1].get_ydata(), [-0.2, -0.6])
    assert ax_score.get_ylim() == (0, 1.02)
    assert all(ax.get_xlabel() == "training step" for ax in fig.axes)
    with pytest.raises(ValueError, match="log_every"):
        views.phase_change_plot({"no history": {"loss_history": [[1, 2.0]], "history": []}})
    with pytest.raises(ValueError, match="runs is empty"):
        views.phase_change_plot({})


def test_pair_heatmaps_draw_the_chosen_heads_on_the_fixed_scale():
    rng = np.random.default_rng(1)
    A = rng.random((2, 2, 4, 4)) * np.tril(np.ones((4, 4)))  # (n_layers, n_heads, n, n)
    A /= A.sum(axis=-1, keepdims=True)
    fig = views.pair_heatmaps(A, ["BOS", "a", "b", "a"], [(0, 1), (1, 0)],
                              titles=["previous", "induction"])
    images = [ax.images[0] for ax in fig.axes if ax.images]
    np.testing.assert_allclose(images[0].get_array(), A[0, 1])
    np.testing.assert_allclose(images[1].get_array(), A[1, 0])
    assert all(image.get_clim() == (0.0, 1.0) for image in images)
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["previous", "induction"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["BOS", "a", "b", "a"]
    with pytest.raises(ValueError, match=r"\(layer, head\) pairs"):
        views.pair_heatmaps(A, ["BOS", "a", "b", "a"], [(2, 0)])
    with pytest.raises(ValueError, match=r"\(n_layers, n_heads, n, n\)"):
        views.pair_heatmaps(A[0], ["BOS", "a", "b", "a"], [(0, 0)])


def test_ablation_bars_show_the_scores_per_removal():
    ablation = {"layer": 0, "removed": [None, 0, 1],
                "prefix_matching": [[0.8, 0.9], [0.05, 0.04], [0.8, 0.85]],
                "in_context_learning": [-3.9, -0.1, -3.8]}
    fig = views.ablation_bars(ablation)
    ax_p, ax_i = fig.axes[:2]
    heights = sorted(round(p.get_height(), 3) for p in ax_p.patches)
    assert heights == sorted([0.8, 0.9, 0.05, 0.04, 0.8, 0.85])
    assert [round(p.get_height(), 3) for p in ax_i.patches] == [-3.9, -0.1, -3.8]
    assert [t.get_text() for t in ax_i.get_xticklabels()] == ["intact", "L0H0 removed",
                                                              "L0H1 removed"]
    with pytest.raises(ValueError, match="one row of prefix-matching"):
        views.ablation_bars({**ablation, "in_context_learning": [-3.9]})


def test_circuit_heatmap_is_centred_on_0_and_hides_what_the_mask_hides():
    M = np.arange(9.0).reshape(3, 3) - 2.0
    ax = views.circuit_heatmap(M, title="QK", hide_above_diagonal=True)
    (image,) = ax.images
    assert image.get_clim() == (-6.0, 6.0) and image.cmap.name.startswith(DIVERGING_CMAP)
    shown = np.ma.masked_invalid(image.get_array())
    assert shown.mask[0, 1] and shown.mask[1, 2] and not shown.mask[2, 0]
    assert views.CIRCUIT_SCALE in ax.get_title() and ax.get_xlabel() == "key"
    with pytest.raises(ValueError, match=r"\(rows, cols\)"):
        views.circuit_heatmap(np.ones(3))


def test_plot_head_circuits_shows_the_products_of_the_weights():
    w = hand_weights()
    fig = views.plot_head_circuits(w, 1, 0, {"prefix_matching": np.array([[0, 0], [0.9, 0.1]])})
    pos, token, ov = (ax.images[0].get_array() for ax in fig.axes if ax.images)
    W_QK = w["W_Q"][1, 0] @ w["W_K"][1, 0].T  # (d_model, d_model), the oracle
    expected_pos = w["W_pos"] @ W_QK @ w["W_pos"].T  # (n_ctx, n_ctx)
    lower = np.tril(np.ones((N_CTX, N_CTX), dtype=bool))
    np.testing.assert_allclose(np.asarray(pos)[lower], expected_pos[lower], rtol=1e-9)
    np.testing.assert_allclose(token, W_QK[:VOCAB, :VOCAB], rtol=1e-9)  # W_E = I
    np.testing.assert_allclose(ov, np.eye(VOCAB), atol=1e-12)
    title = fig._suptitle.get_text()
    assert title.startswith("L1H0:") and "OV copying 1.00" in title
    assert "diagonal dominance 1.00" in title and "prefix-matching 0.90" in title
    anti = views.plot_head_circuits(w, 1, 1)._suptitle.get_text()
    assert "OV copying -1.00" in anti and "diagonal dominance 0.00" in anti
    with pytest.raises(ValueError, match="0 <= layer < 2"):
        views.plot_head_circuits(w, 2, 0)
    with pytest.raises(ValueError, match="weights lacks"):
        views.plot_head_circuits({"W_Q": w["W_Q"]}, 0, 0)


def test_the_explorer_redraws_for_each_head_and_renders_each_once():
    panel = views.circuit_explorer(hand_weights(), layer=1, head=0)
    assert [label for label, _ in panel.head.options] == ["L0H0", "L0H1", "L1H0", "L1H1"]
    first = bytes(panel.image.value)
    assert first.startswith(b"\x89PNG")
    panel.head.value = (1, 1)
    assert bytes(panel.image.value) != first and set(panel._cache) == {(1, 0), (1, 1)}
    panel.head.value = (1, 0)
    assert bytes(panel.image.value) == first and len(panel._cache) == 2  # rendered once, reused
    assert "L1H0" in panel.figure()._suptitle.get_text()
    with pytest.raises(ValueError, match="0 <= head < 2"):
        views.circuit_explorer(hand_weights(), layer=0, head=2)
