"""``asttapi``: try the server from a terminal.

    asttapi watch line_1                 print line_1's events as they happen
    asttapi dial line_1 0301234567       ring line_1's phone, then dial the number
    asttapi calls line_1                 list line_1's current calls

Connection options: ``--host``, ``--port``, ``--tls`` (``--cafile``,
``--insecure``), ``--user`` and ``--token`` (or the environment variables
ASTTAPI_USER and ASTTAPI_TOKEN, which keep the token out of ``ps``).

Exit status: 0 done; 1 the server refused the request; 2 no server (or a
login is needed); 3 the server runs but has no link to the PBX, so what it
would say about calls is not true (``calls``, ``dial``). Errors are one line
in plain words, never the protocol's TAPI names alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
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


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="asttapi", description="Talk to an asttapi-server from the terminal.",
        epilog="Exit status: 0 done; 1 the server refused the request; 2 no server, or a login is needed; "
               "3 the server has no link to the PBX (calls, dial).")
    ap.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=5039, help="server port (default 5039)")
    ap.add_argument("--user", default=os.environ.get("ASTTAPI_USER"), help="user name (or $ASTTAPI_USER)")
    ap.add_argument("--token", default=None, help="token (better: $ASTTAPI_TOKEN)")
    ap.add_argument("--tls", action="store_true", help="connect with TLS (server listens on an ssl: endpoint)")
    ap.add_argument("--cafile", help="CA or self-signed certificate to trust for --tls")
    ap.add_argument("--insecure", action="store_true", help="with --tls: do not check the certificate")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer (default 10)")
    sub = ap.add_subparsers(dest="command", required=True)
    w = sub.add_parser("watch", help="print the events of one or more lines")
    w.add_argument("lines", nargs="+", metavar="LINE")
    w.add_argument("--json", action="store_true", help="print the raw JSON notifications")
    w.add_argument("--count", type=int, help="exit after this many events")
    w.add_argument("--no-reconnect", action="store_true", help="exit when the connection drops")
    d = sub.add_parser("dial", help="place a call: ring LINE's phone, then dial NUMBER")
    d.add_argument("line", metavar="LINE")
    d.add_argument("number", metavar="NUMBER")
    d.add_argument("--follow", action="store_true", help="print the call's progress until it ends")
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
    if client.hello.get("login_required"):
        if not args.user or token is None:
            client.close()
            raise ClientError("this server needs a login: pass --user and --token (or $ASTTAPI_TOKEN)")
        client.login(args.user, token)
    return client


def _watch(args: argparse.Namespace, out: TextIO) -> int:
    seen = 0
    resume: dict[str, Any] = {}
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
            for line in args.lines:
                if resume:
                    r = client.line_open(line, resume["seq"], resume["epoch"])
                    note = (f"replaying {r.get('replayed', 0)} missed events" if r.get("replay") == "ok"
                            else "missed events are gone; current calls follow")
                    print(f"-- reopened {line}: {note}", file=out)
                    if r.get("replay") == "gap":
                        _print_calls(r["calls"], out)
                else:
                    r = client.line_open(line)
                    down = "; " + PBX_DOWN_TEXT + ": events follow when it is back" \
                        if client.pbx_connected is False else ""
                    print(f"-- watching {line} ({len(r['calls'])} calls now{down})", file=out)
                    _print_calls(r["calls"], out)
                resume = {"seq": max(resume.get("seq", 0), r["seq"]), "epoch": r["epoch"]}
            out.flush()
            for ev in client.events():
                print(json.dumps(ev, ensure_ascii=False) if args.json else format_event(ev), file=out)
                out.flush()
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
        print(f"   #{call.get('call')}  {_short(call.get('state', '?'))}  {parties}", file=out)


def _dial(args: argparse.Namespace, out: TextIO) -> int:
    with _connect(args) as client:
        client.line_open(args.line)
        if client.pbx_connected is False:
            raise PBXDown(f"{PBX_DOWN_TEXT}; no call placed, try again when it is back")
        try:
            handle = client.make_call(args.line, args.number)
        except RemoteError as e:
            if e.lineerr == "LINEERR_DISCONNECTED":  # the link went down meanwhile
                raise PBXDown(f"{PBX_DOWN_TEXT}; no call placed, try again when it is back") from None
            raise
        print(f"call #{handle} placed on {args.line} to {args.number}", file=out)
        out.flush()
        if not args.follow:
            return 0
        for ev in client.events():
            p = ev.get("params", {})
            if p.get("call") != handle:
                continue
            print(format_event(ev), file=out)
            out.flush()
            if p.get("state") == "LINECALLSTATE_IDLE":
                return 0
    return 0


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
            print(f"no calls on {args.line}", file=out)
        _print_calls(calls, out)
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``asttapi`` command; returns the exit status."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        if args.command == "watch":
            return _watch(args, out)
        if args.command == "dial":
            return _dial(args, out)
        if args.command == "reload":
            return _reload(args, out)
        return _calls(args, out)
    except PBXDown as e:
        print(f"asttapi: {e}", file=sys.stderr)
        return PBX_DOWN
    except RemoteError as e:
        print(f"asttapi: {e}", file=sys.stderr)
        return 1
    except (ClientError, OSError) as e:
        print(f"asttapi: {e or type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
