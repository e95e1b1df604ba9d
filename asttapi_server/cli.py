"""``asttapi``: try the server from a terminal, and dial the links you click.

    asttapi watch line_1                 print line_1's events as they happen
    asttapi dial line_1 0301234567       ring line_1's phone, then dial the number
    asttapi dial tel:+49-30-1234567      the same for a tel: or callto: link, on your line
    asttapi calls line_1                 list line_1's current calls

Connection options: ``--host``, ``--port``, ``--tls`` (``--cafile``,
``--insecure``), ``--user`` and ``--token`` (or the environment variables
ASTTAPI_USER and ASTTAPI_TOKEN, which keep the token out of ``ps``). The
same settings, and ``line`` (which line ``dial`` uses without one), may sit in
a client settings file (:func:`client_config_path`; ``--config``), which is
what a desktop's ``tel:`` handler needs: it runs ``asttapi dial URI`` with
nothing else. The server turns the number into what the line dials (its
``[dial]`` rule: outside-line prefix, national form); ``dial`` prints both.

Exit status: 0 done; 1 the server refused the request; 2 no server (or a
login is needed); 3 the server runs but has no link to the PBX, so what it
would say about calls is not true (``calls``, ``dial``). Errors are one line
in plain words, never the protocol's TAPI names alone. Output that nobody
reads any more (``asttapi watch line_1 | head -1``) ends the command quietly
with status 0, as it does other Unix tools; only a lost server connection
makes ``watch`` reconnect.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, TextIO

from asttapi_server.rpc_client import Client, ClientError, ConnectionClosed, RemoteError

_PREFIXES = ("LINECALLSTATE_", "LINECALLINFOSTATE_", "LINEDEVSTATE_", "LINEDISCONNECTMODE_",
             "LINECONNECTEDMODE_", "LINEOFFERINGMODE_", "LINECALLORIGIN_")


def _short(name: Any) -> str:
    text = str(name)
    for p in _PREFIXES:
        if text.startswith(p):
            return text[len(p):]
    return text


_DEVSTATE_WORDS = {"LINEDEVSTATE_OUTOFSERVICE": " (the PBX is not connected)",
                   "LINEDEVSTATE_INSERVICE": " (the PBX is connected)"}

#: Exit status when the server has no PBX link (see the module docstring).
PBX_DOWN = 3
PBX_DOWN_TEXT = "the PBX is not connected (asttapi-server has no link to Asterisk)"


class PBXDown(ClientError):
    """The server answered, but it has no PBX link."""


class OutputClosed(Exception):
    """Whoever read our output has gone (EPIPE): not a server problem, so never a reconnect."""


def _say(out: TextIO, text: str) -> None:
    """One line to ``out``, at once (a pipe's reader sees each event as it happens)."""
    try:
        print(text, file=out)
        out.flush()
    except BrokenPipeError:
        raise OutputClosed() from None


def _party(number: Any, name: Any) -> str:
    if not number and not name:
        return "?"
    return f"{number or ''}{f' ({name})' if name else ''}".strip()


def _call_parties(ci: dict) -> list[str]:
    """``["from A to B", "connected C"]``, leaving out who is not known (yet)."""
    ends = []
    if ci.get("callerid") or ci.get("calleridname"):
        ends.append(f"from {_party(ci.get('callerid'), ci.get('calleridname'))}")
    if ci.get("calledid") or ci.get("calledidname"):
        ends.append(f"to {_party(ci.get('calledid'), ci.get('calledidname'))}")
    parts = [" ".join(ends)] if ends else []
    if ci.get("connectedid") or ci.get("connectedidname"):
        parts.append(f"connected {_party(ci.get('connectedid'), ci.get('connectedidname'))}")
    return parts


def format_event(ev: dict) -> str:
    """One readable line for a notification."""
    p = ev.get("params", {})
    method = str(ev.get("method", "?"))
    stamp = time.strftime("%H:%M:%S")
    call = f"#{p['call']}" if "call" in p else "-"
    what = method.removeprefix("LINE_")
    detail = ""
    if "state" in p:
        detail = _short(p["state"])
    elif "infostate" in p:
        detail = _short(p["infostate"])
    elif "devstate" in p:
        detail = _short(p["devstate"]) + _DEVSTATE_WORDS.get(p["devstate"], "")
    if p.get("mode"):
        detail += f" ({_short(p['mode'])})"
    ci = p.get("callinfo") or {}
    if method in ("LINE_NEWCALL", "LINE_CALLINFO") or detail.startswith("OFFERING"):
        parts = _call_parties(ci)
        if ci.get("origin") and ci["origin"] != "LINECALLORIGIN_UNKNOWN":
            parts.append(_short(ci["origin"]).lower())
        if ci.get("contact"):
            contact = ci["contact"]
            parts.append(f"contact {contact.get('name', contact) if isinstance(contact, dict) else contact}")
        if parts:
            detail = (detail + "  " if detail else "") + ", ".join(parts)
    flags = " (synthetic)" if p.get("synthetic") else ""
    if p.get("replayed"):
        flags += " (replayed)"
    return f"{stamp}  {p.get('line', '?')}  {call:>6}  {what:<12} {detail}{flags}  [seq {p.get('seq', '?')}]"


#: Environment variable naming the client settings file (wins over the default place).
CLIENT_CONFIG_ENV = "ASTTAPI_CLIENT_CONFIG"
#: Keys of the client settings file and their types; each is the option of the same name.
CLIENT_KEYS: dict[str, tuple[type, ...]] = {
    "host": (str,), "port": (int,), "tls": (bool,), "cafile": (str,), "insecure": (bool,),
    "user": (str,), "token_file": (str,), "line": (str,), "timeout": (int, float),
}


def client_config_path(environ: Any = None, platform: str | None = None, home: Path | None = None) -> Path:
    """Where the client settings live: ``$ASTTAPI_CLIENT_CONFIG``, else ``asttapi/client.toml`` in the
    platform's settings folder (XDG ``~/.config``, macOS ``~/Library/Application Support``,
    Windows ``%APPDATA%``)."""
    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    home = home or Path.home()
    if environ.get(CLIENT_CONFIG_ENV):
        return Path(environ[CLIENT_CONFIG_ENV])
    if platform == "win32":
        base = Path(environ.get("APPDATA") or home / "AppData" / "Roaming")
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    return base / "asttapi" / "client.toml"


def load_client_config(path: Path, *, required: bool) -> dict[str, Any]:
    """The settings in ``path`` (a missing file is none, unless ``required``); ClientError names a bad key."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if required:
            raise ClientError(f"client settings {str(path)!r} do not exist") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ClientError(f"client settings {str(path)!r}: cannot read them: {e}") from None
    for key, value in data.items():
        kinds = CLIENT_KEYS.get(key)
        if kinds is None:
            raise ClientError(f"client settings {str(path)!r}: unknown key {key!r} "
                              f"(expected one of: {', '.join(CLIENT_KEYS)})")
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ClientError(f"client settings {str(path)!r}: key {key!r}: expected "
                              f"{' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}")
    if "token_file" in data:
        data["token_file"] = str(Path(path).parent / Path(data["token_file"]).expanduser())
    return data


def _parser(defaults: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    d = defaults or {}
    ap = argparse.ArgumentParser(
        prog="asttapi", description="Talk to an asttapi-server from the terminal.",
        epilog="Exit status: 0 done; 1 the server refused the request; 2 no server, or a login is needed; "
               "3 the server has no link to the PBX (calls, dial).")
    ap.add_argument("--config", help=f"client settings file (default ${CLIENT_CONFIG_ENV}, else "
                                     f"{client_config_path()})")
    ap.add_argument("--host", default=d.get("host", "127.0.0.1"), help="server address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=d.get("port", 5039), help="server port (default 5039)")
    ap.add_argument("--user", default=os.environ.get("ASTTAPI_USER", d.get("user")), help="user name (or $ASTTAPI_USER)")
    ap.add_argument("--token", default=None, help="token (better: $ASTTAPI_TOKEN, or token_file in the settings)")
    ap.add_argument("--tls", action="store_true", default=d.get("tls", False),
                    help="connect with TLS (server listens on an ssl: endpoint)")
    ap.add_argument("--cafile", default=d.get("cafile"), help="CA or self-signed certificate to trust for --tls")
    ap.add_argument("--insecure", action="store_true", default=d.get("insecure", False),
                    help="with --tls: do not check the certificate")
    ap.add_argument("--timeout", type=float, default=float(d.get("timeout", 10.0)),
                    help="seconds to wait for an answer (default 10)")
    ap.set_defaults(token_file=d.get("token_file"), default_line=d.get("line"))
    sub = ap.add_subparsers(dest="command", required=True)
    w = sub.add_parser("watch", help="print the events of one or more lines")
    w.add_argument("lines", nargs="+", metavar="LINE")
    w.add_argument("--json", action="store_true", help="print the raw JSON notifications")
    w.add_argument("--count", type=int, help="exit after this many events")
    w.add_argument("--no-reconnect", action="store_true", help="exit when the connection drops")
    dp = sub.add_parser(
        "dial", help="place a call: ring LINE's phone, then dial NUMBER (a number, tel: or callto: link)",
        description="Ring LINE's phone, then dial NUMBER from it. NUMBER may be written anyhow "
                    "(+49 30 1234567, 0301234567, 201) or be a tel: (RFC 3966) or callto: link; the "
                    "server's [dial] rule turns it into what the line dials. Without LINE: --line, "
                    "$ASTTAPI_LINE or `line` in the client settings.")
    dp.add_argument("words", nargs="+", metavar="[LINE] NUMBER")
    dp.add_argument("--line", help="the line to dial from when LINE is not given")
    dp.add_argument("--follow", action="store_true", help="print the call's progress until it ends")
    dp.add_argument("--notify", action="store_true",
                    help="also show the outcome as a desktop notification (for tel: handlers, which have no terminal)")
    c = sub.add_parser("calls", help="list a line's current calls")
    c.add_argument("line", metavar="LINE")
    r = sub.add_parser("reload", help="make the server re-read its configuration file (sends it SIGHUP)")
    r.add_argument("--pidfile", default="twistd.pid",
                   help="the server's pidfile (twistd's --pidfile; default twistd.pid)")
    return ap


def _reload(args: argparse.Namespace, out: TextIO) -> int:
    """SIGHUP to the pid in ``--pidfile``; the server logs whether it took the new file."""
    try:
        with open(args.pidfile, encoding="ascii") as f:
            pid = int(f.read().strip())
    except FileNotFoundError:
        raise ClientError(f"no pidfile {args.pidfile!r} (give the server's --pidfile, or use "
                          "`systemctl reload asttapi` under systemd)") from None
    except ValueError:
        raise ClientError(f"{args.pidfile!r} does not hold a process id") from None
    os.kill(pid, signal.SIGHUP)
    print(f"asked process {pid} to reload its configuration; its log says whether the new file was taken",
          file=out)
    return 0


def _connect(args: argparse.Namespace) -> Client:
    try:
        client = Client(args.host, args.port, tls=args.tls, cafile=args.cafile, verify=not args.insecure,
                        timeout=args.timeout)
    except ConnectionRefusedError:
        raise ClientError(f"no asttapi-server at {args.host}:{args.port} (connection refused; is it running?)") \
            from None
    token = args.token if args.token is not None else os.environ.get("ASTTAPI_TOKEN")
    if token is None and args.token_file:
        token = _read_token(args.token_file)
    if client.hello.get("login_required"):
        if not args.user or token is None:
            client.close()
            raise ClientError("this server needs a login: pass --user and --token (or $ASTTAPI_TOKEN)")
        client.login(args.user, token)
    return client


def _read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ClientError(f"cannot read token_file {path!r}: {e.strerror or e}") from None
    if os.name == "posix" and Path(path).stat().st_mode & 0o077:
        print(f"asttapi: warning: {path} can be read by other users (chmod 600 {path})", file=sys.stderr)
    return token


def _watch(args: argparse.Namespace, out: TextIO) -> int:
    seen = 0
    resume: dict[str, Any] = {}
    opened: set[str] = set()  # lines opened on an earlier connection: those are reopened
    while True:
        try:
            client = _connect(args)
        except (OSError, ConnectionClosed) as e:
            if args.no_reconnect or not resume:
                raise
            print(f"-- cannot reconnect ({e}); retrying", file=sys.stderr)
            time.sleep(2)
            continue
        try:
            earlier = set(opened)
            for line in args.lines:
                if line in earlier:
                    r = client.line_open(line, resume["seq"], resume["epoch"])
                    note = (f"replaying {r.get('replayed', 0)} missed events" if r.get("replay") == "ok"
                            else "missed events are gone; current calls follow")
                    _say(out, f"-- reopened {line}: {note}")
                    if r.get("replay") == "gap":
                        _print_calls(r["calls"], out)
                else:
                    r = client.line_open(line)
                    down = "; " + PBX_DOWN_TEXT + ": events follow when it is back" \
                        if client.pbx_connected is False else ""
                    _say(out, f"-- watching {line} ({len(r['calls'])} calls now{down})")
                    _print_calls(r["calls"], out)
                opened.add(line)
                resume = {"seq": max(resume.get("seq", 0), r["seq"]), "epoch": r["epoch"]}
            for ev in client.events():
                _say(out, json.dumps(ev, ensure_ascii=False) if args.json else format_event(ev))
                if isinstance(ev.get("params", {}).get("seq"), int):
                    resume["seq"] = max(resume["seq"], ev["params"]["seq"])
                seen += 1
                if args.count is not None and seen >= args.count:
                    return 0
        except (OSError, ConnectionClosed) as e:
            if args.no_reconnect:
                raise
            print(f"-- connection lost ({e}); reconnecting", file=sys.stderr)
            time.sleep(1)
        finally:
            client.close()


def _print_calls(calls: list[dict], out: TextIO) -> None:
    for call in calls:
        ci = call.get("callinfo") or {}
        parties = ", ".join(_call_parties(ci)) or "number not known yet"
        _say(out, f"   #{call.get('call')}  {_short(call.get('state', '?'))}  {parties}")


def _line_and_number(args: argparse.Namespace) -> tuple[str, str]:
    """``dial LINE NUMBER`` or ``dial NUMBER`` with the line from --line, $ASTTAPI_LINE or the settings."""
    if len(args.words) > 2:
        raise ClientError("dial takes [LINE] NUMBER; write a number with spaces in quotes")
    if len(args.words) == 2:
        return args.words[0], args.words[1]
    line = args.line or os.environ.get("ASTTAPI_LINE") or args.default_line
    if not line:
        raise ClientError(f"which line? give it (dial LINE NUMBER), or --line, $ASTTAPI_LINE or "
                          f"line = \"...\" in {args.config or client_config_path()}")
    return line, args.words[0]


def _dial(args: argparse.Namespace, out: TextIO) -> int:
    line, number = _line_and_number(args)
    with _connect(args) as client:
        client.line_open(line)
        if client.pbx_connected is False:
            raise PBXDown(f"{PBX_DOWN_TEXT}; no call placed, try again when it is back")
        try:
            handle = client.make_call(line, number)
        except RemoteError as e:
            if e.lineerr == "LINEERR_DISCONNECTED":  # the link went down meanwhile
                raise PBXDown(f"{PBX_DOWN_TEXT}; no call placed, try again when it is back") from None
            raise
        dialled = _dialled(client, handle)
        same = dialled is None or dialled == "".join(c for c in number if c not in " ().-")
        what = number if same else f"{number}: dialling {dialled}"
        args.outcome = f"call #{handle} placed on {line} to {what}"
        _say(out, args.outcome)
        if not args.follow:
            return 0
        for ev in client.events():
            p = ev.get("params", {})
            if p.get("call") != handle:
                continue
            _say(out, format_event(ev))
            if p.get("state") == "LINECALLSTATE_IDLE":
                return 0
    return 0


def _dialled(client: Client, handle: int) -> str | None:
    """What the line dials for the call (the server's dial rule applied), if the server says."""
    try:
        info = client.line_get_call_info(handle)
    except (RemoteError, OSError, ConnectionClosed):
        return None
    called = (info.get("callinfo") or {}).get("calledid") if isinstance(info, dict) else None
    return called if isinstance(called, str) else None


def notify(text: str, *, failed: bool, platform: str | None = None) -> None:
    """Show ``text`` on the desktop: notify-send (Linux, BSD), osascript (macOS), a message box for a
    failure on Windows. Best effort: a desktop without a notifier only misses the message."""
    platform = platform or sys.platform
    try:
        if platform == "win32":
            if failed:
                import ctypes

                ctypes.windll.user32.MessageBoxW(None, text, "asttapi dial", 0x10)  # type: ignore[attr-defined]
        elif platform == "darwin":
            quoted = text.replace("\\", "\\\\").replace('"', '\\"')
            subprocess.run(["osascript", "-e", f'display notification "{quoted}" with title "asttapi dial"'],
                           timeout=10, check=False, capture_output=True)
        elif shutil.which("notify-send"):
            subprocess.run(["notify-send", "--app-name=asttapi", "--urgency=" + ("critical" if failed else "normal"),
                            "asttapi dial", text], timeout=10, check=False, capture_output=True)
    except (OSError, subprocess.SubprocessError, AttributeError):
        pass


def _calls(args: argparse.Namespace, out: TextIO) -> int:
    with _connect(args) as client:
        calls = client.line_open(args.line)["calls"]
        if client.pbx_connected is False:
            # "no calls" would be a guess: the server cannot see the PBX.
            known = f"; as last seen before the link went down: {len(calls)} call(s)" if calls else ""
            print(f"asttapi: {PBX_DOWN_TEXT}, so {args.line}'s calls are unknown{known}", file=sys.stderr)
            _print_calls(calls, out)
            return PBX_DOWN
        if not calls:
            _say(out, f"no calls on {args.line}")
        _print_calls(calls, out)
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``asttapi`` command; returns the exit status."""
    out = out or sys.stdout
    first, _ = _parser().parse_known_args(argv)
    try:
        settings = load_client_config(Path(first.config) if first.config else client_config_path(),
                                      required=bool(first.config))
    except ClientError as e:
        print(f"asttapi: {e}", file=sys.stderr)
        return 2
    args = _parser(settings).parse_args(argv)
    args.outcome = None
    status, error = _run(args, out)
    if getattr(args, "notify", False):
        notify(args.outcome or error or "done", failed=status != 0)
    return status


def _run(args: argparse.Namespace, out: TextIO) -> tuple[int, str | None]:
    """The command's exit status and, when it failed, the line printed about it."""
    try:
        if args.command == "watch":
            return _watch(args, out), None
        if args.command == "dial":
            return _dial(args, out), None
        if args.command == "reload":
            return _reload(args, out), None
        return _calls(args, out), None
    except PBXDown as e:
        status, text = PBX_DOWN, str(e)
    except RemoteError as e:
        status, text = 1, str(e)
    except (ClientError, OSError) as e:
        status, text = 2, str(e or type(e).__name__)
    except OutputClosed:
        _drop_stdout(out)
        return 0, None
    except KeyboardInterrupt:
        return 130, None
    print(f"asttapi: {text}", file=sys.stderr)
    return status, text


def _drop_stdout(out: TextIO) -> None:
    """Point our closed stdout at /dev/null, so Python's flush at exit finds no pipe to complain about."""
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's StringIO)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
