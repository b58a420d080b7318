"""The HTML run report and the runs index: one self-contained file each.

The page carries its data as JSON and draws itself with a little inline
script: no file, font or library is fetched, so it works offline and as a
mail attachment. Large runs stay fast to open: past a few hundred tasks the
graph's nodes become small squares and its edges are drawn only while there
are few enough to read, and the timeline draws only the rows in view.
"""

from __future__ import annotations

import html
import json
from typing import Any, Dict, List

COLOURS = {"success": "#2e9e58", "failed": "#d64541", "skipped": "#a8a8a8", "cached": "#4f86e8",
           "kept": "#8e6fd1", "running": "#f0a81a", "queued": "#f6d8a0", "waiting": "#7ec8c8",
           "pending": "#dcdcdc", "interrupted": "#e07b39"}

CSS = """
body{font:13px/1.4 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:12px 18px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:18px;margin:0 0 6px}h2{font-size:15px;margin:16px 18px 6px}
.meta{display:grid;grid-template-columns:max-content auto;gap:2px 12px}.meta dt{color:#666}.meta dd{margin:0}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-weight:600}
.legend span{margin-right:12px;white-space:nowrap}.legend i{display:inline-block;width:11px;height:11px;
border-radius:2px;margin-right:4px;vertical-align:-1px}
#dag{position:relative;margin:0 18px;overflow:auto;max-height:70vh;background:#fff;border:1px solid #ddd}
#dag svg{position:absolute;left:0;top:0;pointer-events:none}
.node{position:absolute;box-sizing:border-box;border:1px solid rgba(0,0,0,.25);border-radius:4px;cursor:pointer;
overflow:hidden;font-size:12px;padding:4px 6px;white-space:nowrap;text-overflow:ellipsis}
.node.small{padding:0;border-radius:2px}.node.crit{outline:2px solid #c0392b;outline-offset:1px}
.chips{display:flex;flex-wrap:wrap;gap:2px;margin-top:3px}.chip{width:10px;height:10px;border-radius:2px;
border:1px solid rgba(255,255,255,.9);cursor:pointer}
#gantt{position:relative;margin:0 18px 18px;overflow:auto;max-height:75vh;background:#fff;border:1px solid #ddd}
.axis{position:sticky;top:0;height:20px;background:#fff;border-bottom:1px solid #ddd;z-index:2}
.tick{position:absolute;top:3px;font-size:11px;color:#666;border-left:1px solid #ccc;padding-left:3px}
.row{position:absolute;left:0;right:0;height:18px;cursor:pointer}.row:hover{background:#f0f4ff}
.row .label{position:absolute;left:4px;width:210px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;
font-size:12px}.row.inst .label{padding-left:14px;width:196px;color:#555}.row.crit .label{color:#c0392b;
font-weight:600}
.track{position:absolute;left:224px;right:8px;top:0;bottom:0}
.bar{position:absolute;top:3px;height:12px;min-width:2px;border-radius:2px}.bar.crit{box-shadow:0 0 0 2px #c0392b}
.wait{position:absolute;top:8px;height:0;border-top:2px dotted #888}
#detail{position:fixed;right:0;top:0;bottom:0;width:min(560px,90vw);background:#fff;border-left:1px solid #bbb;
box-shadow:-4px 0 12px rgba(0,0,0,.1);padding:12px 16px;overflow:auto;display:none;z-index:5}
#detail.open{display:block}#detail pre{background:#f4f4f4;padding:6px;overflow:auto;max-height:300px;font-size:12px}
#detail table{border-collapse:collapse}#detail td,#detail th{padding:2px 8px;border-bottom:1px solid #eee;
text-align:left}
.close{float:right;cursor:pointer;border:0;background:none;font-size:18px}.note{color:#666;margin:4px 18px}
"""

SCRIPT = r"""
(function(){
'use strict';
var D = JSON.parse(document.getElementById('flow-data').textContent);
var C = JSON.parse(document.getElementById('flow-colours').textContent);
function esc(s){return String(s==null?'':s).replace(/[&<>"']/g,function(c){
  return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c];});}
function secs(v){if(v==null)return '-';if(v<60)return v.toFixed(v<10?3:1)+'s';
  var m=Math.floor(v/60);return m>=60?Math.floor(m/60)+'h'+(m%60)+'m':m+'m'+Math.round(v%60)+'s';}
var taskIndex = {}; D.tasks.forEach(function(t, i){ taskIndex[t.name] = i; });
var rowOf = {}; D.rows.forEach(function(r, i){rowOf[r.key]=r; r.i=i;});
var crit = {}; D.critical.forEach(function(n){crit[n]=true;});

// ---- the graph, laid out by stage ----
var dag = document.getElementById('dag');
var small = D.tasks.length > 300;
var NW = small ? 14 : 180, NH = small ? 14 : 26, GX = small ? 4 : 40, GY = small ? 4 : 10;
var pos = {}, x = 8, width = 0, height = 0, parts = [];
D.order.forEach(function(stage){
  var perCol = small ? Math.max(1, Math.min(stage.length, 40)) : stage.length;
  var cols = Math.ceil(stage.length / perCol), y = 8, col = 0;
  stage.forEach(function(name, i){
    var t = D.tasks[taskIndex[name]], h = NH;
    if (!small && t.instances.length) h = NH + 4 + Math.ceil(Math.min(t.instances.length, 240) / 14) * 12;
    if (small && i && i % perCol === 0) { col++; y = 8; }
    var nx = x + col * (NW + GX);
    pos[name] = {x: nx, y: y, h: h};
    var cls = 'node' + (small ? ' small' : '') + (crit[name] ? ' crit' : '');
    var body = small ? '' : esc(name) + (t.instances.length ? ' [' + t.instances.length + ']' : '');
    if (!small && t.instances.length) {
      body += '<div class="chips">' + t.instances.slice(0, 240).map(function(k){
        var r = rowOf[k];
        return '<div class="chip" data-key="' + esc(k) + '" data-state="' + r.state + '" title="' + esc(k + ': '
          + r.state) + '" style="background:' + C[r.state] + '"></div>';}).join('') +
        (t.instances.length > 240 ? '…' : '') + '</div>';
    }
    parts.push('<div class="' + cls + '" data-task="' + esc(name) + '" data-state="' + t.state + '" title="' +
      esc(name + ': ' + t.state) + '" style="left:' + nx + 'px;top:' + y + 'px;width:' + NW + 'px;height:' + h +
      'px;background:' + C[t.state] + (t.state === 'pending' || t.state === 'skipped' ? '' : ';color:#fff') +
      '">' + body + '</div>');
    y += h + GY; height = Math.max(height, y);
  });
  x += cols * (NW + GX) + (small ? 24 : 30); width = x;
});
var paths = [], critPaths = [], edgeCount = 0;
D.tasks.forEach(function(t){ edgeCount += t.up.length; });
var drawAll = edgeCount <= 3000;
D.tasks.forEach(function(t){
  var b = pos[t.name];
  t.up.forEach(function(e){
    var a = pos[e[0]]; if (!a) return;
    var isCrit = crit[t.name] && crit[e[0]];
    if (!drawAll && !isCrit) return;
    var x1 = a.x + NW, y1 = a.y + Math.min(a.h, NH) / 2, x2 = b.x, y2 = b.y + Math.min(b.h, NH) / 2, m = (x1 + x2) / 2;
    (isCrit ? critPaths : paths).push('M' + x1 + ' ' + y1 + 'C' + m + ' ' + y1 + ' ' + m + ' ' + y2 + ' ' + x2 + ' '
      + y2);
  });
});
dag.innerHTML = '<svg width="' + width + '" height="' + height + '"><path d="' + paths.join('') +
  '" fill="none" stroke="#9aa" stroke-width="1"/><path d="' + critPaths.join('') +
  '" fill="none" stroke="#c0392b" stroke-width="2"/></svg>' + parts.join('') +
  '<div style="position:absolute;left:' + width + 'px;top:' + height + 'px;width:1px;height:1px"></div>';
dag.style.height = (height + 12) + 'px';  // nodes are absolutely placed: the box needs a height
if (!drawAll) document.getElementById('dag-note').textContent =
  edgeCount + ' edges: only the critical path is drawn. Click a square for its task.';
if (!D.edges_known) document.getElementById('dag-note').textContent =
  'The pipeline file could not be read: tasks are drawn without their edges.';

// ---- the timeline: a row per task and foreach instance, a bar per attempt ----
var gantt = document.getElementById('gantt'), RH = 18, AX = 20;
var lazy = D.rows.length > 2000, drawn = {};
var inner = document.createElement('div');
inner.style.position = 'relative'; inner.style.height = (AX + D.rows.length * RH + 4) + 'px';
gantt.appendChild(inner);
var axis = '<div class="axis"><div class="track">', step = niceStep(D.span / 8);
for (var t = 0; t <= D.span + 1e-9; t += step)
  axis += '<span class="tick" style="left:' + (100 * t / D.span) + '%">' + secs(t) + '</span>';
inner.innerHTML = axis + '</div></div>';
function niceStep(v){var p = Math.pow(10, Math.floor(Math.log10(v || 1))), n = v / p;
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p;}
function pct(v){return (100 * Math.max(0, v) / D.span).toFixed(3) + '%';}
function rowHtml(r){
  var inst = r.key.indexOf('[') >= 0, isCrit = crit[r.key], h = '';
  r.bars.forEach(function(b, j){
    var next = r.bars[j + 1];
    h += '<div class="bar' + (isCrit ? ' crit' : '') + '" data-key="' + esc(r.key) + '" data-n="' + b.n +
      '" data-state="' + b.status + '" title="' + esc(r.key + ' attempt ' + b.n + ': ' + b.status + ', ' +
      secs(b.end - b.start) + (b.cpu != null ? ', cpu ' + secs(b.cpu) : '')) + '" style="left:' + pct(b.start) +
      ';width:' + pct(b.end - b.start) + ';background:' + (C[b.status] || '#888') + '"></div>';
    if (next && next.start > b.end) h += '<div class="wait" title="' + esc('waited ' + secs(next.start - b.end) +
      ' before attempt ' + next.n) + '" style="left:' + pct(b.end) + ';width:' + pct(next.start - b.end) + '"></div>';
  });
  if (!r.bars.length && r.start != null && r.start >= 0 && r.end > r.start)  // kept from another run: before t0
    h += '<div class="bar' + (isCrit ? ' crit' : '') + '" data-key="' + esc(r.key) + '" data-span="1" ' +
      'style="opacity:.35;left:' + pct(r.start) + ';width:' + pct(r.end - r.start) + ';background:' + C[r.state] +
      '"></div>';
  return '<div class="row' + (inst ? ' inst' : '') + (isCrit ? ' crit' : '') + '" data-key="' + esc(r.key) +
    '" data-state="' + r.state + '" style="top:' + (AX + r.i * RH) + 'px"><span class="label" title="' +
    esc(r.key) + '">' + esc(r.key) + '</span><div class="track">' + h + '</div></div>';
}
function drawRows(){
  var from = 0, to = D.rows.length;
  if (lazy) {
    from = Math.max(0, Math.floor((gantt.scrollTop - AX) / RH) - 40);
    to = Math.min(D.rows.length, Math.ceil((gantt.scrollTop + gantt.clientHeight) / RH) + 40);
  }
  var h = [];
  for (var i = from; i < to; i++) if (!drawn[i]) { drawn[i] = true; h.push(rowHtml(D.rows[i])); }
  if (h.length) inner.insertAdjacentHTML('beforeend', h.join(''));
}
drawRows();
if (lazy) {
  var pending = false;
  gantt.addEventListener('scroll', function(){ if (!pending) { pending = true;
    requestAnimationFrame(function(){ pending = false; drawRows(); }); } });
  document.getElementById('gantt-note').textContent = D.rows.length + ' rows: drawn as they scroll into view.';
}

// ---- one task's details, drawn when asked for ----
var panel = document.getElementById('detail');
function show(key){
  var r = rowOf[key]; if (!r) return;
  var t = D.tasks[taskIndex[key]];
  var h = '<button class="close" title="close">×</button><h2 style="margin:0 0 8px">' + esc(key) + '</h2>' +
    '<dl class="meta"><dt>state</dt><dd><span class="badge" style="background:' + C[r.state] + '">' + r.state +
    '</span></dd><dt>attempts</dt><dd>' + r.attempts + '</dd><dt>duration</dt><dd>' + secs(r.duration) + '</dd>';
  if (r.reason) h += '<dt>skipped</dt><dd>' + esc(r.reason) + '</dd>';
  if (r.kept_from) h += '<dt>kept from</dt><dd>' + esc(r.kept_from) + '</dd>';
  if (r.worker) h += '<dt>worker</dt><dd>' + esc(r.worker) + '</dd>';
  if (r.checks) h += '<dt>checks</dt><dd>' + r.checks + ' (not yet)</dd>';
  if (r.child_run) h += '<dt>child run</dt><dd>' + esc(r.child_run) + '</dd>';
  if (t && t.up.length) h += '<dt>after</dt><dd>' + t.up.map(function(e){ return esc(e[0]); }).join(', ') + '</dd>';
  if (t && t.instances.length) h += '<dt>instances</dt><dd>' + t.instances.length + '</dd>';
  h += '</dl>';
  if (r.error) h += '<h3>Error</h3>' + errorHtml(r.error);
  if (r.bars.length) {
    h += '<h3>Attempts</h3><table class="attempts"><tr><th>#</th><th>start</th><th>duration</th><th>CPU</th>' +
      '<th>outcome</th></tr>';
    r.bars.forEach(function(b){ h += '<tr data-n="' + b.n + '"><td>' + b.n + '</td><td>+' + secs(b.start) +
      '</td><td>' +
      secs(b.end - b.start) + '</td><td class="cpu">' + (b.cpu == null ? '-' : secs(b.cpu)) + '</td><td>' + b.status +
      (b.retry_at != null ? ', retry at +' + secs(b.retry_at) : '') + '</td></tr>'; });
    h += '</table>';
    r.bars.forEach(function(b, j){
      if (b.error && j < r.bars.length - 1) h += '<h4>Attempt ' + b.n + '</h4>' + errorHtml(b.error);
      h += '<details class="log"' + (j === r.bars.length - 1 ? ' open' : '') + '><summary>log of attempt ' + b.n +
        '</summary><pre>' + (b.log == null ? '(no output)' : esc(b.log)) + '</pre></details>';
    });
  }
  panel.innerHTML = h; panel.className = 'open';
  panel.querySelector('.close').onclick = function(){ panel.className = ''; };
}
function errorHtml(e){
  return '<p class="error"><b>' + esc(e.type) + '</b>: ' + esc(e.message) + '</p>' + (e.traceback ?
    '<details class="traceback"><summary>traceback</summary><pre>' + esc(e.traceback) + '</pre></details>' : '');
}
document.addEventListener('click', function(ev){
  var el = ev.target.closest('[data-key],[data-task]');
  if (el && !panel.contains(el)) show(el.getAttribute('data-key') || el.getAttribute('data-task'));
});
document.addEventListener('keydown', function(ev){ if (ev.key === 'Escape') panel.className = ''; });
window.flowReport = {data: D, show: show};
})();
"""


def _json_script(element_id: str, data: Any) -> str:
    # `<` escaped: no `</script>` or `<!--` in the data can end the element early
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"  # no favicon request either
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n")


def render(data: Dict[str, Any]) -> str:
    """The run report's page."""
    e = html.escape
    status = data["status"]
    rows = [("pipeline", e(data["pipeline"] or "")), ("file", e(data["file"] or "")),
            ("status", f'<span class="badge" id="run-status" style="background:{COLOURS.get(status, "#888")}">'
                       f"{e(status)}</span>" + (f" {e(data['reason'])}" if data.get("reason") else "")),
            ("trigger", e(data["trigger"] or "")), ("logical date", e(data["logical_date"] or "")),
            ("started", e(data["started_at"] or "")), ("finished", e(data["finished_at"] or "not yet")),
            ("duration", f"{data['span']:.3f}s"), ("executor", e(data.get("executor") or "")),
            ("params", f"<code>{e(json.dumps(data['params'], ensure_ascii=False))}</code>")]
    if data["hooks"]:
        rows.append(("hooks", ", ".join(e(f"on {h['event']}: {h['status']}") for h in data["hooks"])))
    if data["critical"]:
        rows.append(("critical path", " → ".join(e(n) for n in data["critical"])))
    meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    legend = "".join(f'<span><i style="background:{COLOURS[s]}"></i>{s} {data["counts"].get(s, 0)}</span>'
                     for s in ("success", "failed", "skipped", "cached", "kept", "running", "queued", "waiting",
                               "pending"))
    live = (f'<p class="note">This run was still running when this page was made ({e(data["generated_at"])}): '
            "it shows the state so far.</p>") if status == "running" else ""
    body = (f'<header><h1>Run {e(data["run_id"] or "")}</h1><dl class="meta">{meta}</dl>'
            f'<p class="legend">{legend}</p></header>{live}'
            '<h2>Tasks by stage</h2><p class="note" id="dag-note"></p><div id="dag"></div>'
            '<h2>Attempts</h2><p class="note" id="gantt-note">A bar per attempt, a dotted line for the wait before '
            'a retry; the critical path is outlined in red. Click a task for its details.</p><div id="gantt"></div>'
            '<aside id="detail"></aside>'
            + _json_script("flow-data", data) + _json_script("flow-colours", COLOURS)
            + "<script>" + SCRIPT + "</script>")
    return _page(f"flow run {data['run_id']}", body)


def render_index(runs: List[Dict[str, Any]], title: str, pages: Dict[str, str]) -> str:
    """The runs index: a table of runs, newest first, each linking to its page (`pages`: run id -> href)."""
    e = html.escape
    rows = []
    for r in runs:
        rid = r.get("run_id") or ""
        name = f'<a href="{e(pages[rid])}">{e(rid)}</a>' if rid in pages else e(rid)
        status = r.get("status") or ""
        rows.append(f'<tr data-run="{e(rid)}" data-state="{e(status)}"><td>{name}</td><td>{e(r.get("pipeline") or "")}'
                    f'</td><td><span class="badge" style="background:{COLOURS.get(status, "#888")}">{e(status)}'
                    f'</span></td><td>{e(r.get("trigger") or "")}</td><td>{e(r.get("logical_date") or "")}</td>'
                    f'<td>{e(r.get("started_at") or "")}</td><td>{_secs(r.get("duration_s"))}</td></tr>')
    table = ('<table id="runs" style="border-collapse:collapse;margin:0 18px"><thead><tr><th>run</th><th>pipeline</th>'
             "<th>status</th><th>trigger</th><th>logical date</th><th>started</th><th>duration</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    style = "<style>#runs td,#runs th{padding:3px 10px;border-bottom:1px solid #e4e4e4;text-align:left}</style>"
    return _page(title, f"<header><h1>{e(title)}</h1><p>{len(runs)} runs, newest first.</p></header>{style}{table}")


def _secs(value) -> str:
    return "-" if value is None else f"{value:.2f}s"
