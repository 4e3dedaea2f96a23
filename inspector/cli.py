"""The command line: parse, call the library, return an exit code."""

from __future__ import annotations

import functools
import os
import sys

import click

from . import __version__
from .model import InspectorError

EXIT_ERROR = 2


def fail(message: str, code: int = EXIT_ERROR):
    click.echo(f"inspector: error: {message}", err=True)
    sys.exit(code)


def one_line_errors(default_code: int = EXIT_ERROR):
    """Turn InspectorError and Ctrl-C into a one-line message and an exit code, never a traceback."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except InspectorError as e:
                fail(str(e), e.exit_code if e.exit_code is not None else default_code)
            except KeyboardInterrupt:
                fail("interrupted", 130)

        return inner

    return wrap


def serve_until_interrupted(server, announcement: str) -> None:
    """Say where the server listens (scripts read this line), then serve until Ctrl-C."""
    click.echo(announcement)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


class Size(click.ParamType):
    name = "size"
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().removesuffix("b").removesuffix("i")
        unit = text[-1:] if text[-1:] in self.units else ""
        try:
            return int(float(text[: len(text) - len(unit)]) * self.units[unit])
        except ValueError:
            self.fail(f"{value!r} is not a size; use e.g. 1048576, 512k or 1m", param, ctx)


class OneLineUsage(click.Group):
    """Click's usage errors (a bad option, a missing argument) in inspector's one line, exit 2."""

    def main(self, *args, **kwargs):
        try:
            code = super().main(*args, **kwargs, standalone_mode=False)
        except click.exceptions.NoArgsIsHelpError as e:  # `inspector` alone: the help, as click shows it
            e.show()
            sys.exit(e.exit_code)
        except click.ClickException as e:
            where = e.ctx.command_path if getattr(e, "ctx", None) else "inspector"
            fail(f"{e.format_message().rstrip('.')}; see `{where} --help`", e.exit_code)
        except click.Abort:
            fail("interrupted", 130)
        sys.exit(code if isinstance(code, int) else 0)  # an int here is the code of --help or --version


@click.group(cls=OneLineUsage,
             context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "INSPECTOR"})
@click.version_option(__version__, prog_name="inspector")
def main():
    """Record, flag, diff and replay the HTTP(S) traffic of another program.

    Every option can also be set in the environment as INSPECTOR_<COMMAND>_<OPTION>,
    e.g. INSPECTOR_RECORD_OFFLINE=1 or INSPECTOR_PROXY_START_BASE_URL=https://gateway.example.
    """


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--base-url", metavar="URL",
              help="The base URL the command should talk to. Default: the command's ANTHROPIC_BASE_URL.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="FILE",
              help="Capture file. Default: captures/<UTC timestamp>-<command>.yaml.")
@click.option("--offline", is_flag=True,
              help="Never dial a host that is not loopback; answer it locally with a synthetic 502.")
@click.option("--body-limit", type=Size(), default="1m", show_default=True,
              help="Truncate bodies above this size (the full size and sha256 are kept).")
@click.option("--no-redact", is_flag=True, help="Keep secrets in the capture. Unsafe to share; prints a warning.")
@click.option("--bypass-detection", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Trace the command's TCP connections (strace) and flag those that skip the proxy. "
                   "auto: when strace works here; on: fail if it does not.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@one_line_errors(default_code=125)
def record(base_url, output, offline, body_limit, no_redact, bypass_detection, command):
    """Run COMMAND behind an embedded mitmproxy and write a flagged, redacted capture.

    \b
    Example:
      inspector record -- claude -p "hi"
    Exit code: the command's own; 125 if inspector failed, 126/127 if the command
    cannot run or was not found.
    """
    from .record import RecordOptions
    from .record import record as run_record

    if no_redact:
        click.echo("inspector: warning: --no-redact: the capture will hold secrets in clear text; "
                   "do not share it", err=True)
    opts = RecordOptions(command=command, base_url=base_url, output=output, offline=offline,
                         body_limit=body_limit, redact=not no_redact, bypass_detection=bypass_detection,
                         env=dict(os.environ))
    sys.exit(run_record(opts))


@main.command()
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--fail-on", type=click.Choice(["info", "warning", "error"]), default="warning", show_default=True,
              help="Lowest flag severity that fails the check.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST",
              help="A host that may be called besides the base URL (silences off-base-host and credential-leak "
                   "for it). Repeatable; HOST or HOST:PORT.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
@one_line_errors()
def check(capture, fail_on, allow_hosts, fmt):
    """Exit 1 if CAPTURE has flags at or above --fail-on (after --allow-host), else 0; print why."""
    from . import check as gate
    from .serialize import load_capture

    cap = load_capture(capture)
    found = gate.findings(cap, fail_on, allow_hosts)
    out = gate.render_json(capture, found, fail_on) if fmt == "json" else gate.render_text(capture, cap, found, fail_on)
    click.echo(out, nl=False)
    sys.exit(1 if found else 0)


@main.group()
def proxy():
    """Record as a background session that other processes join through their environment."""


state_dir_option = click.option("--state-dir", type=click.Path(file_okay=False), metavar="DIR",
                                help="Where the session keeps its state; one session per directory. "
                                     "Default: $INSPECTOR_STATE_DIR, else ~/.local/state/inspector.")


@proxy.command("start")
@state_dir_option
@click.option("--base-url", metavar="URL", help="The base URL clients should talk to. Default: $ANTHROPIC_BASE_URL.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="FILE",
              help="Capture file. Default: captures/<UTC timestamp>-session.yaml.")
@click.option("--offline", is_flag=True, help="Never dial a host that is not loopback (as for record).")
@click.option("--body-limit", type=Size(), default="1m", show_default=True, help="Truncate bodies above this size.")
@click.option("--no-redact", is_flag=True, help="Keep secrets in the capture. Unsafe to share; prints a warning.")
@click.option("--env-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Append the environment as KEY=VALUE lines to FILE (e.g. \"$GITHUB_ENV\") instead of "
                   "printing export lines.")
@one_line_errors()
def proxy_start(state_dir, base_url, output, offline, body_limit, no_redact, env_file):
    """Start recording in the background; print the environment other processes need."""
    from . import session

    if no_redact:
        click.echo("inspector: warning: --no-redact: the capture will hold secrets in clear text", err=True)
    info = session.start(session.state_dir(state_dir), base_url, output, offline, body_limit, not no_redact,
                         dict(os.environ))
    if env_file:
        with open(env_file, "a", encoding="utf-8") as fh:
            fh.write(session.env_lines(info["env"], shell=False))
    else:
        click.echo(session.env_lines(info["env"], shell=True), nl=False)
    click.echo(f"inspector: session started (pid {info['pid']}); capture: {info['output']}", err=True)


@proxy.command("stop")
@state_dir_option
@one_line_errors()
def proxy_stop(state_dir):
    """Stop the session, finish its capture and print the summary."""
    from . import session

    click.echo(session.stop(session.state_dir(state_dir)), err=True)


@proxy.command("status")
@state_dir_option
@one_line_errors()
def proxy_status(state_dir):
    """Show the session's flows and flags so far; exit 1 if none is running."""
    from . import session

    line, running = session.status(session.state_dir(state_dir))
    click.echo(line)
    sys.exit(0 if running else 1)


@main.command()
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["markdown", "har", "mitm"]), default="markdown",
              show_default=True, help="markdown: a bug report to paste into an issue; har: HAR 1.2 for browser "
                                      "devtools; mitm: a mitmproxy flow file for `mitmweb -r`.")
@click.option("-o", "--output", metavar="FILE",
              help="Where to write ('-' is stdout). Default: stdout for markdown; CAPTURE with a .har or .mitm "
                   "suffix, next to it, for the others.")
@one_line_errors()
def report(capture, fmt, output):
    """Turn CAPTURE into a redacted bug report, a HAR file or a mitmproxy flow file."""
    from . import report as reports
    from .serialize import load_capture

    cap = load_capture(capture)
    if cap.meta.get("redacted") is False:
        click.echo(f"inspector: warning: {capture} was recorded with --no-redact; the report hides key-shaped "
                   "values and the secrets in its meta.env, but read it before you share it", err=True)
    data = reports.render(cap, fmt, source=capture)
    target = reports.default_output(capture, fmt, output)
    if target is None:
        if fmt == "mitm" and sys.stdout.isatty():
            raise InspectorError("a mitmproxy flow file is binary; write it with -o FILE, or redirect stdout")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        try:
            reports.write_private(target, data)
        except OSError as e:
            raise InspectorError(f"cannot write {target}: {e.strerror}") from None
        opens = {"har": "import it in browser devtools (Network tab)", "mitm": f"open it with: mitmweb -r {target}",
                 "markdown": "paste it into the issue"}[fmt]
        click.echo(f"inspector: wrote {target} ({len(cap.flows)} flows); {opens}", err=True)
    if fmt == "markdown" and len(data.decode()) > reports.GITHUB_ISSUE_LIMIT:
        click.echo(f"inspector: note: the report has {len(data.decode()):,} characters and a GitHub issue takes "
                   f"{reports.GITHUB_ISSUE_LIMIT:,}; attach it, or the .har, as a file instead", err=True)


auth_env_option = click.option(
    "--auth-env", "auth_env", multiple=True, metavar="VAR",
    help="A variable holding a recorded key, used where a placeholder's fingerprint matches its value "
         "(besides the variable its from= names). SOURCE=VAR sends VAR's key where the capture has one from "
         "SOURCE, even another key. Repeatable.")


@main.command("replay")
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--target", required=True, metavar="URL", help="Where to send the requests, e.g. http://127.0.0.1:8765.")
@click.option("--flows", metavar="IDS", help="Flow ids to replay, e.g. 3 or 1,4-6. Default: every call to the "
                                             "capture's base URL.")
@auth_env_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="NEW_CAPTURE",
              help="Write the new run as a capture (redacted, flagged).")
@one_line_errors()
def replay_command(capture, target, flows, auth_env, output):
    """Send CAPTURE's requests again to --target, with the recorded credentials refilled from the environment.

    \b
    Example:
      inspector replay captures/agent.yaml --target http://127.0.0.1:8765
    Prints METHOD PATH recorded STATUS → new STATUS for each request.
    Exit code: 0 every status is the recorded one, 1 one differs, 2 error.
    """
    from .replay import replay

    sys.exit(replay(capture, target, flows, auth_env, dict(os.environ), output, sys.stdout,
                    command=["inspector", *sys.argv[1:]]))


@main.command("serve")
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--port", type=int, default=8766, show_default=True, help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--match-on", default="method,path,query", show_default=True, metavar="FIELDS",
              help="Comma-separated fields a request must share with a recorded one: method, path, query, host, "
                   "user_agent, anthropic_beta, body.")
@one_line_errors()
def serve_command(capture, port, match_on):
    """Answer requests from CAPTURE's recorded responses, offline; SSE events are sent in recorded order.

    \b
    Example:
      inspector serve captures/agent.yaml --port 8766
      ANTHROPIC_BASE_URL=http://127.0.0.1:8766 claude -p hi
    A request that matches nothing gets a 404 JSON saying which fields differ from the closest recorded one.
    """
    from .serve import ServeCapture, parse_match_on

    server = ServeCapture(capture, port, parse_match_on(match_on), dict(os.environ),
                          log=lambda line: click.echo(f"inspector serve: {line}", err=True))
    serve_until_interrupted(server, f"serving {capture} on {server.url}")


@main.command("bisect")
@click.option("--good", required=True, type=click.Path(dir_okay=False), metavar="GOOD", help="A capture that works.")
@click.option("--bad", required=True, type=click.Path(dir_okay=False), metavar="BAD", help="A capture that fails.")
@click.option("--target", required=True, metavar="URL", help="Where to send the test requests.")
@auth_env_option
@click.option("--max-requests", type=int, default=64, show_default=True, help="Never send more requests than this.")
@one_line_errors()
def bisect_command(good, bad, target, auth_env, max_requests):
    """Find the smallest difference that makes GOOD's request fail like BAD's, by sending variants to --target.

    \b
    Example:
      inspector bisect --good captures/sdk.yaml --bad captures/agent.yaml --target http://127.0.0.1:8765
    Exit code: 0 a culprit was found, 1 none was, 2 error.
    """
    from .bisect import bisect

    sys.exit(bisect(good, bad, target, auth_env, dict(os.environ), max_requests, sys.stdout))


@main.command("fake-upstream")
@click.option("--port", type=int, default=8765, show_default=True, help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--require-auth", type=click.Choice(["any", "bearer", "x-api-key", "none"]), default="any",
              show_default=True, help="Which credential header /v1/* requires.")
@click.option("--key", metavar="K", help="Accept only this key (default: any non-empty one).")
@click.option("--waf-max-body", type=Size(), metavar="SIZE",
              help="Play a WAF in front of the API: bodies larger than SIZE get nginx's HTML 403.")
@click.option("--pause-after-first-event", type=float, default=0.0, metavar="SECONDS",
              help="In SSE replies, pause this long after the first event.")
@one_line_errors()
def fake_upstream(port, require_auth, key, waf_max_body, pause_after_first_event):
    """Serve a local Anthropic-compatible API: /v1/messages (JSON and SSE), count_tokens, /v1/models, HEAD /."""
    from .fake_upstream import FakeUpstream, UpstreamConfig

    server = FakeUpstream(UpstreamConfig(port, require_auth, key, waf_max_body, pause_after_first_event))
    serve_until_interrupted(server, f"fake upstream listening on {server.url}")


@main.command("diff")
@click.argument("base", metavar="BASE")
@click.argument("other", metavar="OTHER")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="text for a terminal, markdown for a GitHub issue, json for scripts.")
@click.option("--ignore-header", "ignore_headers", multiple=True, metavar="NAME",
              help="Do not compare this request header (repeatable); per-run ids and dates are ignored already.")
@click.option("--bodies", type=click.Choice(["summary", "full"]), default="summary", show_default=True,
              help="summary: long text and prompts by size and sha256; full: changed body values in full.")
@click.option("--color/--no-color", default=None, help="Colour the text output. Default: only on a terminal.")
@one_line_errors()
def diff(base, other, fmt, ignore_headers, bodies, color):
    """Compare two captures; the first lines rank what could explain why one run failed.

    \b
    Example:
      inspector diff captures/sdk.yaml captures/agent.yaml
    Exit code: 0 no meaningful difference, 1 differences, 2 error.
    """
    from .diff import DiffOptions, diff_files
    from .diff_render import render

    opts = DiffOptions(ignore_headers=frozenset(h.lower() for h in ignore_headers), bodies=bodies)
    report = diff_files(base, other, opts)
    colour = sys.stdout.isatty() if color is None else color
    click.echo(render(report, fmt, color=colour and fmt == "text"), nl=False, color=colour)
    sys.exit(1 if report["different"] else 0)
