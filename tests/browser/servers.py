"""The processes of the browser tier: Debian's Chromium, JupyterLab and Voila, each our own.

- `ensure_chromium()`: the `chromium` on PATH, installed with apt-get when missing (as root); the
  tier fails, never skips, when it cannot be had.
- `launch_chromium()`: Playwright's Python client driving that Chromium (Playwright's own browser
  download does not work here), headless, on a fresh user-data dir, with every host name but
  localhost resolving to nothing, so a page that wants a CDN fails at once instead of hanging.
- `JupyterLab` / `Voila`: a server on a free 127.0.0.1 port with a token, every Jupyter directory
  in a temp dir, stopped by its PID and waited for; the kernels it leaves are ended by their PIDs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
NO_REMOTE_HOSTS = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
WIDGET_MANAGER = "@jupyter-widgets/jupyterlab-manager"  # the widget extension of JupyterLab
ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"  # the "news" pop-up


class BrowserTierError(AssertionError):
    """A check of the browser tier failed (an AssertionError, so pytest reports it as a failure)."""


# --------------------------------------------------------------------------- Chromium
def ensure_chromium() -> str:
    """The path of Debian's `chromium`, installed with apt-get when it is not on PATH."""
    path = shutil.which("chromium")
    if path:
        return path
    if not shutil.which("apt-get"):
        raise BrowserTierError("`chromium` is not on PATH and there is no apt-get to install it: "
                               "install Debian's chromium package (or put a chromium on PATH)")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise BrowserTierError("`chromium` is not on PATH and installing it needs root: run "
                               "`sudo apt-get install -y chromium`, then the tests again")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    install = ["apt-get", "install", "-y", "chromium"]
    for cmd in (install, ["apt-get", "update"], install):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        log.append(f"$ {' '.join(cmd)}  -> exit {proc.returncode}\n"
                   f"{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
        if cmd is install and proc.returncode == 0 and shutil.which("chromium"):
            return shutil.which("chromium")
    raise BrowserTierError("could not install Debian's chromium with apt-get, which the browser "
                           "tests need:\n" + "\n".join(log))


def launch_chromium(playwright, user_data_dir: Path, *, viewport=(1280, 900)):
    """A persistent Chromium context on a fresh user-data dir.

    Host names other than localhost resolve to nothing (a Chromium flag, not a Playwright route:
    a route is served by this Python process only while it is inside a Playwright call, which
    stalls the page's own requests while a test sleeps), so a page that wants a CDN fails at once.
    """
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=ensure_chromium(),
        headless=True,
        args=CHROMIUM_FLAGS + [NO_REMOTE_HOSTS],
        viewport={"width": viewport[0], "height": viewport[1]},
    )


# --------------------------------------------------------------------------- JupyterLab
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """PIDs of the processes below `pid` (kernels run in sessions of their own, but remain its
    children), read from /proc; [] where there is no /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class _Server:
    """A Jupyter server process of our own on a free 127.0.0.1 port, every Jupyter directory in
    `workdir`; stopped by its PID. Subclasses say how to start it and when it is ready."""

    kind = "server"

    def __init__(self, workdir: Path, name: str):
        self.workdir = Path(workdir)
        self.root = self.workdir / "root"  # the server's working dir (notebook copies for a Lab)
        self.name = name
        self.token = secrets.token_hex(16)
        self.port = None
        self.proc = None
        self.log_path = self.workdir / f"{name}.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> None:
        """Return when the server answers; raise OSError otherwise."""
        raise NotImplementedError

    def _prepare(self) -> None:
        pass

    # -- life cycle
    def start(self, timeout: float = 90.0):
        for sub in ("root", "config/labconfig", "data", "runtime", "workspaces", "ipython"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self._prepare()
        # MPLBACKEND=Agg (common in CI) would draw the widgets' inline figures into nothing
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
        env.update(
            JUPYTER_CONFIG_DIR=str(self.workdir / "config"),
            JUPYTER_DATA_DIR=str(self.workdir / "data"),
            JUPYTER_RUNTIME_DIR=str(self.workdir / "runtime"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.workdir / "workspaces"),
            IPYTHONDIR=str(self.workdir / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
        )
        last_log = ""
        for _ in range(3):  # a port taken between free_port() and the bind: try another one
            self.port = free_port()
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=self.root)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    self._ready()
                    return self
                except OSError:
                    time.sleep(0.2)
            last_log = self.log_tail()
            if self.proc.poll() is None:  # still not answering: give up
                self.stop()
                raise BrowserTierError(f"{self.kind} did not answer on port {self.port} within "
                                       f"{timeout:.0f} s; its log:\n{last_log}")
            if "already in use" not in last_log:
                break
        raise BrowserTierError(f"{self.kind} exited with code {self.proc.returncode} at start; "
                               f"its log:\n{last_log}")

    def stop(self) -> None:
        """Stop the server by its PID and wait for it; then end any kernel it left behind."""
        if self.proc is None or self.proc.poll() is not None:
            return
        below = _descendants(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        for pid in below:  # each was started by this server, and is ended by its own PID
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- HTTP
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/", **query) -> str:
        q = "&".join([f"token={self.token}"]
                     + [k if v is True else f"{k}={v}" for k, v in query.items()])
        return f"{self.base}{path}?{q}"

    def api(self, method: str, path: str, body=None, timeout: float = 30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None


class JupyterLab(_Server):
    """JupyterLab with a token, port_retries=0, the announcements pop-up and `disabled_extensions`
    disabled (labconfig/page_config.json in its own config dir)."""

    kind = "JupyterLab"

    def __init__(self, workdir: Path, *, disabled_extensions=(), name: str = "lab"):
        super().__init__(workdir, name)
        self.disabled = [ANNOUNCEMENTS, *disabled_extensions]

    def _prepare(self) -> None:
        (self.workdir / "config/labconfig/page_config.json").write_text(
            json.dumps({"disabledExtensions": {name: True for name in self.disabled}}))

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={self.port}",
                "--no-browser", "--allow-root", f"--IdentityProvider.token={self.token}",
                "--ServerApp.port_retries=0", f"--ServerApp.root_dir={self.root}"]

    def _ready(self) -> None:
        self.api("GET", "/api/status", timeout=2)

    def stop(self) -> None:
        """Shut its kernels down through the API first, then stop it (see _Server.stop)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                for kernel in self.api("GET", "/api/kernels", timeout=5):
                    self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=10)
            except (OSError, ValueError):
                pass
        super().stop()

    @staticmethod
    def notebook_path(name: str) -> str:
        """The page that opens notebook `name` (relative to the root) in this interface."""
        return f"/lab/tree/{name}"

    def contents(self, name: str, content: bool = True) -> dict:
        """The file's model; content=False only stats the file (cheap enough to poll)."""
        return self.api("GET", f"/api/contents/{name}?content={int(content)}")

    def shutdown_kernels_of(self, name: str) -> None:
        for session in self.api("GET", "/api/sessions"):
            if session.get("path") == name:
                self.api("DELETE", f"/api/sessions/{session['id']}")


class Notebook7(JupyterLab):
    """The classic interface, Notebook 7 (`jupyter notebook`): the same Jupyter server and page
    config as JupyterLab, started with `python -m notebook`; a notebook opens at /notebooks/NAME."""

    kind = "Notebook 7"

    def __init__(self, workdir: Path, *, name: str = "notebook7"):
        super().__init__(workdir, name=name)

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "notebook", *super()._command()[3:]]

    @staticmethod
    def notebook_path(name: str) -> str:
        return f"/notebooks/{name}"


class Voila(_Server):
    """Voilà serving one notebook as an app (what `make explore` runs), with a token."""

    kind = "Voila"

    def __init__(self, workdir: Path, notebook: Path, name: str = "voila"):
        super().__init__(workdir, name)
        self.notebook = Path(notebook).resolve()

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "voila", str(self.notebook), "--no-browser",
                "--Voila.ip=127.0.0.1", f"--port={self.port}", "--Voila.port_retries=0",
                f"--Voila.token={self.token}", "--show_tracebacks=True"]

    def _ready(self) -> None:
        try:  # a static path: answers without starting a kernel (a 404 is an answer)
            self.api("GET", "/voila/static/", timeout=2)
        except urllib.error.HTTPError:
            return
