"""viz.export: a view saved as PNG, SVG and PDF reads back as that format; attention data saved
as CSV and NPZ reads back as the same weights and tokens; bad input names what was expected."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from mha_course.np_attention import softmax
from mha_course.viz.export import load_attention, position_labels, save, save_attention
from mha_course.viz.heatmap import attention_heatmap

TOKENS = ["[CLS]", "the", "dog", "saw", "the", "cat", "[SEP]"]  # "the" twice: labels must differ


@pytest.fixture
def weights():
    rng = np.random.default_rng(0)
    return softmax(rng.normal(size=(len(TOKENS), len(TOKENS))), axis=-1)  # (n, n)


@pytest.fixture
def figure(weights):
    fig = attention_heatmap(weights, TOKENS)
    fig = fig if isinstance(fig, plt.Figure) else fig.figure
    yield fig
    plt.close(fig)


def test_png_reads_back_as_an_image(figure, tmp_path):
    path = save(figure, tmp_path / "exports" / "head.png")
    assert path.exists() and path.parent.name == "exports"
    pixels = mpimg.imread(path)  # (height, width, 4)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4) and min(pixels.shape[:2]) > 100
    assert pixels[..., :3].std() > 0.05  # not a blank page


def test_svg_is_an_svg_document_with_the_tokens(figure, tmp_path):
    path = save(figure, tmp_path / "head.svg")
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    text = path.read_text(encoding="utf-8")
    assert "dog" in text or "<path" in text  # text as text, or glyphs as paths


def test_pdf_starts_as_a_pdf(figure, tmp_path):
    path = save(figure.axes[0], tmp_path / "head.PDF")  # an Axes saves its figure; any case
    assert path.read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("suffix", ["csv", "npz"])
def test_attention_round_trips_with_its_tokens(weights, tmp_path, suffix):
    path = save_attention(weights, TOKENS, tmp_path / f"L1H3.{suffix}")
    A, queries, keys = load_attention(path)
    np.testing.assert_array_equal(A, weights)  # exact: floats written in full
    assert queries == TOKENS and keys == TOKENS


def test_csv_labels_each_row_and_column_by_position_and_token(weights, tmp_path):
    path = save_attention(weights[:3], TOKENS[:3], tmp_path / "cross.csv", key_tokens=TOKENS)
    with path.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert header[1:] == position_labels(TOKENS) and header[2] == "1:the" and header[5] == "4:the"
    assert [r[0] for r in rows] == ["0:[CLS]", "1:the", "2:dog"]
    assert np.allclose([[float(w) for w in r[1:]] for r in rows], weights[:3])


def test_bad_input_names_what_was_expected(weights, figure, tmp_path):
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf; got"):
        save(figure, tmp_path / "head.jpg")
    with pytest.raises(TypeError, match="matplotlib Figure or Axes"):
        save(weights, tmp_path / "head.png")
    with pytest.raises(ValueError, match=r"\.csv, \.npz"):
        save_attention(weights, TOKENS, tmp_path / "head.json")
    with pytest.raises(ValueError, match="needs 7 query tokens and 7 key tokens; got 6 and 6"):
        save_attention(weights, TOKENS[:6], tmp_path / "head.csv")
    with pytest.raises(ValueError, match=r"one head's \(n_q, n_k\)"):
        save_attention(weights[None], TOKENS, tmp_path / "head.csv")
    bad = weights.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        save_attention(bad, TOKENS, tmp_path / "head.csv")
    assert not (tmp_path / "head.csv").exists()
