"""Driving a panel with the keyboard alone: Tab to each control, then arrow (or Home/End) keys,
Space and Enter through Playwright's keyboard, never a mouse click on a widget.

- `drive_panel()`: from the notebook cell that shows a panel, Tab to its slider and move it (the
  figure must change, and come back when moved back), Tab to its "Save" button and press it (the
  files it prints must exist), Tab to its "Text view" toggle and press it (a table of each query's
  strongest keys must appear, and go again). What the panel lacks is reported, not failed.
Failures raise `BrowserTierError` with screenshots, as harness.py does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from browser.harness import _SLIDER_JS, _fail, _wait, signature, wait_for_new_picture

# What has the keyboard focus: enough to say where a Tab went.
ACTIVE_JS = """
() => { const e = document.activeElement;
        if (!e) return 'nothing';
        const text = (e.textContent || e.getAttribute('aria-label') || '').trim().slice(0, 24);
        return `${e.tagName.toLowerCase()}.${String(e.className).split(' ')[0]} "${text}"`; }
"""
IS_HANDLE = "(e, root) => root.contains(e) && e.classList.contains('noUi-handle')"
IS_SAVE = ("(e, root) => root.contains(e) && e.tagName === 'BUTTON' "
           "&& e.textContent.trim() === 'Save'")
IS_TEXT_VIEW = ("(e, root) => root.contains(e) && e.type === 'checkbox' "
                "&& (e.closest('.widget-checkbox') || e.parentElement).textContent"
                ".includes('Text view')")


@dataclass
class KeyboardRun:
    slider: list[str] = field(default_factory=list)  # "key: value -> value"
    saved: list[str] = field(default_factory=list)  # the paths the Save button printed
    text_rows: int = 0  # rows of the text view's table
    missing: list[str] = field(default_factory=list)  # controls the panel does not have
    tabs: int = 0  # Tab presses in all


def _has(page, root: str, predicate: str) -> bool:
    """Whether some element under root satisfies the focus predicate (it need not have focus)."""
    return page.eval_on_selector(
        root, f"(root) => [...root.querySelectorAll('*')].some(e => ({predicate})(e, root))")


def tab_to(page, root: str, predicate: str, what: str, run: KeyboardRun, *, limit: int = 30,
           artifacts: Path | None = None) -> None:
    """Press Tab until the focused element satisfies `predicate(element, root element)`."""
    trail = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        run.tabs += 1
        if page.eval_on_selector(root, f"(root) => ({predicate})(document.activeElement, root)"):
            return
        trail.append(page.evaluate(ACTIVE_JS))
    _fail(page, artifacts, f"tab-to-{what}", f"{limit} Tab presses did not reach {what}; the "
          f"focus went: {' -> '.join(trail)}")


def drive_panel(page, server, view: int, *, slider_keys=("ArrowRight", "ArrowLeft"),
                artifacts: Path | None = None, timeout: float = 30.0) -> KeyboardRun:
    """Keyboard only, on widget view `view` (marked by harness.run_notebook). The start is the
    notebook cell that shows the panel (focused as a keyboard user reaches it: it is a cell, not
    a widget); from there every step is a key press."""
    root = f'[data-browser-test-view="{view}"]'
    run = KeyboardRun()
    page.locator(root).evaluate("el => el.closest('.jp-Cell').focus()")

    # the slider: one key there, the other back; the figure changes and comes back
    tab_to(page, root, IS_HANDLE, "the panel's slider", run, artifacts=artifacts)
    handle = page.locator(f"{root} .noUi-handle:focus")
    first = signature(page, root)
    pictures = [first]
    for key in slider_keys:
        before = handle.evaluate(_SLIDER_JS)
        page.keyboard.press(key)
        if not _wait(lambda: handle.evaluate(_SLIDER_JS)["now"] != before["now"], 5.0, 0.05):
            _fail(page, artifacts, f"key-{key}", f"{key} on the focused slider did not move it "
                  f"(aria-valuenow stays {before['now']}; the focus is now on "
                  f"{page.evaluate(ACTIVE_JS)})")
        after = handle.evaluate(_SLIDER_JS)
        run.slider.append(f"{key}: {before['readout']} -> {after['readout']}")
        pictures.append(wait_for_new_picture(page, root, pictures[-1], timeout=timeout,
                                             what=f"{key} on the slider", artifacts=artifacts))
    if pictures[-1] != first:
        _fail(page, artifacts, "slider-back", f"{' then '.join(slider_keys)} did not bring back "
              f"the first figure: {first} vs {pictures[-1]}")

    # the Save button: Space presses it; the files it prints are on the server's disk
    if _has(page, root, IS_SAVE):
        tab_to(page, root, IS_SAVE, "the Save button", run, artifacts=artifacts)
        page.keyboard.press("Space")
        if not _wait(lambda: "saved:" in page.locator(root).inner_text(), timeout, 0.2):
            _fail(page, artifacts, "save", f"Space on the Save button printed no 'saved:' "
                  f"within {timeout:.0f} s; the panel says: {page.locator(root).inner_text()}")
        text = page.locator(root).inner_text()
        run.saved = re.findall(r"(?m)^\s*(\S*exports\S+)\s*$", text.split("saved:", 1)[1])
        absent = [p for p in run.saved if not (server.root / p).is_file()
                  or not (server.root / p).stat().st_size]
        if not run.saved or absent:
            _fail(page, artifacts, "save-files", f"the Save button printed {run.saved}, but "
                  f"{absent or 'no path'} is not a non-empty file under {server.root}")
    else:
        run.missing.append("Save")

    # the text view: Space ticks it (a table appears), Space again unticks it (it goes)
    if _has(page, root, IS_TEXT_VIEW):
        tab_to(page, root, IS_TEXT_VIEW, "the Text view toggle", run, artifacts=artifacts)
        rows = page.locator(f"{root} table tbody tr")
        for on in (True, False):
            page.keyboard.press("Space")
            if not _wait(lambda on=on: (rows.count() > 0) == on, timeout, 0.1):
                _fail(page, artifacts, "text-view", f"Space on the Text view toggle did not "
                      f"{'show' if on else 'hide'} its table within {timeout:.0f} s")
            if on:
                run.text_rows = rows.count()
                caption = page.locator(f"{root} table caption").inner_text()
                if "strongest keys" not in caption:
                    _fail(page, artifacts, "text-view-caption", f"the text view's table says "
                          f"{caption!r}, not what it lists")
    else:
        run.missing.append("Text view")
    return run
