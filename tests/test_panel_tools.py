"""viz.panel_tools: the Save button writes into exports/ under the working directory (or the
folder given) and prints the paths; stacks of heads round-trip through NPZ; the text view lists
each query's strongest keys, and says nothing while it is off."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (after matplotlib.use)
import numpy as np  # noqa: E402 (after matplotlib.use)
import pytest  # noqa: E402 (after matplotlib.use)
from panel_checks import (  # noqa: E402 (after matplotlib.use)
    check_saved,
    check_text_view,
    keyboard_problems,
    printed,
    table_rows,
)

from mha_course.np_attention import softmax  # noqa: E402 (after matplotlib.use)
from mha_course.viz import panel_tools  # noqa: E402 (after matplotlib.use)
from mha_course.viz.circuits import circuit_explorer  # noqa: E402 (after matplotlib.use)
from mha_course.viz.export import load_attention  # noqa: E402 (after matplotlib.use)
from mha_course.viz.heatmap import attention_heatmap  # noqa: E402 (after matplotlib.use)

TOKENS = ["[CLS]", "the", "dog", "saw", "the", "cat", "[SEP]"]  # "the" twice


def weights(*shape, seed=0):
    return softmax(np.random.default_rng(seed).normal(size=shape) * 2, axis=-1)


def test_slug_keeps_letters_and_digits_only():
    assert panel_tools.slug("[CLS] The fox, 2 dogs . [SEP]") == "cls-the-fox-2-dogs-sep"
    assert panel_tools.slug("é") == "" and len(panel_tools.slug("word " * 40)) <= 48


def test_save_button_writes_into_exports_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    A = weights(len(TOKENS), len(TOKENS))  # (n, n)

    def write(folder):
        fig = attention_heatmap(A, TOKENS)
        fig = fig if isinstance(fig, plt.Figure) else fig.figure
        return [*panel_tools.write_figure(fig, folder, "head"),
                panel_tools.write_attention(A, TOKENS, folder, "head")]

    save = panel_tools.save_button(write)
    assert save.button.description == "Save" and "exports/" in save.button.tooltip
    save.button.click()
    text = printed(save.output)
    assert text.startswith("saved:")
    paths = check_saved([Path(p) for p in text.split()[1:]], tmp_path / "exports")
    loaded, queries, keys = load_attention(paths[".csv"])
    np.testing.assert_array_equal(loaded, A)
    assert queries == keys == TOKENS
    save.button.click()  # a second click replaces the message, it does not pile up
    assert printed(save.output).count("saved:") == 1


def test_a_folder_that_cannot_be_written_is_reported_in_the_panel(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    save = panel_tools.save_button(
        lambda folder: [panel_tools.write_attention(np.eye(2), ["a", "b"], folder, "x")],
        folder=blocker / "exports")
    assert save.save() == []
    assert "nothing saved" in printed(save.output)


def test_a_stack_of_heads_goes_to_npz_and_reads_back(tmp_path):
    A = weights(2, 3, len(TOKENS), len(TOKENS))  # (n_layers, n_heads, n, n)
    path = panel_tools.write_attention(A, TOKENS, tmp_path, "grid")
    assert path.suffix == ".npz"
    loaded, queries, keys = load_attention(path)
    np.testing.assert_array_equal(loaded, A)
    assert queries == keys == TOKENS
    with pytest.raises(ValueError, match=r"\(\.\.\., n, n\) for its 7 tokens"):
        panel_tools.write_attention(np.ones((2, 3, 3)), TOKENS, path.parent, "bad")


def test_top_keys_are_the_largest_weights_strongest_first_ties_to_the_earlier_key():
    A = weights(5, 6, seed=3)  # (n_q, n_k)
    keys, values = panel_tools.top_keys(A)
    np.testing.assert_array_equal(keys, np.argsort(A, axis=-1)[:, ::-1][:, :3])
    np.testing.assert_array_equal(values, np.sort(A, axis=-1)[:, ::-1][:, :3])
    keys, _ = panel_tools.top_keys(np.array([[0.25, 0.5, 0.25, 0.0]]))
    assert keys.tolist() == [[1, 0, 2]]
    keys, values = panel_tools.top_keys(np.array([[0.3, 0.7]]))  # fewer keys than three
    assert keys.tolist() == [[1, 0]] and values.tolist() == [[0.7, 0.3]]
    with pytest.raises(ValueError, match=r"one head's \(n_q, n_k\)"):
        panel_tools.top_keys(np.ones((2, 2, 2)))


def test_text_table_names_each_query_and_its_three_strongest_keys():
    A = weights(len(TOKENS), len(TOKENS), seed=4)
    html = panel_tools.text_table(A, TOKENS, "L0H1 <b>")
    check_text_view(html, A, TOKENS)
    assert "L0H1 &lt;b&gt;" in html  # the caption is escaped
    header, *rows = table_rows(panel_tools.text_table(A[:2, :2], TOKENS[:2], "two keys"))
    assert len(header) == 5 and len(rows) == 2  # two keys: two (key, weight) pairs per row
    with pytest.raises(ValueError, match="needs 7 tokens; got 6"):
        panel_tools.text_table(A, TOKENS[:6], "short")


def test_text_view_is_empty_while_off_and_follows_what_is_shown():
    shown = {"A": weights(3, 3, seed=5)}
    view = panel_tools.text_view(lambda: (shown["A"], ["a", "b", "c"], "now"))
    assert view.toggle.description == "Text view" and view.toggle.tooltip
    assert view.html.value == ""
    view.toggle.value = True
    check_text_view(view.html.value, shown["A"], ["a", "b", "c"])
    shown["A"] = weights(3, 3, seed=6)
    view.refresh()
    check_text_view(view.html.value, shown["A"], ["a", "b", "c"])


def test_the_circuit_panel_saves_the_figure_and_the_circuits_of_the_head_shown(tmp_path):
    rng = np.random.default_rng(7)
    d_model, d_head, vocab, n_ctx = 4, 3, 5, 6
    w = {"W_E": rng.normal(size=(vocab, d_model)), "W_pos": rng.normal(size=(n_ctx, d_model)),
         "W_U": rng.normal(size=(d_model, vocab)),
         "W_Q": rng.normal(size=(2, 2, d_model, d_head)),
         "W_K": rng.normal(size=(2, 2, d_model, d_head)),
         "W_V": rng.normal(size=(2, 2, d_model, d_head)),
         "W_O": rng.normal(size=(2, 2, d_head, d_model))}
    panel = circuit_explorer(w, export_dir=tmp_path)
    assert keyboard_problems(panel.widget) == []
    panel.head.value = (1, 0)
    panel.save.button.click()
    paths = check_saved(printed(panel.save.output).split()[1:], tmp_path)
    assert paths[".npz"].stem == "circuits_L1H0"
    QK = w["W_Q"][1, 0] @ w["W_K"][1, 0].T  # (d_model, d_model), the oracle's products
    with np.load(paths[".npz"]) as saved:
        np.testing.assert_allclose(saved["positional_qk"], w["W_pos"] @ QK @ w["W_pos"].T)
        np.testing.assert_allclose(saved["token_qk"], w["W_E"] @ QK @ w["W_E"].T)
        np.testing.assert_allclose(saved["ov"],
                                   w["W_E"] @ w["W_V"][1, 0] @ w["W_O"][1, 0] @ w["W_U"])
    plt.close("all")
