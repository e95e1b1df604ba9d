/* Screen-pop page for asttapi-server: the JSON-RPC protocol of docs/protocol.md
   over the WebSocket at /ws, one message per text frame.

   Plain browser JavaScript, no build step, no framework, nothing fetched:
   PBX networks are often offline, and the page runs under a strict
   Content-Security-Policy (no inline code, no eval; the DOM is built with
   textContent only, so nothing a caller sends can become markup).

   State is rebuilt the way the protocol's checklist says: the calls of a
   line come from the lineOpen result (after a resume it is the state after
   the replay), replayed events only feed the recent-calls list, and live
   events (seq above the result's seq) update the cards. That is what keeps
   a reconnect from duplicating cards or re-popping a call that ended. */
"use strict";

(function () {
  // -- constants -------------------------------------------------------------

  const WS_PATH = "ws";                     // relative to the page: /ws next to /
  const PING_EVERY_MS = 25000;              // notice a dead connection (protocol: ~30 s)
  const PING_TIMEOUT_MS = 10000;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const RECENT_MAX = 20;
  const KEEP_MAX = 500;                     // calls remembered for dedup (history, pops, own calls)
  const LS_LINES = "asttapi.lines";          // localStorage: {known: [...], open: [...]} (no secret)
  const SS_CREDS = "asttapi.login";          // sessionStorage, only if "remember" is ticked
  const SS_RECENT = "asttapi.recent";        // sessionStorage: this tab's recent calls

  /** Rank of a state on one line; a card shows its best line's state. */
  const RANK = {
    CONNECTED: 9, ONHOLD: 8, CONFERENCED: 8, ONHOLDPENDTRANSFER: 8, ONHOLDPENDCONF: 8,
    OFFERING: 7, ACCEPTED: 7, RINGBACK: 6, PROCEEDING: 6, DIALING: 6, DIALTONE: 6,
    SPECIALINFO: 4, BUSY: 3, UNKNOWN: 2, DISCONNECTED: 1, IDLE: 0,
  };
  const RINGING = new Set(["OFFERING", "ACCEPTED"]);
  const TALKING = new Set(["CONNECTED", "ONHOLD", "CONFERENCED", "ONHOLDPENDTRANSFER", "ONHOLDPENDCONF"]);
  const SETUP = new Set(["DIALTONE", "DIALING", "PROCEEDING", "RINGBACK"]);
  const LABEL = {
    OFFERING: "Ringing", ACCEPTED: "Ringing", CONNECTED: "Talking", ONHOLD: "On hold",
    DIALTONE: "Calling", DIALING: "Dialling", PROCEEDING: "Calling", RINGBACK: "Ringing at far end",
    BUSY: "Busy", DISCONNECTED: "Ended", IDLE: "Ended", UNKNOWN: "Unknown",
  };
  const LINEERR_TEXT = {
    LINEERR_DISCONNECTED: "The PBX link is down; try again when it is back in service.",
    LINEERR_NOTOWNER: "You may not open this line.",
    LINEERR_INVALCALLHANDLE: "This call has already ended.",
    LINEERR_INVALCALLSTATE: "The call cannot do that in its current state.",
    LINEERR_INVALADDRESS: "The PBX refused the number.",
    LINEERR_OPERATIONUNAVAIL: null,          // the server's sentence says why
  };

  // -- small helpers -----------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const short = (name) => (typeof name === "string" ? name.replace(/^LINE[A-Z]+_/, "") : "");
  const known = (v) => (typeof v === "string" && v.trim() !== "" ? v.trim() : null);

  function storageGet(store, key, fallback) {
    try {
      const raw = store.getItem(key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (e) {
      return fallback;                        // storage disabled or garbage: start clean
    }
  }
  function storageSet(store, key, value) {
    try {
      if (value === null) store.removeItem(key);
      else store.setItem(key, JSON.stringify(value));
    } catch (e) { /* private mode or quota: memory only */ }
  }

  /** Keep a Set or Map of per-call bookkeeping from growing all day: drop the oldest. */
  function cap(collection, max) {
    while (collection.size > max) collection.delete(collection.keys().next().value);
  }

  function fmtDuration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(r).padStart(2, "0");
  }
  function fmtClock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  function say(text) {                       // screen-reader status line
    $("status").textContent = text;
  }
  function errorText(err) {
    if (!err) return "Unknown error";
    const lineerr = err.data && err.data.lineerr;
    return (lineerr && LINEERR_TEXT[lineerr]) || err.message || String(err);
  }
  function httpUrl(v) {                      // only http(s) links from plugins become links
    if (typeof v !== "string") return null;
    try {
      const u = new URL(v);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  // -- state --------------------------------------------------------------------

  const state = {
    ws: null,
    nextId: 1,
    pending: new Map(),        // id -> {resolve, reject}
    hello: null,
    epoch: null,               // epoch of the events we hold
    loggedIn: false,
    creds: storageGet(sessionStorage, SS_CREDS, null), // {username, token}, memory unless remembered
    allowed: null,             // patterns from the login result
    known: new Set(),          // lines listed in the picker (remembered in localStorage)
    wanted: new Set(),         // of those, the ones the user wants open
    open: new Map(),           // line -> {seq, openSeq, devstate, error}
    cards: new Map(),          // handle -> card record
    history: new Map(),        // handle -> what we learned of a call (live and replayed)
    popped: new Set(),         // handles already popped (kept across reconnects)
    own: new Map(),            // handles this tab originated -> number dialled
    recent: storageGet(sessionStorage, SS_RECENT, []),
    attempt: 0,
    retryTimer: null,
    retryAt: null,
    pingTimer: null,
    pingDeadline: null,
    closedByUs: false,
    fatal: null,
    pop: null,                 // handle shown in the pop banner
    dismissed: new Set(),
    pops: 0,                   // how many calls popped (for the tests: never twice per call)
  };
  if (!Array.isArray(state.recent)) state.recent = [];
  (function loadLines() {
    const saved = storageGet(localStorage, LS_LINES, null);
    const list = (v) => (Array.isArray(v) ? v.filter((x) => typeof x === "string" && x) : []);
    if (saved && typeof saved === "object") {
      for (const line of list(saved.known)) state.known.add(line);
      for (const line of list(saved.open)) { state.known.add(line); state.wanted.add(line); }
    }
  })();
  for (const r of state.recent) if (r && r.handle !== undefined) state.popped.add(r.epoch + ":" + r.handle);

  // A CRM can link to the page with #lines=line_1,sip/bob: those lines are
  // added to the ones the user picked before. Never a token in the URL.
  (function linesFromFragment() {
    const m = /(?:^#|&)lines=([^&]*)/.exec(location.hash);
    if (!m) return;
    for (const name of decodeURIComponent(m[1]).split(",")) {
      const line = name.trim();
      if (line) { state.known.add(line); state.wanted.add(line); }
    }
    saveWanted();
    // Remembered now; a reload must not bring back a line the user forgot.
    try { history.replaceState(null, "", location.pathname + location.search); } catch (e) { /* sandboxed */ }
  })();

  function saveWanted() {
    storageSet(localStorage, LS_LINES, { known: Array.from(state.known), open: Array.from(state.wanted) });
  }

  // -- JSON-RPC over the WebSocket ---------------------------------------------

  function wsUrl() {
    const u = new URL(WS_PATH, location.href);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.hash = "";
    u.search = "";
    return u.href;
  }

  function rpc(method, params) {
    return new Promise((resolve, reject) => {
      const ws = state.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject({ message: "Not connected to the server; it reconnects by itself." });
        return;
      }
      const id = state.nextId++;
      state.pending.set(id, { resolve, reject });
      const msg = { jsonrpc: "2.0", id, method };
      if (params) msg.params = params;
      ws.send(JSON.stringify(msg));
    });
  }

  function connect() {
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    if (state.ws) return;
    setConn("connecting", "Connecting…");
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.closedByUs = false;
    ws.addEventListener("message", (ev) => {
      if (state.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;                               // the server only sends JSON
      }
      onMessage(msg);
    });
    ws.addEventListener("close", () => {
      if (state.ws !== ws) return;
      onClosed();
    });
  }

  function onClosed() {
    state.ws = null;
    state.hello = null;
    state.loggedIn = false;
    clearInterval(state.pingTimer);
    clearTimeout(state.pingDeadline);
    state.pingTimer = state.pingDeadline = null;
    for (const { reject } of state.pending.values()) reject({ message: "The connection dropped." });
    state.pending.clear();
    for (const info of state.open.values()) { info.devstate = null; info.live = false; }
    renderLink();
    renderLines();
    if (state.fatal) {
      setConn("down", state.fatal);
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    // Exponential backoff with full jitter, so a restarted server is not hit
    // by every desk at the same instant.
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * Math.pow(2, state.attempt));
    const delay = Math.round(cap / 2 + Math.random() * cap / 2);
    state.attempt += 1;
    state.retryAt = Date.now() + delay;
    renderRetry();
    state.retryTimer = setTimeout(connect, delay);
    setOffline(true);
  }

  function renderRetry() {
    if (state.ws || !state.retryAt) return;
    const left = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    setConn("down", "Offline: reconnecting in " + left + " s");
  }

  /** While offline the cards show the last known state: say so, and offer no actions. */
  function setOffline(offline) {
    document.body.classList.toggle("offline", offline);
    $("stale").hidden = !offline || state.cards.size === 0;
    for (const card of state.cards.values()) renderCard(card);
  }

  function reconnectNow() {
    if (!state.ws && !state.fatal) connect();
  }

  function dropConnection() {               // dead socket: close and let onClosed retry
    const ws = state.ws;
    if (!ws) return;
    try { ws.close(); } catch (e) { /* already closing */ }
    onClosed();
  }

  function onMessage(msg) {
    if (msg && msg.id !== undefined && msg.id !== null && !msg.method) {
      const p = state.pending.get(msg.id);
      if (!p) return;
      state.pending.delete(msg.id);
      if (msg.error) p.reject(msg.error);
      else p.resolve(msg.result);
      return;
    }
    if (msg && msg.error && (msg.id === null || msg.id === undefined)) {
      // The server's goodbye (-32002) or a final login error: say it.
      say(msg.error.message || "The server closed the connection");
      if (msg.error.code === -32001 && state.creds === null) showLogin(msg.error.message);
      return;
    }
    if (!msg || typeof msg.method !== "string") return;
    if (msg.method === "hello") onHello(msg.params || {});
    else onEvent(msg.method, msg.params || {});
  }

  // -- hello, login, lines ------------------------------------------------------------

  function onHello(hello) {
    state.hello = hello;
    if (hello.protocol !== 1) {
      state.fatal = "This page speaks protocol 1; the server speaks " + hello.protocol + ".";
      dropConnection();
      return;
    }
    if (state.epoch !== null && hello.epoch !== state.epoch) {
      // The server restarted: every call handle we hold is meaningless now.
      for (const handle of Array.from(state.cards.keys())) endCard(handle, {});
      state.history.clear();
      for (const info of state.open.values()) info.seq = null;
    }
    state.epoch = hello.epoch;
    state.retryAt = null;
    setConn("up", "Connected");
    setOffline(false);
    renderLink();
    state.pingTimer = setInterval(ping, PING_EVERY_MS);
    if (!hello.login_required) {
      state.loggedIn = true;
      $("logout").hidden = true;
      $("login").hidden = true;
      afterLogin(null);
    } else if (state.creds) {
      doLogin(state.creds.username, state.creds.token, !!state.creds.remember);
    } else {
      showLogin(null);
    }
  }

  function showLogin(message) {
    $("login").hidden = false;
    $("lines").hidden = true;
    $("dial").hidden = true;
    $("calls").hidden = true;
    $("recent").hidden = true;
    if (message !== null) $("login-error").textContent = message;
    if (!message) setConn("up", "Connected: log in");
    const user = $("login-user");
    (user.value ? $("login-token") : user).focus();
  }

  function doLogin(username, token, remember) {
    rpc("login", { username, token }).then((result) => {
      state.creds = { username, token, remember };
      storageSet(sessionStorage, SS_CREDS, remember ? state.creds : null);
      state.loggedIn = true;
      $("login").hidden = true;
      $("login-token").value = "";
      $("logout").hidden = false;
      setConn("up", "Connected as " + result.user);
      afterLogin(result.lines || null);
    }, (err) => {
      state.creds = null;
      storageSet(sessionStorage, SS_CREDS, null);
      showLogin(err && err.code === -32001 ? "Wrong user name or token." : errorText(err));
      $("login-token").value = "";
      $("login-token").focus();
    });
  }

  function afterLogin(patterns) {
    state.allowed = patterns;
    state.attempt = 0;                        // a working session resets the backoff
    const concrete = (patterns || []).filter((p) => !/[*?[]/.test(p));
    const globs = (patterns || []).filter((p) => /[*?[]/.test(p));
    // Names without wildcards are lines the user may open: offer them (and
    // open them the first time they show up; the user may untick them).
    let added = false;
    for (const line of concrete) {
      if (!state.known.has(line)) { state.known.add(line); state.wanted.add(line); added = true; }
    }
    if (added) saveWanted();
    const allowed = $("lines-allowed");
    allowed.textContent = patterns === null
      ? "This server lets you open any line: type its name (as the dialplan names it)."
      : "You may open: " + patterns.join(", ") + (globs.length ? " (* matches anything)" : "");
    const dl = $("line-suggestions");
    dl.textContent = "";
    for (const line of concrete) {
      const o = document.createElement("option");
      o.value = line;
      dl.appendChild(o);
    }
    $("lines").hidden = false;
    $("calls").hidden = false;
    $("recent").hidden = false;
    renderLines();
    for (const line of state.wanted) openLine(line);
    ping();
  }

  function openLine(line) {
    const info = state.open.get(line) || { seq: null, openSeq: null, devstate: null, error: null, opening: false };
    state.open.set(line, info);
    if (info.opening) return;
    const params = { line };
    if (info.seq !== null && state.epoch) {
      params.seq = info.seq;
      params.epoch = state.epoch;
    }
    info.opening = true;
    info.live = false;
    info.error = null;
    renderLines();
    rpc("lineOpen", params).then((result) => {
      info.opening = false;
      info.openSeq = result.seq;
      info.replay = result.replay || null;
      info.seq = Math.max(info.seq || 0, result.seq);
      info.live = true;
      if (typeof result.devstate === "string") info.devstate = short(result.devstate);
      reconcile(line, result.calls || []);
      renderLines();
      renderLink();
    }, (err) => {
      info.opening = false;
      info.error = errorText(err);
      info.live = false;
      renderLines();
    });
  }

  function closeLine(line) {
    const info = state.open.get(line);
    state.open.delete(line);
    for (const handle of Array.from(state.cards.keys())) {
      const card = state.cards.get(handle);
      if (card.lines.has(line)) {
        card.lines.delete(line);
        if (card.lines.size === 0) endCard(handle, {});
        else renderCard(card);
      }
    }
    if (info && info.live) rpc("lineClose", { line }).catch(() => {});
    renderLines();
    renderLink();
  }

  function ping() {
    if (!state.ws || state.pingDeadline) return;
    state.pingDeadline = setTimeout(dropConnection, PING_TIMEOUT_MS);
    rpc("ping").then((result) => {
      clearTimeout(state.pingDeadline);
      state.pingDeadline = null;
      // Everything up to this seq has been delivered on every open line.
      for (const info of state.open.values()) {
        if (info.live && typeof result.seq === "number") info.seq = Math.max(info.seq || 0, result.seq);
      }
    }, () => {
      clearTimeout(state.pingDeadline);
      state.pingDeadline = null;
    });
  }

  // -- events ---------------------------------------------------------------------------

  function onEvent(method, p) {
    const line = p.line;
    const info = state.open.get(line);
    if (!info) return;                        // a line we just closed
    if (typeof p.seq === "number") info.seq = Math.max(info.seq || 0, p.seq);
    if (method === "LINE_LINEDEVSTATE") {
      if (p.existing) return;
      const dev = short(p.devstate);
      if (dev === "OUTOFSERVICE" || dev === "INSERVICE") {
        info.devstate = dev;
        renderLink();
      }
      return;
    }
    if (typeof p.call !== "number") return;
    const replayed = p.existing || (typeof p.seq === "number" && info.openSeq !== null && p.seq <= info.openSeq);
    learn(p.call, line, method, p);
    if (replayed) return;                     // the lineOpen result already holds the state after it
    applyLive(p.call, line, method, p);
  }

  /** What we know of a call from every event, replayed or live: for the recent list. */
  function learn(handle, line, method, p) {
    let h = state.history.get(handle);
    if (!h) {
      h = { handle, callinfo: {}, connected: false, lines: new Set(), ended: false, mode: null, start: Date.now(), states: new Set() };
      state.history.set(handle, h);
    }
    h.lines.add(line);
    if (p.callinfo) h.callinfo = p.callinfo;
    if (method === "LINE_CALLSTATE") {
      const st = short(p.state);
      if (h.states.size === 0 && SETUP.has(st)) h.dialled = true;
      h.states.add(st);
      if (TALKING.has(st)) h.connected = true;
      if (st === "DISCONNECTED" && p.mode) h.mode = short(p.mode);
      if (st === "IDLE") {
        h.lines.delete(line);
        if (h.lines.size === 0 && !state.cards.has(handle)) {
          h.ended = true;
          addRecent(h, null);                 // ended while we were away: no card, no pop
        }
      }
    }
  }

  function applyLive(handle, line, method, p) {
    let card = state.cards.get(handle);
    if (method === "LINE_CALLSTATE" && short(p.state) === "IDLE") {
      if (card) {
        card.lines.delete(line);
        if (card.lines.size === 0) endCard(handle, { record: true });
        else renderCard(card);
      }
      return;
    }
    if (!card) card = newCard(handle, line);
    if (!card.lines.has(line)) card.lines.set(line, { state: "UNKNOWN", mode: null });
    if (p.callinfo) card.callinfo = p.callinfo;
    if (method === "LINE_CALLSTATE") {
      const l = card.lines.get(line);
      if (l.state === "UNKNOWN" && SETUP.has(short(p.state))) card.dialled = true;
      l.state = short(p.state);
      l.mode = p.mode ? short(p.mode) : null;
    }
    renderCard(card);
    maybePop(card);
  }

  /** After lineOpen: the result's calls are the truth for this line. */
  function reconcile(line, calls) {
    const present = new Set();
    for (const c of calls) {
      if (typeof c.call !== "number") continue;
      present.add(c.call);
      let card = state.cards.get(c.call);
      if (!card) {
        card = newCard(c.call, line);
        if (SETUP.has(short(c.state))) card.dialled = true;
      }
      card.lines.set(line, { state: short(c.state) || "UNKNOWN", mode: c.mode ? short(c.mode) : null });
      if (c.callinfo) card.callinfo = c.callinfo;
      const h = state.history.get(c.call);
      if (h) h.lines.add(line);
      const phase = phaseOf(card);
      if (phase !== card.phase) {
        card.phase = phase;
        const since = typeof c.updated === "number" ? c.updated * 1000 : Date.now();
        card.since = Math.min(Date.now(), since);
      }
      if (phase === "talking") card.everConnected = true;
      renderCard(card);
      maybePop(card);
    }
    for (const [handle, card] of Array.from(state.cards)) {
      if (card.lines.has(line) && !present.has(handle)) {
        card.lines.delete(line);              // ended while we were away
        if (card.lines.size === 0) endCard(handle, { record: true });
        else renderCard(card);
      }
    }
  }

  // -- cards ---------------------------------------------------------------------------

  function newCard(handle, line) {
    const node = $("card-tpl").content.firstElementChild.cloneNode(true);
    const card = {
      handle, node, lines: new Map(), callinfo: {}, since: Date.now(), phase: null,
      everConnected: false, created: Date.now(),
    };
    node.dataset.call = String(handle);
    node.querySelector(".drop").addEventListener("click", () => dropCall(card));
    const toggle = node.querySelector(".xfer-toggle");
    const form = node.querySelector(".xfer");
    const input = form.querySelector("input");
    const inputId = "xfer-" + handle;
    input.id = inputId;
    form.querySelector("label").htmlFor = inputId;
    toggle.addEventListener("click", () => {
      const open = form.hidden;
      form.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      if (open) input.focus();
    });
    form.querySelector(".xfer-cancel").addEventListener("click", () => {
      form.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
      toggle.focus();
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      transferCall(card, input.value);
    });
    state.cards.set(handle, card);
    const list = $("card-list");
    list.insertBefore(node, list.firstChild);
    $("no-calls").hidden = true;
    return card;
  }

  function bestState(card) {
    let best = "UNKNOWN", rank = -1;
    for (const l of card.lines.values()) {
      const r = RANK[l.state] !== undefined ? RANK[l.state] : 2;
      if (r > rank) { rank = r; best = l.state; }
    }
    return best;
  }
  function phaseOf(card) {
    const st = bestState(card);
    if (RINGING.has(st)) return "ringing";
    if (TALKING.has(st)) return "talking";
    if (SETUP.has(st)) return "setup";
    if (st === "DISCONNECTED" || st === "IDLE" || st === "BUSY") return "ended";
    return "other";
  }
  /** The phase from the lines' states, on every render (a line leaving can change it too);
   *  true when it changed, which restarts the timer and may change the pop. */
  function touch(card) {
    const phase = phaseOf(card);
    const changed = phase !== card.phase;
    if (changed) {
      card.phase = phase;
      card.since = Date.now();
    }
    if (phase === "talking") card.everConnected = true;
    return changed;
  }

  /** Placed from the line: ours, said so by the origin, or its first state was call setup. */
  function outgoing(card) {
    const origin = short((card.callinfo || {}).origin);
    const h = state.history.get(card.handle);
    return state.own.has(card.handle) || origin === "OUTBOUND" || !!(card.dialled || (h && h.dialled));
  }

  /** Who the user is talking to: caller on inbound calls, called party on outbound. */
  function party(card) {
    const ci = card.callinfo || {};
    const contact = ci.contact && typeof ci.contact === "object" ? ci.contact : {};
    let number, name;
    if (outgoing(card)) {
      number = known(ci.calledid) || known(ci.connectedid) || state.own.get(card.handle) || null;
      name = known(ci.calledidname) || known(ci.connectedidname);
    } else {
      number = known(ci.callerid);
      name = known(ci.calleridname);
    }
    return {
      number,
      name: known(contact.name) || name,
      company: known(contact.company),
      link: httpUrl(contact.link) || httpUrl(contact.url),
    };
  }

  function renderCard(card) {
    const node = card.node;
    const st = bestState(card);
    const who = party(card);
    const changed = touch(card);
    node.dataset.state = st;
    node.dataset.phase = card.phase;
    node.classList.toggle("ringing", card.phase === "ringing");
    node.querySelector(".state").textContent = (outgoing(card) ? "Outgoing · " : "") + (LABEL[st] || st);
    node.querySelector(".line-names").textContent = "on " + Array.from(card.lines.keys()).join(", ");
    node.querySelector(".name").textContent = who.name || (who.number ? "" : outgoing(card) ? "Outgoing call" : "Unknown caller");
    node.querySelector(".number").textContent = who.number || "";
    node.querySelector(".company").textContent = who.company || "";
    const a = node.querySelector(".crm");
    if (who.link) {
      a.href = who.link;
      a.hidden = false;
      a.setAttribute("aria-label", "Open " + (who.name || "contact") + " in the CRM (new tab)");
    } else {
      a.hidden = true;
      a.removeAttribute("href");
    }
    const ended = card.phase === "ended" || !state.hello;
    node.querySelector(".drop").disabled = ended;
    node.querySelector(".xfer-toggle").disabled = ended;
    renderTimer(card);
    if (changed && state.pop !== null) updatePop();  // "N more ringing" counts this card too
  }

  function renderTimer(card) {
    const t = card.node.querySelector(".timer");
    const live = card.phase === "ringing" || card.phase === "talking" || card.phase === "setup";
    t.textContent = live ? fmtDuration(Date.now() - card.since) : "";
  }

  function endCard(handle, opts) {
    const card = state.cards.get(handle);
    if (!card) return;
    state.cards.delete(handle);
    card.node.remove();
    $("no-calls").hidden = state.cards.size > 0;
    const h = state.history.get(handle) || { handle, callinfo: card.callinfo, connected: false, mode: null, states: new Set() };
    if (card.everConnected) h.connected = true;
    h.ended = true;
    if (opts.record) addRecent(h, card);
    if (state.pop === handle) hidePop();
    updatePop();
    closeNotification(handle);
  }

  // -- the pop ---------------------------------------------------------------------------

  const notifications = new Map();

  function maybePop(card) {
    if (card.phase !== "ringing" || outgoing(card)) {
      updatePop();                           // the banner and the title follow the calls still ringing
      return;
    }
    const key = state.epoch + ":" + card.handle;
    if (!state.popped.has(key)) {
      state.popped.add(key);
      state.pops += 1;
      state.pop = card.handle;
      notify(card);
    } else if (notifications.has(card.handle)) {
      notify(card);                          // contact arrived: refresh the text
    }
    updatePop();
  }

  function ringingCards() {
    return Array.from(state.cards.values()).filter((c) => c.phase === "ringing" && !outgoing(c) && !state.dismissed.has(c.handle));
  }

  function updatePop() {
    const ringing = ringingCards();
    if (ringing.length === 0) {
      hidePop();
      return;
    }
    let card = state.cards.get(state.pop);
    if (!card || !ringing.includes(card)) card = ringing[ringing.length - 1];
    state.pop = card.handle;
    const who = party(card);
    const pop = $("pop");
    const main = [who.name, who.number].filter(Boolean).join(" · ") || "Unknown caller";
    const more = [who.company, "on " + Array.from(card.lines.keys()).join(", ")].filter(Boolean);
    if (ringing.length > 1) more.push("and " + (ringing.length - 1) + " more ringing");
    pop.querySelector(".pop-who").textContent = main;
    pop.querySelector(".pop-more").textContent = more.join(" · ");
    pop.dataset.call = String(card.handle);
    pop.hidden = false;
    document.title = "☎ " + main + " · Calls";
  }

  function hidePop() {
    $("pop").hidden = true;
    state.pop = null;
    document.title = "Calls · asttapi";
  }

  function notify(card) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const who = party(card);
    try {
      const n = new Notification("Incoming call: " + (who.name || who.number || "unknown caller"), {
        body: [who.number, who.company].filter(Boolean).join(" · "),
        tag: "asttapi-call-" + card.handle,
        requireInteraction: true,
      });
      n.onclick = () => { window.focus(); n.close(); };
      notifications.set(card.handle, n);
    } catch (e) { /* some browsers allow notifications only from a service worker */ }
  }
  function closeNotification(handle) {
    const n = notifications.get(handle);
    if (n) { n.close(); notifications.delete(handle); }
  }

  function setupNotifyButton() {
    const b = $("notify");
    const refresh = () => {
      b.hidden = !("Notification" in window) || Notification.permission !== "default";
    };
    refresh();
    b.addEventListener("click", () => {      // a user gesture: the only time we ask
      Notification.requestPermission().then(refresh, refresh);
    });
  }

  // -- recent calls ------------------------------------------------------------------------

  function addRecent(h, card) {
    const key = state.epoch + ":" + h.handle;
    const fake = card || { handle: h.handle, callinfo: h.callinfo || {} };
    const who = party(fake);
    let kind;
    if (outgoing(fake)) kind = "placed";
    else if (h.connected || (card && card.everConnected)) kind = "answered";
    else if (h.mode === "PICKUP") kind = "answered elsewhere";
    else kind = "missed";
    const entry = {
      key, handle: h.handle, epoch: state.epoch, kind,
      number: who.number, name: who.name, company: who.company,
      at: card ? card.created : (h.start || Date.now()),
    };
    const i = state.recent.findIndex((r) => r.key === key);
    if (i >= 0) {
      // Known already (ended while we were away, and now the replay tells
      // more): keep one entry, with the better knowledge.
      const old = state.recent[i];
      if (old.kind !== "missed") entry.kind = old.kind;
      entry.at = old.at;
      for (const k of ["number", "name", "company"]) entry[k] = entry[k] || old[k];
      state.recent[i] = entry;
    } else {
      state.recent.unshift(entry);
    }
    state.recent.length = Math.min(state.recent.length, RECENT_MAX);
    for (const c of [state.history, state.popped, state.own, state.dismissed]) cap(c, KEEP_MAX);
    storageSet(sessionStorage, SS_RECENT, state.recent);
    renderRecent();
  }

  function renderRecent() {
    const list = $("recent-list");
    list.textContent = "";
    $("no-recent").hidden = state.recent.length > 0;
    for (const r of state.recent) {
      const li = document.createElement("li");
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.dataset.kind = r.kind;
      kind.textContent = r.kind;
      const what = document.createElement("span");
      what.className = "what";
      const first = document.createElement("span");
      first.className = "what-name";
      first.textContent = r.name || r.number || "unknown";
      const detail = document.createElement("span");
      detail.className = "what-detail";
      detail.textContent = [r.name ? r.number : null, r.company].filter(Boolean).join(" · ");
      what.append(first, detail);
      const when = document.createElement("span");
      when.className = "when";
      when.textContent = fmtClock(r.at);
      const side = document.createElement("span");
      side.className = "side";
      side.append(when);
      li.append(kind, what, side);
      if (r.number) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = "Call back";
        b.setAttribute("aria-label", "Call back " + (r.name || r.number));
        b.addEventListener("click", () => {
          $("dial-number").value = r.number;
          $("dial-number").focus();
        });
        side.append(b);
      }
      list.append(li);
    }
  }

  // -- actions -------------------------------------------------------------------------------

  function cardError(card, text) {
    card.node.querySelector(".error").textContent = text || "";
  }

  function dropCall(card) {
    cardError(card, "");
    rpc("lineDrop", { call: card.handle }).then(() => say("Hanging up"), (err) => cardError(card, errorText(err)));
  }

  function transferCall(card, number) {
    cardError(card, "");
    rpc("lineBlindTransfer", { call: card.handle, number }).then(() => {
      say("Transferred to " + number);
    }, (err) => cardError(card, errorText(err)));
  }

  function dial(line, number) {
    $("dial-error").textContent = "";
    rpc("lineMakeCall", { line, number }).then((result) => {
      state.own.set(result.call, number);
      const card = state.cards.get(result.call);
      if (card) renderCard(card);
      $("dial-number").value = "";
      say("Calling " + number + ": pick up your phone when it rings");
    }, (err) => {
      $("dial-error").textContent = errorText(err);
    });
  }

  // -- rendering of lines and connection ---------------------------------------------------------------

  function setConn(kind, text) {
    const el = $("conn");
    // Announce changes of kind only: the reconnect countdown ticks every second.
    if (el.dataset.state !== kind) say(kind === "down" ? "Connection to the server lost; reconnecting" : text);
    el.dataset.state = kind;
    el.textContent = text;
  }

  function renderLink() {
    const el = $("link");
    const live = Array.from(state.open.values()).filter((i) => i.live && state.ws);
    let kind = "unknown", text = "PBX: unknown";
    if (!state.ws || !state.hello) {
      text = "PBX: unknown (not connected)";
    } else if (live.some((i) => i.devstate === "OUTOFSERVICE")) {
      kind = "outofservice";
      text = "PBX link: OUT OF SERVICE";
    } else if (live.some((i) => i.devstate === "INSERVICE")) {
      kind = "inservice";
      text = "PBX link: in service";
    } else if (state.hello.pbx === "down") {   // hello tells it before any line is open
      kind = "outofservice";
      text = "PBX link: OUT OF SERVICE";
    } else if (state.hello.pbx === "up") {
      kind = "inservice";
      text = "PBX link: in service";
    }
    if (el.dataset.state !== kind) {
      el.dataset.state = kind;
      el.textContent = text;
    } else if (el.textContent !== text) {
      el.textContent = text;
    }
  }

  function renderLines() {
    const list = $("line-list");
    // The list is rebuilt: keep the keyboard focus on the same control.
    const active = document.activeElement;
    const refocus = active && list.contains(active)
      ? (active.dataset.line !== undefined ? ["line", active.dataset.line] : ["forget", active.dataset.forget])
      : null;
    list.textContent = "";
    const names = new Set([...state.known, ...state.open.keys()]);
    for (const line of Array.from(names).sort()) {
      const info = state.open.get(line);
      const li = document.createElement("li");
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !!info;
      box.dataset.line = line;
      box.addEventListener("change", () => {
        if (box.checked) {
          state.wanted.add(line);
          saveWanted();
          openLine(line);
        } else {
          state.wanted.delete(line);
          saveWanted();
          closeLine(line);
        }
      });
      label.append(box, document.createTextNode(line));
      const st = document.createElement("span");
      st.className = "lstate";
      if (info && info.error) { st.textContent = info.error; st.dataset.state = "error"; }
      else if (info && info.opening) st.textContent = "opening…";
      else if (info && info.live) st.textContent = "open";
      else if (info && !state.hello) st.textContent = "reconnecting…";
      else st.textContent = "closed";
      const forget = document.createElement("button");
      forget.type = "button";
      forget.className = "forget";
      forget.textContent = "✕";
      forget.setAttribute("aria-label", "Forget line " + line);
      forget.dataset.forget = line;
      forget.addEventListener("click", () => {
        state.wanted.delete(line);
        state.known.delete(line);
        saveWanted();
        if (state.open.has(line)) closeLine(line);
        renderLines();
      });
      li.append(label, st, forget);
      list.append(li);
    }
    if (refocus) {
      const again = Array.from(list.querySelectorAll(refocus[0] === "line" ? "input" : "button"))
        .find((e) => e.dataset[refocus[0]] === refocus[1]);
      if (again) again.focus();
    }
    const select = $("dial-line");
    const current = select.value;
    select.textContent = "";
    for (const [line, info] of state.open) {
      if (!info.live) continue;
      const o = document.createElement("option");
      o.value = line;
      o.textContent = "From " + line;
      select.append(o);
    }
    if (current) select.value = current;
    $("dial").hidden = select.options.length === 0;
  }

  // -- wiring ---------------------------------------------------------------------------------

  function init() {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      $("login-error").textContent = "";
      const user = $("login-user").value.trim(), token = $("login-token").value;
      if (!state.ws) {
        $("login-error").textContent = "Not connected yet; try again in a moment.";
        return;
      }
      doLogin(user, token, $("login-remember").checked);
    });
    $("logout").addEventListener("click", () => {
      state.creds = null;
      storageSet(sessionStorage, SS_CREDS, null);
      for (const handle of Array.from(state.cards.keys())) endCard(handle, {});
      state.open.clear();
      $("logout").hidden = true;
      dropConnection();                       // reconnects and asks for a login
    });
    $("line-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = $("line-name");
      const line = input.value.trim();
      $("lines-error").textContent = "";
      if (!line) return;
      if (/[\u0000-\u001f\u007f]/.test(line)) {
        $("lines-error").textContent = "A line name cannot contain control characters.";
        return;
      }
      state.known.add(line);
      state.wanted.add(line);
      saveWanted();
      input.value = "";
      openLine(line);
    });
    $("dial-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const number = $("dial-number").value.trim();
      const line = $("dial-line").value;
      if (number && line) dial(line, number);
    });
    $("pop-dismiss").addEventListener("click", () => {
      if (state.pop !== null) state.dismissed.add(state.pop);
      updatePop();
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && !$("pop").hidden) {
        $("pop-dismiss").click();
      }
    });
    window.addEventListener("online", reconnectNow);
    setupNotifyButton();
    setInterval(() => {
      for (const card of state.cards.values()) renderTimer(card);
      renderRetry();
    }, 1000);
    renderRecent();
    renderLink();
    connect();
  }

  // For the browser tests and the curious: a read-only look at the state.
  window.asttapiPage = {
    cards: () => Array.from(state.cards.keys()),
    lines: () => Array.from(state.open.keys()),
    connected: () => !!(state.ws && state.hello),
    pops: () => state.pops,
    replays: () => Object.fromEntries(Array.from(state.open, ([line, info]) => [line, info.replay || null])),
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
