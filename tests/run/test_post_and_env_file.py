"""`on ... post "URL"` hooks against a real HTTP server on 127.0.0.1, and the `env_file` statement (cli.md,
v1.1: hooks; language reference, section 7's neighbours in cli.md)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from runkit import explain, run_json, write_project


class Receiver:
    """An HTTP server that records each POST and answers with the status it is told to."""

    def __init__(self, status=200, delay=0.0):
        self.requests = []
        self.status = status
        self.delay = delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append((self.path, dict(self.headers), body))
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"answer")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_a_failed_run_posts_its_report_without_results_and_with_secrets_masked(flow, tmp_path, receiver):
    f = write_project(tmp_path, f"""
        pipeline alerts {{
            params {{ token = secret("ALERT_TOKEN") }}
            on failure post "{receiver.url}/hook/{{run.pipeline}}"
            on success post "{receiver.url}/never"
            on finish  post "{receiver.url}/finish"
        }}
        task good {{ sh "echo result-text" }}
        task bad {{ sh "echo $FLOW_ARG_T >&2; exit 4"  with {{ t = params.token }} }}
    """)
    proc, report = run_json(flow, f, env={"ALERT_TOKEN": "hook-s3cret"})
    assert proc.returncode == 1, explain(proc)
    paths = [p for p, _, _ in receiver.requests]
    assert paths == ["/hook/alerts", "/finish"]
    _, headers, body = receiver.requests[0]
    assert headers["Content-Type"] == "application/json"
    sent = json.loads(body)
    assert sent["status"] == "failed" and sent["run_id"] == report["run_id"]
    assert sent["tasks"]["bad"]["status"] == "failed"
    assert all("result" not in t for t in sent["tasks"].values())
    assert b"hook-s3cret" not in body and b"result-text" not in body
    assert [h["status"] for h in report["hooks"]] == ["success", "success"]


@pytest.mark.parametrize("status", [404, 500])
def test_an_answer_other_than_2xx_is_a_failed_hook(flow, tmp_path, status):
    receiver = Receiver(status=status)
    try:
        f = write_project(tmp_path, f"""
            pipeline p {{ on success post "{receiver.url}/x" }}
            task t {{ sh "true" }}
        """)
        proc, report = run_json(flow, f)
        assert report["status"] == "success"
        assert report["hooks"][0]["status"] == "failed"
        assert str(status) in report["hooks"][0]["error"]["message"]
        logs = flow("logs", report["run_id"], "on_success", cwd=tmp_path)
        assert str(status) in logs.stdout, explain(logs)
    finally:
        receiver.close()


def test_no_answer_within_10s_is_a_failed_hook_and_an_unreachable_address_too(flow, tmp_path):
    slow = Receiver(delay=15)
    try:
        f = write_project(tmp_path, f"""
            pipeline p {{
                on success post "{slow.url}/slow"
                on finish post "http://127.0.0.1:9/closed"
            }}
            task t {{ sh "true" }}
        """)
        started = time.monotonic()
        proc, report = run_json(flow, f, timeout=60)
        took = time.monotonic() - started
        assert [h["status"] for h in report["hooks"]] == ["failed", "failed"], report["hooks"]
        assert 9 < took < 30
    finally:
        slow.close()


def test_validate_wants_an_http_address(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline p { on failure post "ftp://example.com/x" }
        task t { sh "true" }
    """)
    proc = flow("validate", f)
    assert proc.returncode == 1 and "E101" in proc.stdout and "http" in proc.stdout


def test_env_file_feeds_env_and_secret_and_the_environment_wins(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline p {
            env_file "conf/.env"
            params { db = env("DB_URL")  token = secret("API_TOKEN") }
        }
        task show { sh "echo {params.db} $REGION $FLOW_ARG_T"  with { t = params.token } }
        task region { sh "echo $REGION" }
    """)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / ".env").write_text("# settings\nDB_URL=sqlite:///file.db\nexport REGION='emea'\n"
                                            "API_TOKEN=\"env-file-s3cret\"\n\n")
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["show"]["result"] == "sqlite:///file.db emea ***"
    proc, report = run_json(flow, f, env={"REGION": "apac", "DB_URL": "pg://x"})
    assert report["tasks"]["show"]["result"].startswith("pg://x apac")
    for path in (tmp_path / ".flow").rglob("*"):
        if path.is_file():
            assert b"env-file-s3cret" not in path.read_bytes(), path


def test_a_missing_or_malformed_env_file_is_a_usage_error_and_starts_nothing(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline p { env_file ".env" }
        task t { sh "true" }
    """)
    proc = flow("run", f, cwd=tmp_path)
    assert proc.returncode == 2 and "env_file" in proc.stderr and ".env" in proc.stderr, explain(proc)
    (tmp_path / ".env").write_text("GOOD=1\nthis is not a setting\n")
    proc = flow("run", f, cwd=tmp_path)
    assert proc.returncode == 2 and ".env:2" in proc.stderr, explain(proc)
    assert not (tmp_path / ".flow" / "runs").exists() or not any((tmp_path / ".flow" / "runs").iterdir())
