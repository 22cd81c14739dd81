"""The views draw exactly what they are given: image data, tick labels, panel layout, errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # in-process drawing only; notebook kernels choose `%matplotlib inline`

import matplotlib.pyplot as plt  # noqa: E402 (after matplotlib.use)
import numpy as np  # noqa: E402 (after matplotlib.use)
import pytest  # noqa: E402 (after matplotlib.use)

from mha_course.np_attention import softmax  # noqa: E402 (after matplotlib.use)
from mha_course.viz import attention_heatmap, head_grid, projected_tokens  # noqa: E402 (after matplotlib.use)
from mha_course.viz.projection import principal_plane  # noqa: E402 (after matplotlib.use)

TOKENS = ["The", "quick", "brown", "fox", "jumps"]


def random_weights(*shape, seed=0):
    """Rows that sum to 1, like softmax output."""
    return softmax(np.random.default_rng(seed).standard_normal(shape), axis=-1)


def labels(ticklabels):
    return [t.get_text() for t in ticklabels]


def visible_labels(ax, axis):
    """Tick label texts that are actually drawn on `axis` ('x' or 'y')."""
    ticks = (ax.xaxis if axis == "x" else ax.yaxis).get_major_ticks()
    return [t.label1.get_text() for t in ticks if t.label1.get_visible()]


# ---------------------------------------------------------------------------- attention_heatmap
def test_heatmap_draws_the_weights_with_token_labels():
    A = random_weights(5, 5)
    ax = attention_heatmap(A, TOKENS, title="head 0")
    (image,) = ax.images
    np.testing.assert_array_equal(image.get_array(), A)
    assert labels(ax.get_xticklabels()) == TOKENS
    assert labels(ax.get_yticklabels()) == TOKENS
    assert ax.get_title() == "head 0"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("key", "query")


def test_heatmap_cross_attention_labels_rows_and_columns_separately():
    A = random_weights(2, 5)  # 2 queries, 5 keys
    ax = attention_heatmap(A, ["fox", "dog"], TOKENS)
    np.testing.assert_array_equal(ax.images[0].get_array(), A)
    assert labels(ax.get_yticklabels()) == ["fox", "dog"]
    assert labels(ax.get_xticklabels()) == TOKENS


def test_heatmap_draws_on_the_given_axes_and_scale():
    fig, (left, right) = plt.subplots(1, 2)
    ax = attention_heatmap(random_weights(5, 5), TOKENS, ax=right, vmax=1.0)
    assert ax is right
    assert not left.images
    assert right.images[0].norm.vmin == 0.0 and right.images[0].norm.vmax == 1.0


def test_heatmap_colorbar_and_annotations():
    A = random_weights(3, 3)
    ax = attention_heatmap(A, TOKENS[:3], colorbar=True, annotate=True)
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(format(a, ".2f").lstrip("0") for a in A.ravel())


def test_heatmap_accepts_a_torch_tensor():
    torch = pytest.importorskip("torch")
    A = random_weights(5, 5)
    ax = attention_heatmap(torch.tensor(A, requires_grad=True), TOKENS)
    np.testing.assert_allclose(ax.images[0].get_array(), A)


@pytest.mark.parametrize("shape", [(5,), (1, 5, 5)])
def test_heatmap_rejects_weights_that_are_not_2d(shape):
    with pytest.raises(ValueError, match=r"\(n_q, n_k\)"):
        attention_heatmap(np.full(shape, 0.2), TOKENS)


def test_heatmap_rejects_too_few_query_tokens():
    with pytest.raises(ValueError, match="tokens_q has 4 tokens but the weights have 5 queries"):
        attention_heatmap(random_weights(5, 5), TOKENS[:4])


def test_heatmap_rejects_mismatched_key_tokens():
    with pytest.raises(ValueError, match="tokens_k has 5 tokens but the weights have 3 keys"):
        attention_heatmap(random_weights(5, 3), TOKENS, TOKENS)


def test_heatmap_rejects_a_string_and_non_finite_weights():
    with pytest.raises(TypeError, match="list of token strings"):
        attention_heatmap(random_weights(5, 5), "quick")
    bad = random_weights(5, 5)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        attention_heatmap(bad, TOKENS)


# ---------------------------------------------------------------------------- head_grid
def panels(fig, n):
    axes = fig.axes[:n]
    assert all(len(ax.images) == 1 for ax in axes)
    return axes


def test_head_grid_draws_every_layer_and_head_in_order():
    W = random_weights(2, 3, 5, 5)  # (n_layers, n_heads, n, n)
    fig = head_grid(W, TOKENS, colorbar=False)
    assert len(fig.axes) == 2 * 3
    axes = panels(fig, 6)
    assert [ax.get_title() for ax in axes] == ["L0H0", "L0H1", "L0H2", "L1H0", "L1H1", "L1H2"]
    for k, ax in enumerate(axes):
        np.testing.assert_array_equal(ax.images[0].get_array(), W[k // 3, k % 3])


def test_head_grid_single_layer_and_shared_colour_scale():
    W = random_weights(4, 5, 5)  # (n_heads, n, n)
    fig = head_grid(W, TOKENS)
    axes = panels(fig, 4)
    assert len(fig.axes) == 4 + 1  # four panels and one colour bar
    assert [ax.get_title() for ax in axes] == ["L0H0", "L0H1", "L0H2", "L0H3"]
    assert {ax.images[0].norm.vmax for ax in axes} == {1.0}  # one fixed scale: 0 to 1
    assert {ax.images[0].norm.vmin for ax in axes} == {0.0}
    fig = head_grid(W, TOKENS, vmax=None, suptitle="random")  # or the largest weight, said so
    assert {ax.images[0].norm.vmax for ax in panels(fig, 4)} == {W.max()}
    assert fig._suptitle.get_text() == f"random (auto-scaled: 0 to {W.max():.2g})"


def test_head_grid_labels_only_the_outer_panels():
    W = random_weights(2, 2, 5, 4)
    keys = ["a", "b", "c", "d"]
    fig = head_grid(W, TOKENS, keys)
    fig.canvas.draw()
    ax00, ax01, ax10, ax11 = panels(fig, 4)
    assert visible_labels(ax00, "y") == TOKENS and visible_labels(ax10, "y") == TOKENS
    assert visible_labels(ax01, "y") == [] and visible_labels(ax11, "y") == []
    assert visible_labels(ax10, "x") == keys and visible_labels(ax11, "x") == keys
    assert visible_labels(ax00, "x") == [] and visible_labels(ax01, "x") == []


def test_head_grid_custom_titles():
    fig = head_grid(random_weights(2, 5, 5), TOKENS, titles=["previous token", "punctuation"])
    assert [ax.get_title() for ax in panels(fig, 2)] == ["previous token", "punctuation"]
    with pytest.raises(ValueError, match="titles has 1 entries but the grid has 1 layers x 2"):
        head_grid(random_weights(2, 5, 5), TOKENS, titles=["one"])


@pytest.mark.parametrize("shape", [(5, 5), (1, 1, 2, 5, 5)])
def test_head_grid_rejects_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"\(n_layers, n_heads, n_q, n_k\)"):
        head_grid(np.full(shape, 0.2), TOKENS)


def test_head_grid_rejects_tokens_that_do_not_match_the_weights():
    with pytest.raises(ValueError, match="tokens has 5 tokens but the weights have 6 queries"):
        head_grid(random_weights(2, 6, 6), TOKENS)


# ---------------------------------------------------------------------------- projected_tokens
def test_principal_plane_keeps_dot_products_of_2d_points():
    P = np.random.default_rng(0).standard_normal((6, 2))
    coords, kept = principal_plane(P)
    assert kept == pytest.approx(1.0)
    np.testing.assert_allclose(coords @ coords.T, P @ P.T, atol=1e-12)  # a rotation/reflection


def test_principal_plane_reports_the_share_it_keeps():
    P = np.zeros((4, 3))
    P[:, 0] = [3, -3, 3, -3]
    P[:, 1] = [1, 1, -1, -1]
    P[:, 2] = [0.5, -0.5, -0.5, 0.5]  # orthogonal columns: squared lengths 36, 4, 1
    coords, kept = principal_plane(P)
    assert kept == pytest.approx(40 / 41)
    np.testing.assert_allclose(np.abs(coords), [[3, 1]] * 4, atol=1e-12)


def test_projected_tokens_labels_queries_and_keys():
    rng = np.random.default_rng(1)
    Q, K = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    ax = projected_tokens(Q, K, TOKENS, title="head 1", weights=random_weights(5, 5))
    from mha_course.viz.projection import KEY_COLOUR, QUERY_COLOUR

    by_colour = {}
    for t in ax.texts:
        if t.get_text():
            by_colour.setdefault(t.get_color(), []).append(t.get_text())
    # one label per query, one per key, told apart by colour (and the points by marker)
    assert sorted(by_colour[QUERY_COLOUR]) == sorted(TOKENS)
    assert sorted(by_colour[KEY_COLOUR]) == sorted(TOKENS)
    assert len(ax.collections) == 2  # the query and the key scatter
    assert ax.get_title().startswith("head 1")


def test_projected_tokens_rejects_mismatched_inputs():
    Q = np.zeros((5, 4))
    with pytest.raises(ValueError, match="same d_k"):
        projected_tokens(Q, np.zeros((5, 3)), TOKENS)
    with pytest.raises(ValueError, match="4 tokens for 5 queries"):
        projected_tokens(Q, Q, TOKENS[:4])
    with pytest.raises(ValueError, match=r"weights must be \(n, n\)"):
        projected_tokens(Q, Q, TOKENS, weights=np.zeros((5, 4)))


# ---------------------------------------------------------------------------- head_mosaic
def test_head_mosaic_tiles_every_head_in_one_image_and_frames_the_selected_one():
    from mha_course.viz.heatmap import head_mosaic

    rng = np.random.default_rng(3)
    A = rng.random((2, 3, 4, 5))  # (n_layers, n_heads, n_q, n_k)
    fig = head_mosaic(A, selected=(1, 2))
    ax, colour_bar = fig.axes
    assert colour_bar.get_ylabel() == "attention weight"
    tiles = np.ma.getdata(ax.images[0].get_array())
    mask = np.ma.getmaskarray(ax.images[0].get_array())
    assert (~mask).sum() == A.size  # exactly the weights, the rest is gap
    np.testing.assert_allclose(np.sort(tiles[~mask]), np.sort(A.ravel()))
    assert [t.get_text() for t in ax.texts] == [f"L{layer}H{h}" for layer in range(2)
                                                for h in range(3)]
    (frame,) = ax.patches
    assert (frame.get_width(), frame.get_height()) == (5, 4)
    plt.close(fig)


def test_head_mosaic_checks_the_titles():
    from mha_course.viz.heatmap import head_mosaic

    with pytest.raises(ValueError, match="2 entries.*1 layers x 3 heads = 3"):
        head_mosaic(np.full((3, 2, 2), 0.5), titles=["a", "b"])


@pytest.mark.parametrize("cmap, dark_value", [("Blues", 1.0), ("viridis", 0.0)])
def test_annotate_cells_writes_white_on_dark_cells_whatever_the_colour_map(cmap, dark_value):
    from mha_course.viz.heatmap import annotate_cells

    values = np.array([[0.0, 1.0], [np.nan, 0.5]])
    fig, ax = plt.subplots()
    image = ax.imshow(values, cmap=cmap, vmin=0, vmax=1)
    annotate_cells(ax, image, values, lambda v: f"{v:.1f}", hide=np.array([[False, False],
                                                                           [False, True]]))
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    plt.close(fig)
    assert set(colours) == {"0.0", "1.0"}  # NaN and hidden cells stay blank
    light_value = 1.0 - dark_value
    assert colours[f"{dark_value:.1f}"] == "white" and colours[f"{light_value:.1f}"] == "black"
