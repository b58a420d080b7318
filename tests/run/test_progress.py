"""The progress line and the final line count what the report counts, tasks and foreach instances named
apart: every way a task or an instance becomes final (ended, failed past its retries, skipped, kept, a
foreach over nothing) moves the count once."""

import io

from flowdsl.run.progress import LiveReporter, PlainReporter


def live():
    out = io.StringIO()
    r = LiveReporter(out)
    r.run_started({"run_id": "r1", "tasks": {"a": 0, "fe": 0, "empty": 0, "s": 0, "k": 0}}, "/tmp/x")
    return r, out


def last_line(out):
    return out.getvalue().split("\r\x1b[2K")[-1]


def test_the_live_line_counts_tasks_and_instances_apart():
    r, out = live()
    r.ended("a", 1, "failed", 0.1, {"type": "E", "message": "m"}, 2.0)  # a retry is due: not final
    r.tick({})
    assert "tasks 0/5" in last_line(out) and "failed" not in last_line(out)
    r.ended("a", 2, "success", 0.1, None, None)
    r.expanded("fe", 3)
    r.expanded("empty", 0)  # a foreach over nothing is done at once
    r.ended("fe[0]", 1, "success", 0.1, None, None)
    r.skipped("fe[1]", "condition false: x > 1")
    r.tick({})
    line = last_line(out)
    assert "tasks 2/5" in line and "instances 2/3" in line, line
    r.ended("fe[2]", 1, "failed", 0.1, {"type": "E", "message": "m"}, None)
    r.skipped("s", "condition false")
    r.kept("k")
    r.tick({})
    line = last_line(out)
    assert "tasks 5/5" in line and "instances 3/3" in line and "failed: 1 instance" in line, line


def test_the_final_line_names_tasks_and_instances():
    out = io.StringIO()
    r = PlainReporter(out)
    report = {"run_id": "r1", "status": "failed", "tasks": {
        "a": {"status": "success"}, "fe": {"status": "failed"}, "fe[0]": {"status": "success"},
        "fe[1]": {"status": "failed"}, "fe[2]": {"status": "skipped"}}}
    r.run_finished(report)
    assert out.getvalue().strip().endswith(
        ": tasks: 1 failed, 1 success; instances: 1 failed, 1 skipped, 1 success"), out.getvalue()
    out = io.StringIO()
    PlainReporter(out).run_finished({"run_id": "r2", "status": "success", "tasks": {"a": {"status": "success"}}})
    assert out.getvalue().rstrip().endswith("s: 1 success")  # no foreach: no instances named
