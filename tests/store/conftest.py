"""What the state folder's damage and trust tests share: a fresh copy of the module's `made` project."""

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def proj(made, tmp_path) -> Path:
    """A copy of the module's `made` project (links kept as links), for one test to damage."""
    folder = tmp_path / "proj"
    shutil.copytree(made, folder, symlinks=True)
    return folder
