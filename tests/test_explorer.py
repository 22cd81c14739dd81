"""The head explorer: every control redraws the figure, bad sentences get a message."""

from __future__ import annotations

import hashlib

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets
import numpy as np
import pytest
from panel_checks import check_saved, check_text_view, find, keyboard_problems, printed

from mha_course.viz.explorer import VIEWS, explore
from mha_course.viz.export import load_attention

SENTENCES = ["[CLS] the fox sees the dog . [SEP]", "[CLS] dogs run . [SEP]"]


def fake_attend(text):
    """A deterministic stand-in model: 2 layers x 3 heads, each head a different fixed pattern."""
    tokens = text.split()
    if "unknown" in tokens:
        raise ValueError("'unknown' is not in the vocabulary")
    n = len(tokens)
    seed = sum(map(ord, text))
    W = np.random.default_rng(seed).random((2, 3, n, n)) ** 4  # (n_layers, n_heads, n, n)
    return tokens, W / W.sum(-1, keepdims=True)


def digest(panel):
    return hashlib.sha256(panel.image.value).hexdigest()


def test_first_sentence_is_drawn_and_slider_ranges_follow_the_model():
    panel = explore(fake_attend, SENTENCES)
    assert panel.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert (panel.layer.max, panel.head.max) == (1, 2)
    assert panel.tokens == SENTENCES[0].split()
    np.testing.assert_allclose(panel.weights, fake_attend(SENTENCES[0])[1])


@pytest.mark.parametrize("view", VIEWS)
def test_every_control_changes_the_figure_in_every_view(view):
    panel = explore(fake_attend, SENTENCES, view=view)
    seen = {digest(panel)}
    moves = [("head", 1), ("layer", 1), ("head", 2)]
    if view == "head view":
        moves.append(("threshold", 0.4))
    for name, value in moves:
        getattr(panel, name).value = value
        assert digest(panel) not in seen, f"moving {name} did not redraw the {view}"
        seen.add(digest(panel))
    panel.sentence.value = SENTENCES[1]
    assert digest(panel) not in seen and panel.tokens == SENTENCES[1].split()


def _highlight(png: bytes) -> np.ndarray:
    """Where the PNG has the palette's highlight colour (the selected head's frame)."""
    import io

    import matplotlib.image
    from matplotlib.colors import to_rgb

    from mha_course.viz.palette import HIGHLIGHT

    rgb = (matplotlib.image.imread(io.BytesIO(png))[..., :3] * 255).round()  # (height, width, 3)
    return np.all(np.abs(rgb - np.array(to_rgb(HIGHLIGHT)) * 255) <= 2, axis=-1)  # (height, width)


def test_grid_frames_exactly_the_selected_head_and_keeps_the_mosaic():
    panel = explore(fake_attend, SENTENCES, view="grid")
    reference = panel._mosaic[1]  # the mosaic, drawn once for this sentence
    for layer, head in [(0, 0), (1, 2), (0, 1)]:
        panel.layer.value, panel.head.value = layer, head
        assert panel._mosaic[1] is reference  # a slider move does not redraw the figure
        frame = _highlight(panel.image.value)
        x0, y0, x1, y1 = panel._mosaic[2][layer, head]
        rows, cols = np.nonzero(frame)
        # the frame hugs the selected tile: all frame pixels within 2 px of its box, on all 4 sides
        assert rows.min() == y0 - 2 and rows.max() == y1 + 1
        assert cols.min() == x0 - 2 and cols.max() == x1 + 1
        assert frame[y0 - 2:y0, x0:x1].all() and frame[y1:y1 + 2, x0:x1].all()
        assert not frame[y0 + 2:y1 - 2, x0 + 2:x1 - 2].any()  # the tile itself is not painted
    # the tiles sit where head_mosaic draws them: the box of (1, 2) is right of and below (0, 1)
    boxes = panel._mosaic[2]
    assert boxes[1, 2][0] > boxes[0, 1][2] and boxes[1, 2][1] > boxes[0, 1][3]
    panel.sentence.value = SENTENCES[1]
    assert panel._mosaic[1] is not reference  # a new sentence: a new mosaic


@pytest.mark.parametrize("view", VIEWS)
def test_the_panel_leaves_no_pyplot_figure_open(view):
    """An open pyplot figure would be shown once more, frozen, under the panel by the inline
    backend at the end of the cell (seen in the browser tests)."""
    import matplotlib.pyplot as plt

    plt.close("all")
    panel = explore(fake_attend, SENTENCES, view=view)
    panel.head.value, panel.layer.value = 1, 1
    assert plt.get_fignums() == []


def test_own_sentence_and_a_refused_one():
    panel = explore(fake_attend, SENTENCES)
    panel.text.value = "[CLS] a cat . [SEP]"
    assert panel.tokens == ["[CLS]", "a", "cat", ".", "[SEP]"]
    before = digest(panel)
    panel.text.value = "[CLS] an unknown word [SEP]"
    assert "not in the vocabulary" in panel.message.value
    assert digest(panel) == before and panel.tokens[2] == "cat"  # the last good sentence stays


def test_head_labels_reach_the_titles_and_threshold_only_matters_for_the_head_view():
    labels = [["local 0.9", "-", "-"], ["-", "syntactic 0.8", "-"]]
    panel = explore(fake_attend, SENTENCES, head_labels=labels)
    assert panel.title(1, 1) == "L1H1 syntactic 0.8"
    assert panel.threshold.disabled
    panel.view.value = "head view"
    assert not panel.threshold.disabled


def test_bad_arguments_and_a_bad_model_output():
    with pytest.raises(ValueError, match="at least one sentence"):
        explore(fake_attend, [])
    with pytest.raises(ValueError, match="view must be one of"):
        explore(fake_attend, SENTENCES, view="table")
    with pytest.raises(ValueError, match=r"\(n_layers, n_heads, n, n\).*3 tokens.*\(3, 3\)"):
        explore(lambda text: (["a", "b", "c"], np.ones((3, 3)) / 3), SENTENCES)


# ---------------------------------------------------------------------------- Save, text, keys
@pytest.mark.parametrize("view", VIEWS)
def test_save_writes_the_view_shown_and_its_weights(view, tmp_path):
    import matplotlib.pyplot as plt

    panel = explore(fake_attend, SENTENCES, view=view, export_dir=tmp_path)
    panel.sentence.value = SENTENCES[1]
    panel.layer.value, panel.head.value = 1, 2
    before = digest(panel)
    plt.close("all")
    find(panel.widget, widgets.Button, "Save").click()
    paths = check_saved(printed(panel.save.output).split()[1:], tmp_path)
    tokens, A = fake_attend(SENTENCES[1])  # the oracle: what the model gives for this sentence
    if view == "grid":  # every head shown: all of them, in one NPZ
        assert sorted(paths) == [".npz", ".png", ".svg"]
        weights, queries, keys = load_attention(paths[".npz"])
        np.testing.assert_array_equal(weights, A)
    else:
        assert sorted(paths) == [".csv", ".png", ".svg"]
        weights, queries, keys = load_attention(paths[".csv"])
        np.testing.assert_array_equal(weights, A[1, 2])
    assert queries == keys == tokens
    assert paths[".png"].stem == f"L1H2_{view.replace(' ', '-')}_cls-dogs-run-sep"
    assert plt.get_fignums() == []  # nothing left open for the inline backend to show again
    panel.head.value = 0
    assert digest(panel) != before  # the panel still redraws after a save ...
    panel.head.value = 2
    assert digest(panel) == before  # ... and the saved (kept) figure draws as it did before


def test_text_view_lists_the_selected_heads_top_keys_and_follows_every_control():
    panel = explore(fake_attend, SENTENCES)
    find(panel.widget, widgets.Checkbox, "Text view").value = True
    for move in ("head", 2), ("layer", 1), ("view", "grid"), ("sentence", SENTENCES[1]):
        setattr(getattr(panel, move[0]), "value", move[1])
        tokens, A = fake_attend(panel.sentence.value)
        html = panel.text_view.html.value
        check_text_view(html, A[panel.layer.value, panel.head.value], tokens)
        assert f"L{panel.layer.value}H{panel.head.value}" in html, move


def test_every_control_is_keyboard_operable_and_described():
    panel = explore(fake_attend, SENTENCES)
    assert keyboard_problems(panel.widget) == []
    assert find(panel.widget, widgets.Button, "Save").tooltip
    assert find(panel.widget, widgets.Checkbox, "Text view").tooltip


# ---------------------------------------------------------------------------- in the notebook
@pytest.mark.slow
def test_notebook_03_explorer_redraws_in_the_kernel():
    """Run notebook 03 in a real kernel, then move the explorer's controls there."""
    from notebook_kernel import NOTEBOOKS, notebook_kernel

    with notebook_kernel(NOTEBOOKS / "03_attention_heatmaps.ipynb", timeout=120) as kernel:
        run = kernel.run
        digest = "import hashlib; print(hashlib.sha256(panel.image.value).hexdigest())"
        kernel.assert_each_move_redraws(digest, (
            "panel.head.value = 5", "panel.layer.value = 1", "panel.view.value = 'grid'",
            "panel.view.value = 'head view'", "panel.text.value = 'The quick brown fox runs.'"))
        assert "not in the toy vocabulary" in run(
            "panel.text.value = 'the quick brown cat runs .'; print(panel.message.value)")
