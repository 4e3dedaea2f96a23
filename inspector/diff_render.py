"""Print an `inspector diff` report as text (coloured on a terminal), Markdown or JSON.

Pure functions from the report (see `diff.diff_captures`) to a string. The JSON form is the
report itself, with sorted keys. Its shape, `format: inspector-diff/1`:

    format          "inspector-diff/1"
    different       true when anything meaningful differs (the exit code is then 1)
    headline        "200 → 403 on POST /v1/messages" for the first pair whose status differs, or null
    likely_causes   at most 3, strongest first: {field, what, where, edge, weight, reason, rule}
                    field: auth-key, auth-scheme, host, body-size, user-agent, query.NAME,
                    side-credential, anthropic-beta, header.NAME, body.PATH ...; rule: the function
    base, other     {file, flows}
    bodies          "summary" (long text and prompts by size and sha256) or "full"
    noise_ignored   names of the noise rules applied
    pairs           [{label, role, status_differs, edge, request_body_size: {base, other},
                      base: FLOW, other: FLOW, changes: [CHANGE]}], base-URL calls first
    only_in_base    [FLOW] flows of BASE with no partner in OTHER; only_in_other likewise
    hosts           [{host, role, base, other, base_credential, other_credential}]: requests per side
    run             [CHANGE] differences of the captures' meta (command, exit code, env...)

    FLOW   = {id, role: "base"|"side", method, host, path, status, answered_by, credential}
    CHANGE = {field, base, other, note}: base/other are display strings, null where absent

Every string was redacted when the report was built; nothing here adds a captured value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

BODY_LINES = 12  # body differences shown per pair in text and Markdown; JSON has them all
FLOWS_PER_HOST = 10

STYLES = {"bold": "1", "add": "32", "remove": "31", "change": "33", "dim": "2"}


def _paint(color: bool) -> Callable[[str, str], str]:
    def paint(text: str, style: str) -> str:
        return f"\x1b[{STYLES[style]}m{text}\x1b[0m" if color and text else text

    return paint


def _sign(change: dict) -> str:
    return "+" if change["base"] is None else "-" if change["other"] is None else "~"


def change_text(change: dict) -> str:
    """`+ field: value`, `- field: value` or `~ field: base → other (note)`."""
    sign = _sign(change)
    note = f" ({change['note']})" if change.get("note") else ""
    if sign == "+":
        return f"+ {change['field']}: {change['other']}{note}"
    if sign == "-":
        return f"- {change['field']}: {change['base']}{note}"
    return f"~ {change['field']}: {change['base']} → {change['other']}{note}"


def _shown_changes(changes: list[dict]) -> tuple[list[dict], int]:
    """All changes but the body ones beyond BODY_LINES; and how many were left out."""
    body = [c for c in changes if c["field"].startswith("body.")]
    cut = body[BODY_LINES:]
    return [c for c in changes if c not in cut], len(cut)


def _by_host(flows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for f in flows:
        groups.setdefault(f["host"], []).append(f)
    return groups


def _host_line(h: dict, q: Callable[[str], str] = str) -> str | None:
    """A host only one side talks to, or a side host both send a credential to; `q` quotes values."""
    if h["base"] and h["other"]:
        if h["role"] == "side" and h["base_credential"] and h["other_credential"]:
            return (f"BASE and OTHER both send a credential to {q(h['host'])} ({h['base']} and {h['other']} "
                    f"requests): {q(h['other_credential'])}")
        return None
    side, other, n = ("BASE", "OTHER", h["base"]) if h["base"] else ("OTHER", "BASE", h["other"])
    cred = h["base_credential"] if h["base"] else h["other_credential"]
    role = "the base URL" if h["role"] == "base" else "not the base URL"
    carries = f"; it carries {q(cred)}" if cred else ""
    return f"{side} talks to {q(h['host'])} ({_plural(n, 'request')}, {role}), {other} does not{carries}"


def _pair_title(pair: dict) -> str:
    role = "base URL call" if pair["role"] == "base" else "side call"
    return f"{pair['label']}  ({role}; BASE flow {pair['base']['id']}, OTHER flow {pair['other']['id']})"


def _flow_line(f: dict) -> str:
    status = "no response" if f["status"] is None else f["status"]
    return f"{f['method']} {f['path']} → {status}, {f['answered_by']}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _title(report: dict) -> str:
    b, o = report["base"], report["other"]
    return (f"BASE {b['file']} ({_plural(b['flows'], 'flow')}) vs "
            f"OTHER {o['file']} ({_plural(o['flows'], 'flow')})")


def _same_line(report: dict) -> str:
    same = [p for p in report["pairs"] if not p["changes"]]
    return f"{_plural(len(same), 'pair')} of flows with no meaningful difference" if same else ""


def _nothing_line(report: dict) -> str:
    return (f"No meaningful difference: {_plural(len(report['pairs']), 'pair')} of flows compared; "
            f"ignored as noise: {', '.join(report['noise_ignored'])}.")


# ---------------------------------------------------------------- text


def render_text(report: dict, color: bool = False) -> str:
    paint = _paint(color)
    sign_style = {"+": "add", "-": "remove", "~": "change"}
    out = [paint(f"inspector diff: {_title(report)}", "bold"), ""]
    if not report["different"]:
        return "\n".join(out + [paint(_nothing_line(report), "add")]) + "\n"
    if report["likely_causes"]:
        headline = f" of {report['headline']}" if report["headline"] else ""
        out.append(paint(f"Likely causes{headline}", "bold"))
        for i, c in enumerate(report["likely_causes"], 1):
            where = "" if c["where"] in c["what"] else f" [{c['where']}]"
            out.append(f"  {i}. {c['what']}{where} — {c['reason']}")
        out.append("")
    for pair in report["pairs"]:
        if not pair["changes"]:
            continue
        out.append(paint(_pair_title(pair), "bold"))
        changes, cut = _shown_changes(pair["changes"])
        out += [paint(f"  {change_text(c)}", sign_style[_sign(c)]) for c in changes]
        if cut:
            out.append(paint(f"  … and {cut} more body differences (--format json lists them all)", "dim"))
        out.append("")
    if same := _same_line(report):
        out += [paint(same[0].upper() + same[1:] + ".", "dim"), ""]
    for side, key in (("BASE", "only_in_base"), ("OTHER", "only_in_other")):
        if not report[key]:
            continue
        out.append(paint(f"Only in {side} ({_plural(len(report[key]), 'flow')})", "bold"))
        for host, flows in _by_host(report[key]).items():
            cred = next((f["credential"] for f in flows if f["credential"]), None)
            out.append(f"  {host}: {_plural(len(flows), 'request')}" + (f", carrying {cred}" if cred else ""))
            out += [f"    {_flow_line(f)}" for f in flows[:FLOWS_PER_HOST]]
            if len(flows) > FLOWS_PER_HOST:
                out.append(paint(f"    … and {len(flows) - FLOWS_PER_HOST} more", "dim"))
        out.append("")
    if host_lines := [line for h in report["hosts"] if (line := _host_line(h))]:
        out += [paint("Hosts", "bold")] + [f"  {line}" for line in host_lines] + [""]
    if report["run"]:
        out.append(paint("Run", "bold"))
        out += [paint(f"  {change_text(c)}", sign_style[_sign(c)]) for c in report["run"]]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------- markdown


def code(text: str) -> str:
    """A Markdown code span that survives any backticks and `<...>` in the text."""
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(lines: list[str], lang: str = "diff") -> list[str]:
    ticks = "`" * max(3, max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0) + 1)
    return [f"{ticks}{lang}", *lines, ticks]


def _md_change(change: dict) -> str:
    # GitHub colours `+` and `-` lines of a diff block; `!` marks a change.
    line = change_text(change)
    return "!" + line[1:] if line.startswith("~") else line


def render_markdown(report: dict, color: bool = False) -> str:
    b, o = report["base"], report["other"]
    out = [f"### inspector diff: BASE {code(b['file'])} ({_plural(b['flows'], 'flow')}) vs "
           f"OTHER {code(o['file'])} ({_plural(o['flows'], 'flow')})", ""]
    if not report["different"]:
        return "\n".join(out + [_nothing_line(report)]) + "\n"
    if report["likely_causes"]:
        status, _, label = (report["headline"] or "").partition(" on ")
        headline = f" of {status} on {code(label)}" if label else ""
        out += [f"**Likely causes{headline}**", ""]
        out += [f"{i}. {code(c['what'])}" + ("" if c["where"] in c["what"] else f" on {code(c['where'])}")
                + f": {c['reason']}" for i, c in enumerate(report["likely_causes"], 1)]
        out.append("")
    for pair in report["pairs"]:
        if not pair["changes"]:
            continue
        role = "base URL call" if pair["role"] == "base" else "side call"
        out += [f"#### {code(pair['label'])}", "",
                f"{role}; BASE flow {pair['base']['id']}, OTHER flow {pair['other']['id']}", ""]
        changes, cut = _shown_changes(pair["changes"])
        lines = [_md_change(c) for c in changes]
        lines += [f"# … and {cut} more body differences (--format json lists them all)"] if cut else []
        out += _fence(lines) + [""]
    if same := _same_line(report):
        out += [f"_{same[0].upper() + same[1:]}._", ""]
    for side, key in (("BASE", "only_in_base"), ("OTHER", "only_in_other")):
        if not report[key]:
            continue
        out += [f"#### Only in {side} ({_plural(len(report[key]), 'flow')})", ""]
        for host, flows in _by_host(report[key]).items():
            cred = next((f["credential"] for f in flows if f["credential"]), None)
            carrying = f", carrying {code(cred)}" if cred else ""
            out.append(f"- {code(host)}: {_plural(len(flows), 'request')}{carrying}")
            out += [f"  - {code(_flow_line(f))}" for f in flows[:FLOWS_PER_HOST]]
            if len(flows) > FLOWS_PER_HOST:
                out.append(f"  - … and {len(flows) - FLOWS_PER_HOST} more")
        out.append("")
    if host_lines := [line for h in report["hosts"] if (line := _host_line(h, code))]:
        out += ["#### Hosts", ""] + [f"- {line}" for line in host_lines] + [""]
    if report["run"]:
        out += ["#### Run", ""] + _fence([_md_change(c) for c in report["run"]]) + [""]
    return "\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------- json


def render_json(report: dict, color: bool = False) -> str:
    return json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


RENDERERS: dict[str, Callable[..., str]] = {"text": render_text, "markdown": render_markdown, "json": render_json}


def render(report: dict, fmt: str = "text", color: bool = False) -> str:
    return RENDERERS[fmt](report, color=color)
