"""The Dagster UI in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from launchpad_dev.tools import missing

# Debian's chromium; LAUNCHPAD_CHROMIUM names another build (the GitHub runners' Google Chrome).
CHROMIUM = os.environ.get("LAUNCHPAD_CHROMIUM") or "/usr/bin/chromium"
# As root, in a sandbox with no network but loopback: no sandbox, no background traffic.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def dismiss_first_visit_dialog(page) -> bool:
    """The UI asks new visitors to join the community: click Skip if it is there."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5000)
    except Exception:  # noqa: BLE001 - no dialog this time
        return False
    skip.click()
    skip.wait_for(state="hidden", timeout=10000)
    return True


def wait_for_texts(page, texts: list[str], timeout_ms: int = 60000) -> None:
    """Until each text is visible on the page (exact match)."""
    for text in texts:
        page.get_by_text(text, exact=True).first.wait_for(timeout=timeout_ms)


def goto(page, url: str, seen: dict) -> None:
    """page.goto, tried again (up to 3 times) when Chromium reports ERR_NETWORK_CHANGED: it
    aborts a navigation whenever an interface appears, and the engines add a veth for every
    container another test starts. Each retry is counted in seen["network changed"]."""
    for attempt in range(4):
        try:
            page.goto(url, wait_until="domcontentloaded")
            return
        except Exception as error:  # noqa: BLE001 - playwright's Error; only this one is retried
            if "ERR_NETWORK_CHANGED" not in str(error) or attempt == 3:
                raise
            seen["network changed"] = seen.get("network changed", 0) + 1
            page.wait_for_timeout(1000)


def load(page, url: str, texts: list[str], seen: dict, slow: Path) -> None:
    """Open `url` until each text shows. Not shown within 60 s, the page as it was is kept
    (`slow`, a screenshot) and loaded again once; seen["reloaded"] lists the URLs reloaded.
    Seen in CI: the asset graph not drawn in 60 s with the machine's load at 20; once (stop 41,
    Podman's login tier) a run page that had not shown its status after 60 s, its cause not kept
    (a guess: a query aborted by ERR_NETWORK_CHANGED, which other tests' containers cause, and
    not sent again); the screenshot keeps the next one's."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    goto(page, url, seen)
    try:
        wait_for_texts(page, texts)
    except PlaywrightTimeout:
        page.screenshot(path=str(slow))
        seen.setdefault("reloaded", []).append(url)
        goto(page, url, seen)
        wait_for_texts(page, texts)


def capture_ui(
    url: str,
    location: str,
    group: str,
    assets: list[str],
    run_id: str,
    out: Path,
    credentials: tuple[str, str] | None = None,
    name: str = "ui",
) -> dict:
    """Open the asset graph and the run page; screenshot both (NAME-asset-graph.png,
    NAME-run.png); return what was seen, with whether the "Materialize all" button is enabled.
    With `credentials` (user, password) the browser logs in to the login proxy (HTTP basic
    authentication) and accepts its certificate, which is its own CA's (the tests check that
    certificate with the CA; the browser's store does not hold it)."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        missing(f"{CHROMIUM} is not installed (bash .ci/run installs Debian's chromium; LAUNCHPAD_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    seen: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            login = {}
            if credentials:
                login = {
                    "http_credentials": {"username": credentials[0], "password": credentials[1]},
                    "ignore_https_errors": True,
                }
            page = browser.new_page(viewport={"width": 1400, "height": 900}, **login)
            graph = f"{url}/locations/{location}/asset-groups/{group}"
            load(page, graph, assets, seen, out / f"{name}-slow.png")
            seen["dialog dismissed"] = dismiss_first_visit_dialog(page)
            page.wait_for_function("() => !document.body.innerText.includes('Loading...')", timeout=30000)
            page.wait_for_timeout(1000)  # let the graph layout settle
            seen["asset graph"] = [a for a in assets if page.get_by_text(a, exact=True).count() > 0]
            materialize = page.get_by_role("button", name="Materialize all")
            seen["materialize enabled"] = materialize.count() > 0 and materialize.first.is_enabled()
            page.screenshot(path=str(out / f"{name}-asset-graph.png"))

            load(page, f"{url}/runs/{run_id}", ["Success"], seen, out / f"{name}-run-slow.png")
            seen["run page"] = page.get_by_text(run_id[:8]).count() > 0
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / f"{name}-run.png"))
        finally:
            browser.close()
    return seen
