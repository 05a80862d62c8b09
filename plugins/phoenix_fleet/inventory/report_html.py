"""The inventory report as one self-contained HTML page: inline CSS, inline SVG charts, no script, no CDN,
no external reference of any kind (it opens from S3, a laptop or inside the Airflow UI's iframe alike).

Sections (each with a stable ``id`` for tests and links): ``summary`` (totals), ``roles`` (a stacked bar of
running versions per role), ``version-chart`` (version distribution per ASG, stacked bars), ``age-histogram``
(instance ages against the max-age line), ``stale-list`` (instances past max age), ``asg-table`` (drift per
ASG), ``not-ours`` (AMIs that are not ours or no longer exist), ``collection`` (calls and notes per region).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from phoenix_fleet.release.versions import Version, VersionError

MAX_ASG_BARS = 60
MAX_STALE_ROWS = 500
MAX_ASG_ROWS = 1000
MAX_HIST_BINS = 60
# Newest version first: green, then blues and ambers as versions get older; unknown is grey.
PALETTE = (
    "#2e7d32",
    "#1565c0",
    "#6a1b9a",
    "#00838f",
    "#ef6c00",
    "#ad1457",
    "#5d4037",
    "#9e9d24",
    "#283593",
    "#c62828",
)
UNKNOWN_COLOR = "#9e9e9e"
STALE_COLOR = "#c62828"
OK_COLOR = "#4682b4"

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#ffffff; --soft:#f6f8fa; --bad:#c62828; --good:#2e7d32; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg);
       margin: 0; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line);
padding-bottom: 4px; } .muted { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 150px; background: var(--soft); }
.card .n { font-size: 24px; font-weight: 600; } .card.bad .n { color: var(--bad); } .card.good .n { color: var(--good); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); position: sticky; top: 0; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; margin: 1px 2px; background: #fff3e0;
         color: #8a4b00; border: 1px solid #f0c27b; }
.badge.bad { background: #ffebee; color: var(--bad); border-color: #ef9a9a; }
.legend { display: flex; flex-wrap: wrap; gap: 10px; margin: 6px 0; font-size: 12px; }
.legend span.sw { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 4px; vertical-align: -2px; }
.chart { overflow-x: auto; } svg text { font: 11px system-ui, sans-serif; fill: #1f2328; }
.note { font-size: 12px; color: var(--muted); margin: 4px 0; }
"""


def _v(label: str) -> Version | None:
    try:
        return Version.parse(label)
    except VersionError:
        return None


def _ordered_versions(labels: Iterable[str]) -> list[str]:
    """Newest release first, then anything that is not a version (``unknown``) last."""
    uniq = set(labels)
    versions = sorted((x for x in uniq if _v(x) is not None), key=lambda x: _v(x), reverse=True)  # type: ignore[arg-type, return-value]
    return versions + sorted(x for x in uniq if _v(x) is None)


def _colors(labels: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    for label in labels:
        if _v(label) is None:
            out[label] = UNKNOWN_COLOR
        else:
            out[label] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _legend(labels: Sequence[str], colors: Mapping[str, str], latest: Iterable[str] = ()) -> str:
    latest_set = set(latest)
    items = "".join(
        f'<span data-version="{_e(x)}"><span class="sw" style="background:{colors[x]}"></span>{_e(x)}'
        f"{' (latest)' if x in latest_set else ''}</span>"
        for x in labels
    )
    return f'<div class="legend">{items}</div>'


def _stacked_bars(
    rows: Sequence[tuple[str, Mapping[str, int], str]],
    labels: Sequence[str],
    colors: Mapping[str, str],
    chart_id: str,
    title: str,
) -> str:
    """Horizontal stacked bars: one row per (label, {version: count}, subtitle)."""
    label_w, bar_w, row_h, pad = 260, 560, 22, 6
    total_max = max((sum(c.values()) for _, c, _ in rows), default=0) or 1
    height = len(rows) * row_h + 28
    width = label_w + bar_w + 80
    parts = [
        f'<svg id="{_e(chart_id)}" role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">',
        f"<title>{_e(title)}</title>",
    ]
    for i, (name, counts, sub) in enumerate(rows):
        y = i * row_h + 4
        total = sum(counts.values())
        parts.append(
            f'<text x="{label_w - 8}" y="{y + row_h / 2 + 4:.0f}" text-anchor="end">{_e(name)}'
            f'<tspan fill="#59636e"> {_e(sub)}</tspan></text>'
        )
        x = float(label_w)
        for label in labels:
            n = counts.get(label, 0)
            if not n:
                continue
            w = bar_w * n / total_max
            parts.append(
                f'<rect class="seg" data-group="{_e(name)}" data-version="{_e(label)}" data-count="{n}" x="{x:.1f}" '
                f'y="{y}" width="{max(w, 1):.1f}" height="{row_h - pad}" fill="{colors[label]}">'
                f"<title>{_e(name)}: {n} on {_e(label)}</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + row_h / 2 + 4:.0f}">{total}</text>')
    axis_y = len(rows) * row_h + 10
    parts.append(
        f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + bar_w}" y2="{axis_y}" stroke="#d1d9e0"/>'
        f'<text x="{label_w}" y="{axis_y + 14}">0</text>'
        f'<text x="{label_w + bar_w}" y="{axis_y + 14}" text-anchor="end">{total_max} instances</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _histogram(ages: Sequence[float], max_age: int, stale_flags: Sequence[bool]) -> str:
    """Instance ages in day bins, bars past the max age in red, a dashed line at the max age."""
    top = max([max_age + 2.0, *ages]) if ages else max_age + 2.0
    span = math.ceil(top) + 1
    width_days = max(1, math.ceil(span / MAX_HIST_BINS))
    nbins = math.ceil(span / width_days)
    counts = [0] * nbins
    stale = [0] * nbins
    for age, flag in zip(ages, stale_flags, strict=True):
        b = min(nbins - 1, max(0, int(age // width_days)))
        counts[b] += 1
        stale[b] += 1 if flag else 0
    w, h, left, bottom, top_pad = 860, 260, 48, 36, 16
    plot_w, plot_h = w - left - 16, h - bottom - top_pad
    ymax = max(counts) or 1
    bw = plot_w / nbins
    parts = [
        f'<svg id="age-histogram-svg" role="img" aria-label="Instance age histogram" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}"><title>Instance ages (days since launch); max age {max_age} days</title>'
    ]
    for i in range(nbins):
        if not counts[i]:
            continue
        x = left + i * bw
        ok = counts[i] - stale[i]
        lo, hi = i * width_days, (i + 1) * width_days
        for n, color, kind, base in ((ok, OK_COLOR, "ok", 0), (stale[i], STALE_COLOR, "stale", ok)):
            if not n:
                continue
            bh = plot_h * n / ymax
            y = top_pad + plot_h - plot_h * (base + n) / ymax
            parts.append(
                f'<rect class="bin {kind}" data-from="{lo}" data-to="{hi}" data-count="{n}" x="{x + 1:.1f}" '
                f'y="{y:.1f}" width="{max(bw - 2, 1):.1f}" height="{bh:.1f}" fill="{color}">'
                f"<title>{n} instance(s) aged {lo}-{hi} days{' (past max age)' if kind == 'stale' else ''}</title></rect>"
            )
    # axes and ticks
    base_y = top_pad + plot_h
    parts.append(f'<line x1="{left}" y1="{base_y}" x2="{left + plot_w}" y2="{base_y}" stroke="#59636e"/>')
    parts.append(f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{base_y}" stroke="#59636e"/>')
    step = max(1, math.ceil(nbins / 15))
    for i in range(0, nbins + 1, step):
        x = left + i * bw
        parts.append(f'<text x="{x:.1f}" y="{base_y + 14}" text-anchor="middle">{i * width_days}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{h - 4}" text-anchor="middle">age (days since launch)</text>')
    parts.append(f'<text x="{left - 6}" y="{top_pad + 8}" text-anchor="end">{ymax}</text>')
    parts.append(f'<text x="{left - 6}" y="{base_y}" text-anchor="end">0</text>')
    mx = left + plot_w * (max_age / (nbins * width_days))
    parts.append(
        f'<line id="max-age-line" data-days="{max_age}" x1="{mx:.1f}" y1="{top_pad - 4}" x2="{mx:.1f}" y2="{base_y}" '
        f'stroke="{STALE_COLOR}" stroke-width="2" stroke-dasharray="6 4"/>'
        f'<text x="{mx + 4:.1f}" y="{top_pad + 6}" fill="{STALE_COLOR}">max age {max_age} d</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _asg_priority(a: Mapping[str, Any]) -> tuple[Any, ...]:
    return (not a["drift"], -a["stale"], -len(a["versions"]), -a["instances"], a["region"], a["name"])


def render_html(report: Mapping[str, Any]) -> str:
    t = report["totals"]
    rows = report["instances"]
    all_labels = _ordered_versions(
        [*(v for r in report["roles"] for v in r["versions"]), *(v for a in report["asgs"] for v in a["versions"])]
    )
    colors = _colors(all_labels)
    latest = {r["latest_version"] for r in report["roles"] if r["latest_version"]}
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Fleet inventory {_e(report['generated_at'])}</title>",
        f"<style>{CSS}</style></head><body>",
        '<h1>Fleet inventory</h1>',
        f'<div class="muted">Generated <time id="generated-at">{_e(report["generated_at"])}</time> · regions '
        f'{_e(", ".join(report["regions"]) or "none")} · max age {report["max_age_days"]} days (fleet default)</div>',
    ]

    def card(label: str, n: int, bad: bool = False, good: bool = False, key: str = "") -> str:
        cls = "card bad" if bad and n else "card good" if good else "card"
        return f'<div class="{cls}" data-total="{_e(key)}"><div class="n">{n}</div><div>{_e(label)}</div></div>'

    out.append('<section id="summary"><div class="cards">')
    out.append(card("instances", t["instances"], good=True, key="instances"))
    out.append(card("past max age", t["stale"], bad=True, key="stale"))
    out.append(card("behind the latest version", t["behind_latest"], bad=True, key="behind_latest"))
    out.append(card("behind their launch template", t["behind_launch_template"], bad=True, key="behind_launch_template"))
    out.append(card("on AMIs not ours", t["not_ours"], bad=True, key="not_ours"))
    out.append(card(f"of {t['asgs']} ASGs drifted", t["asgs_drifted"], bad=True, key="asgs_drifted"))
    out.append(card("canaries past their bound", t.get("canaries_expired", 0), bad=True, key="canaries_expired"))
    out.append("</div></section>")

    # Versions per role
    out.append('<section id="roles"><h2>Running versions per role</h2>')
    if report["roles"]:
        out.append(_legend(all_labels, colors, latest))
        role_rows = [(r["role"], r["versions"], f"latest {r['latest_version'] or '-'}") for r in report["roles"]]
        out.append(f'<div class="chart">{_stacked_bars(role_rows, all_labels, colors, "role-chart-svg", "Running versions per role")}</div>')
        out.append('<table><thead><tr><th>role</th><th>latest</th><th class="num">instances</th><th class="num">stale</th>'
                   '<th class="num">behind latest</th><th class="num">not ours</th><th class="num">ASGs drifted</th>'
                   '<th class="num">max age</th></tr></thead><tbody>')
        for r in report["roles"]:
            out.append(
                f'<tr data-role="{_e(r["role"])}"><td>{_e(r["role"])}</td><td><code>{_e(r["latest_version"] or "-")}</code></td>'
                f'<td class="num">{r["instances"]}</td><td class="num">{r["stale"]}</td><td class="num">{r["behind_latest"]}</td>'
                f'<td class="num">{r["not_ours"]}</td><td class="num">{r["asgs_drifted"]}/{r["asgs"]}</td>'
                f'<td class="num">{r["max_age_days"]} d</td></tr>'
            )
        out.append("</tbody></table>")
    else:
        out.append('<p class="note">No roles found.</p>')
    out.append("</section>")

    # Version distribution per ASG
    out.append('<section id="version-chart"><h2>Version distribution per ASG</h2>')
    asgs = sorted(report["asgs"], key=_asg_priority)
    shown = asgs[:MAX_ASG_BARS]
    if shown:
        out.append(_legend(all_labels, colors, latest))
        bars = [(f"{a['name']}", a["versions"], f"({a['region']})") for a in shown]
        out.append(f'<div class="chart">{_stacked_bars(bars, all_labels, colors, "asg-chart-svg", "Version distribution per ASG")}</div>')
        if len(asgs) > len(shown):
            out.append(
                f'<p class="note">Showing {len(shown)} of {len(asgs)} ASGs (drifted, stale and mixed first); '
                "all are in the table below and in report.json.</p>"
            )
    else:
        out.append('<p class="note">No AutoScaling groups.</p>')
    out.append("</section>")

    # Age histogram
    ages = [r["age_days"] for r in rows if r["age_days"] is not None]
    flags = [r["past_max_age"] for r in rows if r["age_days"] is not None]
    out.append('<section id="age-histogram"><h2>Instance age</h2>')
    out.append(
        f'<p class="note">Days since launch of every instance; red: past its max age. The dashed line is the fleet '
        f"default ({report['max_age_days']} days); roles with their own max age are judged by it.</p>"
    )
    out.append(f'<div class="chart">{_histogram(ages, int(report["max_age_days"]), flags)}</div></section>')

    # Stale list
    stale = sorted((r for r in rows if r["past_max_age"]), key=lambda r: (-(r["age_days"] or 0), r["instance_id"]))
    out.append(f'<section id="stale-list"><h2>Past max age ({len(stale)})</h2>')
    if stale:
        out.append('<table><thead><tr><th>instance</th><th>region</th><th>ASG</th><th>role</th><th>version</th>'
                   '<th class="num">age (days)</th><th class="num">max</th><th>state</th><th>lifecycle</th></tr></thead><tbody>')
        for r in stale[:MAX_STALE_ROWS]:
            out.append(
                f'<tr class="stale" data-instance-id="{_e(r["instance_id"])}"><td><code>{_e(r["instance_id"])}</code></td>'
                f'<td>{_e(r["region"])}</td><td>{_e(r["asg"] or "-")}</td><td>{_e(r["role"] or "-")}</td>'
                f'<td><code>{_e(r["running_version"] or "unknown")}</code></td><td class="num">{r["age_days"]:.1f}</td>'
                f'<td class="num">{r["max_age_days"]}</td><td>{_e(r["state"])}</td><td>{_e(r["lifecycle"] or "-")}</td></tr>'
            )
        out.append("</tbody></table>")
        if len(stale) > MAX_STALE_ROWS:
            out.append(f'<p class="note">{len(stale) - MAX_STALE_ROWS} more in report.csv / report.json.</p>')
    else:
        out.append('<p class="note">No instance is past its max age.</p>')
    out.append("</section>")

    # ASG table
    out.append('<section id="asg-table"><h2>AutoScaling groups</h2>')
    if asgs:
        out.append('<table><thead><tr><th>ASG</th><th>region</th><th>role</th><th class="num">instances</th>'
                   "<th>launch template</th><th>template version</th><th>latest</th><th>running</th>"
                   '<th>warm pool</th><th class="num">stale</th><th>drift</th></tr></thead><tbody>')
        for a in asgs[:MAX_ASG_ROWS]:
            lt = a["launch_template"] or {}
            spec = f'{lt.get("name") or lt.get("id") or "-"}:{lt.get("version") or "-"}'
            if lt.get("version_number") is not None and lt.get("version") != str(lt.get("version_number")):
                spec += f' (v{lt["version_number"]})'
            running = ", ".join(f"{k}×{n}" for k, n in a["versions"].items()) or "-"
            pool = a.get("warm_pool")  # warmed instances per version (images in report.json); - without a pool
            warm = (", ".join(f"{k}×{n}" for k, n in pool["versions"].items()) or "empty") if pool else "-"
            badges = "".join(
                f'<span class="badge{" bad" if d != "launch-template-behind-latest" else ""}">{_e(d)}</span>'
                for d in a["drift"]
            )
            out.append(
                f'<tr data-asg="{_e(a["name"])}"><td>{_e(a["name"])}</td><td>{_e(a["region"])}</td><td>{_e(a["role"] or "-")}</td>'
                f'<td class="num">{a["instances"]}</td><td><code>{_e(spec)}</code></td>'
                f'<td><code>{_e(lt.get("release_version") or "-")}</code></td><td><code>{_e(a["latest_version"] or "-")}</code></td>'
                f'<td><code>{_e(running)}</code></td><td class="warm"><code>{_e(warm)}</code></td>'
                f'<td class="num">{a["stale"]}</td><td>{badges}</td></tr>'
            )
        out.append("</tbody></table>")
        if len(asgs) > MAX_ASG_ROWS:
            out.append(f'<p class="note">{len(asgs) - MAX_ASG_ROWS} more in report.json.</p>')
    out.append("</section>")

    # AMIs not ours
    foreign = [a for a in report["amis"] if not a["ours"]]
    out.append(f'<section id="not-ours"><h2>AMIs that are not ours ({len(foreign)})</h2>')
    if foreign:
        users = Counter((r["region"], r["ami_id"]) for r in rows if not r["ami_ours"])
        out.append('<table><thead><tr><th>AMI</th><th>region</th><th>name</th><th>owner</th>'
                   '<th class="num">instances</th><th class="num">template versions</th></tr></thead><tbody>')
        for a in foreign:
            owner = "missing (deregistered?)" if a["missing"] else (a["owner_id"] or "-")
            out.append(
                f'<tr class="foreign" data-ami="{_e(a["image_id"])}"><td><code>{_e(a["image_id"])}</code></td><td>{_e(a["region"])}</td>'
                f'<td>{_e(a["name"] or "-")}</td><td>{_e(owner)}</td><td class="num">{users.get((a["region"], a["image_id"]), 0)}</td>'
                f'<td class="num">{a["launch_template_versions"]}</td></tr>'
            )
        out.append("</tbody></table>")
    else:
        out.append('<p class="note">Every AMI in use is ours.</p>')
    out.append("</section>")

    # Canaries
    canaries = report.get("canaries", [])
    expired = sum(1 for c in canaries if c["expired"])
    out.append(f'<section id="canaries"><h2>Canaries ({len(canaries)}, {expired} past their bound)</h2>')
    if canaries:
        out.append(
            '<p class="note">Verify-stage instances. One past its bound outlived its run (the run ended without its '
            "teardown); the next release in its region terminates it.</p>"
        )
        out.append('<table><thead><tr><th>instance</th><th>region</th><th>role</th><th>verify run</th><th>state</th>'
                   '<th class="num">age (h)</th><th>bound</th></tr></thead><tbody>')
        for c in canaries[:MAX_STALE_ROWS]:
            bound = (c["expires_at"] or "-") + ("" if c["bound_from"] == "tag" else " (default)")
            age = "-" if c["age_hours"] is None else f'{c["age_hours"]:.1f}'
            cls = ' class="stale"' if c["expired"] else ""
            out.append(
                f'<tr{cls} data-canary="{_e(c["instance_id"])}">'
                f'<td><code>{_e(c["instance_id"])}</code></td><td>{_e(c["region"])}</td><td>{_e(c["role"] or "-")}</td>'
                f'<td>{_e(c["verify_run"] or "-")}</td><td>{_e(c["state"] or "-")}</td><td class="num">{age}</td>'
                f"<td>{_e(bound)}</td></tr>"
            )
        out.append("</tbody></table>")
    else:
        out.append('<p class="note">No canary is running.</p>')
    out.append("</section>")

    # Collection
    out.append('<section id="collection"><h2>Collection</h2><table><thead><tr><th>region</th><th>collected</th>'
               '<th class="num">seconds</th><th class="num">AWS calls</th><th>notes</th></tr></thead><tbody>')
    for c in report["collection"]:
        calls = sum(c["calls"].values())
        detail = ", ".join(f"{k} {v}" for k, v in c["calls"].items())
        notes = "<br>".join(_e(n) for n in c["notes"]) or "-"
        out.append(
            f'<tr><td>{_e(c["region"])}</td><td>{_e(c["collected_at"])}</td><td class="num">{c["seconds"]:.2f}</td>'
            f'<td class="num" title="{_e(detail)}">{calls}</td><td>{notes}</td></tr>'
        )
    out.append("</tbody></table></section>")
    out.append('<p class="note">Also in this folder: report.json (schema phoenix-inventory-report/1) and report.csv '
               "(one line per instance).</p>")
    out.append("</body></html>")
    return "\n".join(out)
