"""Reload with connected clients over loopback: a right added, a right removed, a new user, a bad file."""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.service import make_service, reload_from_file
from tests.ops.loopback import line_client, until

TOKENS = {name: f"{name}-token-0123456789" for name in ("alice", "bob", "carol", "dave")}


def config_text(users: dict[str, list[str]]) -> str:
    out = ['demo = true', '[server]', 'listen = ["tcp:0:interface=127.0.0.1"]',
           '[lines.line_1]', 'channel = "Local/bob@phones"', 'context = "trunklocal"',
           '[lines.line_2]', 'channel = "Local/bobbett@phones"', 'context = "trunklocal"', '[web]', 'listen = []']
    for name, lines in users.items():
        out += [f"[users.{name}]", f'token = "{TOKENS[name]}"', "lines = [" + ", ".join(f'"{x}"' for x in lines) + "]"]
    return "\n".join(out) + "\n"


class ReloadTests(TestCase):
    timeout = 60

    def config_path(self) -> str:
        # not trial's mktemp(): that leaves a directory in the working directory
        folder = tempfile.mkdtemp(prefix="asttapi-reload-")
        self.addCleanup(shutil.rmtree, folder, True)
        return os.path.join(folder, "asttapi.toml")

    @defer.inlineCallbacks
    def test_rights_follow_the_file_and_nobody_else_notices(self):
        path = self.config_path()
        with open(path, "w") as f:
            f.write(config_text({"alice": ["line_1"], "bob": ["line_1", "line_2"], "carol": ["*"]}))
        app = make_service(load_config(path), reactor, demo_options={"timing": Timing.fast(), "autoplay": False})
        app.config_loader = lambda: load_config(path)
        app.startService()
        self.addCleanup(app.stopService)
        port = (yield app.listeners[0].whenListening()).getHost().port
        yield until(lambda: app.bridge.link_up)
        log: list[str] = []
        observer = lambda e: log.append(formatEvent(e))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

        alice = yield line_client(port, "alice", TOKENS["alice"], case=self)
        bob = yield line_client(port, "bob", TOKENS["bob"], case=self)
        carol = yield line_client(port, "carol", TOKENS["carol"], case=self)
        yield alice.call("lineOpen", line="line_1")
        for line in ("line_1", "line_2"):
            yield bob.call("lineOpen", line=line)
            yield carol.call("lineOpen", line=line)
        refused = yield alice.call("lineOpen", line="line_2")
        self.assertIn("error", refused)
        app.demo.play("inbound", caller=("0301234567", "Ext Caller"), ring=0.1)
        yield carol.wait_for(lambda m: m.get("params", {}).get("state") == "LINECALLSTATE_IDLE")

        # the new file: alice gains line_2, bob loses it, dave is new
        with open(path, "w") as f:
            f.write(config_text({"alice": ["line_1", "line_2"], "bob": ["line_1"], "carol": ["*"],
                                 "dave": ["line_1"]}))
        ok = yield reload_from_file(app)
        self.assertTrue(ok)
        closed = yield bob.wait_for(lambda m: m.get("method") == "LINE_CLOSE")
        self.assertEqual(closed["params"]["line"], "line_2")
        self.assertEqual(closed["params"]["lineerr"], "LINEERR_NOTOWNER")
        self.assertIn("may no longer open line 'line_2'", closed["params"]["message"])
        opened = yield alice.call("lineOpen", line="line_2")
        self.assertIn("result", opened)
        dave = yield line_client(port, "dave", TOKENS["dave"], case=self)
        self.assertIn("result", (yield dave.call("lineOpen", line="line_1")))
        self.assertTrue(any("Configuration reloaded from" in line and "users added: dave" in line
                            and "lines closed: line_2 for bob" in line for line in log), log)

        # a broken file: one line, nothing changes
        with open(path, "w") as f:
            f.write("[users.eve\ntoken = 1\n")
        log.clear()
        ok = yield reload_from_file(app)
        self.assertFalse(ok)
        refusals = [line for line in log if "Reload refused" in line]
        self.assertEqual(len(refusals), 1, log)
        self.assertIn("not valid TOML", refusals[0])
        dave2 = yield line_client(port, "dave", TOKENS["dave"], case=self)  # still the good configuration
        self.assertIn("result", (yield dave2.call("ping")))

        # everyone still connected; the next call reaches them all, carol's seq has no gap
        app.demo.play("inbound", caller=("0307654321", "Other Caller"), ring=0.1)
        for client in (alice, bob, carol, dave):
            yield client.wait_for(lambda m: m.get("params", {}).get("state") == "LINECALLSTATE_IDLE"
                                  and m["params"].get("callinfo", {}).get("callerid") == "0307654321")
            self.assertFalse(client.lost.called)
        seqs = carol.seqs()
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))
        # bob hears nothing more of line_2
        after = bob.messages[bob.messages.index(closed) + 1:]
        self.assertFalse([m for m in after if m.get("params", {}).get("line") == "line_2"])
        parsed = app.metrics.reloads
        self.assertEqual(parsed, {"ok": 1, "refused": 1})

    @defer.inlineCallbacks
    def test_a_removed_user_is_closed_with_an_auth_error(self):
        path = self.config_path()
        with open(path, "w") as f:
            f.write(config_text({"alice": ["line_1"], "bob": ["line_1"]}))
        app = make_service(load_config(path), reactor, demo_options={"timing": Timing.fast(), "autoplay": False})
        app.config_loader = lambda: load_config(path)
        app.startService()
        self.addCleanup(app.stopService)
        port = (yield app.listeners[0].whenListening()).getHost().port
        alice = yield line_client(port, "alice", TOKENS["alice"], case=self)
        bob = yield line_client(port, "bob", TOKENS["bob"], case=self)
        with open(path, "w") as f:
            f.write(config_text({"alice": ["line_1"]}))
        self.assertTrue((yield reload_from_file(app)))
        goodbye = yield bob.wait_for(lambda m: "error" in m and m.get("id") is None)
        self.assertIn("'bob' was removed from the configuration", goodbye["error"]["message"])
        yield bob.lost
        self.assertIn("result", (yield alice.call("ping")))
        self.assertEqual(app.client_factory.cut_offs.get("reload"), 1)


class DeviceLineReloadTests(TestCase):
    """A reload that adds or keeps device lines (in process, the demo PBX idle): the
    wanted AMI events follow, the new mapping's calls go on, the old plugins are not called."""

    timeout = 30

    def start(self, text: str):
        folder = tempfile.mkdtemp(prefix="asttapi-reload-")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "asttapi.toml")
        with open(path, "w") as f:
            f.write(text)
        app = make_service(load_config(path), reactor, demo_options={"timing": Timing.fast(), "autoplay": False})
        app.config_loader = lambda: load_config(path)
        app.startService()
        self.addCleanup(app.stopService)
        return app, path

    @defer.inlineCallbacks
    def test_a_device_line_added_by_reload_gets_its_calls(self):
        base = config_text({})
        app, path = self.start(base)
        self.assertNotIn("channel_events", app.plugins.names)
        self.assertNotIn("dialbegin", app.ami._event_filter)
        with open(path, "w") as f:
            f.write(base + '[lines.alice]\ndevice = "PJSIP/203"\ncontext = "plain-phones"\n')
        self.assertTrue((yield reload_from_file(app)))
        self.assertIn("channel_events", app.plugins.names)
        self.assertIn("dialbegin", app.ami._event_filter)  # declared again, where the bytes are framed
        seen: list = []
        publish = app.hub.publish
        app.hub.publish = lambda event: (seen.append(event), publish(event))[1]
        replay_file(app, "s04_internal_201_to_203.raw")
        alice = [e.param or e.msg for e in seen if e.line == "alice"]
        self.assertEqual(alice[0], "LINE_NEWCALL")
        self.assertEqual(alice[-1], "LINECALLSTATE_IDLE")

    @defer.inlineCallbacks
    def test_a_plugin_change_keeps_the_device_calls_under_way(self):
        base = config_text({}) + '[lines.bob]\ndevice = "PJSIP/201"\ncontext = "plain-phones"\n'
        # No lookups at first (on the demo PBX only an explicit empty list turns its sample contacts off).
        app, path = self.start(base + "[plugins]\nenabled = []\n")
        seen: list = []
        publish = app.hub.publish
        app.hub.publish = lambda event: (seen.append(event), publish(event))[1]
        messages = parsed("s10_hold_unhold.raw")
        half = next(i for i, m in enumerate(messages) if m.name == "Hold")
        for message in messages[:half]:
            app.bridge.on_ami_event(message)
        old = app.plugins.pm.get_plugin("channel_events")
        self.assertTrue(app.model.legs)  # the model keeps the device calls' facts: no hand-over at reload
        self.assertEqual(sorted(vars(old.lines)), ["_lines_of", "devices"])
        self.assertFalse(app.plugins.looks_up_contacts)
        self.assertFalse(app.bridge.control.looks_up_contacts)
        with open(path, "w") as f:  # another plugin set: a new plugin host is built
            f.write(base + '[plugins]\nenabled = ["outlook_contacts"]\n[plugins.outlook_contacts]\ndemo = true\n')
        self.assertTrue((yield reload_from_file(app)))
        new = app.plugins.pm.get_plugin("channel_events")
        self.assertIsNot(new, old)
        # the new plugins' hooks are the ones called, and the core knows a plugin looks contacts up now
        self.assertTrue(app.plugins.looks_up_contacts)
        self.assertTrue(app.bridge.control.looks_up_contacts)
        for message in messages[half:]:
            app.bridge.on_ami_event(message)
        bob = [e.param or e.msg for e in seen if e.line == "bob"]
        self.assertIn("LINECALLSTATE_ONHOLD", bob)
        self.assertEqual(bob.count("LINE_NEWCALL"), 1)
        self.assertEqual(bob[-1], "LINECALLSTATE_IDLE")
        handles = {e.call for e in seen if e.line == "bob" and e.call is not None}
        self.assertEqual(len(handles), 1)  # one call, before and after the reload

    @defer.inlineCallbacks
    def test_a_reload_hands_the_new_plugin_host_to_everyone_who_calls_plugins(self):
        """No host takes over another's private fields: the root gives the new one to the
        PBXs' bridges and the metrics, and the old one shuts down (its threads freed)."""
        base = config_text({}) + "[plugins]\nenabled = []\n"
        app, path = self.start(base)
        old = app.plugins
        self.assertIsNotNone(app.metrics)
        with open(path, "w") as f:
            f.write(config_text({}) + '[plugins]\nenabled = ["outlook_contacts"]\n[plugins.outlook_contacts]\ndemo = true\n')
        self.assertTrue((yield reload_from_file(app)))
        new = app.plugins
        self.assertIsNot(new, old)
        self.assertIn("outlook_contacts", new.names)
        self.assertNotIn("outlook_contacts", old.names)  # the old host keeps its own plugins: nothing moved
        for unit in app.switchboard.units.values():
            self.assertIs(unit.bridge.plugins, new)
        self.assertEqual(new.lookup_observer, app.metrics.on_lookup)  # lookups still counted
        self.assertIsNone(old._pool)


def parsed(name: str) -> list:
    from pathlib import Path

    from asttapi_server.ami.parser import AMIParser

    raw = (Path(__file__).resolve().parent.parent / "data" / "ami-native" / name).read_bytes()
    return [m for m in AMIParser().feed(raw) if m.kind == "event"]


def replay_file(app, name: str) -> None:
    for message in parsed(name):
        app.bridge.on_ami_event(message)
