"""A real headless Chromium for browser tests, driven by selenium.

Debian's ``chromium`` and ``chromium-driver`` packages (``make browser-deps``,
which ``make test`` runs, installs them); nothing is downloaded at run time. The
flags keep Chromium off the network: this machine reaches only loopback, and a
browser that phones home gets its connections refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

from tests._live import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
_SEEN_CHARS = 3000  # how much of the page's event log a timeout message shows
_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # we run as root in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or ``None`` when they can."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if absent:
        return (
            f"{' and '.join(absent)} not found: install Debian's chromium and chromium-driver"
            " (`make browser-deps`, which `make test` runs, does it)"
        )
    return None


class Browser:
    """One headless Chromium window.

    :param profile: an empty directory for the browser profile.
    :param size: the window's width and height in CSS pixels.
    :param flags: more Chromium flags (e.g. ``--ignore-certificate-errors`` for
        a server whose certificate the test made).
    """

    def __init__(self, profile: Path, size: tuple[int, int] = (1280, 900),
                 flags: Sequence[str] = ()) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*_FLAGS, f"--user-data-dir={profile}",
                     f"--window-size={size[0]},{size[1]}", *flags):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        self.driver.set_script_timeout(10)

    def open(self, url: str) -> None:
        """Load *url* and wait for its ``load`` event."""
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        """Run *script* (a function body; ``arguments[i]`` are *args*) and return its result."""
        return self.driver.execute_script(script, *args)

    def wait_js(self, expression: str, timeout: float = 10.0, what: str | None = None) -> Any:
        """Poll the page until the JavaScript *expression* is truthy; return its value.

        :raises TimeoutError: with *what* (or the expression) and the page's
            ``window.seen`` log, if any, when *timeout* passes first.
        """

        def state() -> str:
            try:
                seen = self.js("return JSON.stringify(window.seen || null)")
            except WebDriverException as exc:
                seen = f"<unavailable: {exc.msg}>"
            if len(seen) > _SEEN_CHARS:
                seen = f"... {seen[-_SEEN_CHARS:]}"
            return f"{what or expression}; the page saw: {seen}"

        return wait_for(lambda: self.js(f"return ({expression});"), timeout=timeout,
                        interval=0.02, message=state)

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the viewport to *path*."""
        if not self.driver.save_screenshot(str(path)):
            raise RuntimeError(f"chromium could not save a screenshot to {path}")

    def close(self) -> None:
        """Quit the browser and its driver."""
        self.driver.quit()
