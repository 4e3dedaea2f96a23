"""`inspector bisect`: the smallest change that turns GOOD's working request into one that fails like BAD's.

BAD's first failed call to the base URL and its pair in GOOD differ in atomic DIFFERENCES. Subsets
are applied to GOOD's request and sent; a variant "fails like BAD" when its status and who answered
(an edge's HTML page, the API's error type) are BAD's. GOOD and the full set are checked first, then
a binary search over prefixes finds one culprit in ⌈log2 n⌉ requests; ddmin (Zeller) takes over when
the culprit fails only together with others (issue #4).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TextIO
from urllib.parse import parse_qsl, quote

from .diff import capture_origin, pair_flows, role_of, show_value, shown
from .flags import CREDENTIAL_HEADERS, who_answered
from .model import Flow, Headers, InspectorError, Origin, Response
from .redact import PLACEHOLDER
from .replay import HOP_BY_HOP, Credentials, Draft, Outgoing, build, draft_of, send
from .report import failed
from .serialize import load_capture

NOT_COMPARED = HOP_BY_HOP | {"host", "content-length", "anthropic-beta"}  # beta is compared value by value
SHOWN_VALUE = 80  # longer header and query values are cut in the culprit line

# ---------------------------------------------------------------- the request as parts


@dataclass
class Parts:
    """A request taken apart into what the differences change."""

    path: str  # without the query
    query: list[tuple[str, str]]
    headers: Headers  # without anthropic-beta, which is `betas`
    betas: list[str]
    body: dict | None  # the stored body; replaced whole when it is not a JSON object on both sides
    fields: dict | None  # the JSON object of the body, edited field by field
    pad_to: int = 0  # body-size difference: pad the body with JSON whitespace up to this many bytes

    @classmethod
    def of(cls, draft: Draft) -> Parts:
        path, _, query = draft.path.partition("?")
        betas = [v.strip() for k, val in draft.headers if k.lower() == "anthropic-beta" for v in val.split(",")]
        data = (draft.body or {}).get("json")
        return cls(path, parse_qsl(query, keep_blank_values=True),
                   [(k, v) for k, v in draft.headers if k.lower() != "anthropic-beta"], [b for b in betas if b],
                   draft.body, copy.deepcopy(data) if isinstance(data, dict) else None)

    def draft(self, method: str) -> Draft:
        query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in self.query)
        headers = list(self.headers)
        if self.betas:
            headers.append(("anthropic-beta", ",".join(self.betas)))
        body = self.body
        if self.fields is not None and body is not None and self.fields != body.get("json"):
            body = {"size": None, "sha256": None, "json": self.fields}  # no recorded style: compact JSON
        return Draft(method, self.path + (f"?{query}" if query else ""), headers, body)


def _quote(text: str) -> str:
    """URL-quoted, except placeholders, which stay whole so the credentials can still be refilled."""
    out, at = [], 0
    for m in PLACEHOLDER.finditer(text):
        out += [quote(text[at:m.start()], safe=""), m.group()]
        at = m.end()
    return "".join(out) + quote(text[at:], safe="")


def _set_named(pairs: Headers, name: str, values: list[str], spelled: str, fold: Callable[[str], str]) -> Headers:
    """Pairs with every `name` replaced by `values`, at the first one's place (else at the end)."""
    at = next((i for i, (k, _) in enumerate(pairs) if fold(k) == name), len(pairs))
    kept = [(k, v) for k, v in pairs if fold(k) != name]
    at = min(at, len(kept))
    return kept[:at] + [(spelled, v) for v in values] + kept[at:]


# ---------------------------------------------------------------- differences


@dataclass
class Difference:
    kind: str  # the DIFFERENCES rule that found it
    label: str  # how the culprit line names it
    apply: Callable[[Parts], None] = field(repr=False)


def _quoted(text: str) -> str:
    text = shown(text)
    return json.dumps(text if len(text) <= SHOWN_VALUE else text[:SHOWN_VALUE] + "…")


def diff_body_size(good: Parts, bad: Parts) -> list[Difference]:
    sizes = [(p.body or {}).get("size") or 0 for p in (good, bad)]
    if good.fields is None or sizes[1] <= sizes[0]:
        return []
    return [Difference("body-size", f"body size {sizes[0]:,} → {sizes[1]:,} bytes",
                       lambda p: setattr(p, "pad_to", sizes[1]))]


def diff_auth(good: Parts, bad: Parts) -> list[Difference]:
    """Which header carries the key: one difference, since a gateway reads one header and ignores the other."""
    def carried(p: Parts) -> list[tuple[str, str]]:
        return [(k, v) for k, v in p.headers if k.lower() in CREDENTIAL_HEADERS]

    def shape(p: Parts) -> list[str]:  # the header and its scheme word (Bearer), never the key
        schemes = [v.strip().partition(" ")[0] for _, v in carried(p)]
        return [f"{k.lower()}: {s}" if s.isalpha() and " " in v.strip() else k.lower()
                for (k, v), s in zip(carried(p), schemes)]

    if shape(good) == shape(bad):
        return []  # the same headers: a changed key shows as a header difference

    label = f"auth header {', '.join(shape(bad)) or 'none'} instead of {', '.join(shape(good)) or 'none'}"
    return [Difference("auth", label, lambda p: setattr(p, "headers", [
        (k, v) for k, v in p.headers if k.lower() not in CREDENTIAL_HEADERS] + carried(bad)))]


def _named(kind: str, attr: str, good: Parts, bad: Parts, fold: Callable[[str], str], skip=frozenset(),
           joiner: str = ", ") -> list[Difference]:
    """One difference per name (header, query parameter) whose values differ; it gives the name BAD's values."""
    found = []
    for name in dict.fromkeys(fold(k) for k, _ in getattr(good, attr) + getattr(bad, attr)):
        was, now = ([v for k, v in getattr(p, attr) if fold(k) == name] for p in (good, bad))
        if name in skip or was == now:
            continue
        spelled = next(k for k, _ in getattr(bad, attr) + getattr(good, attr) if fold(k) == name)

        def change(p: Parts, name=name, now=now, spelled=spelled) -> None:
            setattr(p, attr, _set_named(getattr(p, attr), name, now, spelled, fold))

        label = f"{kind} {name} = {_quoted(joiner.join(now))}" if now else f"{kind} {name} removed"
        found.append(Difference(kind, label, change))
    return found


def diff_headers(good: Parts, bad: Parts) -> list[Difference]:
    # When the auth header differs, the credential headers are one difference of their own (diff_auth).
    skip = NOT_COMPARED | (frozenset(CREDENTIAL_HEADERS) if diff_auth(good, bad) else frozenset())
    return _named("header", "headers", good, bad, str.lower, skip)


def diff_query(good: Parts, bad: Parts) -> list[Difference]:
    return _named("query", "query", good, bad, str, joiner=",")


def diff_betas(good: Parts, bad: Parts) -> list[Difference]:
    def toggle(p: Parts, v: str, added: bool) -> None:
        p.betas = [x for x in p.betas if x != v] + ([v] if added else [])

    return [Difference("anthropic-beta", f"anthropic-beta {v} {'added' if added else 'removed'}",
                       lambda p, v=v, added=added: toggle(p, v, added))
            for mine, theirs, added in ((bad, good, True), (good, bad, False))
            for v in mine.betas if v not in theirs.betas]


def diff_body(good: Parts, bad: Parts) -> list[Difference]:
    """Each top-level field (system, tools, messages, metadata are fields too); else the body as a whole."""
    if good.fields is None or bad.fields is None:
        if (good.body or {}).get("sha256") == (bad.body or {}).get("sha256"):
            return []
        return [Difference("body", f"body replaced by BAD's ({(bad.body or {}).get('size') or 0:,} bytes)",
                           lambda p: vars(p).update(body=bad.body, fields=copy.deepcopy(bad.fields)))]
    found = []
    for key in dict.fromkeys([*good.fields, *bad.fields]):
        if good.fields.get(key, ...) == bad.fields.get(key, ...):
            continue
        present = key in bad.fields

        def change(p: Parts, key=key, present=present) -> None:
            if present:
                p.fields[key] = copy.deepcopy(bad.fields[key])
            else:
                p.fields.pop(key, None)

        label = f"body.{key} = {show_value(bad.fields[key], [key], False)}" if present else f"body.{key} removed"
        found.append(Difference("body-field", label, change))
    return found


# In this order: when several differences each fail alone (a large body fails a size limit whichever
# field makes it large), the first one in the list is named.
DIFFERENCES: tuple[Callable[[Parts, Parts], list[Difference]], ...] = (
    diff_body_size, diff_auth, diff_headers, diff_query, diff_betas, diff_body)


def differences(good: Draft, bad: Draft) -> list[Difference]:
    g, b = Parts.of(good), Parts.of(bad)
    return [d for rule in DIFFERENCES for d in rule(g, b)]


def variant(good: Draft, diffs: Sequence[Difference], chosen: frozenset[int]) -> tuple[Draft, int]:
    """GOOD's request with the chosen differences applied (GOOD's own while only its size changes), and
    the size to pad its body to."""
    parts = Parts.of(good)
    for i in sorted(chosen):
        diffs[i].apply(parts)
    changed = any(diffs[i].kind != "body-size" for i in chosen)
    return (parts.draft(good.method) if changed else good), parts.pad_to


def pad_json(body: bytes, size: int) -> bytes:
    """The body grown to `size` bytes with whitespace after its opening bracket: the same JSON, only larger."""
    missing = size - len(body)
    if missing <= 0:
        return body
    return body[:1] + b" " * missing + body[1:] if body[:1] in (b"{", b"[") else body + b" " * missing


# ---------------------------------------------------------------- the search


class OutOfRequests(Exception):
    pass


class Probe:
    """Asks the target at most `limit` times; an answer is remembered, so no question is asked twice."""

    def __init__(self, limit: int):
        self.limit, self.count, self.answers = limit, 0, {}

    def ask(self, key: Hashable, question: Callable[[], bool]) -> bool:
        if key not in self.answers:
            if self.count >= self.limit:
                raise OutOfRequests
            self.count += 1
            self.answers[key] = question()
        return self.answers[key]


@dataclass
class Search:
    culprits: list[int] | None  # indexes of the differences that, applied together, fail like BAD
    verdict: str  # found, good-fails, bad-passes, no-differences, out-of-requests
    narrowed: list[int] = field(default_factory=list)  # the smallest failing set known when the requests ran out


def find_culprits(n: int, fails: Callable[[frozenset[int]], bool], probe: Probe) -> Search:
    """Verify GOOD passes and all n fail; binary-search the single culprit; ddmin when it takes more than one."""
    def test(chosen) -> bool:
        key = frozenset(chosen)
        return probe.ask(key, lambda: fails(key))

    if n == 0:
        return Search(None, "no-differences")
    narrowed = list(range(n))
    try:
        if test(()):
            return Search(None, "good-fails")
        if not test(range(n)):
            return Search(None, "bad-passes")
        passing, failing = 0, n  # the shortest failing prefix of the differences
        while failing - passing > 1:
            middle = (passing + failing) // 2
            if test(range(middle)):
                failing, narrowed = middle, list(range(middle))
            else:
                passing = middle
        if failing == 1 or test({failing - 1}):
            return Search([failing - 1], "found")
        for narrowed in ddmin(narrowed, test):  # the culprit fails only with others from the prefix
            pass
        return Search(narrowed, "found")
    except OutOfRequests:
        return Search(None, "out-of-requests", narrowed)


def ddmin(items: list[int], test: Callable[[Sequence[int]], bool]) -> Iterator[list[int]]:
    """Zeller's ddmin over a failing set: yields each smaller failing set; the last is 1-minimal."""
    granularity = 2
    while len(items) >= 2:
        size = math.ceil(len(items) / granularity)
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        complements = [[i for i in items if i not in c] for c in chunks] if len(chunks) > 2 else []
        smaller = next((c for c in chunks + complements if test(c)), None)
        if smaller is not None:
            granularity = 2 if smaller in chunks else max(granularity - 1, 2)
            items = smaller
            yield items
        elif granularity >= len(items):
            return
        else:
            granularity = min(2 * granularity, len(items))


def requests_needed(n: int, culprit_index: int) -> int:
    """Requests the search sends to find one culprit among n differences (for the benchmarks)."""
    probe = Probe(10**9)
    found = find_culprits(n, lambda chosen: culprit_index in chosen, probe)
    assert found.culprits == [culprit_index], found
    return probe.count


def request_bound(n: int) -> int:
    """The promise for a single culprit among n differences: 2·⌈log2 n⌉ + 4 requests."""
    return 2 * math.ceil(math.log2(max(n, 1))) + 4


# ---------------------------------------------------------------- the command


def answered_by(response: Response | None) -> str:
    """Who answered, in short: the edge's Server for an HTML page, the API's error type for a JSON error."""
    if response is None:
        return "no response"  # the error's wording changes from run to run; that there was none does not
    who = who_answered(response)
    if "HTML page" in who:
        return response.header("server") or "an HTML page"
    if m := re.search(r"error\.type: ([^)]+)\)", who):
        return f"the API: {m.group(1)}"
    return who


def outcome(status: int | None, who: str) -> str:
    return f"{status} from {who}" if status is not None else who


class Scenario(NamedTuple):
    good: Flow
    bad: Flow
    good_draft: Draft
    bad_draft: Draft


def scenario(good_path: str, bad_path: str) -> Scenario:
    """BAD's first failed call to its base URL, and the GOOD flow `inspector diff` pairs with it."""
    good, bad = load_capture(good_path), load_capture(bad_path)
    origin = capture_origin(bad)
    bad_flow = next((f for f in bad.flows if role_of(f, origin) == "base" and failed(f)), None)
    if bad_flow is None:
        raise InspectorError(f"{bad_path} has no failed call to its base URL; nothing to bisect")
    pairs, _, _ = pair_flows(good, bad)
    good_flow = next((g for g, b in pairs if b is bad_flow), None)
    if good_flow is None:
        raise InspectorError(f"{good_path} has no {bad_flow.request.method} {bad_flow.request.path.split('?')[0]} "
                             "to its base URL to compare with BAD's failing one")
    return Scenario(good_flow, bad_flow, draft_of(good_flow, capture_origin(good)), draft_of(bad_flow, origin))


VERDICTS = {  # verdict -> the line printed when no culprit is found
    "no-differences": "no culprit: GOOD's and BAD's requests do not differ",
    "good-fails": "no culprit: GOOD's own request already gets {bad} at the target",
    "bad-passes": "no culprit: with all {n} differences applied, the target answers {got}, not {bad} as BAD "
                  "recorded; the cause is not in the request (another target? another key?)",
    "out-of-requests": "no culprit within --max-requests {limit}; narrowed to {narrowed}",
}


def bisect(good_path: str, bad_path: str, target_url: str, auth_env: Sequence[str], env: Mapping[str, str],
           max_requests: int, out: TextIO) -> int:
    """Find and print the culprit; 0 when one is found, 1 when none is."""
    if max_requests < 1:
        raise InspectorError("--max-requests must be at least 1")
    target = Origin.parse(target_url)
    sc = scenario(good_path, bad_path)
    creds = Credentials(env, auth_env)
    # Built once first, so every placeholder is refilled before anything is sent.
    notes = [f"note: {side}'s {note}" for side, draft in (("GOOD", sc.good_draft), ("BAD", sc.bad_draft))
             for note in build(draft, creds, target).notes]
    diffs = differences(sc.good_draft, sc.bad_draft)
    bad_answer = (sc.bad.status, answered_by(sc.bad.response))
    last: dict[str, str] = {}

    def fails_like_bad(draft: Draft, pad_to: int = 0) -> bool:
        req = build(draft, creds, target)
        if pad_to:
            req = Outgoing(req.method, req.path, [(k, str(pad_to) if k.lower() == "content-length" else v)
                                                  for k, v in req.headers], pad_json(req.body, pad_to))
        ex = send(target, req)
        answer = (ex.status, answered_by(ex.response()))
        last["got"] = outcome(*answer)
        return answer == bad_answer

    out.write(f"bisect: GOOD flow {sc.good.id} ({sc.good.request.method} {sc.good.request.path}, "
              f"{sc.good.status}) vs BAD flow {sc.bad.id} ({sc.bad.request.method} {sc.bad.request.path}, "
              f"{outcome(*bad_answer)}): {len(diffs)} differences\n" + "".join(f"{n}\n" for n in notes))
    out.flush()
    probe = Probe(max_requests)
    found = find_culprits(len(diffs), lambda chosen: fails_like_bad(*variant(sc.good_draft, diffs, chosen)), probe)
    if found.culprits is None:
        narrowed = " + ".join(diffs[i].label for i in found.narrowed[:5]) + (" + …" if len(found.narrowed) > 5 else "")
        out.write(VERDICTS[found.verdict].format(bad=outcome(*bad_answer), n=len(diffs), got=last.get("got"),
                                                 limit=max_requests, narrowed=narrowed) + "\n")
    else:
        names = " + ".join(diffs[i].label for i in found.culprits)
        out.write(f"culprit{'s' if len(found.culprits) > 1 else ''}: {names} ({outcome(*bad_answer)})\n")
        if [diffs[i].kind for i in found.culprits] == ["body-size"]:
            out.write(size_threshold(sc.good_draft, variant(sc.good_draft, diffs, frozenset(found.culprits))[1],
                                     fails_like_bad, probe) + "\n")
    out.write(f"{probe.count} request{'s' if probe.count != 1 else ''} sent\n")
    return 0 if found.culprits else 1


def size_threshold(good: Draft, failing: int, fails_like_bad: Callable[[Draft, int], bool], probe: Probe) -> str:
    """Bisect the padded size of GOOD's body between GOOD's size (passes) and BAD's (fails)."""
    passing = (good.body or {}).get("size") or 0

    def fails_at(size: int) -> bool:
        return probe.ask(("size", size), lambda: fails_like_bad(good, size))

    try:
        while failing - passing > 1:
            middle = (passing + failing) // 2
            passing, failing = (passing, middle) if fails_at(middle) else (middle, failing)
    except OutOfRequests:
        return (f"body size: fails above ~{passing:,} bytes (passes at {passing:,}, fails at {failing:,}; "
                "--max-requests reached before the exact threshold)")
    return f"body size: fails above ~{passing:,} bytes"
