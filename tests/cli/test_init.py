"""`flow init`: the starter project validates and runs, and the crontab line can be pasted as is."""

import json
import os
import subprocess
import sys

import pytest

from flowdsl.cli import init as cli_init


def files_of(folder):
    return {p.name: p.read_text() for p in folder.iterdir() if p.is_file()}


def test_init_writes_a_project_that_validates_and_runs(flow, pyz, tmp_path):
    folder = tmp_path / "sales-report"
    proc = flow("init", folder, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert set(files_of(folder)) == {"sales_report.flow", "sales_report_tasks.py", ".gitignore"}
    assert ".flow/" in (folder / ".gitignore").read_text().splitlines()
    for name in ("sales_report.flow", "sales_report_tasks.py", ".gitignore"):
        assert f"wrote {folder / name}" in proc.stdout
    [line] = [x.strip() for x in proc.stdout.splitlines() if x.strip().startswith("* * * * * cd ")]
    assert f" {sys.executable} {pyz} tick {folder} " in line
    assert line.endswith(f">> {folder}/.flow/tick.log 2>&1")
    words = line.replace("&&", " ").replace(">>", " ").split()[5:]
    paths = [w for w in words if "/" in w]
    assert paths and all(os.path.isabs(w) for w in paths)
    assert f"    {sys.executable} {pyz} run sales-report/sales_report.flow\n" in proc.stdout  # relative to the cwd

    checked = flow("validate", folder)
    assert checked.returncode == 0 and "no problems" in checked.stdout, checked.stdout
    assert "warning" not in checked.stdout
    ran = flow("run", folder / "sales_report.flow", "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["status"] == "success"
    assert {k: t["status"] for k, t in report["tasks"].items()} == {"greet": "success", "shout": "success",
                                                                    "save": "success"}
    day = report["logical_date"][:10]
    assert (folder / "out" / f"{day}.txt").read_text().strip() == f"HELLO, WORLD! TODAY IS {day}."
    schedule = json.loads(flow("schedule", folder, "--json").stdout)
    assert "0 6 * * *" in json.dumps(schedule)


def test_a_second_init_refuses_and_changes_nothing(flow, tmp_path):
    assert flow("init", tmp_path / "p").returncode == 0
    (tmp_path / "p" / "p_tasks.py").write_text("# mine\n")
    before = files_of(tmp_path / "p")
    proc = flow("init", tmp_path / "p")
    assert proc.returncode == 2
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert str(tmp_path / "p" / "p.flow") in proc.stderr
    assert files_of(tmp_path / "p") == before
    # --force rewrites the pipeline and its module, and leaves a .gitignore alone
    (tmp_path / "p" / ".gitignore").write_text("mine\n")
    assert flow("init", tmp_path / "p", "--force").returncode == 0
    after = files_of(tmp_path / "p")
    assert after["p_tasks.py"] != "# mine\n" and after[".gitignore"] == "mine\n"


def test_init_into_the_working_folder_and_an_existing_gitignore(flow, tmp_path):
    folder = tmp_path / "2024 stats"  # not an identifier: the fallback name
    folder.mkdir()
    (folder / ".gitignore").write_text("*.log\n")
    proc = flow("init", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert set(files_of(folder)) == {"hello.flow", "hello_tasks.py", ".gitignore"}
    assert (folder / ".gitignore").read_text() == "*.log\n"
    assert f"cd '{folder}' " in proc.stdout  # quoted for the shell
    assert flow("validate", ".", cwd=folder).returncode == 0


def test_an_unknown_zone_is_a_usage_error_and_writes_nothing(flow, tmp_path):
    proc = flow("init", tmp_path / "p", "--tz", "Nowhere/City")
    assert proc.returncode == 2 and "Nowhere/City" in proc.stderr
    assert not (tmp_path / "p").exists()
    assert flow("init", tmp_path / "q", "--tz", "America/New_York").returncode == 0
    assert 'tz "America/New_York"' in (tmp_path / "q" / "q.flow").read_text()
    assert flow("validate", "--strict", tmp_path / "q").returncode == 0
    # the starter is in canonical layout: a flow-fmt pre-commit hook leaves it alone
    proc = flow("fmt", "--check", tmp_path / "q")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_json_shape(flow, pyz, tmp_path):
    proc = flow("init", tmp_path / "j", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"dir", "files", "crontab"}
    assert out["dir"] == str(tmp_path / "j")
    assert out["files"] == [str(tmp_path / "j" / n) for n in ("j.flow", "j_tasks.py", ".gitignore")]
    assert out["crontab"].startswith(f"* * * * * cd {tmp_path / 'j'} && ")
    assert f"{pyz} tick {tmp_path / 'j'}" in out["crontab"]


def test_the_crontab_line_works_in_crons_bare_environment(flow, tmp_path):
    folder = tmp_path / "nightly"
    line = json.loads(flow("init", folder, "--json").stdout)["crontab"]
    command = line.split(None, 5)[5]
    bare = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
    subprocess.run(["/bin/sh", "-c", command + " --now 2030-01-01T06:00:30Z --wait"], cwd="/", env=bare,
                   check=True, timeout=120)
    log = (folder / ".flow" / "tick.log").read_text()
    assert "nightly" in log
    assert list((folder / "out").iterdir())[0].name == "2030-01-01.txt"


@pytest.mark.parametrize("folder, name", [
    ("/srv/Sales Report", "sales_report"), ("/srv/etl-2", "etl_2"), ("/srv/2024", "hello"),
    ("/srv/params", "hello"), ("/srv/---", "hello"), ("/srv/café", "cafe"), ("/srv/日本", "hello"),
    ("/", "hello"),
])
def test_pipeline_name(folder, name):
    assert cli_init.pipeline_name(folder) == name


def test_how_flow_is_invoked(monkeypatch, tmp_path):
    pyz = tmp_path / "flow.pyz"
    pyz.write_bytes(b"")
    monkeypatch.setattr(sys, "argv", [str(pyz), "init"])
    assert cli_init.flow_command() == [sys.executable, str(pyz)]
    monkeypatch.setattr(sys, "argv", ["/somewhere/flowdsl/__main__.py", "init"])
    launcher = tmp_path / "bin" / "flow"
    launcher.parent.mkdir()
    launcher.write_text("#!/usr/bin/python3\nimport sys\nfrom flowdsl.cli import main\nsys.exit(main())\n")
    monkeypatch.setattr("shutil.which", lambda name: str(launcher))
    assert cli_init.flow_command() == [str(launcher)]
    launcher.write_text("#!/bin/sh\nexec node flow-bin \"$@\"\n")  # another program called flow
    assert cli_init.flow_command()[-3:] == [sys.executable, "-m", "flowdsl"]
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert cli_init.flow_command()[-3:] == [sys.executable, "-m", "flowdsl"]


def test_percent_signs_are_escaped_for_cron():
    line = cli_init.crontab_line("/data/100% done", ["/usr/bin/flow"])
    assert "%" not in line.replace("\\%", "")
    assert line.startswith("* * * * * cd '/data/100\\% done' && ")
