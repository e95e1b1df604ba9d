"""Headless Chromium from the system packages, driven by selenium; never a download.

Debian's ``chromium`` and ``chromium-driver`` packages provide the browser and
``/usr/bin/chromedriver``; selenium is told that path (and ``SE_OFFLINE``), so
selenium-manager never looks for a driver or browser on the network. The flags
keep a closed network quiet: no background requests, updates, sync or QUIC.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

CHROMEDRIVER_PATHS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--metrics-recording-only",
    "--password-store=basic",
)


def _first(paths: tuple[str, ...], env: str) -> str | None:
    """$env if set (a browser elsewhere), else the first of the packaged paths that exists."""
    if os.environ.get(env):
        paths = (os.environ[env],)
    return next((p for p in paths if os.access(p, os.X_OK)), None)


def _chromium() -> str | None:
    return _first(CHROMIUM_PATHS, "ASTTAPI_CHROMIUM")


def _chromedriver() -> str | None:
    return _first(CHROMEDRIVER_PATHS, "ASTTAPI_CHROMEDRIVER")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None if they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if _chromium() is None or _chromedriver() is None:
        return "no system Chromium (Debian: apt-get install chromium chromium-driver)"
    return None


def start(width: int = 1280, height: int = 900):
    """A fresh headless Chromium (own profile dir, removed on quit) with console logging on."""
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never fetch anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="asttapi-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=_chromedriver())
    driver = webdriver.Chrome(service=service, options=options)
    quit_ = driver.quit

    def quit_and_clean() -> None:
        try:
            quit_()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean  # type: ignore[method-assign]
    if width < 500:
        # A headless window is never narrower than ~500 px: emulate the phone.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
        )
    return driver


def console_errors(driver) -> list[dict]:
    """Console messages of level SEVERE since the last call (CSP violations land here too)."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot_dir() -> Path:
    """Where screenshots go: $ASTTAPI_SCREENSHOTS or a fresh temp dir (printed by the tests)."""
    base = os.environ.get("ASTTAPI_SCREENSHOTS")
    path = Path(base) if base else Path(tempfile.gettempdir()) / "asttapi-browser-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
