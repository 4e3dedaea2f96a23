"""The capture file: versioned YAML, written flow by flow so a crash never loses a finished flow.

While recording, the file is always valid YAML: `format`, `meta` (with `complete: false`)
and the `flows:` list, to which each finished flow is appended. On close, the whole file is
rewritten atomically with the final `meta` and a `summary`.

Each flow is one JSON object laid out over lines. JSON is YAML's flow style, so any YAML
reader takes the file, and `load_capture` reads the flows with `json` at ~20x libyaml's speed.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from .flags import Summary, summarize
from .model import Flow, InspectorError, Origin, flow_from_dict, flow_to_dict

FORMAT = "inspector-capture/1"
FORMAT_PREFIX = "inspector-capture/"

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class Dumper(_BaseDumper):
    pass


def _represent_str(dumper, value: str):
    # Multi-line text (prompts, HTML error pages) reads best as a literal block.
    style = "|" if "\n" in value and len(value) < 100_000 else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _represent_str)


def dump_yaml(data) -> str:
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


WIDTH = 100
_string = json.encoder.encode_basestring  # escapes quotes, backslashes and C0 controls; keeps the rest as is
# What YAML does not take as is in a quoted scalar: DEL and C1 controls, the line breaks YAML 1.1 folds
# (U+0085, U+2028, U+2029), a BOM and U+FFFE/U+FFFF; JSON escapes mean the same to both. Lone
# surrogates (only a JSON body's escapes make them) are not text at all: they become U+FFFD.
_NOT_YAML = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def _yaml_safe(m: re.Match) -> str:
    c = m.group()
    return "\ufffd" if "\ud800" <= c <= "\udfff" else f"\\u{ord(c):04x}"


def flow_text(flow: dict) -> str:
    """One `flows:` item: the flow as JSON, a container per line unless it fits in WIDTH."""
    return _NOT_YAML.sub(_yaml_safe, f"- {_json(flow, 2)}\n")


def _json(value, indent: int) -> str:
    kind = type(value)
    if kind is str:
        return _string(value)
    inner = indent + 2
    if kind is dict and value:
        parts = [f"{_string(str(k))}: {_string(v) if type(v) is str else _json(v, inner)}" for k, v in value.items()]
        start, end = "{", "}"
    elif kind in (list, tuple) and value:
        parts = [_string(v) if type(v) is str else _json(v, inner) for v in value]
        start, end = "[", "]"
    else:
        return _scalar(value)
    # A container that had to break is longer than its line, so short parts are all one-line parts.
    if sum(map(len, parts)) + 2 * len(parts) + indent <= WIDTH:
        return f"{start}{', '.join(parts)}{end}"
    pad = "\n" + " " * inner
    return f"{start}{pad}{(',' + pad).join(parts)}\n{' ' * indent}{end}"


def _scalar(value) -> str:
    if value is None or value is True or value is False:
        return "null" if value is None else "true" if value else "false"
    if type(value) is float and not math.isfinite(value):
        return _string(str(value))  # JSON has no NaN or infinity
    return json.dumps(value)  # int and float; an empty dict or list; a subclass of str


@dataclass
class Capture:
    meta: dict
    flows: list[Flow]
    summary: dict
    format: str = FORMAT

    def to_dict(self) -> dict:
        return {"format": self.format, "meta": self.meta,
                "flows": [flow_to_dict(f) for f in self.flows], "summary": self.summary}


def capture_origin(capture: Capture) -> Origin | None:
    """The base URL the capture was recorded against, if it names a valid one."""
    try:
        return Origin.parse(capture.meta["base_url"]) if capture.meta.get("base_url") else None
    except InspectorError:
        return None


def load_capture(path: str | os.PathLike) -> Capture:
    """Read a capture file back into the model; every failure is a one-line InspectorError."""
    gc_was_on = gc.isenabled()
    gc.disable()  # the loaded tree has no cycles; the collector would rescan the growing heap again and again
    try:
        data = _parse(path)
    except OSError as e:
        raise InspectorError(f"cannot read {path}: {e.strerror}") from None
    except (yaml.YAMLError, UnicodeError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InspectorError(f"{path} is not valid YAML{where}; if it is a capture, was it cut short? "
                             "Record it again, or repair the last flow by hand") from None
    finally:
        if gc_was_on:
            gc.enable()
    return capture_from_dict(data, str(path))


def _parse(path):
    """The capture as plain data: its flows with `json`, a flow at a time, when they are laid out as
    we write them; the whole file with the YAML loader otherwise (a capture edited into block YAML)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return _parse_json_flows(fh)
    except (ValueError, yaml.YAMLError):
        with open(path, "rb") as fh:
            return yaml.load(fh, Loader=Loader)


def _parse_json_flows(lines) -> dict:
    head = []
    for line in lines:
        head.append(line)
        if line == "flows:\n":
            break
    flows, flow, tail = [], [], []
    lines = itertools.chain(lines, [""])  # the end of the file ends the last flow too
    for line in lines:  # a flow starts with "- {"; its other lines are indented; the file goes on unindented
        if line.startswith(" ") and flow:
            flow.append(line)
            continue
        if flow:
            flows.append(json.loads("".join(flow)))
        if not line.startswith("- "):
            tail = [line, *lines]
            break
        if not line.startswith("- {"):
            raise ValueError("a flow in another layout")
        flow = [line[2:]]
    data, rest = yaml.load("".join(head), Loader=Loader), yaml.load("".join(tail), Loader=Loader) or {}
    if not (isinstance(data, dict) and isinstance(rest, dict)) or {"format", "meta", "flows"} & rest.keys():
        raise ValueError("not the layout inspector writes")
    return {**data, "flows": flows, **rest}


def capture_from_dict(data, name: str = "capture") -> Capture:
    fmt = data.get("format") if isinstance(data, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(FORMAT_PREFIX):
        raise InspectorError(f"{name} is not an inspector capture (no 'format: {FORMAT}' line); "
                             "make one with `inspector record`")
    if fmt != FORMAT:
        raise InspectorError(f"{name} has format {fmt}, but this inspector reads {FORMAT}; "
                             "install the inspector version that wrote it, or a newer one")
    try:
        flows = [flow_from_dict(f) for f in data.get("flows") or []]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InspectorError(f"{name} has a malformed flow ({type(e).__name__}: {e}); "
                             "was it edited by hand? Record it again") from None
    return Capture(meta=data.get("meta") or {}, flows=flows, summary=data.get("summary") or summarize(flows))


def write_capture(capture: Capture, path: str | os.PathLike) -> None:
    """Write a whole capture atomically (mode 0600)."""
    tmp = Path(f"{path}.tmp")
    with _open_private(tmp) as fh:
        fh.write(dump_yaml({"format": capture.format, "meta": capture.meta}))
        fh.write("flows:\n" if capture.flows else "flows: []\n")
        for flow in capture.flows:
            fh.write(flow_text(flow_to_dict(flow)))
        fh.write(dump_yaml({"summary": capture.summary}))
    os.replace(tmp, path)


def _open_private(path: Path, mode: str = "w"):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8")


class CaptureWriter:
    """Appends flows to a capture as they finish; `close` rewrites it complete, atomically."""

    def __init__(self, path: str | os.PathLike, meta: dict):
        self.path = Path(path)
        self.meta = dict(meta, complete=False)
        self.summary = Summary()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = _open_private(self.path)
        self._fh.write(dump_yaml({"format": FORMAT, "meta": self.meta}))
        self._fh.write("flows:\n")
        self._fh.flush()
        self._flows_at = self._fh.tell()
        self.closed = False

    def write(self, flow: Flow) -> None:
        self.summary.add(flow)
        # One write per flow, flushed, so a killed process leaves whole flows behind.
        self._fh.write(flow_text(flow_to_dict(flow)))
        self._fh.flush()

    def close(self, **meta_updates) -> None:
        if self.closed:
            return
        self.closed = True
        self._fh.close()
        self.meta.update(meta_updates, complete=True)
        tmp = Path(f"{self.path}.tmp")
        with _open_private(tmp, "wb") as out, open(self.path, "rb") as journal:
            out.write(dump_yaml({"format": FORMAT, "meta": self.meta}).encode())
            journal.seek(self._flows_at)
            if self.summary.flows:
                out.write(b"flows:\n")
                shutil.copyfileobj(journal, out)
            else:
                out.write(b"flows: []\n")
            out.write(dump_yaml({"summary": self.summary.as_dict()}).encode())
        os.replace(tmp, self.path)
