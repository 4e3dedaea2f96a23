"""`inspector diff`: pair the flows of two captures, compare what matters, rank the likely causes.

Three tables drive it (issue #3): NOISE_RULES (what differs between two runs of the same
command and never counts), COMPARATORS (one function per aspect of a pair of flows) and
CAUSE_RULES (named functions with a weight and a one-sentence reason, which rank differences
by how well they could explain a status difference). Every value shown is redacted again.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from inspect import signature

from deepdiff import DeepDiff
from deepdiff.helper import notpresent
from deepdiff.operator import BaseOperator

from .flags import CREDENTIAL_HEADERS, who_answered
from .model import Flow, Origin, Request
from .redact import PLACEHOLDER, Redactor, fingerprint
from .serialize import Capture, capture_origin, load_capture

SHORT = 60  # values up to this many characters are shown as they are
FORMAT = "inspector-diff/1"
PROMPT_KEYS = ("messages", "system", "tools", "prompt")  # body fields of prompt text: size and hash only
_REDACTOR = Redactor()


def shown(text: str) -> str:
    """A value as the diff may print it: scrubbed of anything that looks like a secret."""
    return _REDACTOR.text(text)


# ---------------------------------------------------------------- noise


@dataclass(frozen=True)
class NoiseRule:
    name: str
    headers: tuple[str, ...] = ()  # request headers never compared
    values: str = ""  # regex of per-run values, masked before strings are compared
    meta_paths: tuple[str, ...] = ()  # anchored deepdiff paths of the capture's meta never compared


NOISE_RULES = (
    NoiseRule("session ids", headers=("x-claude-code-session-id",)),
    NoiseRule("request ids", headers=("request-id", "x-request-id", "anthropic-request-id", "cf-ray",
                                      "x-amzn-requestid", "x-amzn-trace-id", "traceparent")),
    NoiseRule("uuids", values=r"(?<![0-9a-fA-F])[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}(?![0-9a-fA-F])"),
    NoiseRule("message ids", values=r"(?<![0-9A-Za-z])(?:msg|req|toolu|srvtoolu|compl)_[0-9A-Za-z_]{8,}"),
    NoiseRule("timestamps and dates", headers=("date",),
              values=r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
                     r"|\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT",
              meta_paths=(r"^root\['(started_at|ended_at)'\]$",)),
    NoiseRule("content-length", headers=("content-length",)),
    NoiseRule("retry counters and timeouts",
              headers=("x-stainless-retry-count", "x-stainless-timeout", "x-stainless-read-timeout")),
    # Hop-by-hop headers a client adds only when it talks to a proxy: how it was recorded, not what it sent.
    NoiseRule("proxy hop headers", headers=("proxy-connection",)),
    NoiseRule("recorder figures", meta_paths=(r"^root\['(writer_)?peak_rss_mb'\]$",)),
    # Clients report their base URL, which `record` points at its own listener (a new port each run).
    NoiseRule("listener ports", values=r"(?<=127\.0\.0\.1:)\d{2,5}\b|(?<=localhost:)\d{2,5}\b", meta_paths=(
        r"^root\['listeners'\]", r"^root\['injected_env'\]\['(HTTPS?_PROXY|https?_proxy|ANTHROPIC_BASE_URL)'\]$")),
)
NOISE_HEADERS = frozenset(h for rule in NOISE_RULES for h in rule.headers)
NOISE_VALUES = re.compile("|".join(f"(?:{rule.values})" for rule in NOISE_RULES if rule.values))
META_EXCLUDE = [re.compile(p) for rule in NOISE_RULES for p in rule.meta_paths]
# Compared in their own lines, so the generic header comparison leaves them out.
OWN_LINE_HEADERS = frozenset({*CREDENTIAL_HEADERS, "user-agent", "anthropic-beta", "host"})


def mask(text: str) -> str:
    return NOISE_VALUES.sub("<per-run>", text)


class PerRunValues(BaseOperator):
    """deepdiff operator: strings that differ only in per-run values (ids, dates) are equal."""

    def __init__(self):
        super().__init__(types=[str])

    def give_up_diffing(self, level, diff_instance) -> bool:
        return level.t1 == level.t2 or mask(level.t1) == mask(level.t2)


OPERATORS = [PerRunValues()]
# deepdiff >= 8 reports a much-changed object as one change unless told not to; 7 always went deeper.
DEEPER = {"threshold_to_diff_deeper": 0} if "threshold_to_diff_deeper" in signature(DeepDiff).parameters else {}


# ---------------------------------------------------------------- the report


@dataclass
class DiffOptions:
    ignore_headers: frozenset[str] = frozenset()  # lower-case names
    bodies: str = "summary"  # or "full": changed body values are shown whole


@dataclass
class Change:
    """One difference; `base` and `other` are display strings, None where absent."""

    field: str
    base: str | None
    other: str | None
    note: str = ""

    def describe(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"{self.field}: {self.base or '(none)'} → {self.other or '(none)'}{note}"


def focus_pairs(report: dict) -> list[dict]:
    """The pairs whose status differs, as those are what to explain; else every pair."""
    return [p for p in report["pairs"] if p["status_differs"]] or report["pairs"]


# ---------------------------------------------------------------- helpers


def human_size(n: int | None) -> str:
    if n is None:
        return "(none)"
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KB" if n < 1024**2 else f"{n / 1024**2:.1f} MB"


def _status(status: int | None) -> str:
    return "no response" if status is None else str(status)


def role_of(flow: Flow, origin: Origin | None) -> str:
    r = flow.request
    base = origin is None or flow.via == "reverse" or origin.matches(r.scheme, r.host, r.port)
    return "base" if base else "side"


def host_label(r: Request, with_scheme: bool = False) -> str:
    host = r.host if r.port == (443 if r.scheme == "https" else 80) else f"{r.host}:{r.port}"
    return f"{r.scheme}://{host}" if with_scheme else host


def answered(flow: Flow) -> str:
    if flow.response is None:
        return shown(f"no response ({flow.error or 'none recorded'})")
    return shown(who_answered(flow.response))


@dataclass(frozen=True)
class Credential:
    header: str
    scheme: str
    fingerprint: str
    source: str | None
    shown: str  # e.g. "x-api-key: <redacted sha256:1a2b3c4d len=40 from=ANTHROPIC_API_KEY>"


def credentials(r: Request) -> list[Credential]:
    """The credentials in a request's headers; a raw value is fingerprinted, never shown."""
    out = []
    for name, value in r.headers:
        if name.lower() not in CREDENTIAL_HEADERS or not value.strip():
            continue
        scheme, sep, token = value.strip().partition(" ")
        if not (sep and token and scheme.isalpha()):
            scheme, token = "", value.strip()
        token = token.strip()
        m = PLACEHOLDER.fullmatch(token)
        hidden = f"{scheme} {token}".strip() if m else f"{scheme} {_REDACTOR.secret(token)}".strip()
        out.append(Credential(name.lower(), scheme.lower(), m.group("fp") if m else fingerprint(token),
                              m.group("src") if m else None, f"{name.lower()}: {hidden}"))
    return sorted(out, key=lambda c: c.header)


def credential_label(flow: Flow) -> str | None:
    r = flow.request
    found = [c.shown for c in credentials(r)]  # else a key may travel in the URL or the body
    found = found or sorted({m.group() for m in PLACEHOLDER.finditer(json.dumps([r.url, r.body], default=str))})
    return "; ".join(found) or None


def flow_ref(flow: Flow, origin: Origin | None) -> dict:
    r = flow.request
    return {"id": flow.id, "role": role_of(flow, origin), "method": r.method.upper(), "host": host_label(r),
            "path": shown(r.path), "status": flow.status, "answered_by": answered(flow),
            "credential": credential_label(flow)}


def show_value(value, path: list, full: bool) -> str | None:
    """A body value for display: short values as JSON; long ones, and prompt text, by size and hash."""
    if value is notpresent:
        return None
    prompt = bool(path) and path[0] in PROMPT_KEYS
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if full or not isinstance(value, (str, dict, list)) or (not prompt and len(text) <= SHORT and "\n" not in text):
        return shown(json.dumps(value, ensure_ascii=False) if isinstance(value, str) else text)
    size = human_size(len(text.encode()))
    if isinstance(value, str):
        return f"text ({size}, sha256:{hashlib.sha256(text.encode()).hexdigest()[:8]})"
    return f"{'object of' if isinstance(value, dict) else 'list of'} {len(value)} ({size})"


def field_path(prefix: str, path: list) -> str:
    for part in path:
        if isinstance(part, int):
            prefix += f"[{part}]"
        else:
            plain = re.fullmatch(r"[A-Za-z_][\w\-]*", str(part))
            prefix += f".{part}" if plain else f"[{json.dumps(str(part))}]"
    return prefix


def deep_changes(a, b, prefix: str, full: bool, exclude: list[re.Pattern] | None = None) -> list[Change]:
    """deepdiff's findings as Changes, shallowest first."""
    tree = DeepDiff(a, b, view="tree", custom_operators=OPERATORS, exclude_regex_paths=exclude or None,
                    **DEEPER).tree
    found = [(lv.path(output_format="list"), lv) for levels in tree.values() for lv in levels]
    changes = [(len(p), field_path(prefix, p), show_value(lv.t1, p, full), show_value(lv.t2, p, full))
               for p, lv in found]
    return [Change(f, a, b) for _, f, a, b in sorted(changes, key=lambda c: c[:2])]


def _clip(text: str | None, full: bool = False, limit: int = 200) -> str | None:
    return text if text is None or full or len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


# ---------------------------------------------------------------- comparators


def compare_status(a: Flow, b: Flow, opts: DiffOptions) -> list[Change]:
    out = [Change("status", _status(a.status), _status(b.status))] if a.status != b.status else []
    if mask(answered(a)) != mask(answered(b)):
        out.append(Change("answered-by", answered(a), answered(b)))
    return out


def compare_host(a: Flow, b: Flow, opts: DiffOptions) -> list[Change]:
    ha, hb = host_label(a.request, True), host_label(b.request, True)
    return [Change("host", ha, hb)] if ha != hb else []


def compare_auth(a: Flow, b: Flow, opts: DiffOptions) -> list[Change]:
    """Which header and scheme carry the key (auth-scheme), and whether it is the same key (auth-key)."""
    ca, cb = credentials(a.request), credentials(b.request)
    fa, fb = sorted({c.fingerprint for c in ca}), sorted({c.fingerprint for c in cb})
    out = []
    if [(c.header, c.scheme) for c in ca] != [(c.header, c.scheme) for c in cb]:
        out.append(Change("auth-scheme", "; ".join(c.shown for c in ca) or None,
                          "; ".join(c.shown for c in cb) or None, "same key" if fa == fb and fa else ""))
    if fa != fb and fa and fb:
        def key(c: Credential) -> str:
            return f"sha256:{c.fingerprint}" + (f" from {c.source}" if c.source else "")
        out.append(Change("auth-key", ", ".join(map(key, ca)), ", ".join(map(key, cb))))
    return out


def compare_query(a: Flow, b: Flow, opts: DiffOptions) -> list[Change]:
    qa, qb = a.request.query, b.request.query
    out = []
    for name in sorted(set(qa) | set(qb)):
        va, vb = (shown(str(q[name])) if name in q else None for q in (qa, qb))
        if va is None or vb is None or mask(va) != mask(vb):
            out.append(Change(f"query.{name}", va, vb))
    return out


def compare_user_agent(a: Flow, b: Flow, opts: DiffOptions) -> list[Change]:
    ua, ub = a.request.header("user-agent") or "", b.request.header("user-agent") or ""
    if "user-agent" in opts.ignore_headers or mask(ua) == mask(ub):
        return []
    return [Change("user-agent", shown(ua) or None, shown(ub) or None)]


def compare_beta(a: Flow, b: Flow, opts: DiffOptions) -> list[Change]:
    """anthropic-beta as a set: one Change per value added or removed."""
    def values(flow: Flow) -> set[str]:
        joined = ",".join(v for k, v in flow.request.headers if k.lower() == "anthropic-beta")
        return {shown(v.strip()) for v in joined.split(",") if v.strip()}

    va, vb = (set(), set()) if "anthropic-beta" in opts.ignore_headers else (values(a), values(b))
    return [Change("anthropic-beta", v, None) for v in sorted(va - vb)] + [
        Change("anthropic-beta", None, v) for v in sorted(vb - va)]


def compare_headers(a: Flow, b: Flow, opts: DiffOptions) -> list[Change]:
    skip = NOISE_HEADERS | OWN_LINE_HEADERS | opts.ignore_headers

    def table(flow: Flow) -> dict[str, str]:
        out: dict[str, list[str]] = {}
        for k, v in flow.request.headers:
            if k.lower() not in skip:
                out.setdefault(k.lower(), []).append(v)
        return {k: shown(", ".join(v)) for k, v in out.items()}

    ta, tb = table(a), table(b)
    full = opts.bodies == "full"
    return [Change(f"header.{name}", _clip(ta.get(name), full), _clip(tb.get(name), full))
            for name in sorted(set(ta) | set(tb))
            if name not in ta or name not in tb or mask(ta[name]) != mask(tb[name])]


def compare_body(a: Flow, b: Flow, opts: DiffOptions) -> list[Change]:
    """Field differences via deepdiff for JSON bodies, content otherwise; then the size."""
    ba, bb = a.request.body or {}, b.request.body or {}
    if "json" in ba and "json" in bb:
        ja, jb = ba["json"], bb["json"]
        if isinstance(ja, dict) and isinstance(jb, dict):
            # Equal top-level fields yield nothing: spare deepdiff the walk through them (85 KB prompts).
            same = {k for k in ja.keys() & jb.keys() if _identical(ja[k], jb[k])}
            ja, jb = ({k: v for k, v in j.items() if k not in same} for j in (ja, jb))
        out = deep_changes(ja, jb, "body", opts.bodies == "full")
    else:
        out = [] if _body_content(ba) == _body_content(bb) else [Change("body", _body_label(ba), _body_label(bb))]
    if out and ba.get("size") != bb.get("size"):
        out.insert(0, Change("body-size", human_size(ba.get("size")), human_size(bb.get("size"))))
    return out


def _identical(a, b) -> bool:
    """a == b with 1, 1.0 and true told apart (marshal writes each value's type): 5x faster than
    comparing JSON texts. Keys in another order count as different here; deepdiff then sees they are not."""
    return a == b and marshal.dumps(a, 2) == marshal.dumps(b, 2)  # version 2: no shared-object references


BODY_KINDS = ("json", "events", "text", "base64")


def _body_content(body: dict) -> str | None:
    kind = next((k for k in BODY_KINDS if k in body), None)
    return kind and mask(json.dumps(body[kind], sort_keys=True, default=str))


def _body_label(body: dict) -> str | None:
    kind = next((k for k in BODY_KINDS if k in body), "empty")
    return f"{kind}, {human_size(body.get('size'))}, sha256:{str(body.get('sha256', ''))[:8]}" if body else None


def compare_body_shape(a: Flow, b: Flow, opts: DiffOptions) -> list[Change]:
    """For side calls: the body's kind and top-level keys only; their telemetry changes every run."""
    def shape(flow: Flow) -> str | None:
        body = flow.request.body or {}
        data = body.get("json")
        keys = f" with {', '.join(sorted(data))}" if isinstance(data, dict) else ""
        return f"{next((k for k in BODY_KINDS if k in body), 'empty')}{keys}" if body else None

    return [] if shape(a) == shape(b) else [Change("body", shape(a), shape(b))]


Comparator = Callable[[Flow, Flow, DiffOptions], list[Change]]
_COMMON: tuple[Comparator, ...] = (compare_status, compare_host, compare_auth, compare_query, compare_user_agent,
                                   compare_beta, compare_headers)
COMPARATORS: dict[str, tuple[Comparator, ...]] = {"base": (*_COMMON, compare_body),
                                                  "side": (*_COMMON, compare_body_shape)}


# ---------------------------------------------------------------- pairing


def pair_key(flow: Flow, origin: Origin | None) -> tuple[str, str, str]:
    """Flows pair by role, then method, then path without its query; then by order of occurrence."""
    return role_of(flow, origin), flow.request.method.upper(), mask(flow.request.path.split("?", 1)[0])


def pair_flows(base: Capture, other: Capture) -> tuple[list[tuple[Flow, Flow]], list[Flow], list[Flow]]:
    bo, oo = capture_origin(base), capture_origin(other)
    waiting: dict[tuple[str, str, str], list[Flow]] = {}
    for flow in other.flows:
        waiting.setdefault(pair_key(flow, oo), []).append(flow)
    pairs, only_base = [], []
    for flow in base.flows:
        if queue := waiting.get(pair_key(flow, bo)):
            pairs.append((flow, queue.pop(0)))
        else:
            only_base.append(flow)
    paired = {id(o) for _, o in pairs}
    pairs.sort(key=lambda p: role_of(p[0], bo) != "base")  # base-URL calls first, in order
    return pairs, only_base, [f for f in other.flows if id(f) not in paired]


def compare_pair(a: Flow, b: Flow, refs: dict[int, dict], opts: DiffOptions) -> dict:
    ra, rb = refs[id(a)], refs[id(b)]
    path = shown(a.request.path.split("?", 1)[0])
    return {
        "label": f"{ra['method']} {path}" if ra["role"] == "base" else f"{ra['method']} {ra['host']}{path}",
        "role": ra["role"], "base": ra, "other": rb, "status_differs": a.status != b.status,
        # An HTML error page means an edge (proxy, WAF) judged the request, not the API.
        "edge": a.status != b.status and (_is_html_error(a) or _is_html_error(b)),
        "request_body_size": {"base": (a.request.body or {}).get("size") or 0,
                              "other": (b.request.body or {}).get("size") or 0},
        "changes": [asdict(c) for comparator in COMPARATORS[ra["role"]] for c in comparator(a, b, opts)],
    }


def _is_html_error(flow: Flow) -> bool:
    s = flow.response
    return s is not None and s.status >= 400 and "html" in (s.header("content-type") or "").lower()


def count_hosts(base: Capture, other: Capture, refs: dict[int, dict]) -> list[dict]:
    """Requests per host on each side, and the credential a side call carries there."""
    found: dict[str, dict] = {}
    for side, capture in (("base", base), ("other", other)):
        for flow in capture.flows:
            ref = refs[id(flow)]
            h = found.setdefault(ref["host"], {"host": ref["host"], "role": ref["role"], "base": 0, "other": 0,
                                               "base_credential": None, "other_credential": None})
            h[side] += 1
            if ref["role"] == "base":
                h["role"] = "base"
            elif ref["credential"]:
                h[f"{side}_credential"] = h[f"{side}_credential"] or ref["credential"]
    return sorted(found.values(), key=lambda h: (h["role"] != "base", h["host"]))


def compare_run(base: Capture, other: Capture) -> list[dict]:
    """The captures' meta (command, exit code, base URL, env), minus per-run noise."""
    def meta(capture: Capture) -> dict:  # the command as one line
        command = capture.meta.get("command")
        return dict(capture.meta, command=" ".join(map(str, command)) if isinstance(command, list) else command)

    changes = deep_changes(meta(base), meta(other), "run", full=True, exclude=META_EXCLUDE)
    return [asdict(Change(c.field, _clip(c.base), _clip(c.other))) for c in changes]


# ---------------------------------------------------------------- likely causes


@dataclass(frozen=True)
class CauseRule:
    find: Callable[[dict], Iterable[dict]]  # the report -> findings: field, what, where, edge
    weight: int
    edge_weight: int  # the weight when an HTML error page answered
    reason: str
    always: bool = False  # keeps a place among the likely causes whenever it fires


def _finding(field: str, what: str, where: str, edge: bool = False) -> dict:
    return {"field": field, "what": what, "where": where, "edge": edge}


def _first_change(report: dict, prefix: str) -> Iterable[dict]:
    for pair in focus_pairs(report):
        for c in pair["changes"]:
            if c["field"] == prefix or c["field"].startswith(prefix + "."):
                yield _finding(c["field"], Change(**c).describe(), pair["label"], pair["edge"])
                break


def cause_key(report: dict) -> Iterable[dict]:
    return _first_change(report, "auth-key")


def cause_auth_scheme(report: dict) -> Iterable[dict]:
    return _first_change(report, "auth-scheme")


def cause_host(report: dict) -> Iterable[dict]:
    return _first_change(report, "host")


def cause_body_size(report: dict) -> Iterable[dict]:
    for pair in focus_pairs(report):
        a, b = pair["request_body_size"]["base"], pair["request_body_size"]["other"]
        if max(a, b) >= 2 * min(a, b) and abs(a - b) >= 4096:
            what = f"request body {human_size(a)} → {human_size(b)}"
            yield _finding("body-size", what, pair["label"], pair["edge"])


def cause_user_agent(report: dict) -> Iterable[dict]:
    return _first_change(report, "user-agent")


def cause_query(report: dict) -> Iterable[dict]:
    return _first_change(report, "query")


def cause_beta(report: dict) -> Iterable[dict]:
    return _first_change(report, "anthropic-beta")


def cause_header(report: dict) -> Iterable[dict]:
    return _first_change(report, "header")


def cause_body_field(report: dict) -> Iterable[dict]:
    return _first_change(report, "body")


def cause_side_credential(report: dict) -> Iterable[dict]:
    for h in report["hosts"]:
        for side, mine, theirs in (("base", h["base_credential"], h["other_credential"]),
                                   ("other", h["other_credential"], h["base_credential"])):
            if h["role"] == "side" and mine and mine != theirs:
                what = f"{side.upper()} sends {mine} to {h['host']} ({h[side]} requests)"
                yield _finding("side-credential", what, h["host"])


def cause_extra_host(report: dict) -> Iterable[dict]:
    for h in report["hosts"]:
        if not (h["base"] and h["other"]):
            side, other = ("BASE", "OTHER") if h["base"] else ("OTHER", "BASE")
            what = f"{side} talks to {h['host']} ({h['base'] or h['other']} requests), {other} does not"
            yield _finding("host", what, h["host"])


CAUSE_RULES = (
    CauseRule(cause_key, 100, 60, "a different key is sent; a server may accept one key and reject the other"),
    CauseRule(cause_auth_scheme, 90, 50,
              "the key travels in another header or scheme; a gateway reads one and may not look at the other"),
    CauseRule(cause_host, 85, 85, "the request goes to another server, which judges it by its own rules"),
    CauseRule(cause_body_size, 40, 95,
              "a much larger body; a proxy or WAF that answers with its own HTML page often caps request size"),
    CauseRule(cause_user_agent, 50, 90, "another client names itself; edges and gateways allow or block by user-agent"),
    CauseRule(cause_query, 55, 80, "the URL differs; gateways route and filter on the query string"),
    CauseRule(cause_side_credential, 75, 75,
              "a credential goes to a host that is not the base URL; the gateway never sees it", always=True),
    CauseRule(cause_beta, 65, 55, "a beta feature is asked for or dropped; the API or a gateway may refuse it"),
    CauseRule(cause_header, 30, 70, "a header is added, removed or changed; edges and gateways filter on headers"),
    CauseRule(cause_body_field, 45, 45, "the request asks for something else, which the API may refuse"),
    CauseRule(cause_extra_host, 25, 25, "one run talks to a host the other does not"),
)
MAX_CAUSES = 3


def likely_causes(report: dict) -> list[dict]:
    """At most three causes, strongest first, one per field; an `always` rule keeps a place."""
    best: dict[str, dict] = {}
    for rule in CAUSE_RULES:
        for f in rule.find(report):
            cause = dict(f, weight=rule.edge_weight if f["edge"] else rule.weight, reason=rule.reason,
                         rule=rule.find.__name__, always=rule.always)
            if f["field"] not in best or cause["weight"] > best[f["field"]]["weight"]:
                best[f["field"]] = cause
    ranked = sorted(best.values(), key=lambda c: -c["weight"])  # stable: table order breaks ties
    kept = [c for c in ranked if c["always"]][:1]
    kept += [c for c in ranked if c not in kept][: MAX_CAUSES - len(kept)]
    return [{k: v for k, v in c.items() if k != "always"} for c in sorted(kept, key=lambda c: -c["weight"])]


# ---------------------------------------------------------------- entry points


def diff_captures(base: Capture, other: Capture, opts: DiffOptions | None = None,
                  names: tuple[str, str] = ("BASE", "OTHER")) -> dict:
    """The diff of two captures as plain data; diff_render documents its shape and prints it."""
    opts = opts or DiffOptions()
    bo, oo = capture_origin(base), capture_origin(other)
    refs = {id(f): flow_ref(f, origin) for capture, origin in ((base, bo), (other, oo)) for f in capture.flows}
    pairs, only_base, only_other = pair_flows(base, other)
    report = {
        "format": FORMAT, "bodies": opts.bodies,
        "noise_ignored": [r.name for r in NOISE_RULES] + ["side-call body values"],
        "base": {"file": names[0], "flows": len(base.flows)}, "other": {"file": names[1], "flows": len(other.flows)},
        "pairs": [compare_pair(a, b, refs, opts) for a, b in pairs],
        "only_in_base": [refs[id(f)] for f in only_base], "only_in_other": [refs[id(f)] for f in only_other],
        "hosts": count_hosts(base, other, refs), "run": compare_run(base, other),
    }
    report["different"] = bool(report["only_in_base"] or report["only_in_other"] or report["run"]
                               or any(p["changes"] for p in report["pairs"]))
    first = next((p for p in report["pairs"] if p["status_differs"]), None)
    report["headline"] = first and f"{_status(first['base']['status'])} → {_status(first['other']['status'])} " \
                                   f"on {first['label']}"
    report["likely_causes"] = likely_causes(report) if report["different"] else []
    return report


def diff_files(base: str, other: str, opts: DiffOptions | None = None) -> dict:
    """Load two capture files and diff them; an unreadable or foreign file raises InspectorError."""
    return diff_captures(load_capture(base), load_capture(other), opts, (str(base), str(other)))
