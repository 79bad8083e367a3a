"""The HTML report of a run, in a real browser (headless Chromium through Selenium).

A small run (a random CNN, a few PNGs, a keyed array, a truncated PNG,
deletion/insertion metrics) is written with class names and file names that
are HTML/JS payloads. In the browser the report must load with no console
error, every ``<img>`` must decode (``naturalWidth > 0``), the summary
table's numbers must be the manifest's (recomputed here), sorting by a
metric must reorder the gallery as sorting the manifest does, the class
filter and the pages must show the right inputs, and no payload may run (no
alert, ``window.pwned`` unset, no element it would create) while each shows
as text. A screenshot goes to the test's tmp dir.

Needs Chromium and its driver (``apt-get install chromium chromium-driver``;
``.ci/run`` installs them) and Selenium (the ``dev`` extra).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

Image = pytest.importorskip("PIL.Image")

from saliency_tf1.demo import build_cnn  # noqa: E402
from saliency_tf1.streaming import ModelSpec, explain_to_dir, read_manifest  # noqa: E402
from saliency_tf1.visualization.report import write_report  # noqa: E402

v1 = tf.compat.v1
SIZE, CLASSES = 16, 4
METRICS = ("deletion_auc", "insertion_auc")

#: File names, keys and class names that would run script if not escaped.
PAYLOAD_FILE = "<img src=x onerror=alert(1)>.png"
PAYLOAD_FILE_2 = "\"><svg onload=window.pwned=1>.png"
PAYLOAD_BROKEN = "<b onmouseover=window.pwned=2>broken.png"
PAYLOAD_KEY = "<iframe src=javascript:window.pwned=3></iframe>"
CLASS_NAMES = ["</script><script>window.pwned=4</script>", "<img src=y onerror=window.pwned=5>",
               "cat & dog", "'\"quote"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder with its report; returns (folder, records)."""
    root = tmp_path_factory.mktemp("report")
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="x")
        net = build_cnn(x, CLASSES, seed=4, widths=(4, 8))
        tf.identity(net["logits"], name="logits")
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            frozen = v1.graph_util.convert_variables_to_constants(
                session, graph.as_graph_def(), ["logits"])
    (root / "model.pb").write_bytes(frozen.SerializeToString())
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    names = [f"plain{i}.png" for i in range(6)] + [PAYLOAD_FILE, PAYLOAD_FILE_2]
    for name in names:  # a colour each, with noise: the model predicts several classes
        noise = rng.integers(-40, 41, (SIZE, SIZE, 3))
        pixels = np.clip(rng.integers(0, 256, 3) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / name, format="PNG")
    (images / PAYLOAD_BROKEN).write_bytes(b"\x89PNG\r\n\x1a\n")
    inputs = [str(images / n) for n in [*names, PAYLOAD_BROKEN]]
    inputs.append((PAYLOAD_KEY, rng.uniform(0, 1, (SIZE, SIZE, 3)).astype(np.float32)))
    spec = ModelSpec(str(root / "model.pb"), "x", "logits", conv_tensor=net["conv"].name)
    out = root / "run"
    summary = explain_to_dir(inputs, spec, ["gradient", "gradcam"], out, batch_size=4,
                             metrics=("deletion", "insertion"), metric_steps=6,
                             class_names=CLASS_NAMES)
    assert (summary.explained, summary.failed) == (9, 1)
    write_report(out)
    return out, read_manifest(out)


def test_report_pages_escape_every_outside_name(run):
    out, records = run
    pages = [out / "report" / "index.html"]
    pages += [out / "report" / "inputs" / f"{r['name']}.html" for r in records
              if r["error"] is None]
    assert all(p.is_file() for p in pages)
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for raw in ("<img src=x", "<svg", "<iframe", "<b ", "<script>window", "</script><script>",
                    "<img src=y"):
            assert raw not in text, (page.name, raw)
    index = pages[0].read_text(encoding="utf-8")
    # In the gallery's JSON data, < and > are escaped: no string can end its <script>.
    assert "\\u003cimg src=x onerror=alert(1)\\u003e.png" in index
    assert "&lt;b onmouseover=window.pwned=2&gt;broken.png" in index  # the failures table
    assert index.count("<script") == 2  # the data (JSON, not run) and report.js
    payload_page = next(p for p, r in zip(pages[1:], [r for r in records if r["error"] is None])
                        if r["key"].endswith(PAYLOAD_FILE))
    assert "&lt;img src=x onerror=alert(1)&gt;.png</h1>" in payload_page.read_text()


@pytest.fixture
def chrome(tmp_path):
    """A headless Chromium driven by the system's chromedriver (nothing downloaded)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser",
                                                   "google-chrome")) if p), None)
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        pytest.skip("needs Chromium and chromedriver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,3000", "--no-first-run", "--disable-crash-reporter",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Chromium's socket path must stay short (pytest's tmp dirs are deep): a temp dir of
    # its own directly under /tmp, removed afterwards.
    temp = tempfile.mkdtemp(prefix="chrome-", dir="/tmp" if os.path.isdir("/tmp") else None)
    driver = None
    try:
        driver = webdriver.Chrome(
            service=Service(driver_path, env={**os.environ, "TMPDIR": temp}), options=options)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(temp, ignore_errors=True)


def _load(driver, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.as_uri())
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && "
        "Array.from(document.images).every(i => i.complete)"))


def _check_page(driver) -> None:
    """No console error, every image decoded, no payload ran."""
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is the check
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    widths = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert widths and all(w > 0 for _, w in widths), widths
    assert driver.execute_script("return window.pwned") is None
    assert driver.execute_script(
        "return document.querySelectorAll('svg, iframe, b, img[src=x], img[src=y]').length") == 0
    assert driver.execute_script("return document.scripts.length") <= 2


def _cards(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [c.get_attribute("data-key") for c in driver.find_elements(By.CSS_SELECTOR, ".card")]


def test_report_in_a_browser(run, chrome, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    out, records = run
    ok = [r for r in records if r["error"] is None]
    failed = [r for r in records if r["error"] is not None]
    driver = chrome
    _load(driver, out / "report" / "index.html")
    _check_page(driver)
    # Every explained input has a card, in key order; payloads show as text.
    assert _cards(driver) == [r["key"] for r in ok]
    # A file shows as its name (the whole key in its tooltip), an array input as its key.
    shown = [(e.text, e.get_attribute("title"))
             for e in driver.find_elements(By.CSS_SELECTOR, ".card .key")]
    assert shown == [(os.path.basename(r["key"]) if r["source"] else r["key"], r["key"])
                     for r in ok]
    assert (PAYLOAD_FILE, str(out.parent / "images" / PAYLOAD_FILE)) in shown
    assert (PAYLOAD_KEY, PAYLOAD_KEY) in shown
    facts = " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".card .facts"))
    assert any(name in facts for name in CLASS_NAMES)
    fail_rows = driver.find_elements(By.CSS_SELECTOR, "#failures tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in fail_rows] == [
        r["key"] for r in failed]
    assert PAYLOAD_BROKEN in fail_rows[0].text and "cannot read this image" in fail_rows[0].text

    # The summary table is the manifest's numbers, recomputed here.
    for method in ("gradient", "gradcam"):
        row = driver.find_element(By.CSS_SELECTOR, f"#summary tr[data-method='{method}']")
        cells = {c.get_attribute("data-col"): c
                 for c in row.find_elements(By.CSS_SELECTOR, "td[data-col]")}
        assert int(cells["explained"].text) == sum(method in r["masks"] for r in ok)
        assert int(cells["failures"].text) == sum(r["method"] == method for r in failed)
        seconds = np.mean([r["seconds"][method] for r in ok])
        assert float(cells["seconds"].get_attribute("data-value")) == pytest.approx(
            seconds, rel=1e-12)
        assert float(cells["seconds"].text) == pytest.approx(seconds, rel=5e-3)
        for metric in METRICS:
            mean = np.mean([r["metrics"][method][metric] for r in ok])
            cell = cells[f"metric:{metric}"]
            assert float(cell.get_attribute("data-value")) == pytest.approx(mean, rel=1e-12)
            assert float(cell.text) == pytest.approx(mean, abs=5.1e-5)

    # Sorting by a metric reorders the gallery as sorting the manifest does.
    Select(driver.find_element(By.ID, "sort")).select_by_value(
        "metric:gradcam:deletion_auc")
    ascending = [r["key"] for r in sorted(
        ok, key=lambda r: r["metrics"]["gradcam"]["deletion_auc"])]
    assert _cards(driver) == ascending != [r["key"] for r in ok]
    Select(driver.find_element(By.ID, "order")).select_by_value("desc")
    assert _cards(driver) == [r["key"] for r in sorted(
        ok, key=lambda r: -r["metrics"]["gradcam"]["deletion_auc"])]
    Select(driver.find_element(By.ID, "sort")).select_by_value("score")
    assert _cards(driver) == [r["key"] for r in sorted(ok, key=lambda r: -r["score"])]
    # Filtering by class (the model predicts several).
    counts = np.bincount([r["prediction"] for r in ok], minlength=CLASSES)
    assert np.count_nonzero(counts) >= 2, counts
    for cls in np.flatnonzero(counts):
        Select(driver.find_element(By.ID, "class-filter")).select_by_value(str(cls))
        assert _cards(driver) == [r["key"] for r in sorted(ok, key=lambda r: -r["score"])
                                  if r["prediction"] == cls]
    _check_page(driver)
    driver.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "report.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    # The payload input's own page: full-size images, its key as the title text.
    target = next(r for r in ok if r["key"].endswith(PAYLOAD_FILE))
    driver.find_element(By.ID, "class-filter")  # still on the index
    _load(driver, out / "report" / "inputs" / f"{target['name']}.html")
    _check_page(driver)
    assert driver.find_element(By.TAG_NAME, "h1").text == target["key"]
    assert driver.title == target["key"]
    assert len(driver.find_elements(By.CSS_SELECTOR, ".full img")) == 3

    # Pages: 9 inputs, 4 per page.
    paged = write_report(out, out_dir=tmp_path / "paged", page_size=4)
    _load(driver, Path(paged))
    _check_page(driver)
    seen = []
    for _ in range(3):
        seen += _cards(driver)
        driver.find_element(By.ID, "next").click()
    assert seen == [r["key"] for r in ok]
    assert driver.find_element(By.ID, "next").get_attribute("disabled") is not None
    assert "page 3 of 3" in driver.find_element(By.ID, "page-info").text
