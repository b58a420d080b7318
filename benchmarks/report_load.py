"""How long the HTML run report of a 10,000-task run takes to open in a browser, against a 100-task one.

    python3 benchmarks/report_load.py [--tasks 10000] [--baseline 100] [--repeat 5] [--screenshot PATH]

Runs two fan-out pipelines (root, N tasks, sink) with the zipapp, writes each
run's page with `flow report --html` (timed, wall and CPU), then opens the two
pages in Debian's Chromium through Playwright, interleaved A B A B, each in a
fresh tab: the time from navigation to the first frame painted after the
page's script has drawn the graph and the timeline. Beside the wall time, the
renderer's main-thread busy time (the DevTools `TaskDuration` metric). Prints
medians and the ratio. Needs `chromium` (apt) and the `playwright` package.

`--screenshot PATH` also writes the README's picture: the page of a small run
with a retried task, a foreach, a failure and a skipped branch.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchkit import ROOT, ensure_pyz  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TASKS_PY = "def noop():\n    return None\n"


def flow(pyz: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, pyz, *args], cwd=cwd, capture_output=True, text=True)


def make_run(pyz: str, folder: str, n: int) -> None:
    os.makedirs(folder)
    lines = ["pipeline fan { concurrency 2 }", "task root { run tasks:noop }"]
    lines += [f"task t{i} {{ run tasks:noop after root }}" for i in range(n)]
    lines.append("task sink { run tasks:noop after " + ", ".join(f"t{i}" for i in range(n)) + " }")
    with open(os.path.join(folder, "p.flow"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(folder, "tasks.py"), "w") as f:
        f.write(TASKS_PY)
    proc = flow(pyz, "run", "p.flow", "-q", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-2000:]


def write_report(pyz: str, folder: str) -> tuple:
    """(wall seconds, CPU seconds) of `flow report --html report.html`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = flow(pyz, "report", "--html", "report.html", cwd=folder)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def load(browser, path: str) -> tuple:
    """(seconds from navigation to the first painted frame after the page drew itself, main-thread busy seconds)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    t0 = time.perf_counter()
    page.goto("file://" + path, wait_until="load")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    wall = time.perf_counter() - t0
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    assert not errors, errors
    assert page.locator(".node").count() > 0
    page.close()
    return wall, metrics.get("TaskDuration", float("nan"))


def screenshot(pyz: str, work: str, out: str, browser) -> None:
    folder = os.path.join(work, "demo")
    os.makedirs(folder)
    with open(os.path.join(folder, "tasks.py"), "w") as f:
        f.write(textwrap.dedent("""\
            import os, time
            def fetch(source):
                n = int(open("tries").read()) if os.path.exists("tries") else 0
                open("tries", "w").write(str(n + 1))
                print(f"fetching {source}, try {n + 1}")
                if n < 2:
                    raise ConnectionError(f"{source} did not answer")
                return {"rows": 120}
            def work(region):
                t = time.process_time()
                while time.process_time() - t < 0.1 + 0.05 * len(region):
                    pass
                return region.upper()
            def publish(totals):
                raise PermissionError("bucket is read-only")
            """))
    with open(os.path.join(folder, "p.flow"), "w") as f:
        f.write(textwrap.dedent("""\
            pipeline sales { params { regions = ["emea", "apac", "amer", "latam"] } }
            task extract { sh "echo extracting; sleep 0.2" }
            task fetch   { run tasks:fetch with { source = "crm" } retry 3 delay 300ms after extract }
            task regions { foreach r in params.regions run tasks:work with { region = r } after extract }
            task merge   { sh "sleep 0.2; echo merged" after fetch, regions }
            task publish { run tasks:publish with { totals = merge } }
            task notify  { sh "echo sent" after publish }
            task archive { sh "sleep 0.1" when always after publish }
            """))
    flow(pyz, "run", "p.flow", "-q", cwd=folder)
    assert flow(pyz, "report", "--html", "report.html", cwd=folder).returncode == 0
    page = browser.new_page(viewport={"width": 1300, "height": 740})
    page.goto("file://" + os.path.join(folder, "report.html"))
    page.screenshot(path=out)
    page.close()
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--baseline", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--screenshot", metavar="PATH")
    ap.add_argument("--pyz", default=os.path.join(ROOT, "dist", "flow.pyz"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    pyz = ensure_pyz(args.pyz)
    with tempfile.TemporaryDirectory() as work, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        if args.screenshot:
            screenshot(pyz, work, os.path.abspath(args.screenshot), browser)
        sizes = {"big": args.tasks, "base": args.baseline}
        for name, n in sizes.items():
            make_run(pyz, os.path.join(work, name), n)
        for name, n in sizes.items():
            folder = os.path.join(work, name)
            wall, cpu = min((write_report(pyz, folder) for _ in range(3)), key=lambda x: x[0])
            size = os.path.getsize(os.path.join(folder, "report.html"))
            print(f"flow report, {n + 2} tasks: {wall:.2f} s wall, {cpu:.2f} s CPU (best of 3); "
                  f"page {size / 1e6:.2f} MB")
        times = {name: [] for name in sizes}
        busy = {name: [] for name in sizes}
        load(browser, os.path.join(work, "base", "report.html"))  # warm the browser's caches once
        for _ in range(args.repeat):
            for name in sizes:  # interleaved: base, big, base, big...
                wall, task = load(browser, os.path.join(work, name, "report.html"))
                times[name].append(wall)
                busy[name].append(task)
        browser.close()
    big, base = statistics.median(times["big"]), statistics.median(times["base"])
    print(f"open, {args.tasks + 2} tasks: median {big:.3f} s wall, {statistics.median(busy['big']):.3f} s main thread "
          f"(runs {', '.join(f'{t:.2f}' for t in times['big'])})")
    print(f"open, {args.baseline + 2} tasks: median {base:.3f} s wall, {statistics.median(busy['base']):.3f} s main "
          f"thread (runs {', '.join(f'{t:.2f}' for t in times['base'])})")
    print(f"ratio {args.tasks + 2} / {args.baseline + 2} tasks: {big / base:.2f}; goal: under 2 s")


if __name__ == "__main__":
    main()
