"""`r3 report --html`: one self-contained page, model output shown as text, checked in a real browser."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest

from r3.cli import main as r3_main
from r3.evaluation.evaluate import EvalConfig, evaluate
from r3.generation.scripted import ScriptedGenerator
from r3.tasks import get_task

TASK = get_task("countdown")
EXAMPLES = [{"nums": [1, 2, 3], "target": 6}, {"nums": [2, 5, 7], "target": 14}]
#: Reflections a model could write that a page must show as text: markup, a remote image, a script link.
HOSTILE = (
    "<script>alert(1)</script> ![x](http://example.com/x.png) [go](javascript:alert(2)) <answer> 6 </answer>"
)


def two_runs(tmp_path: Path) -> list[str]:
    def make(reflection: str, retry: str):
        def script(prompt, sampling, i):
            if prompt.messages[-1]["content"] == TASK.reflection_instruction:
                return reflection
            return f"<answer> {retry} </answer>" if len(prompt.messages) > 2 else "<answer> 1 + 2 </answer>"

        return script

    runs = {"vanilla": make(HOSTILE, "1 + 1"), "trained": make("Use every number once.", "7 + 5 + 2")}
    for name, script in runs.items():
        evaluate(EvalConfig(batch_size=4), TASK, EXAMPLES, ScriptedGenerator(script), tmp_path / name)
    return [str(tmp_path / name) for name in runs]


def test_report_html_is_self_contained_and_escapes_model_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folders = two_runs(tmp_path)
    assert r3_main(["report", *folders, "--output-dir", str(tmp_path / "rep"), "--html"]) == 0
    assert "report.html" in capsys.readouterr().out
    page = (tmp_path / "rep" / "report.html").read_text()
    # The same content as report.md: the accuracy table and every section heading.
    markdown = (tmp_path / "rep" / "report.md").read_text()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE):
        assert f">{html.escape(heading, quote=False)}</h" in page, heading
    assert "<table>" in page and "<td>vanilla</td>" in page
    # Plots are inline: every image is a data URI of one of the report's PNGs, nothing is fetched.
    sources = re.findall(r'src="([^"]*)"', page)
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert len(sources) == len(pngs) >= 3
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert '<img alt="x"' not in page  # the model's remote image is reduced to its alt text
    # Model output is text: no script element, no javascript: link, tags shown as written.
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "[go]" not in page and 'href="javascript' not in page  # the link is kept, its target is not
    assert "&lt;answer&gt; 6 &lt;/answer&gt;" in page


@pytest.mark.slow
def test_report_html_as_a_browser_shows_it(tmp_path: Path) -> None:
    """Open report.html in headless Chromium (Debian's, driven by Selenium with its own chromedriver):
    the table is there with its rows, every plot has decoded (a natural width), no script ran."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    folders = two_runs(tmp_path)
    assert r3_main(["report", *folders, "--output-dir", str(tmp_path / "rep"), "--html"]) == 0
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.get((tmp_path / "rep" / "report.html").resolve().as_uri())
        rows = driver.execute_script(
            "return [...document.querySelectorAll('table')[0].rows].map(r => r.innerText)"
        )
        assert len(rows) == 3 and "vanilla" in rows[1] and "trained" in rows[2]
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth])"
        )
        assert {alt for alt, _, _ in images} >= {"accuracy", "reflection lengths", "fix rates"}
        assert all(complete and width > 100 for _, complete, width in images), images
        text = driver.execute_script("return document.body.innerText")
        assert "<script>alert(1)</script>" in text  # the model's markup, shown as text
        assert driver.execute_script("return document.scripts.length") == 0
    finally:
        driver.quit()
