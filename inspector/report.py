"""`inspector report`: a capture as a Markdown bug report or as HAR 1.2; mitmproxy's format is elsewhere.

Pure builders over the capture model, so reports work on YAML alone. The mitmproxy flow file is
built by export_mitm.py, imported only for `--format mitm` (the library keeps mitmproxy in the
capture layer). Every string a builder emits goes through the redactor once more (issue #5).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shlex
from collections import Counter
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from . import __version__
from .flags import who_answered
from .model import SEVERITIES, Flag, Flow, Headers, InspectorError, Origin, sse_bytes
from .redact import PLACEHOLDER, Redactor, is_secret_name, secrets_from_env
from .serialize import Capture, capture_origin

FORMATS = ("markdown", "har", "mitm")
SHOWN_BODY_BYTES = 2000  # a body up to this size is quoted in full; a larger one is summarised
LISTED_FLOWS = 200  # rows in the collapsed flow list; a GitHub issue holds at most 65,536 characters
GITHUB_ISSUE_LIMIT = 65_536

FLAG_EXPLANATIONS = {
    "off-base-host": "The request went to a scheme, host or port other than the base URL's.",
    "missing-auth": "A request to the base URL carries neither `x-api-key` nor `Authorization`.",
    "credential-leak": "A credential (an auth header, or the value of a secret env var) went to a host "
                       "that is not the base URL.",
    "auth-conflict": "Both `Authorization` and `x-api-key` are sent, with different values.",
    "http-error": "The response status is 400 or more; the message says who answered: the API, or a "
                  "proxy, WAF or edge in front of it.",
    "no-response": "No response came back: connection refused, DNS or TLS failure, timeout, or a closed "
                   "connection.",
    "tls-untrusted": "The client refused inspector's certificate, so its requests to that host were not "
                     "recorded.",
}
# (kind, test on an env var name); the first that matches names the row in the environment table.
ENV_KINDS = (
    ("proxy", lambda n: "PROXY" in n.upper()),
    ("auth", lambda n: is_secret_name(n) or "AUTH" in n.upper()),
    ("Anthropic", lambda n: n.upper().startswith(("ANTHROPIC_", "CLAUDE_"))),
    ("TLS trust", lambda n: any(w in n.upper() for w in ("CA_", "CERT", "SSL"))),
    ("other", lambda n: True),
)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def report_redactor(capture: Capture) -> Redactor:
    """The redactor every exported string passes through again.

    Key shapes, URL passwords and secret-named assignments are caught anywhere. A capture made
    with --no-redact keeps raw secrets in meta.env, so those are learned from it."""
    env = {str(k): str(v) for k, v in (capture.meta.get("env") or {}).items() if v is not None}
    return Redactor({v: k for v, k in secrets_from_env(env).items() if not PLACEHOLDER.search(v)})


def redacted(capture: Capture) -> tuple[Capture, Redactor]:
    """A copy of the capture redacted again with the recorder's rules, and the redactor used.

    A redacted capture comes out the same (placeholders are left alone); a --no-redact one
    loses its credential headers, cookies, secret-named fields and known env secrets."""
    rd = report_redactor(capture)
    meta = dict(capture.meta)
    meta["command"] = rd.command([str(a) for a in meta.get("command") or []])
    meta["env"] = {str(k): rd.secret(str(v)) if is_secret_name(str(k)) else rd.text(str(v))
                   for k, v in (meta.get("env") or {}).items() if v is not None}
    flows = []
    for f in capture.flows:
        f = copy.deepcopy(f)
        r = f.request
        r.url, r.path, r.query, r.headers = rd.text(r.url), rd.text(r.path), rd.query(r.query), rd.headers(r.headers)
        r.body = _body_again(r.body, rd)
        if f.response is not None:
            f.response.headers = rd.headers(f.response.headers)
            f.response.body = _body_again(f.response.body, rd)
        f.error = rd.text(f.error) if f.error else f.error
        if getattr(f, "websocket", None):
            f.websocket = _scrub(f.websocket, rd)
        flows.append(f)
    return Capture(meta=_scrub(meta, rd), flows=flows, summary=capture.summary, format=capture.format), rd


def _body_again(body: dict | None, rd: Redactor) -> dict | None:
    if not body:
        return body
    body = dict(body)
    for key in ("json", "events"):
        if key in body:
            body[key] = rd.json(_scrub(body[key], rd))
    if "form" in body:
        body["form"] = rd.query(body["form"])
    if "text" in body:
        body["text"] = rd.text(body["text"])
    return body


def render(capture: Capture, fmt: str, source: str | None = None) -> bytes:
    """The bytes of one export format."""
    if fmt == "markdown":
        return markdown_report(capture, source).encode()
    if fmt == "har":
        return (json.dumps(har(capture), indent=2, ensure_ascii=False) + "\n").encode()
    if fmt == "mitm":
        from .export_mitm import mitm_bytes

        return mitm_bytes(capture)
    raise InspectorError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


def default_output(capture_path: str, fmt: str, output: str | None) -> Path | None:
    """Where a report goes: None for stdout (markdown by default, or `-o -`), else a file.

    HAR and mitm files default to the capture's name with their own suffix, next to it."""
    if output == "-" or (output is None and fmt == "markdown"):
        return None
    path = Path(output) if output else Path(capture_path).with_suffix(".har" if fmt == "har" else ".mitm")
    if path.resolve() == Path(capture_path).resolve():
        raise InspectorError(f"{path} is the capture itself; choose another file with -o")
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600, like the capture: a report holds the same prompts and URLs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------- bodies


def body_bytes(body: dict | None, rd: Redactor) -> bytes:
    """The bytes a stored body stands for (JSON re-serialised, SSE re-framed), scrubbed again."""
    if not body:
        return b""
    if "base64" in body:
        # latin-1 maps bytes to code points one to one, so scrubbing cannot corrupt the binary.
        return rd.text(base64.b64decode(body["base64"]).decode("latin-1")).encode("latin-1")
    if "json" in body:
        text = _json_text(body["json"], body.get("sha256"))
    elif "form" in body:
        pairs = [(k, x) for k, v in body["form"].items() for x in (v if isinstance(v, list) else [v])]
        text = urlencode(pairs)
    elif "events" in body:
        text = sse_bytes(body["events"]).decode()
    else:
        text = body.get("text") or ""
    return rd.text(text).encode()


# How clients serialise JSON: JavaScript's JSON.stringify, then Python's json.dumps defaults.
JSON_STYLES = ({"ensure_ascii": False, "separators": (",", ":")}, {"ensure_ascii": True},
               {"ensure_ascii": False}, {"ensure_ascii": True, "separators": (",", ":")})


def _json_text(value, sha256: str | None) -> str:
    """JSON text of a parsed body: the style whose sha256 matches what was sent, else compact."""
    texts = [json.dumps(value, **style) for style in JSON_STYLES]
    return next((t for t in texts if hashlib.sha256(t.encode()).hexdigest() == sha256), texts[0])


def body_summary(body: dict | None, content_type: str | None) -> str:
    """One line on a body: size, kind, and what is in it (keys, events), never its content."""
    if not body:
        return "empty"
    parts = [f"{body['size']:,} bytes"]
    if "json" in body:
        data = body["json"]
        if isinstance(data, dict):
            keys = ", ".join(f"{_code(str(k))}: {_json_shape(v)}" for k, v in data.items())
            parts.append(f"JSON object with {_plural(len(data), 'key')}: {keys}")
        elif isinstance(data, list):
            parts.append(f"JSON array of {len(data)}")
        else:
            parts.append(f"JSON {_json_shape(data)}")
    elif "events" in body:
        names = Counter(str(e.get("event") or "message") for e in body["events"])
        listed = ", ".join(_code(n) + (f" ×{c}" if c > 1 else "") for n, c in names.items())
        parts.append(f"SSE, {len(body['events'])} events: {listed}")
    elif "form" in body:
        parts.append(f"form with fields {', '.join(_code(str(k)) for k in body['form'])}")
    elif "text" in body:
        parts.append(f"text ({content_type or 'no content-type'}), {body['text'].count(chr(10)) + 1} lines")
    else:
        parts.append(f"binary ({content_type or 'no content-type'})")
    if body.get("decoded_from"):
        parts.append(f"sent as {body['decoded_from']}")
    if body.get("truncated"):
        parts.append("cut at the capture's body limit")
    parts.append(f"sha256 `{body['sha256'][:12]}…`")
    return "; ".join(parts)


def _json_shape(value) -> str:
    """A short description of a JSON value; long values are described by size, not quoted."""
    if isinstance(value, dict):
        return f"object of {_plural(len(value), 'key')} ({_size(value)})"
    if isinstance(value, list):
        return f"array of {len(value)} ({_size(value)})"
    if isinstance(value, str) and len(value) > 40:
        return f"string of {len(value):,} chars"
    return _code(json.dumps(value, ensure_ascii=False))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _size(value) -> str:
    n = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


# ---------------------------------------------------------------- HAR 1.2


def har(capture: Capture) -> dict:
    """HAR 1.2 with one entry per flow, in start order; entries without a response get status 0."""
    capture, rd = redacted(capture)
    meta = capture.meta
    command = shlex.join(meta.get("command") or []) or "?"
    log = {
        "version": "1.2",
        "creator": {"name": "inspector", "version": __version__},
        "pages": [],
        "entries": [_har_entry(f, rd) for f in sorted(capture.flows, key=lambda f: (f.started_at, f.id))],
        "comment": f"{capture.format} of `{command}` recorded {meta.get('started_at')}, base URL "
                   f"{meta.get('base_url') or 'none'}; secrets redacted by inspector.",
    }
    return _scrub({"log": log}, rd)


def _har_entry(flow: Flow, rd: Redactor) -> dict:
    r, s = flow.request, flow.response
    duration = flow.duration_ms or 0.0
    wait = flow.ttfb_ms if s is not None and flow.ttfb_ms is not None else duration
    receive = max(duration - wait, 0.0) if s is not None else 0.0
    timings = {"blocked": -1, "dns": -1, "connect": -1, "ssl": -1, "send": 0,
               "wait": round(wait, 1), "receive": round(receive, 1)}
    url = f"https://{r.host}:{r.port}/" if r.method == "CONNECT" else r.url
    request = {
        "method": r.method, "url": url, "httpVersion": r.http_version or "HTTP/1.1",
        "cookies": _request_cookies(r.headers), "headers": _har_headers(r.headers),
        "queryString": [{"name": k, "value": str(x)} for k, v in r.query.items()
                        for x in (v if isinstance(v, list) else [v])],
        "headersSize": -1, "bodySize": _body_size(r.body),
    }
    if r.body:
        request["postData"] = _post_data(r.body, r.header("content-type"), rd)
    entry = {"startedDateTime": flow.started_at, "time": round(wait + receive, 1), "request": request,
             "response": _har_response(flow, rd), "cache": {}, "timings": timings}
    if flow.flags:
        entry["comment"] = " ".join(f"[{f.severity} {f.code}] {f.message}" for f in flow.flags)
    entry["_inspector"] = {"flow": flow.id, "via": flow.via, "flags": [vars(f) for f in flow.flags]}
    if flow.incomplete:
        entry["_inspector"]["incomplete"] = True
    if websocket := getattr(flow, "websocket", None):
        entry["_resourceType"] = "websocket"
        entry["_webSocketMessages"] = websocket
    return entry


def _har_response(flow: Flow, rd: Redactor) -> dict:
    s = flow.response
    if s is None:
        error = flow.error or ("the run ended before this flow finished" if flow.incomplete else "no response")
        return {"status": 0, "statusText": "", "httpVersion": "", "cookies": [], "headers": [],
                "content": {"size": 0, "mimeType": ""}, "redirectURL": "", "headersSize": -1,
                "bodySize": -1, "comment": f"no response: {error}", "_error": error}
    ctype = s.header("content-type") or ""
    content: dict = {"size": s.body["size"] if s.body else 0, "mimeType": ctype}
    if s.body:
        data = body_bytes(s.body, rd)
        if "base64" in s.body:
            content.update(text=base64.b64encode(data).decode("ascii"), encoding="base64")
        else:
            content["text"] = data.decode()
        if s.body.get("truncated"):
            content["comment"] = f"cut at the capture's body limit: {len(data):,} of {s.body['size']:,} bytes"
    response = {"status": s.status, "statusText": s.reason, "httpVersion": s.http_version or "HTTP/1.1",
                "cookies": _response_cookies(s.headers), "headers": _har_headers(s.headers),
                "content": content, "redirectURL": s.header("location") or "", "headersSize": -1,
                "bodySize": _body_size(s.body)}
    if s.synthetic:
        response["comment"] = f"answered by {who_answered(s)}"
    return response


def _post_data(body: dict, ctype: str | None, rd: Redactor) -> dict:
    data = body_bytes(body, rd)
    post: dict = {"mimeType": ctype or ""}
    if "base64" in body:
        post.update(text=base64.b64encode(data).decode("ascii"), _encoding="base64")
    else:
        post["text"] = data.decode()
    if "form" in body:
        post["params"] = [{"name": k, "value": str(x)} for k, v in body["form"].items()
                          for x in (v if isinstance(v, list) else [v])]
    if body.get("truncated"):
        post["comment"] = f"cut at the capture's body limit: {len(data):,} of {body['size']:,} bytes"
    return post


def _body_size(body: dict | None) -> int:
    # The capture keeps the decoded size; the size on the wire of a compressed body is unknown.
    if not body:
        return 0
    return -1 if body.get("decoded_from") else body["size"]


def _har_headers(headers: Headers) -> list[dict]:
    return [{"name": k, "value": v} for k, v in headers]


def _request_cookies(headers: Headers) -> list[dict]:
    out = []
    for k, v in headers:
        if k.lower() == "cookie":
            for part in v.split(";"):
                name, eq, value = part.strip().partition("=")
                if eq:
                    out.append({"name": name, "value": value})
    return out


def _response_cookies(headers: Headers) -> list[dict]:
    out = []
    for k, v in headers:
        if k.lower() != "set-cookie":
            continue
        first, *attrs = v.split(";")
        name, _, value = first.strip().partition("=")
        cookie: dict = {"name": name, "value": value}
        for attr in attrs:
            key, _, val = attr.strip().partition("=")
            low = key.lower()
            if low in ("path", "domain", "expires"):
                cookie[low] = val
            elif low in ("httponly", "secure"):
                cookie["httpOnly" if low == "httponly" else "secure"] = True
            elif low == "samesite":
                cookie["sameSite"] = val
        out.append(cookie)
    return out


def _scrub(obj, rd: Redactor):
    """Every string in a JSON-like tree through the redactor, keys included."""
    if isinstance(obj, str):
        return rd.text(obj)
    if isinstance(obj, dict):
        return {rd.text(str(k)): _scrub(v, rd) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v, rd) for v in obj]
    return obj


# ---------------------------------------------------------------- Markdown


def markdown_report(capture: Capture, source: str | None = None) -> str:
    """A bug report to paste into a GitHub issue: environment, hosts, flags, the failing call, all flows."""
    capture, rd = redacted(capture)
    flows = sorted(capture.flows, key=lambda f: f.id)
    base = capture_origin(capture)
    failure = main_failure(flows, base)
    sections = [
        _md_title(capture, flows, failure),
        _md_environment(capture, flows),
        _md_hosts(capture, flows, base),
        _md_flags(flows),
        _md_failure(flows, failure, base, rd),
        _md_flow_list(flows),
        _md_footer(capture, source),
    ]
    return rd.text("\n\n".join(sections).rstrip() + "\n")


def _on_base(flow: Flow, base: Origin | None) -> bool:
    return base is not None and base.matches(flow.request.scheme, flow.request.host, flow.request.port)


def failed(flow: Flow) -> bool:
    """No response, or an error status from a server (inspector's own offline answers do not count)."""
    s = flow.response
    return s is None or (s.status >= 400 and not s.synthetic)


def main_failure(flows: list[Flow], base: Origin | None) -> Flow | None:
    """The flow a bug report is about: the first failed call to the base URL, else the first failure."""
    bad = [f for f in flows if failed(f)]
    return next((f for f in bad if _on_base(f, base)), bad[0] if bad else None)


def _md_title(capture: Capture, flows: list[Flow], failure: Flow | None) -> str:
    meta = capture.meta
    lines = [f"## inspector report: {_what_ran(meta)}"]
    hosts = len({(f.request.host, f.request.port) for f in flows})
    by_severity: dict[str, Counter] = {}
    for f in flows:
        for flag in f.flags:
            by_severity.setdefault(flag.severity, Counter())[flag.code] += 1
    flags = "; ".join(f"**{sev}** " + ", ".join(f"{c} ×{n}" for c, n in by_severity[sev].most_common())
                      for sev in reversed(SEVERITIES) if sev in by_severity) or "none"
    summary = f"{_plural(len(flows), 'flow')} to {_plural(hosts, 'host')}; flags: {flags}."
    if failure is not None:
        summary += f" Main failure: #{failure.id} {_code(_request_line(failure))} → {_outcome(failure)}."
    return "\n".join(lines + ["", summary])


def _md_environment(capture: Capture, flows: list[Flow]) -> str:
    meta = capture.meta
    env = {str(k): str(v) for k, v in (meta.get("env") or {}).items()}
    recorded = [str(meta.get("started_at") or "?")]
    if (seconds := _seconds(meta.get("started_at"), meta.get("ended_at"))) is not None:
        recorded.append(f"{seconds:.1f} s")
    if meta.get("offline"):
        recorded.append("offline (inspector answered every host that is not loopback itself)")
    recorded.append("capture complete" if meta.get("complete") else "capture **incomplete** (the recorder stopped early)")
    recorded.append("secrets redacted" if meta.get("redacted", True) else "recorded with --no-redact (re-redacted here)")
    lines = ["### Environment", "",
             f"- **Command:** {_what_ran(meta)}",
             f"- **Base URL:** {_code(meta['base_url']) if meta.get('base_url') else 'none (no host flags)'}",
             f"- **Recorded:** {', '.join(recorded)}",
             f"- **Tools:** inspector {meta.get('inspector_version', '?')}, mitmproxy {meta.get('mitmproxy_version', '?')}"]
    if agents := Counter(ua for f in flows if (ua := f.request.header("user-agent"))):
        lines.append("- **Clients (User-Agent):** " + ", ".join(f"{_code(ua)} ×{n}" for ua, n in agents.most_common(6)))
    sdks = Counter(" ".join(v for n in ("x-stainless-lang", "x-stainless-package-version", "x-stainless-runtime",
                                        "x-stainless-runtime-version") if (v := f.request.header(n)))
                   for f in flows if f.request.header("x-stainless-lang"))
    if sdks:
        lines.append("- **SDK (X-Stainless-\\*):** " + ", ".join(f"{_code(s)} ×{n}" for s, n in sdks.most_common(4)))
    proxies = sorted(k for k in env if k.upper() in PROXY_VARS)
    lines.append("- **Proxy variables:** " + (f"set: {', '.join(_code(k) for k in proxies)}" if proxies else
                                             f"none of {', '.join(PROXY_VARS)} was set"))
    if listeners := meta.get("listeners"):
        lines.append("- **inspector's listeners:** " + ", ".join(f"{k} {_code(str(v))}" for k, v in listeners.items())
                     + " (the variables it set for the command are in the capture's `meta.injected_env`)")
    if env:
        rows = sorted(env.items(), key=lambda kv: ([k for k, _ in ENV_KINDS].index(_env_kind(kv[0])), kv[0]))
        lines += ["", "Proxy, auth, TLS-trust and Anthropic variables the command had (values redacted):", "",
                  "| variable | kind | value |", "|---|---|---|"]
        lines += [f"| {_code(k)} | {_env_kind(k)} | {_cell(_code(v))} |"
                  for k, v in rows]
    return "\n".join(lines)


def _what_ran(meta: dict) -> str:
    if meta.get("session") or not meta.get("command"):
        return "an `inspector proxy` session (the programs joined it through their environment)"
    code = meta.get("exit_code")
    return _code(shlex.join(meta["command"])) + (f" exited {code}" if code is not None else " (no exit code recorded)")


def _env_kind(name: str) -> str:
    return next(kind for kind, test in ENV_KINDS if test(name))


def _md_hosts(capture: Capture, flows: list[Flow], base: Origin | None) -> str:
    if not flows:
        return ("### Hosts\n\nNo flows were recorded: the command sent nothing through the proxy variables or "
                "the base URL (see Limits in inspector's README).")
    groups: dict[str, list[Flow]] = {}
    for f in sorted(flows, key=lambda f: not _on_base(f, base)):
        groups.setdefault(f"{f.request.host}:{f.request.port}", []).append(f)
    lines = ["### Hosts", "", "| host | requests | statuses | flags |", "|---|---:|---|---|"]
    for host, group in groups.items():
        label = _code(host) + (" (base URL)" if _on_base(group[0], base) else "")
        statuses = Counter(_status_cell(f) for f in group)
        codes = Counter(flag.code for f in group for flag in f.flags)
        lines.append(f"| {label} | {len(group)} | {', '.join(f'{s} ×{n}' for s, n in statuses.items())} | "
                     f"{', '.join(f'{c} ×{n}' for c, n in codes.most_common()) or '—'} |")
    return "\n".join(lines)


def _md_flags(flows: list[Flow]) -> str:
    by_code: dict[str, list[tuple[Flow, Flag]]] = {}
    for f in flows:
        for flag in f.flags:
            by_code.setdefault(flag.code, []).append((f, flag))
    if not by_code:
        return "### Flags\n\nNone: no request left the base URL or lacked a credential, and no response failed."
    order = sorted(by_code, key=lambda c: (-SEVERITIES.index(by_code[c][0][1].severity), -len(by_code[c]), c))
    lines = ["### Flags"]
    for code in order:
        items = by_code[code]
        hosts = ", ".join(dict.fromkeys(f"{f.request.host}:{f.request.port}" for f, _ in items))
        lines += ["", f"**`{code}`** ({items[0][1].severity}, {_plural(len(items), 'flow')} on {_esc(hosts)}): "
                      f"{FLAG_EXPLANATIONS.get(code, '')}".rstrip(), ""]
        messages = list(dict.fromkeys(flag.message for _, flag in items))
        lines += [f"> {_esc(m)}" for m in messages[:3]]
        if len(messages) > 3:
            lines.append(f"> (and {len(messages) - 3} other messages of this kind)")
        lines += ["", "Flows: " + ", ".join(f"#{f.id}" for f, _ in items)]
    return "\n".join(lines)


def _md_failure(flows: list[Flow], failure: Flow | None, base: Origin | None, rd: Redactor) -> str:
    if failure is None:
        return ("### No request failed\n\nEvery flow got a response below 400 "
                "(or an offline answer from inspector itself).")
    f, r, s = failure, failure.request, failure.response
    via = "the base-URL listener" if f.via == "reverse" else "the proxy variables"
    timing = f"{f.duration_ms} ms" + (f" (first byte after {f.ttfb_ms} ms)" if f.ttfb_ms is not None else "")
    lines = [f"### The failing request: #{f.id}", "",
             f"{_code(f'{r.method} {r.url}')} → {_outcome(f)}. Sent via {via}"
             f"{' to the base URL' if _on_base(f, base) else ''}, at {f.started_at}, {timing}.", "",
             "Request headers:", "", _fence("\n".join(
                 [f"{r.method} {r.path} {r.http_version}"] + [f"{k}: {v}" for k, v in r.headers]), "http"),
             "", f"Request body: {body_summary(r.body, r.header('content-type'))}"]
    lines += _shown_body(r.body, r.header("content-type"), rd)
    if s is not None:
        lines += ["", "Response headers:", "", _fence("\n".join(
            [f"{s.http_version} {s.status} {s.reason}"] + [f"{k}: {v}" for k, v in s.headers]), "http"),
            "", f"Response body: {body_summary(s.body, s.header('content-type'))}"]
        lines += _shown_body(s.body, s.header("content-type"), rd)
    others = [o for o in flows if failed(o) and o is not f]
    if others:
        listed = ", ".join(f"#{o.id} {_code(_request_line(o))} → {_status_cell(o)}" for o in others[:5])
        lines += ["", f"Other failures: {listed}" + (f", and {len(others) - 5} more" if len(others) > 5 else "") + "."]
    return "\n".join(lines)


def _shown_body(body: dict | None, ctype: str | None, rd: Redactor) -> list[str]:
    """A small body quoted in full (pretty JSON, HTML, text); a large or binary one only summarised."""
    if not body or "base64" in body or body["size"] > SHOWN_BODY_BYTES:
        return []
    if "json" in body:
        return ["", _fence(json.dumps(body["json"], indent=2, ensure_ascii=False), "json")]
    text = body_bytes(body, rd).decode().replace("\r\n", "\n")
    lang = "html" if "html" in (ctype or "") else "text"
    return ["", _fence(text.rstrip("\n"), lang)]


def _md_flow_list(flows: list[Flow]) -> str:
    lines = ["<details>", f"<summary>All {len(flows)} flows</summary>", "",
             "| # | started | via | request | status | ms | request body | response body | flags |",
             "|---:|---|---|---|---|---:|---|---|---|"]
    for f in flows[:LISTED_FLOWS]:
        started = f.started_at.split("T")[-1].rstrip("Z")
        response_body = _short_body(f.response.body, f.response.header("content-type")) if f.response else "—"
        lines.append(f"| {f.id} | {started} | {f.via} | {_cell(_code(_request_line(f)))} | "
                     f"{_status_cell(f)} | {f.duration_ms if f.duration_ms is not None else '—'} | "
                     f"{_short_body(f.request.body, f.request.header('content-type'))} | {response_body} | "
                     f"{', '.join(flag.code for flag in f.flags) or '—'} |")
    if len(flows) > LISTED_FLOWS:
        lines.append(f"\n{len(flows) - LISTED_FLOWS} more flows are in the capture file.")
    return "\n".join(lines + ["", "</details>"])


def _md_footer(capture: Capture, source: str | None) -> str:
    made = f"`inspector report {source}`" if source else "`inspector report`"
    return (f"<sub>Made by {made} (inspector {__version__}) from an {capture.format} file. Secrets appear as "
            "`<redacted sha256:… len=… from=VAR>`; the same fingerprint means the same secret.</sub>")


def _request_line(flow: Flow, limit: int = 120) -> str:
    r = flow.request
    return f"{r.method} {r.url if len(r.url) <= limit else r.url[:limit - 1] + '…'}"


def _outcome(flow: Flow) -> str:
    s = flow.response
    if s is None:
        return f"**no response** ({_code(flow.error or 'the run ended first')})"
    status = " ".join(filter(None, (str(s.status), s.reason)))
    return f"**{status}**, answered by {_esc(who_answered(s))}"


def _status_cell(flow: Flow) -> str:
    s = flow.response
    if s is None:
        return "incomplete" if flow.incomplete and not flow.error else "no response"
    return f"{s.status} ({s.synthetic})" if s.synthetic else str(s.status)


def _short_body(body: dict | None, ctype: str | None) -> str:
    if not body:
        return "—"
    n = body["size"]
    size = f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"
    kind = ("JSON" if "json" in body else f"SSE {len(body['events'])} events" if "events" in body
            else "form" if "form" in body else (ctype or "").split(";")[0] or ("binary" if "base64" in body else "text"))
    return f"{size} {kind}" + (" (cut)" if body.get("truncated") else "")


def _seconds(start, end) -> float | None:
    try:
        return (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()
    except (TypeError, ValueError):
        return None


def _code(text: str) -> str:
    """An inline code span that survives backticks in the text (GitHub hides `<redacted …>` elsewhere)."""
    text = text.replace("\n", " ")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _fence(text: str, lang: str) -> str:
    fence = "`" * max(3, max(map(len, re.findall("`+", text)), default=0) + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _esc(text: str) -> str:
    """Plain text for Markdown: GitHub would swallow `<...>` as an HTML tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
