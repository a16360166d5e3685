"""emu.report.run_page, emu.report.listening_test: self-contained pages, browser-rated.

The browser test drives Debian's headless Chromium with Selenium (pip
`selenium`, /usr/bin/chromedriver); it is skipped, saying why, when either
is missing. `.ci/run` installs both.
"""

import base64
import io
import json
import os
import re
import shutil
import tempfile
import time

import numpy as np
import pytest
import soundfile as sf

from emu.report import listening_test
from emu.report import ratings
from emu.report import run_page

RATE = 16000
SECONDS = 2.0
# The smallest valid PNG: one transparent pixel.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A finished run's folder as emu.report.evaluate leaves it (float WAVs)."""
  root = tmp_path_factory.mktemp("run") / "lstm_run"
  (root / "audio").mkdir(parents=True)
  (root / "plots").mkdir()
  rng = np.random.default_rng(0)
  n = int(SECONDS * RATE)
  for name in ("val1", "val2"):
    x = rng.uniform(-0.5, 0.5, n).astype(np.float32)
    target = 0.8 * x
    output = target + rng.normal(0, 1e-3, n).astype(np.float32)
    if name == "val2":
      output[10] = 1.5  # beyond full scale: clipped in the 16-bit copy
    for kind, audio in (("input", x), ("target", target),
                        ("output", output), ("difference", target - output)):
      sf.write(str(root / "audio" / f"{name}_{kind}.wav"), audio, RATE,
               subtype="FLOAT")
  (root / "plots" / "val1_waveforms.png").write_bytes(PNG)
  report = {"model": "lstm", "model_kwargs": {"hidden_size": 8},
            "parameters": 353, "dataset": "files_x", "sample_rate": RATE,
            "val1": {"esr": 1.25e-4, "snr_db": 39.0, "seconds": SECONDS},
            "val2": {"esr": 2.5e-3, "snr_db": "inf", "seconds": SECONDS},
            "streaming": [{"block_size": 64, "rtf": 40.0}]}
  (root / "report.json").write_text(json.dumps(report))
  return str(root)


def _data_uris(page, mime):
  return re.findall(r'src="data:' + re.escape(mime) + r';base64,([^"]+)"',
                    page)


def _wav(b64):
  return sf.read(io.BytesIO(base64.b64decode(b64)), dtype="float32")


def test_report_is_self_contained(workdir):
  path = run_page.write_report_html(workdir)
  assert path == os.path.join(workdir, "report.html")
  with open(path) as f:
    page = f.read()
  # Every source is embedded: no file or network reference but the test
  assert all(s.startswith("data:") for s in re.findall(r'src="([^"]*)"',
                                                       page))
  assert re.findall(r'href="([^"]*)"', page) == ["listening_test.html"]
  # Players: input, target, output, difference, louder difference, per set
  wavs = _data_uris(page, "audio/wav")
  assert len(wavs) == 2 * 5
  audio, rate = _wav(wavs[1])  # val1 target
  info = sf.info(io.BytesIO(base64.b64decode(wavs[1])))
  assert (rate, info.subtype) == (RATE, "PCM_16")
  target, _ = sf.read(os.path.join(workdir, "audio", "val1_target.wav"))
  np.testing.assert_allclose(audio, target, atol=1.0 / 32768)
  louder, _ = _wav(wavs[4])
  assert np.max(np.abs(louder)) == pytest.approx(10 ** (-1 / 20), abs=1e-3)
  assert "1 samples clipped" in page  # val2 output
  assert len(_data_uris(page, "image/png")) == 1
  assert "1.250e-04" in page and "esr" in page and "inf" in page


def test_listening_test_pairs_are_blind_seeded_and_right(workdir):
  path = listening_test.write_listening_test([workdir], seed=5,
                                          clips_per_set=2, clip_seconds=0.5)
  trials = listening_test.listening_trials([workdir], 0.5, 2, seed=5)
  # 2 sets x 2 clips + 1 control, in an order drawn from the seed
  assert len(trials) == 5
  assert [t["trial"] for t in trials] == [1, 2, 3, 4, 5]
  other = listening_test.listening_trials([workdir], 0.5, 2, seed=6)
  assert [(t["model"], t["set"], t["clip"]) for t in trials] != [
      (t["model"], t["set"], t["clip"]) for t in other]
  assert sum(t["model"] == listening_test.CONTROL for t in trials) == 1
  # and A/B hold the target and the output as "order" says
  for t in trials:
    a, _ = _wav(t["a"].split(",", 1)[1])
    b, _ = _wav(t["b"].split(",", 1)[1])
    start = int(round(t["clip"][0] * RATE))
    sources = {k: sf.read(os.path.join(workdir, "audio",
                                       f"{t['set']}_{k}.wav"))[0]
               for k in ("target", "output")}
    first, second = t["order"].split("-")
    middle = slice(len(a) // 4, 3 * len(a) // 4)  # away from the fades
    for clip, kind in ((a, first), (b, second)):
      np.testing.assert_allclose(
          clip[middle], np.clip(sources[kind][start:start + len(a)][middle],
                                -1, 1), atol=1.0 / 32768)
  with open(path) as f:
    page = f.read()
  for score, text in listening_test.SCALE.items():
    assert f"{score}: {text}" in page
  assert "lstm (lstm_run)" in page  # the key is in the page's source only
  assert "lstm (lstm_run)" not in re.sub(r"<script.*?</script>", "", page,
                                         flags=re.S)


def test_missing_report_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="report.json"):
    run_page.write_report_html(str(tmp_path))


# --------------------------------------------------------------- browser


def _chrome(download_dir):
  """Headless Debian Chromium under Selenium, offline; skips if absent."""
  chromium = shutil.which("chromium") or shutil.which("chromium-browser")
  driver_path = shutil.which("chromedriver")
  if not chromium or not driver_path:
    pytest.skip("headless browser test: Debian's chromium and "
                "chromium-driver are not installed (apt-get install "
                "chromium chromium-driver; .ci/run does)")
  webdriver = pytest.importorskip(
      "selenium.webdriver", reason="headless browser test: pip install "
      "selenium (.ci/run does)")
  # pylint: disable-next=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service
  os.environ.setdefault("SE_OFFLINE", "true")  # never fetch a driver
  options = webdriver.ChromeOptions()
  options.binary_location = chromium
  profile = tempfile.mkdtemp(prefix="emu-chromium-")
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync",
              "--disable-quic", "--autoplay-policy=no-user-gesture-required",
              f"--user-data-dir={profile}", "--window-size=1000,1400"):
    options.add_argument(arg)
  options.add_experimental_option("prefs", {
      "download.default_directory": download_dir,
      "download.prompt_for_download": False})
  driver = webdriver.Chrome(service=Service(driver_path), options=options)
  driver.set_page_load_timeout(20)
  driver.set_script_timeout(10)
  return driver, profile


def _wait_for(path, seconds=10.0):
  end = time.monotonic() + seconds
  while time.monotonic() < end:
    if os.path.exists(path) and os.path.getsize(path):
      return True
    time.sleep(0.1)
  return False


def test_pages_in_headless_chromium(workdir, tmp_path):
  run_page.write_report_html(workdir, seed=1)
  downloads = str(tmp_path / "downloads")
  os.makedirs(downloads)
  driver, profile = _chrome(downloads)
  # pylint: disable-next=g-import-not-at-top
  from selenium.webdriver.common.by import By
  try:
    # The report loads; its players hold data: WAVs that Chromium decodes
    driver.get("file://" + os.path.join(workdir, "report.html"))
    sources = driver.execute_script(
        "return Array.from(document.querySelectorAll('audio'))"
        ".map(a => a.src.slice(0, 22))")
    assert sources == ["data:audio/wav;base64,"] * 10
    duration = driver.execute_async_script("""
      var done = arguments[arguments.length - 1];
      var a = document.querySelector('audio');
      if (a.readyState >= 1) { done(a.duration); return; }
      a.addEventListener('loadedmetadata', () => done(a.duration));
      a.addEventListener('error', () => done('error ' + a.error.code));
      a.load();""")
    assert duration == pytest.approx(SECONDS, abs=0.01)
    # The listening test: rate two pairs, write a note, export both files
    driver.get("file://" + os.path.join(workdir, "listening_test.html"))
    driver.find_element(By.ID, "rater").send_keys("ann")
    driver.find_element(By.ID, "score-1-3").click()
    driver.find_element(By.ID, "score-2-4").click()
    driver.find_element(By.CSS_SELECTOR,
                        'textarea[data-trial="1"]').send_keys("a bit dull")
    # (2 s sets, 4 s clips by default: one clip per set, and the control)
    assert driver.find_element(By.ID, "progress").text == (
        "2 of 3 pairs rated")
    driver.find_element(By.ID, "export-json").click()
    driver.find_element(By.ID, "export-csv").click()
    json_path = os.path.join(downloads, "ratings_ann.json")
    csv_path = os.path.join(downloads, "ratings_ann.csv")
    assert _wait_for(json_path) and _wait_for(csv_path), os.listdir(
        downloads)
    last = json.loads(driver.execute_script("return window.emuLastExport"))
  finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
  for path in (json_path, csv_path):
    rows = {r["trial"]: r for r in ratings.read_ratings(path)}
    assert len(rows) == 3
    assert (rows[1]["score"], rows[2]["score"], rows[3]["score"]) == (3, 4,
                                                                     None)
    assert rows[1]["note"] == "a bit dull" and rows[1]["rater"] == "ann"
  assert last["rater"] == "ann" and last["ratings"][0]["score"] == 3
