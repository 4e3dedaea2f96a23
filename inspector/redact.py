"""Redaction: replace secrets with stable placeholders before anything is written.

A placeholder keeps what a reader needs to compare runs without the secret itself:
`Bearer <redacted sha256:1a2b3c4d len=40 from=ANTHROPIC_AUTH_TOKEN>`. The fingerprint is
the first 8 hex digits of the secret's sha256, so the same key looks the same in every capture.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from urllib.parse import quote

from .model import Headers

# Header values that are credentials by definition.
AUTH_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key"}
COOKIE_HEADERS = {"cookie", "set-cookie"}
# Names (env vars, headers, query and JSON keys) whose values are secrets. `(?!s)` spares
# counters such as max_tokens or CLAUDE_CODE_MAX_OUTPUT_TOKENS.
SECRET_NAME = re.compile(r"(?i)(api[-_]?key|key$|token(?!s)|secret|passw(or)?d|credential)")
NOT_SECRET_NAMES = {"idempotency-key", "sec-websocket-key"}
MIN_SECRET_LEN = 8

# Values that look like keys wherever they appear.
# Each pattern starts with its literal, so `re` can skip ahead to candidates; the lookbehind
# after the literal checks the character before it.
KEY_SHAPES = [
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-(?<![A-Za-z0-9]sk-)[A-Za-z0-9_\-]{16,}"),
    re.compile(r"eyJ(?<![A-Za-z0-9_\-]eyJ)[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
]
# `password=...` and `"api_key": "..."` in free text (also JSON inside JSON): command lines, echoes, logs.
# The name may have more before the keyword (x_api_key); the match starts at the keyword.
# Matched case-sensitively against the lowercased text: (?i) makes `re` several times slower.
ASSIGNMENT = re.compile(r"""(?x)(?P<pre>(?:api[_-]?key|token(?!s)|secret|passw(?:or)?d|credential)[\w.-]*
                        \\?["']?\s*[:=]\s*\\?["']?)(?P<val>[^\s"'&,;<>\\]{8,})""")
# "Bearer xyz" / "Basic xyz" wherever an auth header is quoted: echoed headers, logs, error pages.
# A digit is required, so prose ("basic functionality") is left alone.
AUTH_SCHEME = re.compile(r"(?P<pre>\b(?:bearer|basic)\s+)(?P<val>(?=[a-z+/=._~\-]*[0-9])[a-z0-9+/=._~\-]{8,})")
USERINFO = re.compile(r"(?P<pre>://[^:@/\s]*:)(?P<pw>[^@/\s]+)(?=@)")
# Characters whose lowercase differs in length or that (?i) would equate with ASCII letters.
LOWER_UNSAFE = ("\u0130", "\u0131", "\u017f", "\u212a")
# Cheap tests on the lowercased text: a rule runs only where a match is possible at all.
ASSIGNMENT_WORDS = ("key", "token", "secret", "passw", "credential")
LOWERCASE_RULES = [  # (pattern matched on the lowercased text, group to hide, can it match at all?)
    (ASSIGNMENT, "val", lambda low: any(w in low for w in ASSIGNMENT_WORDS)),
    (AUTH_SCHEME, "val", lambda low: "bearer" in low or "basic" in low),
]
PLACEHOLDER = re.compile(r"<redacted sha256:(?P<fp>[0-9a-f]{8}) len=(?P<len>\d+)(?: from=(?P<src>[A-Za-z0-9_]+))?>")


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def placeholder(secret: str, source: str | None = None) -> str:
    src = f" from={source}" if source else ""
    return f"<redacted sha256:{fingerprint(secret)} len={len(secret)}{src}>"


def is_secret_name(name: str) -> bool:
    return name.lower() not in NOT_SECRET_NAMES and bool(SECRET_NAME.search(name))


def secrets_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """Secret values of an environment, mapped to the variable they came from."""
    found: dict[str, str] = {}

    def add(value: str, name: str) -> None:
        value = value.strip()
        if len(value) >= MIN_SECRET_LEN and not value.isdigit() and value not in found:
            found[value] = name

    # ANTHROPIC_* first, so a value shared by two variables is named after the one that matters here.
    for name in sorted(env, key=lambda n: (not n.startswith("ANTHROPIC_"), n)):
        value = env[name]
        if name == "ANTHROPIC_CUSTOM_HEADERS":
            for line in value.splitlines():
                if ":" in line:
                    add(line.split(":", 1)[1], name)
        elif is_secret_name(name):
            add(value, name)
        elif m := USERINFO.search(value):  # e.g. HTTPS_PROXY=http://user:pass@proxy
            add(m.group("pw"), name)
    return found


def _encoded_forms(secret: str) -> set[str]:
    """How a secret may appear besides itself: URL-encoded, or inside base64 at any alignment."""
    forms = {secret, quote(secret, safe="")}
    raw = secret.encode()
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + raw).decode().rstrip("=")
        # Drop characters that also encode the neighbouring bytes.
        start = (shift * 4 + 2) // 3
        end = len(enc) - (1 if (shift + len(raw)) % 3 else 0)
        piece = enc[start:end]
        if len(piece) >= MIN_SECRET_LEN:
            forms.add(piece)
            forms.add(piece.replace("+", "-").replace("/", "_"))
    return forms


class Redactor:
    """Pure string-to-string functions that hide secrets; a disabled redactor returns its input."""

    def __init__(self, env_secrets: Mapping[str, str] | None = None, enabled: bool = True):
        self.enabled = enabled
        self.env_secrets = dict(env_secrets or {})
        self._replacement: dict[str, str] = {}
        for secret, source in self.env_secrets.items():
            for form in _encoded_forms(secret):
                self._replacement.setdefault(form, placeholder(secret, source))
        forms = sorted(self._replacement, key=len, reverse=True)
        self._env_re = re.compile("|".join(map(re.escape, forms))) if forms else None

    def secret(self, value: str) -> str:
        """The placeholder for a value known to be a secret."""
        if not self.enabled or not value or PLACEHOLDER.fullmatch(value):
            return value
        return placeholder(value, self.env_secrets.get(value))

    def text(self, s: str) -> str:
        """Hide env secrets, key-shaped values and URL passwords anywhere in a string."""
        if not self.enabled or not s:
            return s
        if self._env_re is not None and (len(self._replacement) > 64 or any(f in s for f in self._replacement)):
            s = self._env_re.sub(lambda m: self._replacement[m.group()], s)
        if "sk-" in s or "eyJ" in s:
            for shape in KEY_SHAPES:
                s = shape.sub(lambda m: self.secret(m.group()), s)
        low = s.lower()
        for rule, group, possible in LOWERCASE_RULES:
            if possible(low):
                s = self._hide_matches(rule, group, s, low)
                low = s.lower()
        if "://" in s and "@" in s:
            s = USERINFO.sub(lambda m: m.group("pre") + self.secret(m.group("pw")), s)
        return s

    def _hide_matches(self, rule: re.Pattern, group: str, s: str, low: str) -> str:
        """Replace `group` of each match of a lowercase pattern, keeping the original's case."""
        if len(low) != len(s) or any(c in s for c in LOWER_UNSAFE):
            return re.compile(rule.pattern, rule.flags | re.IGNORECASE).sub(
                lambda m: m.group("pre") + self.secret(m.group(group)), s)
        out, last = [], 0
        for m in rule.finditer(low):
            start, end = m.span(group)
            out += [s[last:start], self.secret(s[start:end])]
            last = end
        return "".join(out) + s[last:] if out else s

    def command(self, argv) -> list[str]:
        """A command line; the value after a secret-named option (`--api-key K`) is a secret too."""
        out = []
        for i, arg in enumerate(argv):
            prev = argv[i - 1] if i else ""
            secret_option = prev.startswith("-") and "=" not in prev and is_secret_name(prev.lstrip("-"))
            out.append(self.secret(arg) if secret_option else self.text(arg))
        return out

    def header(self, name: str, value: str) -> str:
        if not self.enabled:
            return value
        lname = name.lower()
        if lname in COOKIE_HEADERS:
            return self._cookie(value, only_first=lname == "set-cookie")
        if lname in AUTH_HEADERS or is_secret_name(lname):
            scheme, sep, token = value.partition(" ")
            if sep and token and scheme.isalpha():
                return f"{scheme} {self.secret(token.strip())}"
            return self.secret(value.strip())
        return self.text(value)

    def headers(self, headers: Headers) -> Headers:
        return [(k, self.header(k, v)) for k, v in headers]

    def _cookie(self, value: str, only_first: bool) -> str:
        parts = value.split(";")
        for i, part in enumerate(parts):
            if i and only_first:
                break
            name, eq, val = part.partition("=")
            if eq and val.strip():
                parts[i] = f"{name}={self.secret(val.strip())}"
        return ";".join(parts)

    def query(self, query: dict) -> dict:
        def one(name: str, v: str) -> str:
            return self.secret(v) if is_secret_name(name) and v else self.text(v)

        return {k: [one(k, x) for x in v] if isinstance(v, list) else one(k, v) for k, v in query.items()}

    def json(self, obj):
        """Hide secret-named string fields of a parsed JSON body (values were already scrubbed as text)."""
        if not self.enabled:
            return obj
        if isinstance(obj, dict):
            return {k: self.secret(v) if isinstance(v, str) and len(v) >= MIN_SECRET_LEN and is_secret_name(k)
                    else self.json(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.json(v) for v in obj]
        return obj

    def body(self, body: dict | None) -> dict | None:
        if body and "json" in body:
            body["json"] = self.json(body["json"])
        if body and "form" in body:
            body["form"] = self.query(body["form"])
        return body
