"""End to end: a real conformance run -> Allure results -> Allure 3 HTML -> headless Chromium.

1. ``pytester.runpytest_subprocess`` runs a small real selection of ``conformance/`` (NCT on the
   tiny profile's ResNet8: the unmodified false-alarm cases, the alpha=0 noise cases
   and whatever else ``unmodified`` selects) with ``--alluredir``. The profile is a copy of
   ``fixtures/profiles/tiny.json`` with a nominal false-alarm rate of 1e-9 (``decisions``): a
   detector at 5 % read 600 times is significantly above 1e-9, so those clauses fail whatever the trained numbers are
   (deliberate, deterministic failures); the others keep their real verdicts.
2. ``npx --yes allure@3 generate RESULTS -o HTML`` builds the report (Allure 3: npm, no Java; its
   default multi-file report needs an HTTP server, not ``file://``).
3. The report is served by ``http.server`` in a thread and opened in headless Chromium through
   Selenium and Debian's chromedriver: the page must show the run's total/passed/failed counts,
   a failing test must be reachable from the tree, and on its page the clause's figure (a PNG
   attachment, from ``nnw.plots.clause_plot``) must open and decode to the attached file's size;
   the certificate must be among the report's global attachments.

Skipped, with the reason, where node/npx, the allure@3 package, chromium/chromedriver or selenium
is missing. The model cache is shared between runs (``$NNW_TEST_CACHE_DIR``, else pytest's cache
directory), so a warm run takes well under a minute; a cold one trains the tiny ResNet8 models.
"""
from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO / "conformance"
TINY = REPO / "fixtures" / "profiles" / "tiny.json"
SELECTION = "ResNet8 and NCT and (unmodified or alpha0-noise)"
ALLURE = os.environ.get("NNW_ALLURE_NPX_PACKAGE", "allure@3")  # e.g. allure@3.18.0 to pin the CLI
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000")
WAIT_S = 30

pytestmark = pytest.mark.slow


def _which(*names: str) -> str | None:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def tools():
    """node/npx with the allure@3 package, chromium, chromedriver and selenium — or a skip saying which is missing."""
    npx = _which("npx")
    if npx is None or _which("node") is None:
        pytest.skip("node/npx not found: Allure 3 is an npm package (install Node.js >= 18)")
    chromium = os.environ.get("NNW_CHROMIUM") or _which("chromium", "chromium-browser", "google-chrome")
    driver = os.environ.get("NNW_CHROMEDRIVER") or _which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("chromium and chromedriver not found (Debian: apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    try:
        probe = subprocess.run([npx, "--yes", ALLURE, "--version"], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip(f"npx --yes {ALLURE} --version timed out (no access to the npm registry?)")
    if probe.returncode != 0:
        pytest.skip(f"npx could not run {ALLURE} (no access to the npm registry?): {(probe.stderr or probe.stdout)[-500:]}")
    return {"npx": npx, "chromium": chromium, "chromedriver": driver, "allure_version": probe.stdout.strip()}


@pytest.fixture(scope="module")
def model_cache(request, tmp_path_factory) -> Path:
    """Shared by runs: ``$NNW_TEST_CACHE_DIR``, else pytest's cache directory (``-p no:cacheprovider``:
    a temporary one)."""
    env = os.environ.get("NNW_TEST_CACHE_DIR")
    if env:
        return Path(env)
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("nnw-model-cache"))
    return tmp_path_factory.mktemp("nnw-model-cache")


def _failing_profile(tmp: Path) -> Path:
    profile = json.loads(TINY.read_text())
    profile["name"] = "tiny-browser-report"
    profile["description"] = ("tests/test_browser_report.py: the tiny profile with a nominal false-alarm rate of "
                              "1e-9, so that every false-alarm clause fails (a 5 % detector on 600 reads)")
    profile["decisions"]["nominal_false_alarm_rate"] = 1e-9
    path = tmp / "tiny-browser-report.json"
    path.write_text(json.dumps(profile, indent=1))
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


def _serve(directory: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _png_attachments(html: Path) -> dict[str, list[dict]]:
    """Failing test results of the generated report -> their PNG attachments (from its data files)."""
    out = {}
    for f in (html / "data" / "test-results").glob("*.json"):
        tr = json.loads(f.read_text())
        if tr.get("status") != "failed":
            continue
        links = []
        stack = list(tr.get("steps", []))
        while stack:
            s = stack.pop()
            stack.extend(s.get("steps", []))
            if s.get("type") == "attachment" and s.get("link", {}).get("contentType") == "image/png":
                links.append(s["link"])
        out[tr["id"]] = links
    return out


def test_allure_html_report_in_headless_chromium(pytester, monkeypatch, tmp_path, tools, model_cache):
    from PIL import Image

    # 1. a small real conformance run with Allure results --------------------------------------
    results, html, cert_path = tmp_path / "allure-results", tmp_path / "allure-report", tmp_path / "certificate.json"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("COLUMNS", "300")
    run = pytester.runpytest_subprocess(
        str(CONFORMANCE), "-p", "no:cacheprovider", "-rf",
        "--nnw-profile", str(_failing_profile(tmp_path)), "--nnw-method", "NCT", "--nnw-device", "cpu",
        "--nnw-cache-dir", str(model_cache), "--nnw-certificate", str(cert_path),
        "--alluredir", str(results), "-k", SELECTION, timeout=600)
    out = run.stdout.str()
    outcomes = run.parseoutcomes()
    failed, passed = outcomes.get("failed", 0), outcomes.get("passed", 0)
    assert failed >= 1 and passed >= 1 and not outcomes.get("error"), out[-3000:]
    run.stdout.fnmatch_lines(["FAILED *test_false_alarms.py::test_false_alarms[[]NCT-ResNet8-alpha0-unmodified[]]*"])
    cert = json.loads(cert_path.read_text())
    assert cert["summary"]["counts"] == {"fail": failed, "pass": passed} and cert["summary"]["verdict"] == "fail"
    assert list(results.glob("*-attachment.png")), (
        "no PNG attachment in the Allure results: nnw.pytest_plugin._allure must attach "
        "nnw.plots.clause_plot(result) as an image/png attachment")

    # the same certificate, as the Markdown report
    from nnw.report import render_markdown

    md = render_markdown(cert)
    assert md.startswith("# nnw conformance report — FAIL")
    assert f"**FAIL** — {failed} fail, {passed} pass ({failed + passed} clauses)" in md
    assert "test_false_alarms[NCT-ResNet8-alpha0-unmodified]" in md[md.index("## Failing clauses"):md.index("## NCT")]

    # 2. Allure 3 HTML --------------------------------------------------------------------------
    gen = subprocess.run([tools["npx"], "--yes", ALLURE, "generate", str(results), "-o", str(html)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert gen.returncode == 0 and (html / "index.html").is_file(), (gen.stdout + gen.stderr)[-3000:]
    pngs = _png_attachments(html)
    assert len(pngs) == failed and all(pngs.values()), pngs
    globals_file = html / "widgets" / "globals.json"
    global_names = [a.get("name") for a in json.loads(globals_file.read_text()).get("attachments", [])] \
        if globals_file.is_file() else []
    assert "nnw certificate" in global_names, (
        f"global attachments {global_names}: the certificate is not attached at session level "
        "(nnw.pytest_plugin.ClauseCollector.pytest_sessionfinish must call allure.global_attach.file(...))")

    # 3. the page in headless Chromium ----------------------------------------------------------
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = tools["chromium"]
    for arg in CHROMIUM_ARGS + (f"--user-data-dir={tmp_path / 'chromium-profile'}",):
        options.add_argument(arg)
    server, url = _serve(html)
    driver = webdriver.Chrome(options=options, service=Service(tools["chromedriver"]))
    try:
        driver.set_page_load_timeout(WAIT_S)
        wait = WebDriverWait(driver, WAIT_S)
        driver.get(url)

        def count(name: str) -> int:
            el = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, f'[data-testid="metadata-item-{name}"]')))
            return int(el.find_element(By.CSS_SELECTOR, '[data-testid="metadata-value"]').text.strip())

        assert (count("total"), count("passed"), count("failed")) == (failed + passed, passed, failed)

        # the certificate is a global attachment of the report
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="nav-tab-globalAttachments"]'))).click()
        wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, '[data-testid="base-layout"]'), "nnw certificate"))
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="nav-tab-results"]'))).click()

        # a failing test, reached from the tree (Failed tab), shows its clause figure
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="tab-failed"]'))).click()
        leaf = wait.until(EC.element_to_be_clickable(
            (By.XPATH, '//*[@data-testid="tree-leaf"][.//*[@data-testid="tree-leaf-status-failed"]]')))
        leaf.click()
        wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="test-result-status-failed"]')))
        test_id = driver.current_url.split("#", 1)[-1].strip("/").split("/")[-1]
        assert test_id in pngs, (driver.current_url, sorted(pngs))
        message = driver.find_element(By.CSS_SELECTOR, '[data-testid="test-result-error-message"]').text
        assert "IEEE 3304 false alarm rate" in message and "significantly above the nominal 1e-09" in message, message
        header = wait.until(EC.element_to_be_clickable(
            (By.XPATH, '//*[@data-testid="test-result-attachment-header"][contains(., "image/png")]')))
        header.click()
        img = wait.until(lambda d: next((i for i in d.find_elements(By.TAG_NAME, "img") if d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", i)), False))
        shown = tuple(driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img))
        link = pngs[test_id][0]
        attached = (html / "data" / "attachments" / f"{link['id']}{link['ext']}").read_bytes()
        with Image.open(io.BytesIO(attached)) as im:
            assert im.format == "PNG" and shown == im.size
    except (AssertionError, WebDriverException):
        driver.save_screenshot(str(tmp_path / "failure.png"))
        (tmp_path / "failure.html").write_text(driver.page_source)
        print(f"browser state saved: {tmp_path / 'failure.png'}, {tmp_path / 'failure.html'}")
        raise
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
