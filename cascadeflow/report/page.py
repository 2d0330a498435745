"""The page around the sections: inline CSS (screen and print), tables, a section index."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cascadeflow.report.fmt import esc

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 2px}
h2{font-size:18px;margin:32px 0 8px;border-bottom:2px solid #d8dde6;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
nav{position:sticky;top:0;background:#1d2330;padding:8px 24px;z-index:1}
nav a{color:#dfe6f3;margin-right:14px;text-decoration:none;font-size:13px}
.muted{color:#6b7385}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{background:#fff;border:1px solid #d8dde6;border-radius:6px;padding:8px 12px;min-width:118px}
.card b{display:block;font-size:19px}.card span{color:#6b7385;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;width:100%}
th,td{border:1px solid #e1e5ec;padding:3px 7px;text-align:left;vertical-align:top;font-size:13px}
td{overflow-wrap:anywhere}
th{background:#eef1f5;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{background:#4c78a8;height:9px;display:inline-block;vertical-align:middle;margin-right:6px}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}
.run{background:#fff;border:1px solid #d8dde6;border-radius:6px;padding:10px 14px;margin:14px 0}
.chart{display:block;background:#fff}
.chart .axis{font-size:11px;fill:#6b7385}.chart .label{font-size:11px;fill:#1d2330}
.pill{display:inline-block;border-radius:9px;padding:0 7px;font-size:12px;background:#eef1f5}
.stop{background:#fde2e2}.ok{background:#e3f4e1}.warn{background:#fff1d6}
details pre{white-space:pre-wrap;background:#f6f7f9;padding:6px;font-size:12px}
@media print{nav{display:none}body{background:#fff}.run,table,svg{break-inside:avoid}main{max-width:none}}
"""

SECTIONS = (("overview", "Overview"), ("outcomes", "Outcomes"),
            ("would-have", "What enforce would have done"), ("decisions", "Decisions"),
            ("latency", "Latency"), ("guardrails", "Guardrails"),
            ("reliability", "Reliability"), ("runs", "Runs"))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[int] = (),
          empty: str = "none") -> str:
    """Cells are HTML already (escape with `esc` when building them); `numeric` columns align right."""
    right = set(numeric)
    body = ["<tr>" + "".join(f"<td class=n>{c}</td>" if i in right else f"<td>{c}</td>"
                             for i, c in enumerate(row)) + "</tr>" for row in rows]
    if not body:
        return f"<p class=muted>{esc(empty)}</p>"
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def bar(value: float, top: float) -> str:
    width = 0 if not top else max(1, round(120 * value / top))
    return f'<span class=bar style="width:{width}px"></span>'


def card(value: str, label: str) -> str:
    return f"<div class=card><b>{value}</b><span>{esc(label)}</span></div>"


def document(title: str, body: Sequence[str]) -> str:
    links = "".join(f'<a href="#{key}">{esc(name)}</a>' for key, name in SECTIONS)
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<nav>{links}</nav><main>{''.join(body)}</main></body></html>\n")
