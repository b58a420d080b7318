"""flow run, end to end: what tasks do. Class lifecycle, async functions, foreach,
concurrency, `when` and skips, references to missing keys, result types."""



from runkit import explain, max_overlap, run_json, write_project

LIFECYCLE = {
    "life.py": """
        import asyncio

        def log(line):
            with open("events.txt", "a") as f:
                f.write(line + "\\n")

        class Good:
            def __init__(self, x):
                self.x = x
                log(f"good __init__ x={x}")
            def on_create(self):
                log("good on_create")
            def run(self):
                log("good run")
                return self.x * 2
            def on_success(self):
                log("good on_success")
            def on_failure(self, error):
                log("good on_failure")
            def on_destroy(self):
                log("good on_destroy")

        class Bad:
            def on_create(self):
                log("bad on_create")
            def run(self):
                log("bad run")
                raise KeyError("no such row")
            def on_success(self):
                log("bad on_success")
            def on_failure(self, error):
                log(f"bad on_failure {type(error).__name__} {error}")
            def on_destroy(self):
                log("bad on_destroy")

        class OnlyRun:
            def run(self):
                return "only run"

        class Async:
            async def on_create(self):
                await asyncio.sleep(0.01)
                log("async on_create")
            async def run(self):
                await asyncio.sleep(0.01)
                log("async run")
                return "async class"
            async def on_destroy(self):
                log("async on_destroy")

        async def coroutine(n):
            await asyncio.sleep(0.01)
            return {"n": n + 1}
    """,
}


def test_class_lifecycle_and_async(flow, tmp_path):
    f = write_project(tmp_path, """
        task good { run life:Good  with { x = 21 } }
        task bad { run life:Bad  after good }
        task only { run life:OnlyRun  after bad  when always }
        task asy { run life:Async  after only }
        task coro { run life:coroutine  with { n = 41 }  after asy }
    """, LIFECYCLE)  # a chain, so that events.txt is written in a known order
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    tasks = report["tasks"]
    assert (tasks["good"]["status"], tasks["good"]["result"]) == ("success", 42)
    assert tasks["bad"]["status"] == "failed"
    assert tasks["bad"]["error"]["type"] == "KeyError" and "no such row" in tasks["bad"]["error"]["message"]
    assert tasks["only"]["result"] == "only run"
    assert tasks["asy"]["result"] == "async class"
    assert tasks["coro"]["result"] == {"n": 42}
    assert (tmp_path / "events.txt").read_text().splitlines() == [
        "good __init__ x=21", "good on_create", "good run", "good on_success", "good on_destroy",
        "bad on_create", "bad run", "bad on_failure KeyError 'no such row'", "bad on_destroy",
        "async on_create", "async run", "async on_destroy",
    ]


FOREACH = {
    "fe.py": """
        def tables():
            return ["users", "orders", "items"]

        def double(v):
            if v == "boom":
                raise ValueError("instance boom failed")
            return v * 2

        def show(v):
            return v
    """,
}


def test_foreach(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline loops { params { sizes = [10, 20] } }
        task literal { foreach v in [1, 2, 3]  run fe:double  with { v = v } }
        task from_param { foreach v in params.sizes  run fe:double  with { v = v } }
        task source { run fe:tables }
        task runtime { foreach t in source  sh "echo {t}:$FLOW_TASK" }
        task second { run fe:show  with { v = runtime[1] } }
        task whole { run fe:show  with { v = literal } }
        task partly_bad { foreach v in ["a", "boom", "c"]  run fe:double  with { v = v } }
        task after_bad { sh "touch after_bad.ran"  after partly_bad }
        task nothing { foreach v in []  sh "echo {v}" }
        task after_nothing { run fe:show  with { v = nothing } }
    """, FOREACH)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    tasks = report["tasks"]
    assert tasks["literal"]["result"] == [2, 4, 6] and tasks["literal"]["status"] == "success"
    assert [tasks[f"literal[{i}]"]["result"] for i in range(3)] == [2, 4, 6]
    assert tasks["from_param"]["result"] == [20, 40]
    assert [k for k in tasks if k.startswith("from_param")] == ["from_param", "from_param[0]", "from_param[1]"]
    # A list known only at run time; each instance's FLOW_TASK is its instance name.
    assert tasks["runtime"]["result"] == ["users:runtime[0]", "orders:runtime[1]", "items:runtime[2]"]
    assert all(tasks[f"runtime[{i}]"]["attempts"] == 1 for i in range(3))
    assert "runtime[3]" not in tasks
    assert tasks["second"]["result"] == "orders:runtime[1]"
    assert tasks["whole"]["result"] == [2, 4, 6]
    # One failing instance fails the task; the others still ran.
    assert tasks["partly_bad"]["status"] == "failed"
    assert tasks["partly_bad[1]"]["status"] == "failed"
    assert tasks["partly_bad[1]"]["error"]["message"] == "instance boom failed"
    assert (tasks["partly_bad[0]"]["result"], tasks["partly_bad[2]"]["result"]) == ("aa", "cc")
    assert (tasks["after_bad"]["status"], tasks["after_bad"]["attempts"]) == ("skipped", 0)
    assert not (tmp_path / "after_bad.ran").exists()
    assert (tasks["nothing"]["status"], tasks["nothing"]["result"]) == ("success", [])
    assert tasks["after_nothing"]["result"] == []


SPANS = {
    "spans.py": """
        import time

        def span(name):
            start = time.time()
            time.sleep(0.25)
            with open(f"span.{name}", "w") as f:
                f.write(f"{start!r} {time.time()!r}")
            return name

        if __name__ == "__main__":  # the same from a shell task
            import sys
            span(sys.argv[1])
    """,
}


def test_concurrency_is_never_exceeded(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline limited { concurrency 2 }
        task a { run spans:span  with { name = "a" } }
        task b { run spans:span  with { name = "b" } }
        task c { sh "python3 spans.py c" }
        task many { foreach i in [1, 2, 3, 4]  run spans:span  with { name = "many{i}" } }
    """, SPANS)
    proc, report = run_json(flow, f, "--workers", "4")
    assert proc.returncode == 0, explain(proc)
    spans = [tuple(map(float, p.read_text().split())) for p in tmp_path.glob("span.*")]
    assert len(spans) == 7
    assert max_overlap(spans) == 2, spans


WHEN = """
    task ok { sh "true" }
    task bad { sh "echo oops >&2; exit 4" }
    task after_ok { sh "touch after_ok.ran"  after ok }
    task after_bad { sh "touch after_bad.ran"  after bad }
    task on_failure_of_ok { sh "touch on_failure_of_ok.ran"  after ok  when failure }
    task on_failure_of_bad { sh "touch on_failure_of_bad.ran"  after bad  when failure }
    task always_after_bad { sh "touch always_after_bad.ran"  after bad  when always }
    task below_skipped { sh "touch below_skipped.ran"  after after_bad }
    task always_below_skipped { sh "touch always_below_skipped.ran"  after after_bad  when always }
    task failure_below_skipped { sh "touch failure_below_skipped.ran"  after after_bad  when failure }
"""


def test_when_and_skips(flow, tmp_path):
    f = write_project(tmp_path, WHEN)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    assert report["status"] == "failed"
    tasks = report["tasks"]
    ran = {"ok", "after_ok", "on_failure_of_bad", "always_after_bad", "always_below_skipped"}
    skipped = {"after_bad", "on_failure_of_ok", "below_skipped", "failure_below_skipped"}
    for name in ran:
        assert (tasks[name]["status"], tasks[name]["attempts"]) == ("success", 1), (name, tasks[name])
    assert (tasks["bad"]["status"], tasks["bad"]["attempts"]) == ("failed", 1)
    for name in skipped:
        assert (tasks[name]["status"], tasks[name]["attempts"]) == ("skipped", 0), (name, tasks[name])
        assert tasks[name]["error"] is None and tasks[name]["result"] is None
    assert {p.name for p in tmp_path.glob("*.ran")} == {f"{n}.ran" for n in ran - {"ok"}}


def test_a_run_with_only_successes_and_when_skips_exits_0(flow, tmp_path):
    f = write_project(tmp_path, """
        task ok { sh "true" }
        task on_failure { sh "touch on_failure.ran"  after ok  when failure }
        task below { sh "touch below.ran"  after on_failure }
        task always { sh "touch always.ran"  after below  when always }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["status"] == "success"
    assert [report["tasks"][n]["status"] for n in ("ok", "on_failure", "below", "always")] == [
        "success", "skipped", "skipped", "success"]
    assert [p.name for p in tmp_path.glob("*.ran")] == ["always.ran"]


REFS = {
    "refs.py": """
        def data():
            return {"alpha": 1, "beta": [1, 2]}

        def show(v):
            open("show.ran", "w").close()
            return v
    """,
}


def test_a_missing_key_fails_the_referring_task(flow, tmp_path):
    f = write_project(tmp_path, """
        task d { run refs:data }
        task by_python { run refs:show  with { v = d.gamma } }
        task by_shell { sh "echo {d.delta}; touch by_shell.ran" }
        task by_bracket { run refs:show  with { v = d["epsilon"] } }
        task out_of_range { run refs:show  with { v = d.beta[5] } }
        task fine { run refs:show  with { v = d.beta[1] } }
        task below { sh "touch below.ran"  after by_python }
    """, REFS)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    tasks = report["tasks"]
    for name, key in (("by_python", "gamma"), ("by_shell", "delta"), ("by_bracket", "epsilon")):
        t = tasks[name]
        assert t["status"] == "failed", (name, t)
        message = t["error"]["message"]
        assert key in message and "d" in message, message
        assert "alpha" in message and "beta" in message, f"the existing keys are not named: {message}"
    assert tasks["out_of_range"]["status"] == "failed"
    assert "5" in tasks["out_of_range"]["error"]["message"]
    assert tasks["fine"]["result"] == 2
    assert tasks["below"]["status"] == "skipped"
    assert not (tmp_path / "by_shell.ran").exists() and not (tmp_path / "below.ran").exists()


RESULTS = {
    "res.py": """
        import datetime, decimal, fractions, pathlib, uuid

        class Opaque:
            def __init__(self):
                self.value = 7

        def opaque():
            return Opaque()

        def value_of(o):
            return o.value

        def fraction():
            return fractions.Fraction(1, 3)

        def denominator(f):
            return f.denominator

        def plain():
            return {"when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
                    "day": datetime.date(2024, 1, 2), "amount": decimal.Decimal("1.50"),
                    "id": uuid.UUID(int=1), "path": pathlib.Path("/x/y"), "pair": (1, 2),
                    "delta": datetime.timedelta(seconds=90), "raw": b"bytes", "n": None}

        def not_json():
            return {"set": set(range(100)), "int_keys": {1: "a"}, "tuple": (1, "b"), "nan": float("nan")}

        def types_of(p):
            return {k: type(v).__name__ for k, v in p.items()}
    """,
}


def test_results_that_msgpack_cannot_carry_fail_the_task(flow, tmp_path):
    f = write_project(tmp_path, """
        task opaque { run res:opaque }
        task use { run res:value_of  with { o = opaque } }
        task plain { run res:plain }
        task types { run res:types_of  with { p = plain } }
        task not_json { run res:not_json }
    """, RESULTS)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    tasks = report["tasks"]
    assert tasks["opaque"]["status"] == "failed"
    message = tasks["opaque"]["error"]["message"]
    assert "Opaque" in message and "results pickle" in message, message
    assert tasks["use"]["status"] == "skipped"
    # The types of language.md section 5 arrive downstream as themselves.
    assert tasks["types"]["result"] == {"when": "datetime", "day": "date", "amount": "Decimal", "id": "UUID",
                                        "path": "PosixPath", "pair": "tuple", "delta": "timedelta",
                                        "raw": "bytes", "n": "NoneType"}
    assert tasks["plain"]["result"]["amount"] == "1.50"
    assert tasks["plain"]["result"]["day"] == "2024-01-02"
    # Not JSON-representable: shown as repr, cut to 200 characters.
    shown = tasks["not_json"]["result"]
    assert isinstance(shown["set"], str) and shown["set"].startswith("{0, 1, 2") and len(shown["set"]) <= 200
    assert shown["int_keys"] == "{1: 'a'}"
    assert shown["tuple"] == [1, "b"]
    assert shown["nan"] == "nan"


def test_results_pickle_accepts_other_types(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline pickled { results pickle }
        task frac { run res:fraction }
        task use { run res:denominator  with { f = frac } }
    """, RESULTS)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["frac"]["result"] == "Fraction(1, 3)"
    assert report["tasks"]["use"]["result"] == 3


def test_results_pickle_accepts_classes_of_the_task_module(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline pickled { results pickle }
        task opaque { run res:opaque }
        task use { run res:value_of  with { o = opaque } }
    """, RESULTS)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["use"]["result"] == 7
    assert report["tasks"]["opaque"]["status"] == "success"
