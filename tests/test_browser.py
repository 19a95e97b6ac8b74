"""The HTML report opened in a real browser, as a person would: headless Chromium.

For several real captures (and a crafted hostile one): no console errors, no request
leaves the page, the verdict is visible and says what failed, the table filters and
sorts, the page reads without JavaScript, and nothing from the capture runs. Screenshots
go to ``test-artifacts/`` (one also to ``docs/report.png`` for the README when
``PCAPDIAG_UPDATE_DOCS=1``). Skipped only
when chromium or chromedriver is missing; no browser process outlives the module.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_report_html import HOSTILE, hostile_capture

import pcapdiag
from pcapdiag.report import html as report_html
from pcapdiag.report.figures import label

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
ARTIFACTS = ROOT / "test-artifacts"
DOCS_SHOT = ROOT / "docs" / "report.png"
CHROMIUM = os.environ.get("PCAPDIAG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = (
    os.environ.get("PCAPDIAG_CHROMEDRIVER")
    or shutil.which("chromedriver")
    or "/usr/bin/chromedriver"
)

_MISSING = [p for p in (CHROMIUM, DRIVER) if not os.path.exists(p)]
if _MISSING:
    pytest.skip(
        f"the browser test needs chromium and chromedriver; missing: {', '.join(_MISSING)}"
        " (tools/setup_test_env.sh installs them)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

# capture(s) -> words the verdict must contain
CASES: dict[str, tuple[list[str], list[str]]] = {
    "race": (
        ["server_close_after_request-stdlib-keepalive_race.pcap"],
        ["closed by the server right after a request", "keep-alive race", "RemoteDisconnected",
         "ServerDisconnectedError", "What to do"],
    ),
    "refused": (["refused-requests.pcap"], ["refused", "RST", "ConnectionRefusedError"]),
    "tls_alert": (
        ["tls_alert-requests-tls12.pcap"],
        ["failed the TLS handshake", "unknown_ca", "SSLCertVerificationError"],
    ),
    "truncated": (
        ["truncated_response-requests.pcap"],
        ["cut off by the server in the middle of a response", "IncompleteRead"],
    ),
    "keepalive_idle": (
        ["keepalive-idle-requests.pcap"], ["No connection failed", "closes idle connections"]
    ),
    "mixed": (
        ["server_close_after_request-stdlib-keepalive_race.pcap", "refused-requests.pcap",
         "tls_alert-requests-tls12.pcap", "truncated_response-requests.pcap",
         "keepalive-idle-requests.pcap", "server_reset-requests.pcap"],
        ["5 of 8 connections failed", "refused", "TLS handshake", "keep-alive race"],
    ),
}  # fmt: skip


# -- processes ------------------------------------------------------------------------------
def _descendants(pid: int) -> set[int]:
    try:
        import psutil

        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except ImportError:
        pass
    except Exception:
        return set()
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone, just not reaped


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
        "--window-size=1280,1000", "--hide-scrollbars", "--force-device-scale-factor=1",
    ):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(DRIVER)
    driver = webdriver.Chrome(options=opts, service=service)
    pids = {service.process.pid} | _descendants(service.process.pid)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        left = sorted(p for p in pids if _alive(p))
        assert not left, f"browser processes left behind: {left}"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reports")
    out = {}
    for name, (files, _words) in CASES.items():
        a = pcapdiag.analyze([SAMPLES / f for f in files])
        out[name] = folder / f"{name}.html"
        report_html.write_report(a, out[name])
    out["hostile"] = folder / "hostile.html"
    report_html.write_report(pcapdiag.analyze(hostile_capture(folder)), out["hostile"])
    return out


def _open(driver: webdriver.Chrome, path: Path) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get_log("performance")
    driver.get(path.as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def _assert_clean(driver: webdriver.Chrome, path: Path) -> None:
    """No console errors, no request but the page itself, no resource fetched."""
    logs = driver.get_log("browser")
    bad = [e for e in logs if e["level"] in ("SEVERE", "WARNING")]
    assert not bad, bad
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert all(u == path.as_uri() or u.startswith("data:") for u in urls), urls
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(u.startswith("data:") for u in resources), resources
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def _visible_rows(driver: webdriver.Chrome) -> list:
    return [
        r for r in driver.find_elements(By.CSS_SELECTOR, "#conn-table tbody tr") if r.is_displayed()
    ]


def _screenshot(driver: webdriver.Chrome, name: str, *, full: bool = True) -> Path:
    """A PNG of the page under test-artifacts/: the whole page, or what a window shows."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"report-{name}.png"
    if not full:
        driver.save_screenshot(str(path))
        return path
    size = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size[0], "height": min(size[1], 16000), "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


# -- tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_report_in_browser(browser: webdriver.Chrome, reports: dict[str, Path], name: str) -> None:
    path = reports[name]
    _open(browser, path)
    _assert_clean(browser, path)
    verdict = browser.find_element(By.ID, "verdict")
    assert verdict.is_displayed()
    assert verdict.location["y"] < 400  # at the top: read before anything else
    text = verdict.text
    for word in CASES[name][1]:
        assert word in text, (word, text)
    # the script ran: the table controls are shown and count the rows
    assert browser.find_element(By.ID, "table-controls").is_displayed()
    rows = _visible_rows(browser)
    assert rows
    assert (
        browser.find_element(By.ID, "shown-count").text == f"{len(rows)} of {len(rows)} rows shown"
    )
    # figures are inline SVG with text, drawn at a readable size
    for fig in browser.find_elements(By.CSS_SELECTOR, "figure.fig svg"):
        assert fig.size["width"] > 500 and fig.size["height"] > 30
    _screenshot(browser, name)


def test_table_filter_and_sort(browser: webdriver.Chrome, reports: dict[str, Path]) -> None:
    path = reports["mixed"]
    a = pcapdiag.analyze([SAMPLES / f for f in CASES["mixed"][0]])
    _open(browser, path)
    total = len(a.records)
    assert len(_visible_rows(browser)) == total

    box = browser.find_element(By.ID, "filter")
    box.send_keys("refused")
    assert len(_visible_rows(browser)) == sum(r.outcome == "refused" for r in a.records) == 1
    assert browser.find_element(By.ID, "shown-count").text == f"1 of {total} rows shown"
    box.clear()
    box.send_keys("server_idle_close 10.99.1.2")  # several words: all must match
    assert len(_visible_rows(browser)) == sum(r.outcome == "server_idle_close" for r in a.records)
    box.clear()
    box.send_keys(" ")
    assert len(_visible_rows(browser)) == total

    Select(browser.find_element(By.ID, "outcome-filter")).select_by_value("tls_alert")
    assert [r.get_attribute("data-outcome") for r in _visible_rows(browser)] == ["tls_alert"]
    Select(browser.find_element(By.ID, "outcome-filter")).select_by_value("")
    browser.find_element(By.ID, "problems-only").click()
    assert len(_visible_rows(browser)) == len(a.problems)
    browser.find_element(By.ID, "problems-only").click()
    assert len(_visible_rows(browser)) == total

    def column(i: int) -> list[str]:
        cells = [r.find_elements(By.TAG_NAME, "td")[i].text for r in _visible_rows(browser)]
        return [c.split("\n")[0] for c in cells]  # the # cell names the file below the id

    heads = browser.find_elements(By.CSS_SELECTOR, "#conn-table thead th")
    names = [h.text.strip() for h in heads]
    idx = names.index("#")
    heads[idx].find_element(By.TAG_NAME, "button").click()
    ids = [int(x) for x in column(idx)]
    assert ids == sorted(ids)
    assert heads[idx].get_attribute("aria-sort") == "ascending"
    heads[idx].find_element(By.TAG_NAME, "button").click()
    assert [int(x) for x in column(idx)] == sorted(ids, reverse=True)
    # numeric sort of durations uses the exact value, not the text ("602.2 ms" < "1.02 s")
    dur = names.index("duration")
    heads[dur].find_element(By.TAG_NAME, "button").click()
    by_id = {r.id: r.end_ns - r.start_ns for r in a.records}
    order = [by_id[int(x)] for x in column(idx)]
    assert order == sorted(order)
    # text sort on the outcome column
    oc = names.index("outcome")
    heads[oc].find_element(By.TAG_NAME, "button").click()
    outcomes = column(oc)
    assert outcomes == sorted(outcomes)
    _assert_clean(browser, path)


def test_readable_without_javascript(browser: webdriver.Chrome, reports: dict[str, Path]) -> None:
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        _open(browser, reports["mixed"])
        assert browser.find_element(By.ID, "verdict").is_displayed()
        assert not browser.find_element(By.ID, "table-controls").is_displayed()
        rows = _visible_rows(browser)
        assert len(rows) == len(pcapdiag.analyze([SAMPLES / f for f in CASES["mixed"][0]]).records)
        heads = browser.find_elements(By.CSS_SELECTOR, "#conn-table thead th")
        assert heads[0].text == "#" and not heads[0].find_elements(By.TAG_NAME, "button")
        assert browser.find_elements(By.CSS_SELECTOR, "figure.ladder svg")
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_hostile_capture_stays_text(browser: webdriver.Chrome, reports: dict[str, Path]) -> None:
    path = reports["hostile"]
    _open(browser, path)
    _assert_clean(browser, path)  # a blocked inline script or image would log a CSP error
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "<script>window.__pwned=1</script>" in body  # request line, in the evidence
    assert label(HOSTILE) in body  # the SNI, in the table
    assert "h\"'><svg onload=window.__pwned=5>$x$.pcap" in body  # the file name
    assert "$\\frac{1}{2}$" in body
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    # the filter still works with hostile rows
    box = browser.find_element(By.ID, "filter")
    box.send_keys("<script>")
    assert len(_visible_rows(browser)) == 2
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    _screenshot(browser, "hostile")


def test_screenshot_for_the_readme(browser: webdriver.Chrome, reports: dict[str, Path]) -> None:
    _open(browser, reports["mixed"])
    browser.set_window_size(1280, 1000)
    shot = _screenshot(browser, "readme", full=False)
    from PIL import Image  # matplotlib's own dependency

    img = Image.open(shot)
    assert img.size[0] >= 1000
    small = img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    tmp = ARTIFACTS / "report-readme-small.png"
    small.save(tmp, optimize=True)
    assert tmp.stat().st_size < 300_000, tmp.stat().st_size
    if os.environ.get("PCAPDIAG_UPDATE_DOCS") != "1":
        return  # the suite never rewrites tracked files unless asked to
    DOCS_SHOT.parent.mkdir(exist_ok=True)
    if not DOCS_SHOT.exists() or DOCS_SHOT.read_bytes() != tmp.read_bytes():
        shutil.copyfile(tmp, DOCS_SHOT)
