"""Generate large `.flow` files for the benchmarks (shared by several scripts)."""

import os


def write_pipeline(folder: str, tasks: int) -> str:
    """A pipeline of `tasks` tasks with references, foreach and retries; returns its path.

    About 20 tokens a task: a chain of data references with a fan-in every
    ten tasks, a foreach every ten, interpolated strings and retries.
    """
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "work.py"), "w") as f:
        f.write("def step(x=None, n=0, path=None, item=None):\n    return {'value': n}\n")
    lines = [
        "pipeline big {",
        "    params { n = 3  items = [1, 2, 3] }",
        "    defaults { retry 1 delay 1s }",
        "}",
    ]
    for i in range(tasks):
        lines.append(f"task t{i} {{")
        if i % 10 == 5:
            lines.append("    foreach item in params.items")
            lines.append("    run work:step")
            lines.append("    with { item = item  n = params.n }")
        elif i == 0:
            lines.append("    run work:step")
            lines.append("    with { n = params.n }")
        else:
            lines.append("    run work:step")
            lines.append(f'    with {{ x = t{i - 1}.value  path = "out/{{run.date}}/{i}.csv" }}')
        if i % 10 == 9:
            lines.append(f"    after t{i - 9}, t{i - 5}")
        lines.append("}")
    path = os.path.join(folder, f"big{tasks}.flow")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
