// Demo chat client for the realtime backend (docs/PROTOCOL.md). No build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"), connectForm: $("connect-form"), name: $("name"), token: $("token"),
    tokenLabel: $("token-label"), room: $("room"), connect: $("connect"), messages: $("messages"),
    typing: $("typing"), sendForm: $("send-form"), message: $("message"), send: $("send"),
    online: $("online"),
  };
  const TYPING_REFRESH_MS = 2000; // resend "start" while typing (server throttles to 1/s)
  const TYPING_IDLE_MS = 3000; // send "stop" after this long without a keystroke
  const TYPING_TTL_MS = 6500; // forget a typer we heard nothing from (server expires at 6 s)
  const FATAL_CLOSES = new Set([4001, 4003, 4004]);

  let config = { wsUrl: null, wsPort: 8081, devTokens: false };
  let ws = null;
  let me = null;
  let room = null;
  let wanted = false; // the user wants to be connected: reconnect on loss
  let retries = 0;
  const cursor = new Map(); // room -> {offset, epoch}: resume point for recovery
  const online = new Map(); // user id -> name
  const typers = new Map(); // user id -> {name, timer}
  let typingSentAt = 0;
  let typingIdle = null;
  let refreshTimer = null; // renews the token before the server closes with 4001 at exp
  let presentedExp = null; // exp of the token sent in hello

  function setStatus(text, isOnline = false) {
    ui.status.textContent = text;
    ui.status.classList.toggle("online", isOnline);
  }

  function wsUrl() {
    if (config.wsUrl) return config.wsUrl;
    if (location.protocol === "https:") return `wss://${location.hostname}:8081/`;
    return `ws://${location.hostname}:${config.wsPort}/`;
  }

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  }

  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  function addLine(node) {
    const atBottom = ui.messages.scrollTop + ui.messages.clientHeight >= ui.messages.scrollHeight - 4;
    ui.messages.append(node);
    if (atBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function system(text) {
    const li = document.createElement("li");
    li.className = "system";
    li.textContent = text;
    addLine(li);
  }

  function showMessage(frame) {
    const seen = cursor.get(frame.room);
    if (seen && seen.epoch === frame.epoch && frame.offset <= seen.offset) return; // duplicate
    cursor.set(frame.room, { offset: frame.offset, epoch: frame.epoch });
    const li = document.createElement("li");
    li.dataset.testid = "message";
    li.dataset.offset = String(frame.offset);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = frame.user.name;
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = frame.body;
    li.append(who, body);
    addLine(li);
    dropTyper(frame.user.id); // a message ends that user's typing
  }

  function renderOnline() {
    ui.online.replaceChildren(...[...online.entries()]
      .sort((a, b) => a[1].localeCompare(b[1]))
      .map(([id, name]) => {
        const li = document.createElement("li");
        li.dataset.user = id;
        li.textContent = name;
        return li;
      }));
  }

  function renderTyping() {
    const names = [...typers.values()].map((t) => t.name).sort();
    if (names.length === 0) ui.typing.textContent = "";
    else if (names.length === 1) ui.typing.textContent = `${names[0]} is typing…`;
    else if (names.length === 2) ui.typing.textContent = `${names[0]} and ${names[1]} are typing…`;
    else ui.typing.textContent = "several people are typing…";
  }

  function dropTyper(id) {
    const typer = typers.get(id);
    if (!typer) return;
    clearTimeout(typer.timer);
    typers.delete(id);
    renderTyping();
  }

  function onTyping(frame) {
    if (me && frame.user.id === me.id) return;
    if (frame.state === "stop") { dropTyper(frame.user.id); return; }
    const old = typers.get(frame.user.id);
    if (old) clearTimeout(old.timer);
    const timer = setTimeout(() => dropTyper(frame.user.id), TYPING_TTL_MS);
    typers.set(frame.user.id, { name: frame.user.name, timer });
    renderTyping();
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "welcome":
        me = frame.user;
        retries = 0;
        setStatus(`connected as ${me.name}`, true);
        scheduleRefresh(presentedExp);
        send(joinFrame());
        break;
      case "refreshed": scheduleRefresh(frame.exp); break;
      case "joined": {
        online.clear();
        for (const user of frame.presence) online.set(user.id, user.name);
        renderOnline();
        const seen = cursor.get(frame.room);
        if (frame.recovered === false || (seen && seen.epoch !== frame.epoch)) {
          if (seen) system("history was reset");
          ui.messages.replaceChildren();
          cursor.delete(frame.room);
        }
        if (!cursor.has(frame.room) && !frame.replayed) {
          cursor.set(frame.room, { offset: frame.offset, epoch: frame.epoch });
        }
        ui.message.disabled = ui.send.disabled = false;
        setStatus(`${me.name} in ${frame.room}`, true);
        break;
      }
      case "message": showMessage(frame); break;
      case "ack": break;
      case "typing": onTyping(frame); break;
      case "presence":
        if (frame.event === "join") online.set(frame.user.id, frame.user.name);
        else { online.delete(frame.user.id); dropTyper(frame.user.id); }
        renderOnline();
        break;
      case "error": system(`error ${frame.code}: ${frame.detail}`); break;
      default: break;
    }
  }

  function tokenExp(jwt) {
    // the payload's exp (seconds since 1970); the server checks the signature
    try {
      const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(payload)).exp;
    } catch (error) {
      return null;
    }
  }

  function scheduleRefresh(exp) {
    // refresh a minute before exp (half the remaining life for short tokens); only
    // DEV_TOKENS pages can get a new token by themselves
    clearTimeout(refreshTimer);
    if (!config.devTokens || !exp) return;
    const left = exp * 1000 - Date.now();
    const delay = Math.max(0, left - Math.min(60000, left / 2));
    refreshTimer = setTimeout(async () => {
      if (!ws || !me) return;
      try {
        send({ type: "refresh", token: await token(ui.name.value.trim()) });
      } catch (error) {
        system(`token refresh failed: ${error.message}`);
      }
    }, delay);
  }

  function joinFrame() {
    const seen = cursor.get(room);
    const frame = { type: "join", room };
    frame.since = seen ? { offset: seen.offset, epoch: seen.epoch } : { offset: 0, epoch: "" };
    return frame;
  }

  async function token(name) {
    if (!config.devTokens) return ui.token.value;
    const response = await fetch("/dev/token", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: name }),
    });
    if (!response.ok) throw new Error(await response.text());
    return (await response.json()).token;
  }

  async function open() {
    const name = ui.name.value.trim();
    let presented;
    try {
      presented = await token(name);
    } catch (error) {
      setStatus(`no token: ${error.message}`);
      return;
    }
    presentedExp = tokenExp(presented);
    setStatus("connecting…");
    const socket = new WebSocket(wsUrl());
    ws = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "hello", v: [1], token: presented }));
    socket.onmessage = (event) => {
      try { onFrame(JSON.parse(event.data)); } catch (error) { console.error(error); }
    };
    socket.onclose = (event) => {
      if (ws !== socket) return;
      ws = null;
      clearTimeout(refreshTimer);
      ui.message.disabled = ui.send.disabled = true;
      for (const id of [...typers.keys()]) dropTyper(id);
      if (!wanted || FATAL_CLOSES.has(event.code)) {
        setStatus(`disconnected (${event.code}${event.reason ? ` ${event.reason}` : ""})`);
        wanted = false;
        return;
      }
      const delay = Math.min(30000, 500 * 2 ** retries) * (0.5 + Math.random() / 2);
      retries += 1;
      setStatus(`reconnecting in ${Math.round(delay / 1000)} s (${event.code})`);
      setTimeout(() => { if (wanted && !ws) open(); }, delay);
    };
  }

  ui.connectForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const nextRoom = ui.room.value.trim();
    if (ws && me) {
      if (nextRoom !== room) { send({ type: "leave", room }); room = nextRoom; ui.messages.replaceChildren(); send(joinFrame()); }
      return;
    }
    room = nextRoom;
    wanted = true;
    open();
  });

  ui.message.addEventListener("input", () => {
    if (!room) return;
    const now = Date.now();
    if (now - typingSentAt > TYPING_REFRESH_MS) {
      typingSentAt = now;
      send({ type: "typing", room, state: "start" });
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(() => {
      typingSentAt = 0;
      send({ type: "typing", room, state: "stop" });
    }, TYPING_IDLE_MS);
  });

  ui.sendForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = ui.message.value.trim();
    if (!body || !room) return;
    send({ type: "message", room, id: newId(), body });
    ui.message.value = "";
    clearTimeout(typingIdle);
    typingSentAt = 0; // the server clears typing when the message arrives
  });

  fetch("/config.json")
    .then((response) => response.json())
    .then((loaded) => { config = loaded; ui.tokenLabel.hidden = config.devTokens; })
    .catch(() => setStatus("could not load /config.json"));
})();
