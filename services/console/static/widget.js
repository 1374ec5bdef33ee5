// percept chat widget: <script src="https://CONSOLE/widget.js" data-title="…" data-language="es"
// data-campaign="…"></script>. It talks to the console that served it; its styles live in a
// shadow root, so the host page's CSS and the widget's cannot collide. Once a chat has begun
// it follows the chat's event stream: a salesperson who takes over writes through it. Every
// message has a number in the chat's transcript, so none shows twice and all in order.
// Messages go one at a time, in the order typed (those typed before the first answer wait for
// its session id); a chat that expired is forgotten and the message opens a new one.
(() => {
  "use strict";
  const script = document.currentScript;
  const origin = new URL(script.src, location.href).origin;
  const options = script.dataset;
  const storageKey = "percept-chat-session";

  const host = document.createElement("div");
  host.id = "percept-chat";
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML = `
    <style>
      :host { all: initial; font: 14px/1.4 system-ui, sans-serif; }
      .open { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; border: 0;
        border-radius: 24px; padding: 12px 18px; background: #4e5ba6; color: #fff; cursor: pointer;
        box-shadow: 0 4px 14px rgba(0,0,0,.2); font: inherit; }
      .panel { position: fixed; right: 20px; bottom: 76px; z-index: 2147483000; width: 340px;
        max-height: 480px; display: none; flex-direction: column; background: #fff; color: #1d2330;
        border-radius: 10px; box-shadow: 0 8px 30px rgba(0,0,0,.25); overflow: hidden; }
      .panel.shown { display: flex; }
      .title { padding: 10px 14px; background: #4e5ba6; color: #fff; font-weight: 600; }
      .log { flex: 1; overflow-y: auto; padding: 10px; display: flex; flex-direction: column; gap: 6px;
        min-height: 200px; }
      .msg { max-width: 85%; padding: 7px 10px; border-radius: 10px; white-space: pre-wrap; }
      .me { align-self: flex-end; background: #4e5ba6; color: #fff; }
      .bot { align-self: flex-start; background: #eef0f5; }
      .person { align-self: flex-start; background: #e3f4ea; }
      .by { display: block; font-size: 11px; color: #475467; }
      .note { align-self: center; color: #b42318; font-size: 12px; }
      form { display: flex; border-top: 1px solid #e4e7ec; }
      input { flex: 1; border: 0; padding: 10px; font: inherit; outline: none; }
      button.send { border: 0; background: none; color: #4e5ba6; font: inherit; font-weight: 600;
        padding: 0 14px; cursor: pointer; }
    </style>
    <button class="open" part="open">${escape(options.title || "Chat with us")}</button>
    <div class="panel" role="dialog" aria-label="chat">
      <div class="title">${escape(options.title || "Chat with us")}</div>
      <div class="log" aria-live="polite"></div>
      <form><input name="text" autocomplete="off" maxlength="2000" placeholder="Type a message…"
        aria-label="message"><button class="send" type="submit">Send</button></form>
    </div>`;

  function escape(text) {
    return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  const panel = root.querySelector(".panel");
  const log = root.querySelector(".log");
  const form = root.querySelector("form");
  const input = root.querySelector("input");
  root.querySelector(".open").addEventListener("click", () => {
    panel.classList.toggle("shown");
    if (panel.classList.contains("shown")) input.focus();
  });

  // Transcript order: a message with its number goes before any later-numbered one; a
  // message not numbered yet (queued or on its way) stays after every numbered one.
  function place(node, seq) {
    node.dataset.seq = String(seq);
    delete node.dataset.pending;
    const later = [...log.querySelectorAll(".msg[data-seq]")].find((m) => Number(m.dataset.seq) > seq)
      || log.querySelector(".msg[data-pending]");
    if (later && later !== node) log.insertBefore(node, later);
    else if (!later) log.append(node);
    log.scrollTop = log.scrollHeight;
  }

  function add(kind, text, by, seq) {
    const node = document.createElement("div");
    node.className = `msg ${kind}`;
    node.textContent = text;  // never HTML: replies are text
    if (by) {
      const name = document.createElement("span");
      name.className = "by";
      name.textContent = by;
      node.prepend(name);
    }
    if (seq) place(node, seq);
    else {
      log.append(node);
      log.scrollTop = log.scrollHeight;
    }
    return node;
  }

  // Said in the widget itself (the assistant's own words come from the server).
  const NEW_CHAT = {
    en: "A new conversation has started.",
    es: "Ha empezado una conversación nueva.",
    fr: "Une nouvelle conversation a commencé.",
  };
  const language = (options.language || navigator.language || "en").toLowerCase().split("-")[0];

  let shown = new Set();  // transcript numbers already on screen (of the followed chat)
  let events = null;
  let following = "";  // the session the stream follows
  let last = 0;
  let sending = false;  // the visitor's own message may come back on the stream meanwhile
  let failures = 0;

  function follow(session) {
    if (events && following === session) return;
    if (events) events.close();
    events = null;
    if (following !== session) failures = 0;
    following = session;
    const stream = new EventSource(`${origin}/api/chat/${encodeURIComponent(session)}/events?after=${last}`);
    events = stream;
    stream.addEventListener("chat", (event) => {
      if (events !== stream) return;  // a stream left behind for another session
      const data = JSON.parse(event.data);
      failures = 0;
      if (data.type !== "message" || shown.has(data.seq)) return;
      shown.add(data.seq);
      last = Math.max(last, data.seq);
      if (data.role === "visitor") { if (!sending) add("me", data.text, "", data.seq); return; }
      if (data.role === "salesperson") add("person", data.text, data.author, data.seq);
      else add("bot", data.text, "", data.seq);
    });
    const again = () => {  // the console restarted, the stream fell behind, or was refused
      stream.close();
      if (events !== stream) return;
      events = null;
      if (++failures <= 8) {
        setTimeout(() => { if (!events && following === session) follow(session); },
          Math.min(30000, 2000 * failures));
      }
    };
    stream.addEventListener("gone", again);
    stream.addEventListener("error", () => { if (stream.readyState === EventSource.CLOSED) again(); });
  }

  // The chat is over (expired, or gone from the server): what is on screen stays as it
  // is, unnumbered, and the next message opens a new chat.
  function forget() {
    sessionStorage.removeItem(storageKey);
    if (events) events.close();
    events = null;
    following = "";
    last = 0;
    failures = 0;
    shown = new Set();
    for (const m of log.querySelectorAll(".msg[data-seq]")) delete m.dataset.seq;
  }

  async function post(text, session) {
    const response = await fetch(`${origin}/api/chat`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        text,
        session_id: session,
        language_code: options.language || "",
        campaign_id: options.campaign || "",
        page_url: location.href,
      }),
    });
    const reply = await response.json().catch(() => ({}));
    return { response, reply };
  }

  // One message at a time, in the order typed: the first one opens the chat, and the
  // ones typed before its answer wait for its session id (else each would open a chat).
  const queue = [];
  let busy = false;

  async function send(mine) {
    const text = mine.textContent;
    const pending = add("bot", "…");
    pending.dataset.pending = "1";
    mine.after(pending);
    sending = true;
    try {
      let session = sessionStorage.getItem(storageKey) || "";
      let { response, reply } = await post(text, session);
      // 409: the chat changed under the turn each time it was tried (the assistant says
      // send it again); twice more, a moment apart, before the visitor is told.
      for (let again = 0; again < 2 && response.status === 409; again++) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        ({ response, reply } = await post(text, session));
      }
      if (response.status === 404 && session) {  // the chat expired or is gone: a new one
        forget();
        const note = add("note", NEW_CHAT[language] || NEW_CHAT.en);
        mine.before(note);
        session = "";
        ({ response, reply } = await post(text, session));
      }
      if (!response.ok) throw new Error(reply.error || `the assistant is unavailable (${response.status})`);
      sessionStorage.setItem(storageKey, reply.session_id);
      if (reply.session_id !== following) {  // a new chat: numbers start again
        for (const m of log.querySelectorAll(".msg[data-seq]")) delete m.dataset.seq;
        shown = new Set();
        last = 0;
      }
      shown.add(reply.visitor_seq);
      place(mine, reply.visitor_seq);
      if (!reply.text || shown.has(reply.reply_seq)) pending.remove();  // none, or the stream's
      else {
        pending.textContent = reply.text;
        shown.add(reply.reply_seq);
        place(pending, reply.reply_seq);
      }
      last = Math.max(last, reply.visitor_seq, reply.reply_seq || 0);
      follow(reply.session_id);
    } catch (error) {
      pending.remove();
      delete mine.dataset.pending;
      mine.after(add("note", error.message));
    } finally {
      sending = false;
    }
  }

  async function drain() {
    if (busy) return;
    busy = true;
    try {
      while (queue.length) await send(queue.shift());
    } finally {
      busy = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    const mine = add("me", text);
    mine.dataset.pending = "1";
    queue.push(mine);
    drain();
  });

  const stored = sessionStorage.getItem(storageKey);
  if (stored) follow(stored);  // a reload: the conversation so far, then live

  (document.body || document.documentElement).append(host);
})();
