// Shared by the console's pages: JSON calls (with the API-key form on 401), formatting,
// and the live lead feed (server-sent events from WatchLeads through the gateway).
"use strict";

const percept = (() => {
  async function api(path, options = {}) {
    const response = await fetch(path, { credentials: "same-origin", ...options });
    if (response.status === 401) {
      askForKey();
      throw new Error("an API key is required");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  function askForKey() {
    if (document.getElementById("key-dialog")) return;
    const dialog = el("dialog", { id: "key-dialog" }, [
      el("form", { method: "dialog" }, [
        el("h2", {}, ["Sign in"]),
        el("p", { class: "muted" }, ["This console needs an API key with read access."]),
        el("input", { id: "key-input", type: "password", size: "40", autocomplete: "off" }),
        el("p", { id: "key-error", class: "error" }),
        el("button", { type: "submit" }, ["Sign in"]),
      ]),
    ]);
    dialog.querySelector("form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const key = document.getElementById("key-input").value;
      const response = await fetch("/api/login", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key }),
      });
      if (response.ok) location.reload();
      else document.getElementById("key-error").textContent = "That key is not valid.";
    });
    document.body.append(dialog);
    dialog.showModal();
  }

  function el(tag, attributes = {}, children = []) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  function leadName(lead) {
    const q = lead.qualification || {}, id = lead.identity || {};
    return q.name || id.email || id.phone || `lead ${lead.lead_id.slice(0, 8)}`;
  }

  function ago(iso) {
    if (!iso) return "";
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 60) return `${Math.round(seconds)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    return new Date(iso).toLocaleDateString();
  }

  function badge(leadClass) {
    return el("span", { class: `badge ${leadClass}` }, [leadClass]);
  }

  function scoreBar(score) {
    const bar = el("span", { class: "bar" }, [el("span", { style: `width:${Math.round(score * 100)}%` })]);
    return el("span", {}, [bar, score.toFixed(2)]);
  }

  // Follows a server-sent event stream: onEvent for each `name` event, onOpen each time
  // the stream (re)connects (what was missed meanwhile must be reloaded).
  function follow(path, name, onEvent, onOpen) {
    const indicator = document.getElementById("live");
    const source = new EventSource(path);
    source.addEventListener("open", () => {
      if (indicator) { indicator.textContent = "live"; indicator.classList.add("on"); }
      onOpen && onOpen();
    });
    source.addEventListener("error", () => {
      if (indicator) { indicator.textContent = "reconnecting…"; indicator.classList.remove("on"); }
    });
    source.addEventListener(name, (event) => onEvent(JSON.parse(event.data)));
    return source;
  }

  function watchLeads(onChange, onOpen) {
    return follow("/api/leads/events", "change", onChange, onOpen);
  }

  return { api, el, leadName, ago, badge, scoreBar, follow, watchLeads };
})();
