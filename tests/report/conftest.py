"""Render HTML in real headless Chromium and report what a reader would see.

:func:`render_page` starts Debian's ``chromium`` (installed by ``.ci/run``) with a private
profile and a DevTools port, loads a file over the DevTools protocol (a small websocket
client), and collects console errors, uncaught exceptions, failed or non-local requests, and
every ``<img>``'s decoded size; optionally a full-page screenshot.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)

TABLES_JS = """JSON.stringify(Object.fromEntries(Array.from(document.querySelectorAll('table')).map(t =>
  [t.id, Array.from(t.querySelectorAll('tr')).map(r => Array.from(r.children).map(c => c.textContent))])))"""

IMAGES_JS = """
Promise.all(Array.from(document.images).map(img => img.decode().then(() => true, () => false)))
  .then(decoded => JSON.stringify(Array.from(document.images).map((img, i) => ({
    alt: img.alt, scheme: img.src.split(':')[0], complete: img.complete, decoded: decoded[i],
    width: img.naturalWidth, height: img.naturalHeight}))))
"""


@dataclass
class Page:
    """What Chromium made of a page."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    title: str = ""
    text: str = ""
    table_ids: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    tables: dict[str, list[list[str]]] = field(default_factory=dict)
    screenshot: bytes | None = None


class _DevTools:
    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=None, open_timeout=30)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            self.events.append(message)
            if message.get("method") == method:
                return message

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating {expression[:40]!r}: {result['exceptionDetails']}")
        return result["result"].get("value")


def render_page(path: Path, profile: Path, *, screenshot: bool = False, timeout: float = 90) -> Page:
    """Load ``path`` in headless Chromium and inspect it."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            targets = json.load(response)
        page_target = next(t for t in targets if t["type"] == "page")
        tools = _DevTools(page_target["webSocketDebuggerUrl"])
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                tools.call(f"{domain}.enable")
            tools.call("Page.navigate", url=Path(path).resolve().as_uri())
            tools.wait_for("Page.loadEventFired", timeout=timeout)
            page = Page()
            page.images = json.loads(tools.evaluate(IMAGES_JS))
            page.title = tools.evaluate("document.title")
            page.text = tools.evaluate("document.body.innerText")
            page.table_ids = tools.evaluate("Array.from(document.querySelectorAll('table')).map(t => t.id)")
            page.links = tools.evaluate("Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))")
            page.tables = json.loads(tools.evaluate(TABLES_JS))
            if screenshot:
                shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                page.screenshot = base64.b64decode(shot["data"])
            tools.call("Runtime.evaluate", expression="1")  # drain events that arrived meanwhile
            for event in tools.events:
                method, params = event.get("method"), event.get("params", {})
                if method == "Runtime.exceptionThrown":
                    page.errors.append(f"exception: {params['exceptionDetails'].get('text')}")
                elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    page.errors.append(f"console.{params['type']}: {params.get('args')}")
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    page.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
                elif method == "Network.loadingFailed":
                    page.errors.append(f"request failed: {params.get('errorText')}")
                elif method == "Network.requestWillBeSent":
                    page.requests.append(params["request"]["url"])
            return page
        finally:
            try:
                tools.call("Browser.close", timeout=10)
            except Exception:  # the browser may close the socket first
                pass
            tools.ws.close()
    finally:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def chromium(tmp_path):
    """``chromium(path, screenshot=False) -> Page``: render a file in headless Chromium."""
    count = iter(range(1000))

    def render(path: Path, *, screenshot: bool = False) -> Page:
        return render_page(path, tmp_path / f"chromium-profile-{next(count)}", screenshot=screenshot)

    return render
