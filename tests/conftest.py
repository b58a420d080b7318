"""Shared fixtures: the CLI as a user runs it, through the built zipapp.

`flow` runs `python3 <pyz> ARGS...` in a subprocess. The pyz is built once
per test session into a temporary folder (or taken from $FLOW_PYZ, which
.ci/run sets after building it once).

The tests live beside the stage they test (lang/, store/, run/, schedule/,
cli/); the zipapp and the package's layout are tested here at the top.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT / "tests"))  # runkit, the end-to-end helpers, for the tests of every stage


@pytest.fixture(scope="session")
def pyz(tmp_path_factory) -> Path:
    given = os.environ.get("FLOW_PYZ")
    if given:
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("dist") / "flow.pyz"
    subprocess.run([sys.executable, str(ROOT / "build_zipapp.py"), "--output", str(out)],
                   check=True, cwd=ROOT, capture_output=True)
    return out


@pytest.fixture(scope="session")
def flow(pyz):
    """Run the flow CLI; returns the CompletedProcess (text mode)."""

    def run(*args, cwd=None, env=None, input=None, timeout=120, python=sys.executable):
        full_env = dict(os.environ)
        full_env.pop("PYTHONPATH", None)
        full_env["NO_COLOR"] = "1"
        if env:
            full_env.update(env)
        return subprocess.run([python, str(pyz), *map(str, args)], cwd=cwd, env=full_env, input=input,
                              capture_output=True, text=True, timeout=timeout)

    return run
