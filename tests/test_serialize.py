"""The capture file: versioned, loadable, written so that a crash leaves whole flows."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from conftest import INSPECTOR, base_env
from inspector.flags import summarize
from inspector.model import (Flag, Flow, InspectorError, Request, Response, flow_to_dict, make_body, parse_sse,
                             sse_bytes)
from inspector.serialize import FORMAT, Capture, CaptureWriter, load_capture, write_capture


def sample(i: int = 1) -> Flow:
    req = Request("GET", "http://127.0.0.1:1/x?a=1&a=2", "http", "127.0.0.1", 1, "/x?a=1&a=2",
                  {"a": ["1", "2"]}, "HTTP/1.1", [("Accept", "*/*"), ("X-Dup", "1"), ("X-Dup", "2")])
    resp = Response(200, "OK", "HTTP/1.1", [("content-type", "text/plain")],
                    make_body(b"line one\nline two\n", "text/plain", 100))
    return Flow(i, "2026-01-01T00:00:00.000Z", req, resp, None, 1.5, 1.0, "proxy",
                [Flag("off-base-host", "warning", "m")])


def test_round_trip_keeps_header_order_duplicates_and_flags(tmp_path):
    path = tmp_path / "c.yaml"
    write_capture(Capture({"base_url": None}, [sample()], summarize([sample()])), path)
    text = path.read_text()
    assert text.startswith(f"format: {FORMAT}\n")
    assert '"headers": [{"Accept": "*/*"}, {"X-Dup": "1"}, {"X-Dup": "2"}]' in text  # short lists stay on a line
    (flow,) = load_capture(path).flows
    assert flow == sample()


TRICKY = ["a\nb", 'q"\\', "\u2028 \u2029 \x85 \x7f \x9f \ufeff \ufffe", "\U0001f600", "\t\x00\x1b",
          "- {not: json}", "x" * 300, ""]


@pytest.mark.parametrize("loader", [yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)])
def test_json_flows_read_the_same_with_json_and_any_yaml_loader(tmp_path, loader):
    flow = sample()
    flow.request.body = {"size": 1, "sha256": "0" * 64, "json": {"s": TRICKY, "n": [0, -7, 2**70, 0.5, True, None],
                                                              "deep": {"a": [{"b": [{"c": TRICKY[2]}]}]}, "": {}}}
    flow.response.body = {"size": 1, "sha256": "0" * 64, "text": "".join(TRICKY)}
    path = tmp_path / "c.yaml"
    write_capture(Capture({"base_url": None}, [flow, sample(2)], summarize([flow])), path)
    text = path.read_text(encoding="utf-8")
    # A line over 100 columns holds one value that cannot break (a long string), never a list or mapping.
    scalar = re.compile(r'\s*(- )?("(?:[^"\\]|\\.)*": )?("(?:[^"\\]|\\.)*"|-?[\d.eE+-]+|true|false|null),?')
    assert [line for line in text.splitlines() if len(line) > 100 and not scalar.fullmatch(line)] == []
    assert yaml.load(text, Loader=loader)["flows"] == [flow_to_dict(flow), flow_to_dict(sample(2))]
    assert load_capture(path).flows == [flow, sample(2)]


def test_lone_surrogates_which_no_yaml_reader_takes_become_replacement_characters(tmp_path):
    flow = sample()
    flow.response.body = {"size": 1, "sha256": "0" * 64, "json": ["\ud800 lone"]}
    path = tmp_path / "c.yaml"
    write_capture(Capture({}, [flow], {}), path)
    assert yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["flows"][0][
        "response"]["body"]["json"] == ["\ufffd lone"]
    assert load_capture(path).flows[0].response.body["json"] == ["\ufffd lone"]


def test_a_capture_edited_into_block_yaml_still_loads(tmp_path):
    path = tmp_path / "c.yaml"
    data = {"format": FORMAT, "meta": {}, "flows": [flow_to_dict(sample(1)), flow_to_dict(sample(2))]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_capture(path).flows == [sample(1), sample(2)]
    # Our layout for the first flow, block YAML for the second: still one capture.
    mixed = tmp_path / "mixed.yaml"
    write_capture(Capture({}, [sample(1)], {}), mixed)
    mixed.write_text(mixed.read_text().replace("summary:", yaml.safe_dump([data["flows"][1]]) + "summary:"))
    assert [f.id for f in load_capture(mixed).flows] == [1, 2]


def test_writer_leaves_valid_yaml_after_every_flow_and_a_summary_on_close(tmp_path):
    path = tmp_path / "c.yaml"
    w = CaptureWriter(path, {"command": ["x"]})
    assert load_capture(path).flows == [] and load_capture(path).meta["complete"] is False
    w.write(sample(1))
    w.write(sample(2))
    mid = load_capture(path)
    assert [f.id for f in mid.flows] == [1, 2] and mid.summary["flows"] == 2
    w.close(exit_code=3)
    done = yaml.safe_load(path.read_text())
    assert done["meta"]["complete"] is True and done["meta"]["exit_code"] == 3
    assert done["summary"] == {"flows": 2, "by_host": {"127.0.0.1:1": 2}, "by_status": {"200": 2},
                               "by_flag": {"off-base-host": 2}}
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content, words", [
    ("format: inspector-capture/9\nflows: []\n", "has format inspector-capture/9, but this inspector reads"),
    ("just: yaml\n", "is not an inspector capture"),
    ("format: inspector-capture/1\nflows:\n- id: 1\n", "malformed flow"),
    ("format: inspector-capture/1\nflows:\n- id: [1\n", "is not valid YAML at line"),
])
def test_bad_captures_fail_with_one_sentence(tmp_path, content, words):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(InspectorError, match=words.replace("(", r"\(")):
        load_capture(path)
    proc = subprocess.run([INSPECTOR, "check", str(path)], capture_output=True, text=True, env=base_env())
    assert proc.returncode == 2 and words in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_missing_capture_file():
    proc = subprocess.run([INSPECTOR, "check", "/nonexistent/c.yaml"], capture_output=True, text=True)
    assert proc.returncode == 2 and "cannot read /nonexistent/c.yaml" in proc.stderr


@pytest.mark.parametrize("data, ctype, key, value", [
    (b'{"a": [1, 2]}', "application/json", "json", {"a": [1, 2]}),
    (b"plain words", "text/plain", "text", "plain words"),
    (b"\x00\xff\x10", "application/octet-stream", "base64", "AP8Q"),
    (b"a=1&a=2&b=", "application/x-www-form-urlencoded", "form", {"a": ["1", "2"], "b": ""}),
])
def test_body_forms(data, ctype, key, value):
    body = make_body(data, ctype, 1000)
    assert body[key] == value and body["size"] == len(data) and len(body["sha256"]) == 64


def test_large_body_is_truncated_with_full_size_and_sha256():
    import hashlib
    data = b'{"x": "' + b"a" * 5000 + b'"}'
    body = make_body(data, "application/json", 100)
    assert body["truncated"] is True and body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and len(body["text"]) == 100


def test_sse_events_round_trip():
    raw = b'event: a\ndata: {"x": 1}\n\nevent: b\ndata: not json\n\n: comment\n\n'
    events = parse_sse(raw.decode())
    assert events == [{"event": "a", "data": {"x": 1}}, {"event": "b", "data": "not json"}]
    assert parse_sse(sse_bytes(events).decode()) == events


def test_text_cut_inside_a_multibyte_character_stays_text():
    data = ("é" * 100).encode()  # 2 bytes a character; a stream copy is cut at a byte count
    body = make_body(data[:51], "text/plain", 51, size=len(data))
    assert body["truncated"] is True and body["text"] == "é" * 25 and body["size"] == 200
