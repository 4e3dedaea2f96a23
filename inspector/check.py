"""`inspector check`: a CI gate over a capture's flags."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .model import SEVERITIES, Flow
from .serialize import Capture

# Flags that only say "this host is not the base URL"; an allowed host silences them.
HOST_FLAGS = {"off-base-host", "credential-leak"}


@dataclass
class Finding:
    flow: Flow
    code: str
    severity: str
    message: str


def findings(capture: Capture, fail_on: str, allow_hosts: tuple[str, ...] = ()) -> list[Finding]:
    """Flags at or above `fail_on`, minus host flags for allowed hosts."""
    floor = SEVERITIES.index(fail_on)
    allowed = {h.lower() for h in allow_hosts}
    out = []
    for flow in capture.flows:
        host = flow.request.host.lower()
        for f in flow.flags:
            if SEVERITIES.index(f.severity) < floor:
                continue
            if f.code in HOST_FLAGS and (host in allowed or f"{host}:{flow.request.port}" in allowed):
                continue
            out.append(Finding(flow, f.code, f.severity, f.message))
    return out


def render_text(name: str, capture: Capture, found: list[Finding], fail_on: str) -> str:
    lines = [f"{name}: {len(capture.flows)} flows, {sum(len(f.flags) for f in capture.flows)} flags"]
    groups: dict[str, list[Finding]] = {}
    for f in sorted(found, key=lambda f: (-SEVERITIES.index(f.severity), f.code)):
        groups.setdefault(f.code, []).append(f)
    for code, items in groups.items():
        hosts = ", ".join(dict.fromkeys(i.flow.request.host for i in items))
        lines.append(f"{items[0].severity:<8} {code} ×{len(items)} ({hosts})")
        lines.append(f"         {items[0].message}")
        flows = ", ".join(f"#{i.flow.id} {i.flow.request.method} {i.flow.request.path}" for i in items[:4])
        more = f", and {len(items) - 4} more" if len(items) > 4 else ""
        lines.append(f"         {flows}{more}")
    if found:
        lines.append(f"FAIL: {len(found)} flags at or above {fail_on!r}; fix them, or allow hosts with --allow-host")
    else:
        lines.append(f"PASS: no flags at or above {fail_on!r}")
    return "\n".join(lines) + "\n"


def render_json(name: str, found: list[Finding], fail_on: str) -> str:
    return json.dumps({
        "capture": name,
        "fail_on": fail_on,
        "passed": not found,
        "flags": [{"flow": f.flow.id, "method": f.flow.request.method, "url": f.flow.request.url,
                   "code": f.code, "severity": f.severity, "message": f.message} for f in found],
    }, indent=2, sort_keys=True) + "\n"
