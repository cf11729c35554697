"""The live page in a real browser: Debian's Chromium (its H.264 decoder; Playwright's own
Chromium has none), headless, driven by Playwright. The page's screenshot is kept in
out/test-artifacts/serve-page.png."""

import time
from pathlib import Path

import pytest

from streamchar.errors import StreamcharError
from streamchar.serving.bench_browser import CHROMIUM_ARGS, chromium

ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"


def chromium_path() -> str:
    try:
        return chromium()
    except StreamcharError as e:
        pytest.fail(str(e))


@pytest.mark.slow
def test_the_page_plays_hears_appended_text_and_falls_silent_on_interrupt(live_server):
    from playwright.sync_api import sync_playwright

    host, state = live_server()
    chunk = state.pipe.cfg.stream.chunk_seconds
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"http://{host}/?character=unseen-0&text=The%20small%20pup%20gnawed%20a%20hole%20in%20the%20sock.&autoplay=1")
        sc = "window.streamchar.stats"
        page.wait_for_function("document.getElementById('video').currentTime > 3", timeout=30_000)
        assert page.evaluate("document.getElementById('video').webkitAudioDecodedByteCount") > 0, "the sound is decoded"
        stats = page.evaluate(sc)
        assert stats["first_frame_s"] is not None and stats["first_frame_s"] < 5 and stats["frames_painted"] > 48
        page.wait_for_function(f"{sc}.words_total === 9 && {sc}.words_spoken === 9", timeout=30_000)

        page.evaluate("window.streamchar.append('Glue the sheet to the dark blue background.')")
        page.wait_for_function(f"{sc}.words_total === 17 && {sc}.words_spoken === 17", timeout=30_000)
        assert page.evaluate(f"{sc}.append_to_heard_s") is not None

        page.evaluate("window.streamchar.append('The birch canoe slid on the smooth planks. '"
                      " + 'A pot of tea helps to pass the evening. '.repeat(4))")
        page.wait_for_function(f"{sc}.words_spoken >= 20", timeout=30_000)
        page.evaluate("window.streamchar.interrupt()")
        page.wait_for_function(f"{sc}.interrupt_to_silence_s !== null", timeout=30_000)
        stats = page.evaluate(sc)
        assert stats["words_total"] < 17 + 8 + 32, "the words not yet begun are dropped"
        assert stats["interrupt_to_silence_s"] < chunk + state.settings.buffer_seconds + 1.0
        levels = []
        for _ in range(10):
            time.sleep(0.1)
            levels.append(page.evaluate(f"{sc}.audio_rms"))
        assert max(levels) < 0.01, f"silent after the interrupt, heard {levels}"
        assert page.evaluate(f"{sc}.words_spoken") == stats["words_total"]
        assert page.evaluate(f"{sc}.stalls") == 0 and not page.evaluate(f"{sc}.errors")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve-page.png"))
        browser.close()
    assert (ARTIFACTS / "serve-page.png").stat().st_size > 10_000
