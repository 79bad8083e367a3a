"""The HTML report of a run: open ``OUT/report/index.html`` in a browser and look.

:func:`write_report` reads a run's ``manifest.jsonl`` (written by
``saliency-tf1 explain --manifest``, :func:`saliency_tf1.streaming.explain_to_dir`
or :func:`saliency_tf1.beam.explain_with_beam`) and its masks, and writes a
self-contained folder:

* ``index.html``: a summary table per method (inputs explained, failures,
  time per input, mean of each metric), the inputs that failed with their
  reasons, and a gallery (the image, an overlay per method, the predicted
  class and score) that sorts by key, class, score or any metric, filters
  by class, and pages through the inputs (so 10,000 inputs stay readable;
  images load lazily);
* ``inputs/<name>.html``: one page per input, its images at full size;
* ``img/<name>/input.png``, ``img/<name>/<method>.png``: the pictures.

Plain HTML and CSS with a little JavaScript; nothing is fetched from the
network. Every name that comes from outside (keys and file names, class
labels, method and metric names, error messages) is escaped, or set as text
by the script, so a file called ``<img src=x onerror=alert(1)>.png`` shows
as text and runs nothing; the gallery's data is embedded as JSON with
``<``, ``>`` and ``&`` escaped, so no string in it can close its script.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .arrays import normalize_image, overlay
from .figures import encode_png

#: Metric names shown with a readable name and which way is better.
METRIC_NAMES: Mapping[str, tuple[str, str]] = {
    "deletion_auc": ("deletion AUC", "lower is better"),
    "insertion_auc": ("insertion AUC", "higher is better"),
    "energy_inside": ("energy inside", "higher is better"),
    "pointing_game": ("pointing game", "higher is better"),
}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _e(value: Any) -> str:
    """HTML-escaped text of any value (quotes too: safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment in it."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def metric_title(key: str) -> str:
    """A metric's display name (``deletion_auc`` -> ``deletion AUC``)."""
    return METRIC_NAMES.get(key, (key.replace("_", " "), ""))[0]


def method_title(name: str) -> str:
    """A method's display name from the catalogue (its short name when unknown)."""
    from ..catalogue import METHODS

    return METHODS[name].title if name in METHODS else name


def _format(value: float | None, kind: str) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.3g}" if kind == "seconds" else f"{value:.4f}"


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The numbers of the summary table, from a manifest's records.

    Returns ``{"inputs", "explained", "failed", "input_failures", "methods":
    {method: {"explained", "failures", "seconds", "metrics": {name: mean}}},
    "metric_names": [...]}``: ``seconds`` is the mean time per input,
    ``failures`` the inputs that failed in that method, ``input_failures``
    those that failed before any method ran (unreadable, wrong size, ...).
    """
    ok = [r for r in records if r.get("error") is None]
    failed = [r for r in records if r.get("error") is not None]
    methods: list[str] = []
    for r in ok:
        methods += [m for m in r.get("masks", {}) if m not in methods]
    methods += [r["method"] for r in failed if r.get("method") and r["method"] not in methods]
    metric_names: list[str] = []
    for r in ok:
        for per in r.get("metrics", {}).values():
            metric_names += [k for k in per if k not in metric_names]
    table = {}
    for m in methods:
        done = [r for r in ok if m in r.get("masks", {})]
        table[m] = {
            "explained": len(done),
            "failures": sum(1 for r in failed if r.get("method") == m),
            "seconds": _mean([r["seconds"][m] for r in done if m in r.get("seconds", {})]),
            "metrics": {k: _mean([r["metrics"][m][k] for r in done
                                  if k in r.get("metrics", {}).get(m, {})])
                        for k in metric_names},
        }
    return {"inputs": len(records), "explained": len(ok), "failed": len(failed),
            "input_failures": sum(1 for r in failed if not r.get("method")),
            "methods": table, "metric_names": metric_names}


_CSS = """
:root { --fg: #1d1d1f; --muted: #6e6e73; --line: #d2d2d7; --bg: #fbfbfd; --accent: #0b63ce; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; padding: 16px 24px 48px; max-width: 1400px; }
h1 { font-size: 22px; margin: 4px 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: var(--muted); } a { color: var(--accent); }
table { border-collapse: collapse; background: white; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: left;
         vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin: 8px 0 12px; }
.controls label { color: var(--muted); }
select, button { font: inherit; padding: 3px 6px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--card), 1fr));
           gap: 12px; }
.card { background: white; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
.card .key { font-weight: 600; overflow-wrap: anywhere; }
.strip { display: flex; flex-wrap: wrap; gap: 4px; margin: 6px 0; }
.strip figure { margin: 0; text-align: center; }
.strip figcaption { font-size: 11px; color: var(--muted); max-width: 96px; }
.strip img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
             background: #eee; display: block; }
.facts { font-size: 12px; color: var(--muted); }
.full img { width: max(256px, 100%); max-width: 512px; image-rendering: pixelated;
            display: block; }
.full { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 16px; }
.full figure { margin: 0; } .full figcaption { font-weight: 600; }
.error { color: #b3261e; overflow-wrap: anywhere; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var items = data.items, methods = data.methods;
  var gallery = document.getElementById("gallery");
  var sortSel = document.getElementById("sort"), orderSel = document.getElementById("order");
  var classSel = document.getElementById("class-filter");
  var pageInfo = document.getElementById("page-info");
  var page = 0;

  function value(item, how) {
    if (how === "key") return item.key;
    if (how === "class") return item.prediction;
    if (how === "score") return item.score;
    var parts = how.split(":");            // metric:<method>:<name>
    var m = item.metrics[parts[1]];
    return m && typeof m[parts[2]] === "number" ? m[parts[2]] : null;
  }
  function compare(a, b, how, sign) {
    var va = value(a, how), vb = value(b, how);
    if (va === null && vb === null) return a.index - b.index;
    if (va === null) return 1;             // missing values last, either order
    if (vb === null) return -1;
    if (va < vb) return -sign;
    if (va > vb) return sign;
    return a.index - b.index;
  }
  function selected() {
    var how = sortSel.value, sign = orderSel.value === "desc" ? -1 : 1;
    var cls = classSel.value;
    var shown = items.filter(function (it) {
      return cls === "" || String(it.prediction) === cls;
    });
    shown.sort(function (a, b) { return compare(a, b, how, sign); });
    return shown;
  }
  function text(tag, content, cls) {
    var el = document.createElement(tag);
    el.textContent = content;
    if (cls) el.className = cls;
    return el;
  }
  function picture(src, caption, alt) {
    var fig = document.createElement("figure");
    var img = document.createElement("img");
    img.loading = "lazy";
    img.src = src;
    img.alt = alt;
    fig.appendChild(img);
    fig.appendChild(text("figcaption", caption));
    return fig;
  }
  function card(it) {
    var div = document.createElement("div");
    div.className = "card";
    div.setAttribute("data-key", it.key);
    var link = document.createElement("a");
    link.href = "inputs/" + it.name + ".html";
    var shown = text("span", it.shown, "key");
    shown.title = it.key;
    link.appendChild(shown);
    div.appendChild(link);
    var strip = document.createElement("div");
    strip.className = "strip";
    strip.appendChild(picture("img/" + it.name + "/input.png", "input", it.key));
    methods.forEach(function (m) {
      if (it.methods.indexOf(m.name) >= 0)
        strip.appendChild(picture("img/" + it.name + "/" + m.name + ".png", m.title,
                                  m.title + " of " + it.key));
    });
    div.appendChild(strip);
    var cls = "class " + it.prediction + (it.label !== null ? " (" + it.label + ")" : "");
    div.appendChild(text("div", cls + ", p = " + it.score.toFixed(3), "facts"));
    var how = sortSel.value;
    if (how.indexOf("metric:") === 0) {
      var v = value(it, how);
      var opt = sortSel.options[sortSel.selectedIndex];
      div.appendChild(text("div", opt.textContent + ": " + (v === null ? "–" : v.toFixed(4)),
                           "facts"));
    }
    return div;
  }
  function render() {
    var shown = selected();
    var pages = Math.max(1, Math.ceil(shown.length / data.pageSize));
    page = Math.min(page, pages - 1);
    var start = page * data.pageSize;
    while (gallery.firstChild) gallery.removeChild(gallery.firstChild);
    shown.slice(start, start + data.pageSize).forEach(function (it) {
      gallery.appendChild(card(it));
    });
    pageInfo.textContent = shown.length ? "inputs " + (start + 1) + "–" +
      Math.min(start + data.pageSize, shown.length) + " of " + shown.length +
      " (page " + (page + 1) + " of " + pages + ")" : "no inputs";
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
  }
  [sortSel, orderSel, classSel].forEach(function (el) {
    el.addEventListener("change", function () { page = 0; render(); });
  });
  document.getElementById("prev").addEventListener("click", function () { page--; render(); });
  document.getElementById("next").addEventListener("click", function () { page++; render(); });
  render();
})();
"""


def _page(title: str, body: str, *, depth: int = 0) -> str:
    css = "../" * depth + "style.css"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src 'self' data:; style-src 'self'; script-src 'self'\">\n"
            f"<title>{_e(title)}</title>\n<link rel=\"stylesheet\" href=\"{css}\">\n"
            f"<link rel=\"icon\" href=\"data:,\">\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _picture(array: np.ndarray) -> np.ndarray:
    """A stored image or array input as uint8 RGB for display."""
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        arr = np.round(np.clip(normalize_image(arr), 0, 1) * 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def _write_png(path: str, image: np.ndarray) -> None:
    data = encode_png(image)
    with open(path, "wb") as f:
        f.write(data)


def _render_images(run: str, out: str, record: Mapping[str, Any]) -> list[str]:
    """Writes the input's pictures (unless newer than its masks); returns the methods drawn."""
    name = record["name"]
    if not _SAFE_NAME.match(name):
        raise ValueError(f"manifest: record name {name!r} is not a file name of a run")
    files = set(record["masks"].values())
    methods = list(record["masks"])
    folder = os.path.join(out, "img", name)
    targets = [os.path.join(folder, f"{m}.png") for m in ["input", *methods]]
    newest = max(os.path.getmtime(os.path.join(run, f)) for f in files)
    if all(os.path.isfile(t) and os.path.getmtime(t) >= newest for t in targets):
        return methods
    os.makedirs(folder, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for f in files:
        with np.load(os.path.join(run, f)) as npz:
            arrays.update({k: npz[k] for k in npz.files})
    source = arrays.get("image", arrays.get("input"))
    if source is None:  # inputs not kept: a neutral background under the masks
        source = np.full(np.shape(arrays[methods[0]])[:2] + (3,), 128, np.uint8)
    picture = _picture(source)
    _write_png(targets[0], picture)
    for method, target in zip(methods, targets[1:]):
        drawn = overlay(picture, arrays[method], alpha=0.55)
        _write_png(target, np.round(np.clip(drawn, 0, 1) * 255).astype(np.uint8))
    return methods


def _summary_html(summary: Mapping[str, Any], titles: Mapping[str, str]) -> str:
    metric_names = summary["metric_names"]
    head = ["<th>method</th>", "<th class=\"num\">explained</th>",
            "<th class=\"num\">failures</th>", "<th class=\"num\">s / input</th>"]
    for k in metric_names:
        hint = METRIC_NAMES.get(k, ("", ""))[1]
        head.append(f"<th class=\"num\" title=\"{_e(hint)}\">mean {_e(metric_title(k))}</th>")
    rows = []
    for m, s in summary["methods"].items():
        cells = [f"<td>{_e(titles[m])}</td>",
                 f"<td class=\"num\" data-col=\"explained\" data-value=\"{s['explained']}\">"
                 f"{s['explained']}</td>",
                 f"<td class=\"num\" data-col=\"failures\" data-value=\"{s['failures']}\">"
                 f"{s['failures']}</td>",
                 f"<td class=\"num\" data-col=\"seconds\" data-value=\"{_e(s['seconds'])}\">"
                 f"{_format(s['seconds'], 'seconds')}</td>"]
        for k in metric_names:
            v = s["metrics"][k]
            cells.append(f"<td class=\"num\" data-col=\"metric:{_e(k)}\" "
                         f"data-value=\"{_e(v)}\">{_format(v, 'metric')}</td>")
        rows.append(f"<tr data-method=\"{_e(m)}\">{''.join(cells)}</tr>")
    return (f"<table id=\"summary\">\n<thead><tr>{''.join(head)}</tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody>\n</table>")


def _failures_html(failed: Sequence[Mapping[str, Any]], limit: int) -> str:
    if not failed:
        return "<p class=\"muted\">No input failed.</p>"
    rows = [f"<tr><td>{_e(r['key'])}</td><td>{_e(r.get('method') or '(input)')}</td>"
            f"<td class=\"error\">{_e(r['error'])}</td></tr>" for r in failed[:limit]]
    more = (f"<p class=\"muted\">… and {len(failed) - limit} more (see manifest.jsonl)</p>"
            if len(failed) > limit else "")
    return ("<table id=\"failures\">\n<thead><tr><th>input</th><th>failed in</th><th>reason</th>"
            "</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>" + more)


def _input_page(record: Mapping[str, Any], methods: Sequence[str],
                titles: Mapping[str, str]) -> str:
    name = record["name"]
    label = f" ({record['label']})" if record.get("label") is not None else ""
    facts = [("key", record["key"]), ("file", record.get("source") or "(array input)"),
             ("predicted class", f"{record['prediction']}{label}"),
             ("score (softmax probability)", f"{record['score']:.4f}")]
    if record.get("explained_class") != record.get("prediction"):
        facts.append(("explained class", f"{record['explained_class']} "
                                         f"(p = {record['explained_score']:.4f})"))
    fact_rows = "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    metric_names: list[str] = []
    for per in record.get("metrics", {}).values():
        metric_names += [k for k in per if k not in metric_names]
    head = "".join(f"<th class=\"num\">{_e(metric_title(k))}</th>" for k in metric_names)
    rows = []
    for m in methods:
        seconds = record.get("seconds", {}).get(m)
        cells = "".join(
            f"<td class=\"num\">{_format(record['metrics'].get(m, {}).get(k), 'metric')}</td>"
            for k in metric_names)
        rows.append(f"<tr><td>{_e(titles[m])}</td><td class=\"num\">"
                    f"{_format(seconds, 'seconds')}</td>{cells}</tr>")
    figures = [f"<figure><figcaption>input</figcaption><img src=\"../img/{name}/input.png\" "
               f"alt=\"{_e(record['key'])}\"></figure>"]
    figures += [f"<figure><figcaption>{_e(titles[m])}</figcaption><img "
                f"src=\"../img/{name}/{_e(m)}.png\" alt=\"{_e(titles[m])}\"></figure>"
                for m in methods]
    body = (f"<p><a href=\"../index.html\">← all inputs</a></p>\n<h1>{_e(record['key'])}</h1>\n"
            f"<table>{fact_rows}</table>\n<h2>Masks</h2>\n<div class=\"full\">"
            + "".join(figures) + "</div>\n<h2>Per method</h2>\n<table><thead><tr><th>method</th>"
            f"<th class=\"num\">s / input</th>{head}</tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")
    return _page(str(record["key"]), body, depth=1)


def write_report(
    run: str | os.PathLike,
    *,
    out_dir: str | os.PathLike | None = None,
    title: str | None = None,
    page_size: int = 60,
    failure_limit: int = 1000,
    progress: bool | None = None,
) -> str:
    """Writes the HTML report of a run; returns the path of its ``index.html``.

    Args:
      run: the run's folder (holding ``manifest.jsonl``), or the manifest file.
      out_dir: where to write the report (default: ``<run>/report``).
      title: the page title (default: "saliency_tf1 report: <folder name>").
      page_size: inputs per gallery page.
      failure_limit: most failed inputs listed (all are in the manifest).
      progress: a progress bar over the inputs' pictures (``None``: on a
        terminal for long runs).

    Pictures already drawn and newer than their masks are kept, so writing the
    report again after a resumed run draws only the new inputs.
    """
    from ..engine.batching import progress_bar
    from ..engine.checks import check_positive_int
    from ..streaming import read_manifest

    page_size = check_positive_int("page_size", page_size)
    failure_limit = check_positive_int("failure_limit", failure_limit)
    run = os.fspath(run)
    if os.path.isfile(run):
        run = os.path.dirname(os.path.abspath(run))
    records = read_manifest(run)
    out = os.fspath(out_dir) if out_dir is not None else os.path.join(run, "report")
    os.makedirs(os.path.join(out, "inputs"), exist_ok=True)
    title = title or f"saliency_tf1 report: {os.path.basename(os.path.abspath(run))}"

    ok = [r for r in records if r.get("error") is None]
    failed = [r for r in records if r.get("error") is not None]
    summary = summarize(records)
    titles = {m: method_title(m) for m in summary["methods"]}
    items = []
    with progress_bar(progress, len(ok), "report") as bar:
        for index, record in enumerate(ok):
            methods = _render_images(run, out, record)
            with open(os.path.join(out, "inputs", f"{record['name']}.html"), "w",
                      encoding="utf-8") as f:
                f.write(_input_page(record, methods, titles))
            shown = (os.path.basename(record["key"]) if record.get("source") else None)
            items.append({"index": index, "key": record["key"], "name": record["name"],
                          "shown": shown or record["key"],
                          "prediction": record["prediction"], "label": record.get("label"),
                          "score": record["score"], "methods": methods,
                          "metrics": record.get("metrics", {})})
            bar.update(1)
    with open(os.path.join(out, "style.css"), "w", encoding="utf-8") as f:
        # A card shows its input and every mask in one row when the page is wide enough.
        card = f"min(100%, {100 * (1 + len(summary['methods'])) + 20}px)"
        f.write(_CSS.replace("var(--card)", card))
    with open(os.path.join(out, "report.js"), "w", encoding="utf-8") as f:
        f.write(_SCRIPT)

    classes = sorted({(r["prediction"], r.get("label")) for r in ok}, key=lambda c: c[0])
    class_options = "".join(
        f"<option value=\"{c}\">{c}{_e(f' ({label})' if label is not None else '')}</option>"
        for c, label in classes)
    sort_options = ["<option value=\"key\">key</option>",
                    "<option value=\"class\">predicted class</option>",
                    "<option value=\"score\">score</option>"]
    for m, s in summary["methods"].items():
        for k in summary["metric_names"]:
            if s["metrics"][k] is not None:
                sort_options.append(f"<option value=\"metric:{_e(m)}:{_e(k)}\">"
                                    f"{_e(metric_title(k))} · {_e(titles[m])}</option>")
    data = {"pageSize": page_size, "items": items,
            "methods": [{"name": m, "title": titles[m]} for m in summary["methods"]]}
    counts = (f"{summary['inputs']} inputs: {summary['explained']} explained, "
              f"{summary['failed']} failed"
              + (f" ({summary['input_failures']} could not be read)"
                 if summary["input_failures"] else ""))
    notes = "s / input: each method's time on a batch of inputs divided by their number."
    for k in summary["metric_names"]:
        if METRIC_NAMES.get(k, ("", ""))[1]:
            name = metric_title(k)
            notes += f" {name[0].upper()}{name[1:]}: {METRIC_NAMES[k][1]}."
    if {"deletion_auc", "insertion_auc"} & set(summary["metric_names"]):
        notes += " (Deletion and insertion: RISE, Petsiuk et al. 2018.)"
    body = f"""<h1>{_e(title)}</h1>
<p class="muted">{_e(counts)}. Written {_e(time.strftime("%Y-%m-%d %H:%M"))} from
<code>{_e(os.path.join(os.path.basename(os.path.abspath(run)), "manifest.jsonl"))}</code>.</p>
<h2>Methods</h2>
{_summary_html(summary, titles)}
<p class="muted">{_e(notes)}</p>
<h2>Failed inputs</h2>
{_failures_html(failed, failure_limit)}
<h2>Gallery</h2>
<div class="controls">
<label>sort by <select id="sort">{"".join(sort_options)}</select></label>
<select id="order" aria-label="order"><option value="asc">ascending</option>
<option value="desc">descending</option></select>
<label>class <select id="class-filter"><option value="">all</option>{class_options}</select>
</label>
<button id="prev" type="button">← previous</button>
<button id="next" type="button">next →</button>
<span id="page-info" class="muted"></span>
</div>
<noscript><p>The gallery needs JavaScript; every input also has its own page in
<code>inputs/</code>.</p></noscript>
<div id="gallery" class="gallery"></div>
<script type="application/json" id="report-data">{_json_for_script(data)}</script>
<script src="report.js"></script>"""
    index = os.path.join(out, "index.html")
    with open(index, "w", encoding="utf-8") as f:
        f.write(_page(title, body))
    return index
