"""The task graph drawn as ascii, dot, mermaid or json, and actions and expressions in words (the dry run too)."""

from __future__ import annotations

import json
from typing import Dict, List, Optional

from ..lang import ir, planner


def describe_action(task_or_hook) -> str:
    a = task_or_hook.action
    if isinstance(a, ir.RunAction):
        return f"run {a.callable}"
    if isinstance(a, ir.ShAction):
        return "sh " + json.dumps(a.command.text)
    if isinstance(a, ir.ExecAction):
        if isinstance(a.argv, ir.ListExpr):
            return "exec " + " ".join(describe_expr(i) for i in a.argv.items)
        return "exec " + describe_expr(a.argv)
    if isinstance(a, ir.WaitAction):
        return f"wait run {a.target}" if a.kind == "run" else f"wait {a.kind} " + json.dumps(a.target.text)
    if isinstance(a, ir.CallAction):
        return "call " + json.dumps(a.path.text)
    if isinstance(a, ir.PostAction):
        return "post " + json.dumps(a.url.text)
    return "(no action)"


def kind_of(task: ir.Task) -> str:
    """task, sensor (a `wait`) or call (a sub-pipeline): what the drawings show differently."""
    if isinstance(task.action, ir.WaitAction):
        return "sensor"
    return "call" if isinstance(task.action, ir.CallAction) else "task"


def describe_expr(e) -> str:
    if isinstance(e, ir.Template):
        return e.text
    if isinstance(e, ir.Literal):
        return json.dumps(e.value)
    if isinstance(e, ir.Duration):
        return e.text
    if isinstance(e, ir.Ref):
        return str(e)
    if isinstance(e, ir.ListExpr):
        return "[" + ", ".join(describe_expr(i) for i in e.items) + "]"
    if isinstance(e, ir.MapExpr):
        return "{" + " ".join(f"{x.key} = {describe_expr(x.value)}" for x in e.entries) + "}"
    if isinstance(e, ir.EnvCall):
        return ("secret" if e.secret else "env") + f'("{e.name}")'
    return "?"


# the report page's colours (cli/reportpage.py), with the text colour that reads on each
STATE_COLOURS = {"success": ("#2e9e58", "white"), "failed": ("#d64541", "white"), "skipped": ("#a8a8a8", "black"),
                 "cached": ("#4f86e8", "white"), "kept": ("#8e6fd1", "white"), "running": ("#f0a81a", "black"),
                 "queued": ("#f6d8a0", "black"), "pending": ("#dcdcdc", "black"), "waiting": ("#7ec8c8", "black")}


def to_data(program: ir.Program) -> dict:
    graph = planner.edges(program)
    depth = planner.layers(graph)
    tasks = []
    for t in program.tasks:
        s = t.settings
        tasks.append({
            "name": t.name, "action": describe_action(t), "layer": depth[t.name],
            "foreach": (f"{', '.join(planner.foreach_names(t))} in {describe_expr(t.foreach.items)}"
                        if t.foreach else None),
            "kind": kind_of(t), "if": t.condition.text if t.condition else None,
            "when": s.when.value if s.when else None,
            "tags": [n.name for n in s.tags], "description": t.description.text if t.description else None,
            "upstream": [e.upstream for e in graph[t.name]],
        })
    edges = [{"from": e.upstream, "to": name, "kind": e.kind} for name, es in graph.items() for e in es]
    hooks = [{"event": h.event, "action": describe_action(h)} for h in program.pipeline.hooks]
    return {"pipeline": program.pipeline.name, "tasks": tasks, "edges": edges, "hooks": hooks}


def render(program: ir.Program, fmt: str, states: Optional[Dict[str, str]] = None) -> str:
    """The graph in `fmt`; with `states` (task name -> a run's state), nodes coloured (or labelled) by them."""
    data = to_data(program)
    if states is not None:
        for t in data["tasks"]:
            t["state"] = states.get(t["name"], "pending")
    return {"json": _json, "dot": _dot, "mermaid": _mermaid, "ascii": _ascii}[fmt](data)


def _json(data: dict) -> str:
    return json.dumps(data, indent=2)


def _sinks(data: dict) -> List[str]:
    has_downstream = {e["from"] for e in data["edges"]}
    return [t["name"] for t in data["tasks"] if t["name"] not in has_downstream]


def _dot(data: dict) -> str:
    q = json.dumps
    out = [f"digraph {q(data['pipeline'])} {{", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    for t in data["tasks"]:
        label = t["name"] + ("[*]" if t["foreach"] else "") + "\\n" + t["action"].replace('"', "'")
        extra = ""
        if t["foreach"]:
            label += "\\nforeach " + t["foreach"].replace('"', "'")
            extra = ", shape=box3d"
        if t["when"] and t["when"] != "success":
            label += f"\\nwhen {t['when']}"
        if t["if"] and not t["upstream"]:  # with upstreams, the condition labels the edges into it
            label += "\\nif " + t["if"].replace('"', "'")
        extra += {"sensor": ", shape=hexagon", "call": ", shape=component"}.get(t["kind"], "")
        if "state" in t:
            fill, ink = STATE_COLOURS.get(t["state"], ("#dcdcdc", "black"))
            extra += f', style=filled, fillcolor="{fill}", fontcolor="{ink}", tooltip="{t["state"]}"'
        out.append(f"  {q(t['name'])} [label=\"{label}\"{extra}];")
    conditions = {t["name"]: t["if"] for t in data["tasks"] if t["if"]}
    for e in data["edges"]:
        attrs = ["style=dashed"] if e["kind"] == "after" else []
        if e["to"] in conditions:
            attrs.append("label=" + q("if " + conditions[e["to"]]))
        out.append(f"  {q(e['from'])} -> {q(e['to'])}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    for i, h in enumerate(data["hooks"]):
        node = q(f"on {h['event']} #{i}")
        out.append(f"  {node} [label=\"on {h['event']}\\n{h['action'].replace(chr(34), chr(39))}\", shape=note];")
        for s in _sinks(data):
            out.append(f"  {q(s)} -> {node} [style=dotted, arrowhead=none];")
    out.append("}")
    return "\n".join(out)


def _mermaid(data: dict) -> str:
    def text(s: str) -> str:
        return s.replace('"', "#quot;")

    ids: Dict[str, str] = {t["name"]: f"t{i}" for i, t in enumerate(data["tasks"])}
    out = ["flowchart LR"]
    for t in data["tasks"]:
        label = text(t["name"] + ("[*]" if t["foreach"] else "") + "<br/>" + t["action"])
        if t["when"] and t["when"] != "success":
            label += f"<br/>when {t['when']}"
        if t["if"] and not t["upstream"]:
            label += "<br/>if " + text(t["if"])
        if t["foreach"]:
            out.append(f'  {ids[t["name"]]}[["{label}<br/>foreach {text(t["foreach"])}"]]')
        elif t["kind"] == "sensor":
            out.append(f'  {ids[t["name"]]}(["{label}"])')
        elif t["kind"] == "call":
            out.append(f'  {ids[t["name"]]}[/"{label}"/]')
        else:
            out.append(f'  {ids[t["name"]]}["{label}"]')
    conditions = {t["name"]: t["if"] for t in data["tasks"] if t["if"]}
    for e in data["edges"]:
        arrow = "-.->" if e["kind"] == "after" else "-->"
        if e["to"] in conditions:
            arrow += f'|"if {text(conditions[e["to"]])}"|'
        out.append(f"  {ids[e['from']]} {arrow} {ids[e['to']]}")
    states = sorted({t["state"] for t in data["tasks"] if "state" in t})
    for state in states:
        fill, ink = STATE_COLOURS.get(state, ("#dcdcdc", "black"))
        out.append(f"  classDef {state} fill:{fill},color:{ink}")
        out.append(f"  class {','.join(ids[t['name']] for t in data['tasks'] if t.get('state') == state)} {state}")
    for i, h in enumerate(data["hooks"]):
        out.append(f'  h{i}{{{{"on {h["event"]}<br/>{text(h["action"])}"}}}}')
        for s in _sinks(data):
            out.append(f"  {ids[s]} -.- h{i}")
    return "\n".join(out)


def _ascii(data: dict) -> str:
    tasks = sorted(data["tasks"], key=lambda t: t["layer"])
    kinds = {(e["from"], e["to"]): e["kind"] for e in data["edges"]}
    width = max((len(t["name"]) + (3 if t["foreach"] else 0) for t in tasks), default=4)
    out = [f"pipeline {data['pipeline']} ({len(tasks)} tasks)"]
    layer = None
    for t in tasks:
        if t["layer"] != layer:
            layer = t["layer"]
            out.append(f"stage {layer + 1}")
        name = t["name"] + ("[*]" if t["foreach"] else "")
        line = f"  {name.ljust(width)}  {t['action']}"
        if t["upstream"]:
            ups = [u + (" (after)" if kinds.get((u, t["name"])) == "after" else "") for u in t["upstream"]]
            line += "  <- " + ", ".join(ups)
        if t["foreach"]:
            line += f"  | foreach {t['foreach']}"
        if t["when"] and t["when"] != "success":
            line += f"  | when {t['when']}"
        if t["if"]:
            line += f"  | if {t['if']}"
        if "state" in t:
            line += f"  [{t['state']}]"
        out.append(line)
    for h in data["hooks"]:
        out.append(f"on {h['event']} -> {h['action']}")
    return "\n".join(out)
