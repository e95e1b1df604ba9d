"""The call store: live calls kept in a local file so a restart loses none.

Thin Twisted adapter around :meth:`CallModel.save_state` and
:meth:`CallModel.restore_state` (the model stays sans-IO; this module does the
file I/O and the timing):

* **On start** the file is read and its calls restored into the model, before
  the AMI link starts; the bridge's usual resync after login (CoreShowChannels)
  then ends every restored call whose channels died while the server was down,
  and the rest carry on under their old handles.
* **While running** the bridge calls :meth:`CallStore.changed` after anything
  that may change a call. That only sets a flag; one batch per ``delay``
  seconds at most records the live calls, ``slice_size`` calls per reactor
  turn (re-encoding only calls that changed), and replaces the file
  atomically (temp file in the same directory, fsync, rename, fsync of the
  directory) in a thread when the reactor has one, so neither many calls nor
  a slow disk hold the reactor. Bytes identical to the last file written are
  not written again.
* **On a clean stop** the last snapshot is written at once.

Why one JSON file and not sqlite3: the whole state is small (bounded by the
live calls; about 0.6 KB a call) and always written whole, so an atomic
rename gives the same crash safety with nothing to migrate, and an admin can
read it with ``jq``. A file that is unreadable, corrupt, too big or from
another version is reported in one log line and ignored: the server starts
with no calls, as it did before the store existed.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from .config import DEFAULT_PBX, resolve_path
from .core.model import Call, CallModel
from .throttle import LogThrottle

log = Logger(namespace="asttapi.store")

#: The default file's name (:func:`default_state_path` says in which folder).
DEFAULT_STATE_FILE = "asttapi-calls.json"
#: Seconds between a change and the write that records it (changes meanwhile share the write).
DEFAULT_DELAY = 0.25
#: Calls recorded per reactor turn while a batch is built (a few ms at most; see _build).
DEFAULT_SLICE = 100
#: A store bigger than this is not read (it is not one this server wrote:
#: 100,000 live calls take about 60 MB).
MAX_STORE_BYTES = 256 << 20


def default_state_path(name: str, source: str | None = None) -> str:
    """Where the file ``name`` lives when the config names no path for it: systemd's
    ``$STATE_DIRECTORY`` (the unit's ``StateDirectory=``), else beside the configuration file
    ``source``, else the working directory; the configuration's one rule for state files
    (``config.resolve_path``), which a relative ``state_file`` or ``outbox`` follows too. The call
    store's default file and the call webhooks' default outbox are its names."""
    return resolve_path(name, "state", source)


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash leaves the old file or the new one, never a mix.

    The temp file is created 0600 (calls carry caller ids) next to the target,
    so the rename stays on one file system.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".asttapi-calls-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_store(path: str) -> Any | None:
    """The decoded JSON of ``path``; None if there is no file. Raises ValueError with a one-line reason.

    Only a regular file is read: the path is opened without blocking (a FIFO
    put there would otherwise hold start-up until someone writes to it) and
    anything else (a FIFO, a device, a directory, a socket) is refused before
    a byte is read. JSON's non-standard ``NaN`` and ``Infinity`` are refused.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ValueError(f"cannot read it ({e.strerror or e})") from None
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise ValueError(f"it is not a regular file ({_KINDS.get(stat.S_IFMT(kind), 'not a file')})")
        with os.fdopen(fd, "rb") as f:
            fd = -1
            data = f.read(MAX_STORE_BYTES + 1)
    except OSError as e:
        raise ValueError(f"cannot read it ({e.strerror or e})") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_STORE_BYTES:
        raise ValueError(f"it is bigger than {MAX_STORE_BYTES >> 20} MiB")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except (UnicodeDecodeError, RecursionError):
        raise ValueError("it is not JSON") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"it is not JSON ({e.msg} at byte {e.pos})") from None
    except ValueError as e:  # a NaN, or an integer of thousands of digits
        raise ValueError(f"it is not JSON we wrote ({str(e)[:80]})") from None


#: What a non-regular file at the store's path is, for the log line.
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFDIR: "a directory", stat.S_IFSOCK: "a socket"}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def encode_state(state: dict[str, Any]) -> bytes:
    """The bytes written for a snapshot (compact: the file is for machines, ``jq`` reads it fine)."""
    return json.dumps(state, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8", "replace")


def split_by_pbx(data: Any, pbxs: list[str]) -> dict[str, Any]:
    """The store's data as one ``CallModel.restore_state`` input per PBX, by each call's ``pbx``.

    A call without one (a store written by a single-PBX server) is the PBX
    ``default``'s, or the only PBX's when there is one PBX under another name.
    Data that is not a store's shape is left whole, to the first PBX, whose
    ``restore_state`` says what is wrong with it.
    """
    first = pbxs[0] if pbxs else DEFAULT_PBX
    calls = data.get("calls") if isinstance(data, dict) else None
    if not isinstance(calls, list):
        return {first: data}
    unnamed = DEFAULT_PBX if DEFAULT_PBX in pbxs or len(pbxs) != 1 else first
    groups: dict[str, list[Any]] = {}
    for entry in calls:
        pbx = unnamed
        if isinstance(entry, dict) and "pbx" in entry:
            entry = dict(entry)
            named = entry.pop("pbx")
            pbx = named if isinstance(named, str) else repr(named)[:40]
        groups.setdefault(pbx, []).append(entry)
    if not groups:
        groups[first] = []
    return {pbx: {**data, "calls": entries} for pbx, entries in groups.items()}


class CallStore(Service):
    """Keeps the live calls of ``model`` (one call model, the PBX ``default``'s, or
    ``{pbx: model}``, every PBX's) in ``path``; see the module docstring.

    ``on_restored(calls)`` (one model) or ``on_restored(pbx, calls)`` (a mapping)
    hears of the calls restored at start.

    ``thread``: write in the reactor's thread pool (default: when the reactor
    has one; a test's ``Clock`` has not, and then writes happen inline).
    """

    def __init__(
        self,
        path: str,
        model: CallModel | Mapping[str, CallModel],
        clock: IReactorTime,
        *,
        delay: float = DEFAULT_DELAY,
        slice_size: int = DEFAULT_SLICE,
        thread: bool | None = None,
        on_restored: Callable[..., None] | None = None,
    ) -> None:
        self.path = path
        self._named = isinstance(model, Mapping)
        #: Every PBX's call model, by name (:meth:`reconfigure` on a reload).
        self.models: dict[str, CallModel] = dict(model) if isinstance(model, Mapping) else {DEFAULT_PBX: model}
        self.clock = clock
        self.delay = delay
        self.slice_size = slice_size
        self.thread = IReactorThreads.providedBy(clock) if thread is None else thread
        self.on_restored = on_restored
        self.restored: list[Call] = []
        self.writes = 0  # files written, for tests and the bench
        self._dirty = False
        self._timer: Any = None
        self._writing: Deferred | None = None
        self._building: Iterator[bytes | None] | None = None  # the batch being built, see _build
        self._last: bytes | None = None
        self._parts: dict[int, tuple[tuple, bytes]] = {}  # handle -> (save_key, its JSON), see _build
        self._throttle = LogThrottle()

    # -- start: read the store ------------------------------------------------

    def startService(self) -> None:
        super().startService()
        # Relative to the working directory at start (twistd has applied --rundir
        # by then), and absolute from now on, so every log line says where it is.
        self.path = os.path.abspath(self.path)
        self.restore()

    @property
    def model(self) -> CallModel:
        """The first PBX's call model (a single-PBX server's only one)."""
        return next(iter(self.models.values()))

    def reconfigure(self, models: Mapping[str, CallModel]) -> None:
        """The PBXs a reload left (added ones with their models): their calls from the next batch on."""
        self.models = dict(models)
        self.changed()

    def restore(self) -> list[Call]:
        """Load the file into the models; a bad file is one log line, never an exception.

        Each PBX's calls are restored all or nothing; the calls of a PBX the
        configuration no longer has are left out, said in one line.
        """
        now = self.clock.seconds()
        try:
            data = read_store(self.path)
            if data is None:
                log.info("Call store {path}: no file yet; starting with no calls", path=self.path)
                return []
            groups = split_by_pbx(data, list(self.models))
            restored_by: dict[str, list[Call]] = {}
            for pbx, part in groups.items():
                model = self.models.get(pbx)
                if model is None:
                    log.warn("Call store {path}: {n} call(s) of PBX {pbx}, which is not configured, left out",
                             path=self.path, n=len(part["calls"]), pbx=pbx)
                    continue
                restored_by[pbx] = model.restore_state(part, now)
        except Exception as e:  # ValueError says why; anything else is a bug, still not a dead server
            reason = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            log.warn("Call store {path} ignored, starting with no calls: {reason}",
                     path=self.path, reason=reason[:300])
            return []
        restored = [call for calls in restored_by.values() for call in calls]
        self.restored = restored
        log.info(
            "Call store {path}: {n} live call(s) restored; they are checked against the PBX's channels"
            " once the AMI link is up",
            path=self.path, n=len(restored),
        )
        if self.on_restored is not None:
            for pbx, calls in restored_by.items():
                if self._named:
                    self.on_restored(pbx, calls)
                else:
                    self.on_restored(calls)
        return restored

    # -- running: batched writes ------------------------------------------------

    def changed(self) -> None:
        """Something may have changed a call: write within ``delay`` seconds. Cheap; call it freely."""
        self._dirty = True
        if self._timer is None:  # the hot path: a batch is already due
            self._idle()

    def _idle(self) -> None:
        """Between batches: start the next one ``delay`` from now if a change is waiting."""
        if (self._dirty and self.running and self._timer is None and self._building is None
                and self._writing is None):
            self._timer = self.clock.callLater(self.delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if not self._dirty:
            return
        self._dirty = False
        self._building = self._build()
        self._step()

    def _step(self) -> None:
        """Record one slice of the calls; the next slice runs in a later reactor turn."""
        self._timer = None
        building = self._building
        if building is None:
            return
        try:
            data = next(building)
        except Exception as e:  # e.g. a plugin put something odd in a callinfo
            self._building = None
            self._report("encode", "Call store {path}: cannot encode the calls ({error}); not written", e)
            self._idle()
            return
        if data is None:
            self._timer = self.clock.callLater(0, self._step)
            return
        self._building = None
        self._write(data, inline=False)

    def _build(self, slice_size: int | None = None) -> Iterator[bytes | None]:
        """The file's bytes, built ``slice_size`` calls at a time (``None`` between slices).

        Building is the part of a batch that runs in the reactor (a thread
        would not help: the JSON encoder holds the GIL), so it never takes
        more than one slice per reactor turn, however many calls are live.
        Encoding is most of the cost (about 12 us a call), so only calls
        whose :meth:`CallModel.save_key` changed since the last batch are
        recorded and encoded again; the keys kept hold plain values only, so
        the cache costs the garbage collector nothing. Each call's record is
        consistent; a call that changes after its slice is recorded by the
        next batch (the change set the flag).
        """
        size = self.slice_size if slice_size is None else slice_size
        old = self._parts
        cache: dict[int, tuple[tuple, bytes]] = {}
        parts = []
        n = 0
        for pbx, model in tuple(self.models.items()):
            for call in model.live_calls():
                n += 1
                if call.ended is not None:
                    continue  # ended since the batch began
                key = model.save_key(call)
                hit = old.get(call.handle)
                if hit is None or hit[0] != key:
                    # Only changed calls leave new objects behind: unchanged ones keep
                    # the old entry, so a batch does not feed the collector's old generation.
                    record = model.save_call(call)
                    if pbx != DEFAULT_PBX:
                        record["pbx"] = pbx  # (a call without it is the PBX "default"'s)
                    hit = (key, encode_state(record))
                cache[call.handle] = hit
                parts.append(hit[1])
                if n % size == 0:
                    yield None
        head = self.model.save_state(())
        del head["calls"]
        self._parts = cache
        yield encode_state(head)[:-1] + b',"calls":[' + b",".join(parts) + b"]}"

    def snapshot(self) -> bytes:
        """The file's bytes now, in one go (a clean stop; the benchmark)."""
        for data in self._build(slice_size=1 << 62):
            if data is not None:
                return data
        raise AssertionError("unreachable: _build always ends with the bytes")  # pragma: no cover

    def _write(self, data: bytes, *, inline: bool) -> None:
        if data == self._last:
            self._idle()
            return
        if self.thread and not inline:
            d = deferToThreadPool(self.clock, self.clock.getThreadPool(), write_atomically, self.path, data)
        else:
            d = maybeDeferred(write_atomically, self.path, data)
        self._writing = d
        d.addCallbacks(self._written, self._failed, callbackArgs=(data,))
        d.addBoth(self._done)

    def _written(self, _result: Any, data: bytes) -> None:
        self._last = data
        self.writes += 1

    def _failed(self, failure: Any) -> None:
        error = failure.value
        if not isinstance(error, OSError):
            log.failure("Call store {path}: write failed", failure, path=self.path)
            return
        self._report("write", "Call store {path}: cannot write it ({error}); calls would not survive a restart", error)

    def _done(self, _result: Any) -> None:
        self._writing = None
        self._idle()

    def _report(self, kind: str, text: str, error: BaseException) -> None:
        held = self._throttle.allow((kind, type(error).__name__), self.clock.seconds())
        if held is not None:
            reason = getattr(error, "strerror", None) or str(error)
            log.warn(text, path=self.path, error=reason[:200])

    # -- stop: one last write ---------------------------------------------------------

    def flush(self) -> Deferred:
        """Write now, inline (after a write in flight); fires when written or when the write failed."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._building = None  # a batch half built is superseded by this one

        def write(_: Any = None) -> Deferred | None:
            self._dirty = False
            try:
                data = self.snapshot()
            except Exception as e:
                self._report("encode", "Call store {path}: cannot encode the calls ({error}); not written", e)
                return None
            self._write(data, inline=True)
            return self._writing

        pending = self._writing
        if pending is not None:
            return pending.addCallback(write)
        return maybeDeferred(write)

    def stopService(self) -> Deferred:
        super().stopService()  # running = False: no new timers
        return self.flush()
