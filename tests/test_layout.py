"""The package's layout: one subpackage per stage, each importing only the stages below it.

Every import of every module counts, those inside functions too (most of
flow's imports are there, for the cold start). The stages, lowest first:
lang, store, run, schedule, cli. Any module may import the package's root
for `__version__`; the root itself offers `check` (lang) and `python -m
flowdsl` (cli). No two modules import each other, directly or round a circle.
"""

import ast
from pathlib import Path

import pytest
from runkit import ROOT

PACKAGE = ROOT / "flowdsl"
STAGES = ["lang", "store", "run", "schedule", "cli"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    found = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "_tables.py"}
    assert len(found) > 40 and all(f"flowdsl.{s}" in found for s in STAGES)
    return found


def imports(name: str, path: Path):
    """(imported module, imported names, line) for every import of flowdsl in the module."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "flowdsl":
                continue
            names = [a.name for a in node.names]
            # `from . import journal` imports the module flowdsl.<stage>.journal
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            if submodules:
                for sub in submodules:
                    yield sub, [], node.lineno
            else:
                yield target, names, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "flowdsl":
                    yield alias.name, [], node.lineno


MODULES = modules()


def stage_of(module: str):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def edges():
    for name, path in MODULES.items():
        for target, names, line in imports(name, path):
            yield name, target, names, f"{path.relative_to(ROOT)}:{line}"


def test_every_module_belongs_to_a_stage():
    loose = [m for m in MODULES if stage_of(m) is None and m not in ("flowdsl", "flowdsl.__main__")]
    assert loose == [], "modules outside the stages"


@pytest.mark.parametrize("stage", STAGES)
def test_no_import_runs_upward(stage):
    rank = STAGES.index(stage)
    upward = []
    for source, target, names, where in edges():
        if stage_of(source) != stage:
            continue
        if target == "flowdsl":
            if names != ["__version__"]:
                upward.append(f"{where}: {source} imports {names} from the package root")
            continue
        assert target in MODULES, f"{where}: {target} is not a module of flowdsl"
        if (source, target) == ("flowdsl.run", "flowdsl.cli.api"):
            continue  # the package `flowdsl.run` is also the API's `flowdsl.run()`: its __call__ goes there
        if STAGES.index(stage_of(target)) > rank:
            upward.append(f"{where}: {source} ({stage}) imports {target} ({stage_of(target)})")
    assert upward == []


def test_the_root_offers_check_the_api_and_the_command_only():
    targets = {t for s, t, _, _ in edges() if stage_of(s) is None}
    assert targets == {"flowdsl.lang.check", "flowdsl.cli", "flowdsl.cli.api"}


def test_no_import_circles():
    graph = {m: set() for m in MODULES}
    for source, target, _, _ in edges():
        if target in MODULES and target != source:
            # a package's __init__ is imported with any of its modules: not an edge back
            if not source.startswith(target + "."):
                graph[source].add(target)
    circles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert circles == []


def test_each_stage_says_what_it_is():
    for stage in STAGES:
        init = PACKAGE / stage / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "\n" not in doc.strip(), f"{init}: one line saying what the stage is"


def test_the_runtime_pins_agree_between_the_package_and_the_zipapp():
    """pyproject.toml's dependencies (a pip install) and requirements/pyz.txt (what the zipapp bundles, with
    hashes) name the same versions: a bump in one file alone would ship two different flows."""
    import re

    root = Path(__file__).resolve().parent.parent
    project = (root / "pyproject.toml").read_text()
    deps = project.split("dependencies = [", 1)[1].split("]", 1)[0]
    package = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', deps))
    bundled = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (root / "requirements" / "pyz.txt").read_text(), re.M))
    assert set(package) == {"lark", "croniter", "msgpack", "tabulate"}
    for name, version in package.items():
        assert bundled.get(name) == version, f"{name}: {version} in pyproject.toml, {bundled.get(name)} bundled"


def test_failure_kinds_come_from_the_catalogue():
    """flow's own error `type`s are named in store/failures.py; a module writes them as `failures.X`, except
    run/daskhost.py, which runs on a Dask worker with the standard library alone and writes them as text:
    every such text is one of the catalogue's kinds, and no other module spells one out."""
    import re

    from flowdsl.store import failures

    spelled = re.compile(r'"(' + "|".join(sorted(failures.KINDS)) + r')"')
    host = (PACKAGE / "run" / "daskhost.py").read_text()
    kinds = set(re.findall(r'(?:_refused|_failed)\(payload, started, "(\w+)"', host)) | set(
        re.findall(r'return "(\w+)", ', host))
    assert kinds and kinds <= failures.KINDS, kinds - failures.KINDS
    for name, path in MODULES.items():
        if name in ("flowdsl.store.failures", "flowdsl.run.daskhost"):
            continue
        found = spelled.findall(path.read_text())
        assert not found, f"{path.relative_to(ROOT)} spells out {found}: use flowdsl.store.failures"
