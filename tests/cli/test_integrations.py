"""The tools people plug flow into: pre-commit (the real tool, `pre-commit try-repo`), GitHub
code scanning (the SARIF 2.1.0 shape it reads) and GitHub Actions (the example workflow, its
steps run here and their workflow commands checked)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "github" / "flow.yml"

MESSY = 'task b {sh "echo {a}"   # uses a\n}\ntask a { sh "echo a" }\n'
BAD = 'task a {\n    sh "echo {b.total}"\n    after\n}\n'
PROBLEMS = ('pipeline p {\n    params { unused = 1 }\n}\n\n'
            'task a {\n    sh "echo {extrct}"\n}\n\ntask extract { sh "x" }\n')


# ---- pre-commit ---------------------------------------------------------------------


def test_hooks_file_names_both_hooks():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"flow-validate", "flow-fmt"}
    for hook in hooks.values():
        assert hook["language"] == "python" and hook["entry"].split()[0] == "flow"
        assert re.search(hook["files"], "pipelines/orders.flow") and not re.search(hook["files"], "orders.py")


@pytest.fixture
def user_repo(tmp_path):
    """A user's git repository with .flow files added (pre-commit looks at tracked files)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def try_repo(repo: Path, home: Path, *args):
    env = dict(os.environ, PRE_COMMIT_HOME=str(home), NO_COLOR="1")
    env.pop("PYTHONPATH", None)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    return subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), *args, "--all-files",
                           "--color", "never"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)


def test_pre_commit_hooks_with_the_real_tool(user_repo, tmp_path):
    (user_repo / "pipeline.flow").write_text(MESSY)
    (user_repo / "notes.txt").write_text("task x {")  # not a .flow file: neither hook looks at it
    home = tmp_path / "pre-commit-home"
    # both hooks: the file is valid, so validate passes; fmt rewrites it, and so fails the commit
    proc = try_repo(user_repo, home)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert re.search(r"flow validate\.+Passed", out), out
    assert re.search(r"flow fmt\.+Failed", out) and "files were modified by this hook" in out, out
    assert (user_repo / "pipeline.flow").read_text().startswith('task b {\n    sh "echo {a}"  # uses a\n}\n')
    # once formatted, both pass
    proc = try_repo(user_repo, home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a pipeline with errors: validate fails and says where; fmt leaves a file it cannot parse alone
    (user_repo / "bad.flow").write_text(BAD)
    proc = try_repo(user_repo, home)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert re.search(r"flow validate\.+Failed", out) and re.search(r"flow fmt\.+Failed", out), out
    assert "bad.flow:4:1: error E001" in out, out
    assert (user_repo / "bad.flow").read_text() == BAD


# ---- SARIF 2.1.0 as GitHub code scanning reads it -----------------------------------

# The part of SARIF 2.1.0 that code scanning reads, with what the standard requires of it
# (sarif-schema-2.1.0: `version`, `runs`, `tool.driver.name`, `message` on results, `id` on
# rules; line and column numbers from 1) and what GitHub's upload asks for besides
# (`message.text`, `ruleId`, a physical location with a URI and a region).
LEVEL = {"enum": ["none", "note", "warning", "error"]}
MESSAGE = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}}}
REGION = {
    "type": "object", "required": ["startLine"],
    "properties": {k: {"type": "integer", "minimum": 1} for k in ("startLine", "startColumn", "endLine", "endColumn")},
}
SARIF_SHAPE = {
    "type": "object", "required": ["version", "runs"],
    "properties": {
        "$schema": {"type": "string", "pattern": "^https://"},
        "version": {"const": "2.1.0"},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["tool", "results"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                    "type": "object", "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "version": {"type": "string"},
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["id"],
                            "properties": {"id": {"type": "string"}, "shortDescription": MESSAGE,
                                           "defaultConfiguration": {"type": "object",
                                                                    "properties": {"level": LEVEL}}},
                        }},
                    },
                }}},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["ruleId", "message", "locations"],
                    "properties": {
                        "ruleId": {"type": "string"}, "ruleIndex": {"type": "integer", "minimum": 0},
                        "level": LEVEL, "message": MESSAGE,
                        "locations": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {
                            "type": "object", "required": ["physicalLocation"],
                            "properties": {"physicalLocation": {
                                "type": "object", "required": ["artifactLocation", "region"],
                                "properties": {
                                    "artifactLocation": {"type": "object", "required": ["uri"],
                                                         "properties": {"uri": {"type": "string",
                                                                                "pattern": r"^[^\s\\]+$"}}},
                                    "region": REGION,
                                },
                            }},
                        }},
                    },
                }},
            },
        }},
    },
}


def sarif_of(flow, cwd, *paths):
    proc = flow("validate", "--format", "sarif", *paths, cwd=cwd)
    sarif = json.loads(proc.stdout)
    jsonschema.validate(sarif, SARIF_SHAPE)
    return proc, sarif


def test_sarif_has_the_shape_code_scanning_reads(flow, tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "my pipeline.flow").write_text(PROBLEMS)  # a space, which a URI must escape
    (folder / "broken.flow").write_text(BAD)
    proc, sarif = sarif_of(flow, tmp_path, "pipelines")
    assert proc.returncode == 1
    run, = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted({r["id"] for r in rules})
    found = set()
    for result in run["results"]:
        # ruleIndex points at the rule of the same id; the level is the rule's default
        rule = rules[result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
        assert result["level"] == rule["defaultConfiguration"]["level"]
        location = result["locations"][0]["physicalLocation"]
        uri, region = location["artifactLocation"]["uri"], location["region"]
        path = tmp_path / unquote(uri)  # relative to where validate ran: the repository's root in CI
        assert path.is_file(), uri
        lines = path.read_text().split("\n")
        assert region["startLine"] <= len(lines) and region["startColumn"] <= len(lines[region["startLine"] - 1]) + 1
        assert (region["endLine"], region["endColumn"]) >= (region["startLine"], region["startColumn"])
        found.add((unquote(uri), region["startLine"], region["startColumn"], result["ruleId"]))
    assert ("pipelines/my pipeline.flow", 6, 15, "E201") in found
    assert ("pipelines/my pipeline.flow", 2, 14, "W101") in found
    assert ("pipelines/broken.flow", 4, 1, "E001") in found
    assert "pipelines/my%20pipeline.flow" in proc.stdout


def test_sarif_without_problems_is_an_empty_run(flow, tmp_path):
    (tmp_path / "ok.flow").write_text('task a { sh "x" }\n')
    proc, sarif = sarif_of(flow, tmp_path, "ok.flow")
    assert proc.returncode == 0
    assert sarif["runs"][0]["results"] == [] and sarif["runs"][0]["tool"]["driver"]["rules"] == []


# ---- the example GitHub Actions workflow --------------------------------------------

WORKFLOW_COMMAND = re.compile(r"^::(error|warning) file=([^,:]+),line=(\d+),col=(\d+),endLine=(\d+),"
                              r"endColumn=(\d+),title=(\w+)::(.+)$")


def test_workflow_example_is_a_workflow():
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on:` key as true
    assert set(on) == {"push", "pull_request"}
    job, = wf["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    for step in job["steps"]:
        assert ("uses" in step) != ("run" in step), step
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert any("validate . --format github" in r for r in runs)
    assert any("fmt --check" in r for r in runs)


def run_step(command, repo, pyz):
    """A `run:` step as the runner runs it: bash -e, in the checkout, with the job's env."""
    bash = shutil.which("bash")
    env = dict(os.environ, FLOW_PYZ=str(pyz), NO_COLOR="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run([bash, "--noprofile", "--norc", "-eo", "pipefail", "-c", command], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)


def test_workflow_steps_annotate_the_problems(pyz, tmp_path):
    repo = tmp_path / "checkout"
    (repo / "pipelines").mkdir(parents=True)
    (repo / "pipelines" / "orders.flow").write_text(PROBLEMS)
    steps = {s["name"]: s["run"] for s in yaml.safe_load(WORKFLOW.read_text())["jobs"]["pipelines"]["steps"]
             if "run" in s}
    validate = run_step(steps["Validate the pipelines"], repo, pyz)
    assert validate.returncode == 1  # the job fails
    annotations = [WORKFLOW_COMMAND.match(line) for line in validate.stdout.splitlines()]
    assert annotations and all(annotations), validate.stdout
    got = {(m[1], m[2], int(m[3]), int(m[4]), m[7]) for m in annotations}
    assert ("error", "pipelines/orders.flow", 6, 15, "E201") in got, got  # repository-relative, no `./`
    assert any(m[1] == "warning" and m[7] == "W101" for m in annotations)
    # the SARIF step writes a file even when there are problems
    sarif = run_step(steps["Write the problems as SARIF"], repo, pyz)
    assert sarif.returncode == 0
    jsonschema.validate(json.loads((repo / "flow.sarif").read_text()), SARIF_SHAPE)
    # layout: fails until `flow fmt` has run
    (repo / "pipelines" / "orders.flow").write_text(MESSY)
    assert run_step(steps["Check their layout"], repo, pyz).returncode == 1
    subprocess.run([sys.executable, str(pyz), "fmt", "pipelines"], cwd=repo, check=True, capture_output=True)
    assert run_step(steps["Check their layout"], repo, pyz).returncode == 0
    assert run_step(steps["Validate the pipelines"], repo, pyz).stdout == ""
