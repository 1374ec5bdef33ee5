// percept chat widget: <script src="https://CONSOLE/widget.js" data-title="…" data-language="es"
// data-campaign="…"></script>. It talks to the console that served it; its styles live in a
// shadow root, so the host page's CSS and the widget's cannot collide. Once a chat has begun
// it follows the chat's event stream: a salesperson who takes over writes through it. Every
// message has a number in the chat's transcript, so none shows twice and all in order.
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

  // A message with its number goes before any later-numbered one: the transcript's order.
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
    if (seq) node.dataset.seq = String(seq);
    const later = seq && [...log.querySelectorAll(".msg[data-seq]")].find((m) => Number(m.dataset.seq) > seq);
    if (later) log.insertBefore(node, later);
    else log.append(node);
    log.scrollTop = log.scrollHeight;
    return node;
  }

  const shown = new Set();  // transcript numbers already on screen
  let events = null;
  let last = 0;
  let sending = false;  // the visitor's own message may come back on the stream meanwhile
  let failures = 0;

  function follow(session) {
    if (events) return;
    events = new EventSource(`${origin}/api/chat/${encodeURIComponent(session)}/events?after=${last}`);
    events.addEventListener("chat", (event) => {
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
      events.close();
      events = null;
      if (++failures <= 8) setTimeout(() => follow(session), Math.min(30000, 2000 * failures));
    };
    events.addEventListener("gone", again);
    events.addEventListener("error", () => { if (events && events.readyState === EventSource.CLOSED) again(); });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    const mine = add("me", text);
    const pending = add("bot", "…");
    sending = true;
    try {
      const response = await fetch(`${origin}/api/chat`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          text,
          session_id: sessionStorage.getItem(storageKey) || "",
          language_code: options.language || "",
          campaign_id: options.campaign || "",
          page_url: location.href,
        }),
      });
      const reply = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(reply.error || `the assistant is unavailable (${response.status})`);
      sessionStorage.setItem(storageKey, reply.session_id);
      shown.add(reply.visitor_seq);
      mine.dataset.seq = String(reply.visitor_seq);
      if (!reply.text || shown.has(reply.reply_seq)) pending.remove();  // none, or the stream's
      else {
        pending.textContent = reply.text;
        pending.dataset.seq = String(reply.reply_seq);
        shown.add(reply.reply_seq);
      }
      last = Math.max(last, reply.visitor_seq, reply.reply_seq);
      follow(reply.session_id);
    } catch (error) {
      pending.remove();
      add("note", error.message);
    } finally {
      sending = false;
    }
  });

  const stored = sessionStorage.getItem(storageKey);
  if (stored) follow(stored);  // a reload: the conversation so far, then live

  (document.body || document.documentElement).append(host);
})();
