"""README's dialplan ring group gives the call (and the rights to it) to the line that answered (issue 21).

The README's ``[tapi]`` gosub runs on the channel that answered. It used to
name ``line_1`` whoever answered: when bobbett's phone (``line_2``) answered,
``line_2`` got HANGUP (DISCONNECTED: LINEERR_NOTOWNER on the call its user
talks on) and ``line_1`` got CONNECTED (its user could drop the call). This
test runs the README's own text, for each phone of its ``Dial()``, through a
small reader of the dialplan subset it uses (``${...}`` substitution, nested;
``CHANNEL(endpoint)``; ``Set(LOCAL(x)=...)``; ``UserEvent(TAPI,TAPIEVENT: ...)``)
and the real call model.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asttapi_server.core import CallModel, parse_tapievent
from asttapi_server.core.grammar import TapiSignal

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
UID = "1795674354.1"


def context(name: str) -> list[str]:
    """The application calls of ``[name]`` in the README's first dialplan block, in order."""
    block = re.search(r"```ini\n(.*?)```", README[README.index("### 3. The dialplan"):], re.S).group(1)
    section = re.search(rf"^\[{name}\]\n(.*?)(?=^\[|\Z)", block, re.S | re.M).group(1)
    apps = []
    for line in section.splitlines():
        line = line.split(";", 1)[0].strip()
        m = re.match(r"(?:exten\s*=>\s*[^,]+,\s*[^,]+|same\s*=>\s*n),(.*)$", line)
        if m:
            apps.append(m.group(1).strip())
    return apps


def globals_() -> dict[str, str]:
    block = re.search(r"```ini\n(.*?)```", README[README.index("### 3. The dialplan"):], re.S).group(1)
    section = re.search(r"^\[globals\]\n(.*?)(?=^\[)", block, re.S | re.M)
    assert section, "the README's dialplan has no [globals]"
    out = {}
    for line in section.group(1).splitlines():
        line = line.split(";", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def expand(text: str, variables: dict[str, str], endpoint: str) -> str:
    """Asterisk's ${...} substitution, innermost first, for the names the README uses."""
    while "${" in text:
        start = text.rindex("${")
        end = text.index("}", start)
        name = text[start + 2:end]
        value = endpoint if name == "CHANNEL(endpoint)" else variables.get(name, "")
        text = text[:start] + value + text[end + 1:]
    return text


def run_gosub(endpoint: str) -> list[str]:
    """The TAPIEVENT texts the README's [tapi] sends when PJSIP/<endpoint> answers."""
    variables = {**globals_(), "ARG1": UID}
    texts = []
    for app in context("tapi"):
        name, _, args = app.partition("(")
        args = args.rsplit(")", 1)[0]
        if name == "Set":
            target, value = args.split("=", 1)
            variables[target.removeprefix("LOCAL(").rstrip(")")] = expand(value, variables, endpoint)
        elif name == "UserEvent":
            event, body = expand(args, variables, endpoint).split(",", 1)
            assert event == "TAPI"
            texts.append(body.split("TAPIEVENT:", 1)[1].strip())
    return texts


def phones_of_the_ring_group() -> list[str]:
    (dial,) = [app for app in context("inbound") if app.startswith("Dial(")]
    return re.findall(r"PJSIP/(\w+)", dial.split(",", 1)[0])


def test_the_ring_group_phones_each_have_a_line():
    assert phones_of_the_ring_group() == ["bob", "bobbett"]
    assert {f"TAPI_LINE_{p}" for p in phones_of_the_ring_group()} <= set(globals_())


@pytest.mark.parametrize("endpoint", ["bob", "bobbett"])
def test_the_line_whose_phone_answered_gets_the_call_and_the_rights(endpoint):
    answered = globals_()[f"TAPI_LINE_{endpoint}"]
    other = ({"line_1", "line_2"} - {answered}).pop()
    model = CallModel(boot_id="readme")
    texts = ["LINE_NEWCALL line_1", "LINE_NEWCALL line_2", "LINE_CALLSTATE LINECALLSTATE_OFFERING",
             *run_gosub(endpoint)]
    for n, text in enumerate(texts):
        model.apply(TapiSignal(parse_tapievent(text), UID, "PJSIP/trunk-00000001"), float(n))
    call = model.by_uniqueid(UID)
    assert call.state(answered) == "LINECALLSTATE_CONNECTED"
    assert call.state(other) == "LINECALLSTATE_DISCONNECTED"
    # only the line that holds the call may drop or transfer it (docs/security.md)
    assert call.holding_lines == (answered,)
