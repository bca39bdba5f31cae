"""midigen studio in a real browser: `python -m midigen studio` serves tiny checkpoints trained in
the tests, and headless Chromium (Debian's chromium and chromium-driver, through Selenium) picks
a model, samples, plays, interpolates and moves the slider, downloads a MIDI file and sees a
bad upload's message; every request goes to the studio itself and none fails unexpectedly.
Screenshots are saved beside the test's files (studio-*.png)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pretty_midi
import pytest
from conftest import stop_process_group, subprocess_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (Debian: apt-get install chromium)"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="no chromedriver here (Debian: apt-get install chromium-driver)"),
]


@pytest.fixture(scope="module")
def studio(studio_workspace, tiny_groovae):
    """The studio as a user starts it, on a free port: (its address, the drum files, its folder)."""
    root = studio_workspace
    log = open(root / "server.log", "w")  # noqa: SIM115 - open while the server runs
    env = {**subprocess_env(), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "midigen", "studio", "--models", "models", "--port", "0", "--device", "cpu"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline()  # "midigen studio: open http://127.0.0.1:PORT/  (Ctrl-C stops it)"
        assert "open http://127.0.0.1:" in line, (line, (root / "server.log").read_text())
        yield line.split("open ", 1)[1].split()[0], tiny_groovae[1], root
    finally:
        stop_process_group(proc, 10)
        log.close()


def chromium(profile, downloads):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
    flags += (
        " --disable-component-update --disable-sync --window-size=1200,1100 --autoplay-policy=no-user-gesture-required"
    )
    for flag in [*flags.split(), f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # the Debian driver, never Selenium Manager (it would try to download one)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.get_log("performance")  # drop the start-up tab's own requests (a new-tab page): not the studio's
    return driver


def wait_for(driver, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition())


def network(driver) -> tuple[list[tuple[str, int]], list[str]]:
    """(url, status) of every response the page got, and the URLs of requests that failed."""
    responses, failed, urls = [], [], {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.responseReceived":
            responses.append((params["response"]["url"], params["response"]["status"]))
        elif message["method"] == "Network.loadingFailed":
            failed.append(f"{urls.get(params['requestId'])}: {params.get('errorText')}")
    return responses, failed


def test_a_musician_samples_plays_interpolates_and_downloads_in_chromium(studio, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    url, drum_files, root = studio
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chromium(tmp_path / "profile", downloads)
    by_id = lambda id_: driver.find_element(By.ID, id_)  # noqa: E731
    cards = lambda: driver.find_elements(By.CSS_SELECTOR, ".result")  # noqa: E731
    try:
        driver.get(url)
        wait_for(driver, lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        options = [o.get_attribute("value") for o in Select(by_id("model")).options]
        assert options == ["best", "groove"]

        # compose with the LSTM: two pieces, each a piano roll with a player; the controls start
        # at the generate params' defaults
        from midigen.params import DEFAULTS

        assert float(by_id("c-min_beats").get_attribute("value")) == DEFAULTS["generate"]["min_beats"]
        Select(by_id("model")).select_by_value("best")
        by_id("c-max_steps").clear()
        by_id("c-max_steps").send_keys("120")
        by_id("sample").click()
        wait_for(driver, lambda: len(cards()) == 2)
        card = cards()[0]
        card.find_element(By.CSS_SELECTOR, ".play").click()
        wait_for(driver, lambda: float(card.get_attribute("data-position") or 0) > 0.3, 20)
        assert card.get_attribute("data-playing") == "true"
        assert driver.execute_script("return player.ctx.state") == "running"
        driver.save_screenshot(str(root / "studio-compose.png"))
        card.find_element(By.CSS_SELECTOR, ".play").click()
        assert card.get_attribute("data-playing") == "false"

        # download a piece: the file pretty_midi opens
        card.find_element(By.CSS_SELECTOR, ".download").click()
        wait_for(driver, lambda: [p for p in downloads.glob("*.mid")], 20)
        (saved,) = downloads.glob("*.mid")
        assert saved.name in ("sample_00.mid", "sample_01.mid")
        assert sum(len(i.notes) for i in pretty_midi.PrettyMIDI(str(saved)).instruments) > 0

        # drums: sample grooves, then interpolate two uploaded patterns and move the slider
        Select(by_id("model")).select_by_value("groove")
        assert by_id("compose").get_attribute("hidden") and not by_id("drums").get_attribute("hidden")
        by_id("sample-grooves").click()
        wait_for(driver, lambda: len(cards()) == 4)
        by_id("i-a").send_keys(str(drum_files[0]))
        by_id("i-b").send_keys(str(drum_files[1]))
        # sampled, not argmax: the tiny model decodes every point alike by argmax
        by_id("i-temperature").clear()
        by_id("i-temperature").send_keys("1")
        by_id("interpolate").click()
        wait_for(driver, lambda: driver.find_elements(By.CSS_SELECTOR, ".result input.step"))
        strip = cards()[0]

        def roll():
            return driver.execute_script("return arguments[0].toDataURL()", strip.find_element(By.TAG_NAME, "canvas"))

        before = roll()
        slider = strip.find_element(By.CSS_SELECTOR, "input.step")
        for _ in range(4):
            slider.send_keys(Keys.ARROW_RIGHT)
        assert strip.get_attribute("data-step") == "4"
        assert strip.find_element(By.CSS_SELECTOR, ".step-label").text == "step 5 of 5"
        assert roll() != before, "the piano roll shows the step the slider chose"
        strip.find_element(By.CSS_SELECTOR, ".play").click()
        wait_for(driver, lambda: int(strip.get_attribute("data-loops") or 0) >= 1, 20)
        driver.save_screenshot(str(root / "studio-drums.png"))
        strip.find_element(By.CSS_SELECTOR, ".play").click()

        # a file that is no MIDI: one clear line in the page
        noise = tmp_path / "noise.mid"
        noise.write_bytes(bytes(range(256)) * 8)
        by_id("h-midi").send_keys(str(noise))
        by_id("humanize").click()
        wait_for(driver, lambda: by_id("error").is_displayed())
        assert by_id("error").text.startswith("noise.mid: not a readable MIDI file")
        driver.save_screenshot(str(root / "studio-error.png"))

        responses, failed = network(driver)
        assert not failed, failed
        assert all(u.startswith(url) or u.startswith("blob:") or u.startswith("data:") for u, _ in responses), responses
        bad = [(u, s) for u, s in responses if s >= 400 and not (u.endswith("/api/humanize") and s == 400)]
        assert not bad, bad
        assert not [
            e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "api/humanize" not in e["message"]
        ]
    finally:
        driver.quit()
    print(f"screenshots: {root}/studio-*.png")
