// The customer viewer: one tenant's audit events, through /api/v1/viewer with the token from
// the address as a bearer. Nothing here can widen what the token shows: the server scopes it.
import { el, formParams, when } from "/console/static/dom.js";

const token = new URLSearchParams(location.search).get("token") ?? "";
const form = document.querySelector("#filters");
const tbody = document.querySelector("#events tbody");
const more = document.querySelector("#more");
const shownText = document.querySelector("#shown");
const detail = document.querySelector("#detail");
let cursor = null;
let shown = 0;

async function call(path) {
  const response = await fetch(`/api/v1/viewer/${path}`, { headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401) {
    location.reload(); // the page says the link expired
    throw new Error("expired");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new Error(body?.error?.message ?? `HTTP ${response.status}`);
  }
  return response;
}

function who(party) {
  if (!party) return "";
  return party.name ? `${party.name} (${party.id ?? party.type})` : `${party.type ?? ""} ${party.id ?? ""}`.trim();
}

function filters() {
  return formParams(form);
}

function open(event) {
  document.querySelector("#detail-title").textContent = event.action;
  const fields = document.querySelector("#detail-fields");
  fields.replaceChildren(...[
    ["When", event.timestamp], ["Action", event.action], ["Category", event.category],
    ["Actor", who(event.actor)], ["Target", who(event.target)], ["Event id", event.id],
  ].flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value ?? "")]));
  document.querySelector("#detail-json").textContent = JSON.stringify(event.metadata ?? {}, null, 2);
  detail.showModal();
}

function row(event) {
  return el("tr", {},
    el("td", {}, when(event.timestamp)),
    el("td", {}, el("button", { type: "button", class: "link", onclick: () => open(event),
                                "aria-label": `Show ${event.action} at ${event.timestamp}` }, event.action)),
    el("td", {}, event.category), el("td", {}, who(event.actor)), el("td", {}, who(event.target)));
}

async function load(reset) {
  const params = filters();
  params.set("limit", "50");
  if (!reset && cursor) params.set("cursor", cursor);
  const page = await (await call(`events?${params}`)).json();
  if (reset) {
    tbody.replaceChildren();
    shown = 0;
  }
  tbody.append(...page.data.map(row));
  shown += page.data.length;
  cursor = page.next_cursor;
  more.hidden = !cursor;
  shownText.textContent = shown ? `${shown} shown` : "No events match.";
  document.body.dataset.ready = "true";
}

async function download() {
  const blob = await (await call(`events/export?${filters()}`)).blob();
  const link = el("a", { href: URL.createObjectURL(blob), download: "audit-log.csv" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

for (const time of document.querySelectorAll("time[datetime]")) time.textContent = new Date(time.dateTime).toLocaleString();
form.addEventListener("submit", (event) => {
  event.preventDefault();
  load(true);
});
more.addEventListener("click", () => load(false));
document.querySelector("#download").addEventListener("click", download);
document.querySelector("#close-detail").addEventListener("click", () => detail.close());
await load(true);
