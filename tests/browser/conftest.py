"""Fixtures of the browser tier: one Chromium and one JupyterLab for the whole test session.

The tier never skips: a missing chromium is installed with apt-get (as CI does), and anything that
cannot be had makes the tests fail with the reason.
"""

from __future__ import annotations

import re
import shutil

import pytest

from browser import harness


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        return harness.ensure_chromium()
    except harness.BrowserTierError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def browser(chromium_path, tmp_path_factory):
    """A headless Chromium (a persistent context on a fresh user-data dir) for the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:  # pragma: no cover - a dev dependency
        pytest.fail(f"Playwright's Python client is missing ({error}): `make install` adds it "
                    "(pyproject's dev extra)", pytrace=False)
    pw = sync_playwright().start()
    try:
        context = harness.launch_chromium(pw, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()
    finally:
        pw.stop()


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """The session's JupyterLab, with the widget extension as installed."""
    server = harness.JupyterLab(tmp_path_factory.mktemp("lab"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def notebook7(tmp_path_factory):
    """The session's Notebook 7 (`jupyter notebook`, the classic interface on JupyterLab 4)."""
    server = harness.Notebook7(tmp_path_factory.mktemp("notebook7"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lab_without_widgets(tmp_path_factory):
    """A second JupyterLab with the widget extension disabled: the negative control's."""
    server = harness.JupyterLab(tmp_path_factory.mktemp("lab-nowidgets"),
                                disabled_extensions=[harness.WIDGET_MANAGER], name="lab-nowidgets")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.set_default_timeout(30_000)
    yield page
    page.close()


@pytest.fixture
def artifacts(request):
    """Where a failing test leaves its screenshots: test-artifacts/browser/<test name>/."""
    path = harness.ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    shutil.rmtree(path, ignore_errors=True)
    return path
