"""The no-code explorer app (apps/explorer.ipynb, served by `make explore`), used in Chromium.

Voilà serves the app as `make explore` does; the test uses it as a self-learner would: the toy
model's panel comes up, its layer and head sliders redraw the figure, an English sentence is
refused with a message (the toy model only knows its toy vocabulary); then MiniLM is picked, a
sentence of our own is typed, and its layer and head sliders redraw the figure.
"""

from __future__ import annotations

import json
import re

import pytest

from browser import harness
from mha_course.install_cell import INSTALL_CELL_TAG

APP = harness.ROOT / "apps" / "explorer.ipynb"
IMG = "img.widget-image"  # the explorer's figure (an Image widget)
OWN_SENTENCE = "My sister plays the cello in a small orchestra."


def test_the_app_only_imports_from_the_course_and_ipywidgets():
    nb = json.loads(APP.read_text(encoding="utf-8"))
    # the install-check cell (mha_course.install_cell, tests/test_install_cell.py) left aside
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
                     and INSTALL_CELL_TAG not in c["metadata"].get("tags", []))
    modules = set(re.findall(r"(?m)^\s*(?:from\s+(\S+)\s+import|import\s+(\S+))", code))
    roots = {(a or b).split(".")[0] for a, b in modules}
    assert roots <= {"mha_course", "ipywidgets", "matplotlib"}, (
        f"the app should only put the course's own pieces together; it imports {sorted(roots)}")
    for needed in ("mha_course.viz.explorer", "mha_course.models.minilm"):
        assert any((a or b) == needed for a, b in modules), f"the app does not import {needed}"
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), \
        "keep the app notebook without stored outputs (Voilà runs it afresh)"


@pytest.fixture(scope="module")
def voila(tmp_path_factory):
    server = harness.Voila(tmp_path_factory.mktemp("voila"), APP)
    server.start()
    yield server
    server.stop()


def _no_idle(page) -> bool:
    return True  # Voilà has no kernel indicator: a picture that holds still is settled


def _slider(page, label: str):
    handle = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label)
                          ).locator(".noUi-handle")
    assert handle.count() == 1, f"expected one {label!r} slider in the app, found {handle.count()}"
    return handle


def _move(page, label: str, what: str, artifacts):
    before = harness.signature(page, "body", IMG)
    shot = page.screenshot()
    _slider(page, label).focus()
    page.keyboard.press("ArrowRight")
    return harness.wait_for_new_picture(page, "body", before, what=what, idle=_no_idle,
                                        img_selector=IMG, artifacts=artifacts, before=shot)


@pytest.mark.slow
def test_explorer_app_in_voila(voila, page, artifacts):
    page.goto(voila.url("/"))
    page.locator(IMG).first.wait_for(state="visible", timeout=120_000)
    page.locator(".noUi-handle").first.wait_for(state="visible")
    first = harness.images(page, "body", IMG)
    assert len(first) == 1 and first[0].get("std", 0) > 1.0, (
        f"the app should show one figure, not blank; images: {first}")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, f"the app printed errors: {errors.all_inner_texts()}"

    # the toy model: sliders redraw; an English sentence is refused with a message
    _move(page, "layer", "toy model, layer slider", artifacts)
    _move(page, "head", "toy model, head slider", artifacts)
    own = page.locator(".widget-text", has=page.locator(".widget-label", has_text="your own")
                       ).locator("input")
    own.fill("Colorless green ideas sleep furiously.")
    own.press("Enter")
    page.get_by_text(re.compile("not in the toy vocabulary")).wait_for(timeout=30_000)

    # MiniLM: picked with the toggle, then a sentence of our own, then its sliders
    toy_picture = harness.signature(page, "body", IMG)
    page.locator("button.widget-toggle-button", has_text="all-MiniLM-L6-v2").click()
    picture = harness.wait_for_new_picture(page, "body", toy_picture, what="switching to MiniLM",
                                           timeout=120, idle=_no_idle, img_selector=IMG,
                                           artifacts=artifacts)
    layer_max = _slider(page, "layer").get_attribute("aria-valuemax")
    assert layer_max and float(layer_max) == 5, \
        f"MiniLM has layers 0-5; the slider's maximum is {layer_max}"
    own = page.locator(".widget-text", has=page.locator(".widget-label", has_text="your own")
                       ).locator("input")
    own.fill(OWN_SENTENCE)
    own.press("Enter")
    harness.wait_for_new_picture(page, "body", picture, what="typing a sentence for MiniLM",
                                 idle=_no_idle, img_selector=IMG, artifacts=artifacts)
    n_pieces = len(OWN_SENTENCE.split()) + 3  # at least: every word, '.', [CLS] and [SEP]
    message = page.get_by_text(re.compile(r"^\d+ tokens$"))
    assert int(message.inner_text().split()[0]) >= n_pieces, message.inner_text()
    _move(page, "layer", "MiniLM, layer slider", artifacts)
    _move(page, "head", "MiniLM, head slider", artifacts)
