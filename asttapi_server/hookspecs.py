"""The plugin hooks of asttapi-server: this module holds hooks and nothing else.

A plugin implements any of these with the same name and (a subset of) the same
parameters, marked with :data:`hookimpl`::

    from asttapi_server.hookspecs import hookimpl

    @hookimpl
    def asttapi_lookup_contact(number, callinfo, app):
        ...

The server never calls these through pluggy's own ``hook.xxx()``: each
implementation is called on its own by :class:`asttapi_server.plugin_host.PluginHost`,
so a plugin that raises is logged with its name and skipped, and the others
still run. Hook wrappers are not supported.

``app``, in every hook that takes it, is the plugin context
(:class:`asttapi_server.plugin_context.PluginContext`), the whole of what a
plugin may use of the running server:

- ``app.config``: the running ``Config`` (it follows reloads);
- ``app.clock``: the ``IReactorTime``; ``app.now()``: its ``seconds()``;
- ``app.call(handle)``: the ``Call`` with that handle, or ``None`` (read only);
- ``app.drop(handle)``, ``app.blind_transfer(handle, number)``: act on a call
  as a client's ``lineDrop``/``lineBlindTransfer`` would (``Deferred[None]``,
  failing with ``TelephonyError``);
- ``app.model``: kept for plugins written when ``app`` was the bridge.

``None`` in unit tests that start no server.

See ``docs/plugins.md`` for how to write, install and configure a plugin.
"""

from __future__ import annotations

from pluggy import HookimplMarker, HookspecMarker

PROJECT = "asttapi"

hookspec = HookspecMarker(PROJECT)
hookimpl = HookimplMarker(PROJECT)


@hookspec
def asttapi_startup(config, app):
    """Start the plugin's work once the server is assembled, before the AMI link is up.

    Called once, on the reactor thread, after every plugin has been loaded and
    configured. Every implementation is called.

    :param config: the server's ``Config`` (``config.plugins.settings`` holds
        every plugin's table).
    :param app: the plugin context; keep it if later hooks need it.
    :returns: ``None``, or a Deferred that fires when the plugin is ready. If
        it raises or the Deferred fails, start-up stops with a ``PluginError``
        naming the plugin.
    """


@hookspec
def asttapi_shutdown(app):
    """Release what the plugin holds (connections, files, timers): the server is stopping.

    Called once, on the reactor thread. Every implementation is called; an
    exception is logged with the plugin's name and the others still run.

    :param app: the plugin context.
    :returns: ``None``, or a Deferred the server waits for (a few seconds at most).
    """


@hookspec
def asttapi_ami_event_names():
    """Name the AMI events this plugin wants to see in :func:`asttapi_map_ami_event`.

    Called once, at load time. Every implementation is called; the server
    routes an AMI event to a plugin's ``asttapi_map_ami_event`` only if the
    event's ``Event:`` name (e.g. ``"UserEvent"``, ``"Newchannel"``; compared
    case-insensitively, the one rule of ``asttapi_server.idents.wanted_name``)
    is among the names that plugin returned. These names and the core's own
    (``core.control.CORE_EVENTS``) make the one route table
    (``asttapi_server.routes.Routes``: one entry per name, looked up once per
    event), whose names are the one set of wanted events: the link's parser
    drops every other event without decoding it, which keeps AMI floods cheap.

    :returns: an iterable of event names, or ``None`` for none. Not a Deferred.
    """


@hookspec
def asttapi_map_ami_event(message, now, app, pbx, calls):
    """Turn one AMI event into TAPI signals for the call model.

    Called on the reactor thread for each AMI event whose name the plugin
    declared in :func:`asttapi_ami_event_names`, in hook order (``tryfirst``
    plugins first; the built-in TAPI UserEvent mapping is ``trylast``).
    Stops at the first non-``None`` result: return a list (even an empty one)
    to say "this event is mine", ``None`` to let the next plugin look at it.
    So a site plugin overrides the built-in mapping for an event by returning
    a list, and adds its own mapping for other events alongside it.

    One line, one source, whatever the hook order: the server takes device
    lines out of every signal that is not a device's (``TapiSignal.device``
    false: a dialplan's UserEvent), so no mapping can put a dialplan's call
    on a device line (``asttapi_server.core.sources``).

    :param message: the ``asttapi_server.ami.message.Message``.
    :param now: the time the event is handled (``app.clock.seconds()``,
        seconds), the one the core uses for it; a mapping reads time here,
        never a clock of its own.
    :param app: the plugin context (:class:`asttapi_server.plugin_context.PluginContext`).
    :param pbx: the name of the PBX whose link read it (``"default"`` for ``[ami]``).
    :param calls: what that PBX's call model knows of device channels, read
        only (``asttapi_server.core.legs.CallsView``): a mapping that follows
        calls from channel events reads here what it learnt before and keeps
        nothing itself (no call state, so nothing per PBX either); it returns
        what to remember as ``asttapi_server.core.legs.DeviceNote`` values
        among its signals, which the model applies at once and the call
        store saves with the call. Read it during the call only (the next
        event may bring another PBX's).
    :returns: ``list[TapiSignal]`` or ``None``. Not a Deferred: event order
        matters, so mapping is synchronous and must be fast. The list may
        also hold :class:`asttapi_server.core.effects.Diagnostic` values
        (say, "malformed event"): the server logs them, each ``key`` at most
        once a minute, so a plugin needs no logger or throttle of its own.
    """


@hookspec
def asttapi_map_channel_list(messages, since, now, app, pbx, calls):
    """Turn the channel list Asterisk gave after a (re)connect into TAPI signals.

    Called on the reactor thread once per login, with the answer to the
    resync's ``CoreShowChannels``, before the core ends the calls whose
    channels are gone. A mapping that tracks calls from channel events (the
    built-in device-line mapping does) adopts here the channels it never saw
    start (the server connected mid-call, the link was down) and ends its own
    calls whose channels vanished meanwhile, with its own events rather than
    the core's synthetic ones. Every implementation is called, in hook order;
    the signals are applied in that order.

    :param messages: the ``Message`` list of the answer (the response first,
        then one ``CoreShowChannel`` event per channel, then the
        ``CoreShowChannelsComplete``).
    :param since: the time (``app.clock.seconds()``) of the login this list
        answers: a channel the plugin heard from after it is alive even if
        the list, taken a moment earlier, misses it.
    :param now: the time the answer is handled (seconds, as ``since``).
    :param app: the plugin context.
    :param pbx: the PBX whose channels these are (the other PBXs' calls are not in it).
    :param calls: what that PBX's call model knows of device channels, as for
        :func:`asttapi_map_ami_event` (after a server restart: the calls the
        call store restored, their device channels' facts included).
    :returns: ``list[TapiSignal]`` (may hold ``Diagnostic`` values, as for
        :func:`asttapi_map_ami_event`) or ``None``. Not a Deferred.
    """


@hookspec
def asttapi_lookup_contact(number, callinfo, app):
    """Find the contact behind a phone number, for a screen pop.

    Called on the reactor thread when a call shows a new caller number
    (not for calls placed from the line's own phone, and never for a caller
    who withholds the number: that number is shown to no one, plugins
    included; ``callinfo["calleridflags"]`` says so). Call events are sent to
    clients at once, without waiting; when the lookup ends the bridge adds its
    answer to the call's info and clients get a ``LINE_CALLINFO`` /
    ``LINECALLINFOSTATE_OTHER`` whose ``callinfo.contact`` holds the contact,
    or ``null`` if none was found.

    Every implementation is called and they run at the same time; not
    ``firstresult`` (a Deferred is not ``None``). The answer is the first
    non-``None`` contact in hook order (the order of ``[plugins] enabled``:
    the first source that knows the number wins) among the plugins that answered within
    ``[plugins] lookup_timeout`` seconds (default 2); slower answers are
    cancelled and ignored. A plugin that raises or fails counts as ``None``.

    Blocking work (SQL, files) must not run on the reactor thread: either
    return a Deferred, or decorate the implementation with
    :func:`asttapi_server.plugin_host.blocking` and the server calls it in its
    plugin thread pool.

    :param number: the number as the PBX gave it, e.g. ``"02079460958"``;
        normalise it with :mod:`asttapi_server.numbers`.
    :param callinfo: read-only snapshot of the call's info (``callerid``,
        ``calledid``, ``origin``, ``uniqueid``, ...).
    :param app: the plugin context.
    :returns: a dict (``name`` required; ``company``, ``source``, ``link``,
        ``number`` as stored, and any other JSON-serialisable keys), ``None``
        for "not found", or a Deferred firing with one of those.
    """


@hookspec
def asttapi_client_event(event, app):
    """Enrich or filter a TAPI event before it goes to the clients.

    Called on the reactor thread for every event the call model emits, in hook
    order; every implementation is called, each receiving the event as the
    previous one left it. Must be fast.

    :param event: the ``TapiEvent`` (frozen; build a changed copy with
        ``event.with_callinfo(...)`` or ``dataclasses.replace``).
    :param app: the plugin context.
    :returns: a new ``TapiEvent`` to send instead, ``False`` to drop the event
        (later plugins are not called), or ``None`` to leave it unchanged.
        Not a Deferred.
    """


@hookspec
def asttapi_call_finished(call, app):
    """Observe a call that is over (for call logging, CRM notes, statistics).

    Called on the reactor thread exactly once per call, when the call ends:
    its last line went IDLE, whether the dialplan said so or the server's
    safety net ended it (hangup grace, ``max_age``, ``max_calls``, the resync
    after a reconnect, a failed Originate). It comes right after that IDLE
    was sent to the clients, whatever ``[calls] linger`` is (the call stays
    readable by clients for ``linger`` seconds afterwards, but this hook does
    not wait for that). ``call.ended`` is set and ``call.lines`` is empty.
    Every implementation is called; an exception is logged and ignored.

    :param call: the ``asttapi_server.core.model.Call`` (read it, do not change it).
    :param app: the plugin context.
    :returns: ``None``, or a Deferred (its failure is logged; nobody waits for it).
    """


@hookspec
def asttapi_metrics(app):
    """Report the plugin's own figures (queues, requests, caches) for ``/metrics``.

    Called on the reactor thread each time ``/metrics`` is scraped (not at
    all with ``[metrics] enabled = false``). Every implementation is
    called; an exception is logged and that plugin's figures are left out
    of this scrape. Count in plain numbers on the hot path and build the
    families here: the scrape pays for the exposition, not every event.

    :param app: the plugin context.
    :returns: an iterable of ``prometheus_client`` metric families
        (``CounterMetricFamily``, ``GaugeMetricFamily``, ...), or ``None``.
        Names start with ``asttapi_``; a bundled plugin's are declared in
        ``asttapi_server.metrics.METRICS`` and built with
        ``asttapi_server.metrics.family``. Families of the same name from
        several plugins are merged. Not a Deferred.
    """
