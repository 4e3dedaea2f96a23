"""`inspector bisect` end to end against the test gateway: one rule at a time, each named within the bound.

GOOD is the demo's SDK run and BAD the demo's Claude Code run (tests/golden/captures), their key
replaced by a fresh fake one. BAD is first replayed to the gateway with `-o`, so it records the
gateway's own answer to Claude Code's request; then bisect must find what the rule blocks.
"""

from __future__ import annotations

import math

import pytest

from inspector.bisect import Probe, differences, find_culprits, requests_needed, scenario

from conftest import base_env
from test_replay import Gateway, Seen, api_error, demo_capture, gateway, html_403, inspector  # noqa: F401

RULES = {  # name -> (what the gateway blocks, what the culprit line must say, BAD's status)
    "header value": (lambda s: s.headers.get("x-app") == "cli" and html_403(),
                     'culprit: header x-app = "cli" (403 from nginx)', 403),
    "user-agent pattern": (lambda s: "claude-cli/" in s.headers.get("user-agent", "") and html_403("cloudflare"),
                           'culprit: header user-agent = "claude-cli/2.1.197 (external, sdk-cli)" (403 from cloudflare)',
                           403),
    "query parameter": (lambda s: s.query.get("beta") == ["true"] and api_error(400, "invalid_request_error"),
                        'culprit: query beta = "true" (400 from the API: invalid_request_error)', 400),
    "anthropic-beta value": (lambda s: "context-1m-2025-08-07" in s.betas and api_error(400, "invalid_request_error"),
                             "culprit: anthropic-beta context-1m-2025-08-07 added (400 from the API: "
                             "invalid_request_error)", 400),
    "body substring": (lambda s: b"x-anthropic-billing-header" in s.body and html_403("awselb"),
                       "culprit: body.system = list of 3 (6.7 KB) (403 from awselb)", 403),
    "body size": (lambda s: len(s.body) > 8192 and html_403(), "culprit: body size 104 → 86,071 bytes (403 from nginx)",
                  403),
    "auth header": (lambda s: "authorization" not in s.headers and api_error(401, "authentication_error"),
                    "culprit: auth header x-api-key instead of authorization: Bearer (401 from the API: "
                    "authentication_error)", 401),
}


def bound(n: int) -> int:
    return 2 * math.ceil(math.log2(n)) + 4


def bad_run(gw: Gateway, tmp_path, key: str):
    """The demo captures with `key`, and BAD replayed to the gateway so it holds the gateway's answer."""
    good = demo_capture("sdk", tmp_path / "sdk.yaml", key)
    agent = demo_capture("agent", tmp_path / "agent.yaml", key)
    bad = tmp_path / "bad.yaml"
    replayed = inspector("replay", str(agent), "--target", gw.url, "-o", str(bad), env=base_env(ANTHROPIC_API_KEY=key))
    assert replayed.returncode in (0, 1), replayed.stderr
    return good, bad, replayed.stdout


@pytest.mark.parametrize("rule", RULES)
def test_bisect_names_each_rules_culprit_within_the_bound(rule, gateway, key, tmp_path):
    blocks, culprit, status = RULES[rule]
    gw = gateway(key, blocks)
    good, bad, replayed = bad_run(gw, tmp_path, key)
    assert f"recorded 403 → new {status}" in replayed
    found = scenario(str(good), str(bad))
    n = len(differences(found.good_draft, found.bad_draft))
    gw.received.clear()
    proc = inspector("bisect", "--good", str(good), "--bad", str(bad), "--target", gw.url,
                     "--max-requests", str(bound(n)), env=base_env(ANTHROPIC_API_KEY=key))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith(f": {n} differences") and culprit in lines, proc.stdout
    assert lines[-1] == f"{len(gw.received)} requests sent"
    assert 0 < len(gw.received) <= bound(n), (n, len(gw.received))


def test_bisect_on_the_demo_finds_the_wafs_size_limit(upstream, key, tmp_path):
    """The demo scenario: the fake upstream's WAF refuses bodies over 8 KB, as BAD recorded."""
    waf = upstream(waf_max_body=8192)
    good, bad = (demo_capture(name, tmp_path / f"{name}.yaml", key) for name in ("sdk", "agent"))
    proc = inspector("bisect", "--good", str(good), "--bad", str(bad), "--target", waf.url,
                     env=base_env(ANTHROPIC_API_KEY=key))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first, culprit, threshold, sent = proc.stdout.splitlines()
    assert first.startswith("bisect: GOOD flow 1 (POST /v1/messages, 200) vs BAD flow 3 "
                            "(POST /v1/messages?beta=true, 403 from nginx):")
    assert culprit == "culprit: body size 104 → 86,071 bytes (403 from nginx)"
    assert threshold == "body size: fails above ~8,192 bytes"
    assert int(sent.split()[0]) <= 64


def test_bisect_finds_two_differences_that_only_fail_together(gateway, key, tmp_path):
    both = lambda s: s.headers.get("x-app") == "cli" and "claude-cli/" in s.headers.get("user-agent", "") \
        and html_403()  # noqa: E731
    gw = gateway(key, both)
    good, bad, _ = bad_run(gw, tmp_path, key)
    gw.received.clear()
    proc = inspector("bisect", "--good", str(good), "--bad", str(bad), "--target", gw.url,
                     env=base_env(ANTHROPIC_API_KEY=key))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'culprits: header user-agent = "claude-cli/2.1.197 (external, sdk-cli)" + header x-app = "cli" ' \
           "(403 from nginx)" in proc.stdout.splitlines()
    assert len(gw.received) <= 64 and proc.stdout.endswith(f"\n{len(gw.received)} requests sent\n")


def test_bisect_says_when_the_target_does_not_fail_like_bad(gateway, key, tmp_path):
    gw = gateway(key)  # lets everything through, while BAD recorded the WAF's 403
    good, bad = (demo_capture(name, tmp_path / f"{name}.yaml", key) for name in ("sdk", "agent"))
    proc = inspector("bisect", "--good", str(good), "--bad", str(bad), "--target", gw.url,
                     env=base_env(ANTHROPIC_API_KEY=key))
    assert proc.returncode == 1
    assert "no culprit: with all 31 differences applied, the target answers 200 from " in proc.stdout
    assert "not 403 from nginx as BAD recorded" in proc.stdout
    assert proc.stdout.endswith("\n2 requests sent\n") and len(gw.received) == 2


def test_bisect_without_the_key_says_what_to_set_and_sends_nothing(gateway, key, tmp_path):
    gw = gateway(key, RULES["body size"][0])
    good, bad = (demo_capture(name, tmp_path / f"{name}.yaml", key) for name in ("sdk", "agent"))
    proc = inspector("bisect", "--good", str(good), "--bad", str(bad), "--target", gw.url)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("inspector: error: no value for <redacted sha256:") and proc.stderr.count("\n") == 1
    assert "set ANTHROPIC_API_KEY" in proc.stderr
    assert gw.received == []


@pytest.mark.parametrize("n", [8, 32, 128])
def test_one_culprit_among_n_takes_at_most_the_bound(n):
    worst = max(requests_needed(n, i) for i in range(n))
    assert worst <= bound(n)


def test_the_search_never_asks_more_than_its_budget():
    probe = Probe(5)
    found = find_culprits(40, lambda chosen: {3, 31} <= chosen, probe)
    assert found.culprits is None and found.verdict == "out-of-requests" and probe.count == 5
    probe = Probe(64)
    assert find_culprits(40, lambda chosen: {3, 31} <= chosen, probe).culprits == [3, 31]
