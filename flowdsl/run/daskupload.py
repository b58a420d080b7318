"""What a Dask run uploads: flow's own modules, the run's code (the `.py` files of the pipeline's folders) and
the files it ships (`ship`), each as a deflated, reproducible zip named by its content."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from typing import Dict, Sequence

SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}
MAX_CODE_BYTES = 64 << 20  # the run's code zip; past this, deploy the code on the workers instead


def package_files() -> Dict[str, bytes]:
    """flow's own modules, {archive name: source}, from the checkout, the wheel or the zipapp."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files: Dict[str, bytes] = {}
    if os.path.isdir(root):
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, "rb") as f:
                        files[os.path.relpath(path, os.path.dirname(root)).replace(os.sep, "/")] = f.read()
        return files
    archive = root  # inside a zipapp: .../flow.pyz/flowdsl (or .../flow.pyz/__pyc__/cpython-3NN/flowdsl)
    while not os.path.isfile(archive):
        archive = os.path.dirname(archive)
    with zipfile.ZipFile(archive) as z:  # the sources at the archive's root, for any interpreter
        for name in sorted(z.namelist()):
            if name.startswith("flowdsl/") and name.endswith(".py"):
                files[name] = z.read(name)
    return files


def code_files(folders: Sequence[str]) -> Dict[str, bytes]:
    """The `.py` files of the pipeline's folders, each folder's tree at the archive's root (as on sys.path)."""
    files: Dict[str, bytes] = {}
    for base in folders:
        if not os.path.isdir(base):
            continue
        for folder, dirs, names in os.walk(base):
            # hidden folders (.flow, .git, .venv) and virtual environments are not the run's code
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                             and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg")))
            for name in sorted(names):
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), base).replace(os.sep, "/")
                    if rel not in files:  # the first folder on the path wins, as in an import
                        with open(os.path.join(folder, name), "rb") as f:
                            files[rel] = f.read()
    return files


def data_files(shipped: Dict[str, str]) -> Dict[str, bytes]:
    """The files and folders a run ships with its code, {path in the run's folder: content}."""
    files: Dict[str, bytes] = {}
    for rel, path in shipped.items():
        rel = rel.replace(os.sep, "/").strip("/")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                files[rel] = f.read()
            continue
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
            for name in sorted(names):
                full = os.path.join(folder, name)
                with open(full, "rb") as f:
                    files[(rel + "/" + os.path.relpath(full, path).replace(os.sep, "/")).lstrip("/")] = f.read()
    return files


def zip_files(files: Dict[str, bytes], prefix: str) -> tuple:
    """(file name by content, zip bytes), deflated and reproducible: fixed dates, sorted names."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    buffer = io.BytesIO()
    # each folder's own entry: zipimport finds a package folder without __init__.py (a namespace
    # package, which imports locally) only through it
    folders = sorted({name[:i + 1] for name in files for i, c in enumerate(name) if c == "/"})
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name in folders:
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), b"")
        for name in sorted(files):
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED  # a ZipInfo's own type wins over the archive's (stored)
            z.writestr(info, files[name])
    return f"{prefix}-{digest.hexdigest()[:16]}.zip", buffer.getvalue()
