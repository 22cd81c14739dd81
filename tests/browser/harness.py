"""The notebook driver of the browser tier (the servers and Chromium are in servers.py, the
notebook files are read in notebook_files.py, the page's scripts are in page_scripts.py).

Used by the tests in this folder and by `bench/browser.py`. Nothing here times anything for a
verdict: waits have generous limits, and the measured latencies are only reported.

- `widget_notebooks()`: the course notebooks with widgets to drive, read from the notebook files.
- `run_notebook()`: open a clean copy in JupyterLab (or Notebook 7: the server says where a
  notebook opens), Run All (retried: a Run All sent before the
  kernel has connected can be lost), wait for the kernel, save and read the outputs back through
  /api/contents (no error allowed), and check that every widget view the kernel displayed is
  rendered as a widget in the page.
- `check_sliders()`: move every enabled slider with the keyboard and wait for the figure of its
  panel to change and settle; moved back, the first figure must return.
Failures raise `BrowserTierError` (an AssertionError) and leave screenshots in `artifacts`.
"""

from __future__ import annotations

import re
import tempfile
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

from browser.notebook_files import (  # noqa: F401  (re-exported: the tests use harness.X)
    NOTEBOOKS,
    ROOT,
    WIDGET_VIEW,
    clean_copy,
    has_widgets,
    output_errors,
    stored_slider_models,
    widget_notebooks,
    widget_view_outputs,
)
from browser.page_scripts import IMAGES_JS, PROMPTS_JS, VIEWS_JS
from browser.servers import (  # noqa: F401  (re-exported: the tests use harness.X)
    ANNOUNCEMENTS,
    CHROMIUM_FLAGS,
    WIDGET_MANAGER,
    BrowserTierError,
    JupyterLab,
    Notebook7,
    Voila,
    ensure_chromium,
    launch_chromium,
)

ARTIFACTS = ROOT / "test-artifacts" / "browser"


# --------------------------------------------------------------------------- the page side
_SLIDER_JS = """
(h) => {
  const target = h.closest('.noUi-target');
  const box = h.closest('.widget-slider, .widget-hslider, .widget-vslider') || target.parentElement;
  const label = box && box.querySelector('.widget-label');
  const readout = box && box.querySelector('.widget-readout');
  return {
    now: h.getAttribute('aria-valuenow'), max: h.getAttribute('aria-valuemax'),
    min: h.getAttribute('aria-valuemin'),
    disabled: target.hasAttribute('disabled')
              || (box && box.classList.contains('mod-disabled')) || false,
    label: label ? label.textContent.trim() : '',
    readout: !readout ? '' : (readout.value !== undefined && readout.value !== ''
                              ? readout.value : readout.textContent.trim()),
  };
}
"""


def kernel_idle(page) -> bool:
    return page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count() > 0


def images(page, root_selector: str, img_selector: str = "img") -> list[dict]:
    """Each image under the root: {w, h, hash of its decoded pixels, std of its grey levels}."""
    return page.eval_on_selector(root_selector, IMAGES_JS, img_selector)


def _signature(imgs: list[dict]) -> tuple:
    return tuple((i.get("hash"), i.get("w"), i.get("h")) for i in imgs)


@dataclass
class SliderMove:
    view: int
    label: str
    key: str
    value_before: str
    value_after: str
    changed_after_s: float  # key press -> first different picture (polled; see bench/browser.py)
    settled_after_s: float  # key press -> picture stable and kernel idle


@dataclass
class NotebookRun:
    name: str
    copy: str
    views: list[dict] = field(default_factory=list)
    moves: list[SliderMove] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # disabled sliders
    timings: dict = field(default_factory=dict)


def _fail(page, artifacts: Path | None, what: str, message: str, shots: dict | None = None):
    """Save screenshots (before/after pictures given in `shots`, plus the whole page) and fail."""
    saved = []
    if artifacts is not None:
        artifacts.mkdir(parents=True, exist_ok=True)
        for name, png in (shots or {}).items():
            if png:
                (artifacts / f"{what}-{name}.png").write_bytes(png)
                saved.append(str(artifacts / f"{what}-{name}.png"))
        try:
            page.screenshot(path=str(artifacts / f"{what}-page.png"), full_page=True)
            saved.append(str(artifacts / f"{what}-page.png"))
        except Exception:  # noqa: BLE001 - the screenshot must not hide the failure
            pass
    if saved:
        message += "\nscreenshots: " + ", ".join(saved)
    raise BrowserTierError(message)


def _wait(predicate, timeout: float, interval: float = 0.1):
    """Poll predicate() until it returns a truthy value; return it, or None at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def open_notebook(page, lab: JupyterLab, src: Path, copy_name: str, *, timeout: float = 90.0):
    clean_copy(src, lab.root / copy_name)
    page.goto(lab.url(lab.notebook_path(copy_name), reset=True))  # JupyterLab or Notebook 7
    page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for(
        state="attached", timeout=timeout * 1000)


KERNEL_LABEL = "Python 3 (ipykernel)"  # the notebooks' kernelspec "python3"


def _accept_kernel_dialog(page) -> None:
    """Under load JupyterLab sometimes opens a notebook before it has the kernel specs and asks
    which kernel to start; answer with the notebook's own kernel. Any other dialog is left for
    run_all to report."""
    dialog = page.locator(".jp-Dialog")
    if not dialog.count() or "Select Kernel" not in " ".join(dialog.all_inner_texts()):
        return
    choice = dialog.locator("select")
    if choice.count():
        choice.first.select_option(label=KERNEL_LABEL)
    dialog.locator("button.jp-mod-accept").first.click()
    dialog.first.wait_for(state="detached", timeout=10_000)


def run_all(page, *, attempts: int = 3, start_timeout: float = 15.0, timeout: float = 300.0):
    """Run → Run All Cells, retried until an execution count or [*] appears; then wait until no
    cell is queued or running and the kernel is idle."""
    for _ in range(attempts):
        _accept_kernel_dialog(page)
        dialog = page.locator(".jp-Dialog")
        if dialog.count():
            raise BrowserTierError("a JupyterLab dialog blocks the notebook: "
                                   + " | ".join(dialog.all_inner_texts())[:500])
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        if _wait(lambda: any(re.fullmatch(r"\[(\d+|\*)\]:", p) for p in page.evaluate(PROMPTS_JS)),
                 start_timeout):
            break
        page.keyboard.press("Escape")
    else:
        raise BrowserTierError(f"Run All Cells started nothing after {attempts} tries "
                               f"(no execution count or [*] appeared); prompts: "
                               f"{page.evaluate(PROMPTS_JS)}")

    def done():
        prompts = page.evaluate(PROMPTS_JS)
        return "[*]:" not in prompts and kernel_idle(page)

    stable = 0
    deadline = time.monotonic() + timeout
    while stable < 3:  # three polls in a row: the queue is empty and the kernel idle
        if time.monotonic() > deadline:
            raise BrowserTierError(f"the notebook was still running after {timeout:.0f} s; "
                                   f"prompts: {page.evaluate(PROMPTS_JS)}")
        stable = stable + 1 if done() else 0
        time.sleep(0.15)


def save_and_read(page, lab: JupyterLab, copy_name: str, timeout: float = 30.0) -> dict:
    """Ctrl+S in the page, wait until the file on the server is newer, read it back."""
    before = lab.contents(copy_name, content=False)["last_modified"]
    page.keyboard.press("Control+s")
    if not _wait(lambda: lab.contents(copy_name, content=False)["last_modified"] != before,
                 timeout, 0.2):
        raise BrowserTierError(f"Ctrl+S did not save {copy_name} within {timeout:.0f} s")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return lab.contents(copy_name)["content"]
        except urllib.error.HTTPError as error:
            # 400 "unreadable notebook": on a loaded machine the read can catch the file while
            # the server is still writing it (seen in CI); read again until it is whole
            if error.code != 400 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_notebook(page, lab: JupyterLab, src: Path, *, artifacts: Path | None = None,
                 widget_timeout: float = 30.0) -> NotebookRun:
    """Open a clean copy, Run All, check every cell ran without error and every widget view the
    kernel displayed is rendered as a widget in the page. Returns what it found."""
    src = Path(src)
    copy_name = f"browser_{src.name}"
    run = NotebookRun(src.name, copy_name)
    t0 = time.monotonic()
    open_notebook(page, lab, src, copy_name)
    run.timings["open_to_idle_s"] = time.monotonic() - t0
    t1 = time.monotonic()
    run_all(page)
    run.timings["run_all_s"] = time.monotonic() - t1

    nb = save_and_read(page, lab, copy_name)
    errors = output_errors(nb)
    if errors:
        _fail(page, artifacts, "run-all", f"{src.name}: Run All in JupyterLab left errors:\n  "
              + "\n  ".join(errors))
    expected = widget_view_outputs(nb)

    def views_rendered():
        views = page.evaluate(VIEWS_JS, expected)
        return views if all(v["rendered"] for v in views) else None

    t2 = time.monotonic()
    views = _wait(views_rendered, widget_timeout, 0.2)
    if views is None:
        views = page.evaluate(VIEWS_JS, expected)
        _fail(page, artifacts, "widgets",
              f"{src.name}: the kernel displayed {len(expected)} widget view(s), but the page "
              f"shows {sum(v['rendered'] for v in views)} of them as widgets after "
              f"{widget_timeout:.0f} s (views: {views}). Is the {WIDGET_MANAGER} extension "
              f"installed and enabled, "
              f"and its version compatible with the kernel's ipywidgets?")
    run.views = views
    run.timings["widgets_s"] = time.monotonic() - t2
    return run


def _move(page, handle, key: str):
    handle.focus()
    page.keyboard.press(key)


def check_sliders(page, run: NotebookRun, *, artifacts: Path | None = None,
                  timeout: float = 30.0, settle_s: float = 0.5) -> NotebookRun:
    """For every enabled slider of every widget view: one key press must change the figure of the
    same view, which must then settle; the opposite key press must bring back the first figure
    (the picture follows the slider's value, it does not merely change)."""
    for view in run.views:
        if not view["sliders"]:
            continue
        root = f'[data-browser-test-view="{view["k"]}"]'
        first = images(page, root)
        bad = [i for i in first if i.get("error") or i.get("std", 0) < 1.0]
        if not first or bad:
            _fail(page, artifacts, f"view{view['k']}-figure",
                  f"{run.name}: widget view {view['k']} has sliders but its figure is missing or "
                  f"blank: images {first}", {"view": page.locator(root).screenshot()})
        handles = page.locator(f"{root} .noUi-handle")
        for s in range(handles.count()):
            handle = handles.nth(s)
            info = handle.evaluate(_SLIDER_JS)
            name = info["label"] or f"slider {s}"
            if info["disabled"]:
                run.skipped.append(f"view {view['k']}: {name} (disabled)")
                continue
            at_max = info["now"] is not None and info["now"] == info["max"]
            keys = ("ArrowLeft", "ArrowRight") if at_max else ("ArrowRight", "ArrowLeft")
            shots = {"before": page.locator(root).screenshot()}
            pictures = [_signature(images(page, root))]
            for key in keys:
                value_before = handle.evaluate(_SLIDER_JS)["readout"]
                t = time.monotonic()
                _move(page, handle, key)

                def moved_ok(key=key):
                    now = handle.evaluate(_SLIDER_JS)["now"]
                    return now != info["now"] if key == keys[0] else now == info["now"]

                moved = _wait(moved_ok, 5.0, 0.05)
                if not moved:
                    shots["after"] = page.locator(root).screenshot()
                    _fail(page, artifacts, f"view{view['k']}-{name}",
                          f"{run.name}: {key} on the slider {name!r} did not move it "
                          f"(aria-valuenow stays {handle.evaluate(_SLIDER_JS)['now']})", shots)
                changed_at, settled = _wait_for_new_picture(page, root, pictures[-1], t, timeout,
                                                             settle_s)
                shots["after"] = page.locator(root).screenshot()
                if settled is None:
                    _fail(page, artifacts, f"view{view['k']}-{name}",
                          f"{run.name}: {key} on the slider {name!r} ({value_before} -> "
                          f"{handle.evaluate(_SLIDER_JS)['readout']}) did not "
                          + ("change the figure" if changed_at is None else "let the figure settle")
                          + f" within {timeout:.0f} s", shots)
                pictures.append(settled)
                run.moves.append(SliderMove(view["k"], name, key, value_before,
                                            handle.evaluate(_SLIDER_JS)["readout"],
                                            changed_at - t, time.monotonic() - t))
            if pictures[-1] != pictures[0]:
                _fail(page, artifacts, f"view{view['k']}-{name}",
                      f"{run.name}: moving the slider {name!r} there and back "
                      f"({' then '.join(keys)}) did not bring back the first figure: "
                      f"{pictures[0]} vs {pictures[-1]}", shots)
    return run


def _wait_for_new_picture(page, root: str, old: tuple, t0: float, timeout: float,
                          settle_s: float, *, idle=kernel_idle, img_selector: str = "img"):
    """(time it first differed from `old`, the settled signature) or (.., None) at the deadline.
    Settled: the same complete, non-empty picture for settle_s, and idle(page) true."""
    changed_at = None
    last, since = None, None
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        imgs = images(page, root, img_selector)
        sig = _signature(imgs)
        now = time.monotonic()
        complete = imgs and not any(i.get("error") for i in imgs)
        if complete and sig != old:
            if changed_at is None:
                changed_at = now
            if sig != last:
                last, since = sig, now
            elif now - since >= settle_s and idle(page):
                return changed_at, sig
        else:
            last, since = None, None
        time.sleep(0.08)
    return changed_at, None


def wait_for_new_picture(page, root: str, old: tuple, *, what: str, timeout: float = 30.0,
                         settle_s: float = 0.5, idle=kernel_idle, img_selector: str = "img",
                         artifacts: Path | None = None, before: bytes | None = None) -> tuple:
    """The settled new signature of the images under `root`, or a failure naming `what`."""
    t0 = time.monotonic()
    changed_at, settled = _wait_for_new_picture(page, root, old, t0, timeout, settle_s, idle=idle,
                                                img_selector=img_selector)
    if settled is None:
        _fail(page, artifacts, re.sub(r"\W+", "_", what)[:60],
              f"{what}: the figure did not "
              + ("change" if changed_at is None else "settle") + f" within {timeout:.0f} s",
              {"before": before, "after": page.locator(root).screenshot()})
    return settled


def signature(page, root: str, img_selector: str = "img") -> tuple:
    return _signature(images(page, root, img_selector))


def full_run(page, lab: JupyterLab, src: Path, *, artifacts: Path | None = None,
             widget_timeout: float = 30.0, slider_timeout: float = 30.0) -> NotebookRun:
    """run_notebook + check_sliders, and the sliders the stored notebook promises are there."""
    run = run_notebook(page, lab, src, artifacts=artifacts, widget_timeout=widget_timeout)
    promised = stored_slider_models(src)
    found = sum(v["sliders"] for v in run.views)
    if promised and not found:
        _fail(page, artifacts, "sliders",
              f"{src.name}: its stored widget state has {promised} slider model(s), but the "
              f"page shows no slider (.noUi-handle) in its {len(run.views)} widget view(s)")
    t = time.monotonic()
    check_sliders(page, run, artifacts=artifacts, timeout=slider_timeout)
    run.timings["sliders_s"] = time.monotonic() - t
    return run


def tmp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
