"""The HTML run report in a real browser: Debian's Chromium, driven by Playwright (no browser download).

Each page is opened from its file as a user would, with every request the
page makes recorded: only the file itself may be read. The tests check the
console stays free of errors, that the DOM holds a node per task with its
state and a bar per attempt, that a click shows a task's details, and that
a screenshot shows the states' colours (it is not blank).
"""

import json
import os
from pathlib import Path

import pytest
from reportkit import BIG_TASKS, colours, demo_project, hex_rgb, layered_flow
from runkit import explain, write_project

CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; the rest keep it from calling home on a closed network.
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
GREEN, RED, GREY = hex_rgb("#2e9e58"), hex_rgb("#d64541"), hex_rgb("#a8a8a8")


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `.ci/run` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Opened:
    def __init__(self, page, problems, requests):
        self.page, self.problems, self.requests = page, problems, requests


@pytest.fixture
def open_page(browser):
    pages = []

    def open_(path: Path, width=1280, height=900) -> Opened:
        page = browser.new_page(viewport={"width": width, "height": height})
        pages.append(page)
        problems, requests = [], []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in
                ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        return Opened(page, problems, requests)

    yield open_
    for page in pages:
        page.close()


def state_of(page, selector):
    return page.eval_on_selector_all(selector, "els => els.map(e => [e.dataset.task || e.dataset.key, "
                                               "e.dataset.state])")


def attempts_from_journal(flow, folder):
    """Each task instance's attempt numbers, from `flow logs`' source of truth: the journal via `flow status`."""
    status = json.loads(flow("status", "--json", cwd=folder).stdout)
    return {k: t["attempts"] for k, t in status["tasks"].items()}, status


def test_a_run_with_retries_a_foreach_a_failure_and_a_skipped_branch(flow, tmp_path, open_page):
    _, run_id = demo_project(flow, tmp_path)
    proc = flow("report", "--html", tmp_path / "page.html", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    attempts, status = attempts_from_journal(flow, tmp_path)
    opened = open_page(tmp_path / "page.html")
    page = opened.page
    assert opened.problems == []
    assert opened.requests == [(tmp_path / "page.html").resolve().as_uri()]  # nothing else is fetched

    nodes = dict(state_of(page, "#dag .node"))
    top = {k: t["status"] for k, t in status["tasks"].items() if "[" not in k}
    assert nodes == top  # a node per task, each with its state
    assert nodes["after_bad"] == "skipped" and nodes["bad"] == "failed" and nodes["flaky"] == "success"
    chips = dict(state_of(page, '#dag .node[data-task="fan"] .chip'))
    assert chips == {"fan[0]": "success", "fan[1]": "success", "fan[2]": "success"}  # grouped under their task

    for key, n in attempts.items():
        if key == "fan":  # the foreach task's own row spans its instances: no attempt of its own
            continue
        bars = page.eval_on_selector_all(f'#gantt .row[data-key="{key}"] .bar[data-n]', "els => els.length")
        assert bars == n, key
    flaky = page.eval_on_selector_all('#gantt .bar[data-key="flaky"]', "els => els.map(e => e.dataset.state)")
    assert flaky == ["failed", "failed", "success"]
    assert page.locator('#gantt .row[data-key="flaky"] .wait').count() == 2  # the delay before each retry
    crit = page.eval_on_selector_all("#dag .node.crit", "els => els.map(e => e.dataset.task)")
    assert crit == ["start", "flaky", "bad", "cleanup"]
    assert page.locator('#gantt .row.crit[data-key="bad"] .bar.crit').count() == 1

    page.click('#dag .node[data-task="bad"]')
    detail = page.locator("#detail")
    assert detail.is_visible()
    assert "ValueError" in detail.inner_text() and "broken for good" in detail.inner_text()
    tb = detail.locator("details.traceback")
    assert tb.count() == 1 and tb.get_attribute("open") is None  # folded
    assert "about to fail" in detail.locator("details.log pre").inner_text()
    page.keyboard.press("Escape")
    assert not detail.is_visible()
    page.click('#dag .chip[data-key="fan[1]"]')
    cpu = detail.locator("td.cpu").inner_text()
    assert cpu.endswith("s") and 0.2 <= float(cpu[:-1]) < 1.5
    page.keyboard.press("Escape")  # the panel would cover the right of the graph

    shot = page.locator("#dag").screenshot()
    seen = colours(shot)
    assert len(seen) > 20  # not blank
    for rgb in (GREEN, RED, GREY):  # success, failed and skipped nodes are drawn in their colours
        assert seen.get(rgb, 0) > 200, rgb
    assert page.screenshot(full_page=True)


def test_a_thousand_task_run(flow, tmp_path, open_page):
    flow_file = write_project(tmp_path, layered_flow(10, 100), {"tasks.py": BIG_TASKS})
    proc = flow("run", flow_file, "-q", cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, explain(proc)
    proc = flow("report", "--html", tmp_path / "big.html", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    attempts, status = attempts_from_journal(flow, tmp_path)
    opened = open_page(tmp_path / "big.html")
    page = opened.page
    assert opened.problems == []
    nodes = dict(state_of(page, "#dag .node"))
    assert len(nodes) == 1001
    assert nodes == {k: t["status"] for k, t in status["tasks"].items()}
    assert nodes["s9_99"] == "failed" and nodes["tail"] == "skipped"
    bars = page.eval_on_selector_all("#gantt .bar[data-n]", "els => els.map(e => e.dataset.key)")
    assert len(bars) == sum(attempts.values()) == 1000  # every task ran once but the skipped one
    seen = colours(page.screenshot())
    assert len(seen) > 20 and seen.get(GREEN, 0) > 500


def test_the_runs_index_links_to_pages_that_open(flow, tmp_path, open_page):
    flow_file = write_project(tmp_path, 'task a { sh "echo hi" }\n')
    assert flow("run", flow_file, cwd=tmp_path).returncode == 0
    proc = flow("report", "--html", str(tmp_path / "site") + "/", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    opened = open_page(tmp_path / "site" / "index.html")
    opened.page.click("#runs a")
    opened.page.wait_for_selector("#dag .node")
    assert dict(state_of(opened.page, "#dag .node")) == {"a": "success"}
    assert opened.problems == []


def test_a_long_timeline_is_drawn_as_it_scrolls_into_view(flow, tmp_path, open_page):
    items = ", ".join(str(i) for i in range(2500))
    flow_file = write_project(tmp_path, f"""\
        pipeline wide {{ params {{ items = [{items}] }} }}
        task each {{ foreach i in params.items run tasks:noop }}
    """, {"tasks.py": BIG_TASKS})
    proc = flow("run", flow_file, "-q", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, explain(proc)
    assert flow("report", "--html", tmp_path / "wide.html", cwd=tmp_path).returncode == 0
    opened = open_page(tmp_path / "wide.html")
    page = opened.page
    assert opened.problems == []
    drawn = page.locator("#gantt .row").count()
    assert 0 < drawn < 500  # only what is in view, and a margin
    assert page.locator('#gantt .row[data-key="each[2499]"]').count() == 0
    page.eval_on_selector("#gantt", "g => { g.scrollTop = g.scrollHeight; }")
    page.wait_for_selector('#gantt .row[data-key="each[2499]"] .bar[data-n="1"]')
    assert page.get_attribute('#gantt .row[data-key="each[2499]"]', "data-state") == "success"
    chips = page.locator('#dag .node[data-task="each"] .chip').count()
    assert chips == 240 and "[2500]" in page.inner_text('#dag .node[data-task="each"]')  # the rest summed up
