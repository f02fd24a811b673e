import { api, el, number, when } from "./console.js";
import { formParams } from "./dom.js";

const form = document.querySelector("#filters");
const tbody = document.querySelector("#events tbody");
const more = document.querySelector("#more");
const detail = document.querySelector("#detail");
let cursor = null;
let shown = 0;

function filters() {
  return formParams(form);
}

function who(event) {
  return event.user_id ?? event.actor?.id ?? event.anonymous_id ?? "";
}

function row(event) {
  const open = () => {
    document.querySelector("#detail-title").textContent = `${event.type} · ${event.name ?? ""}`;
    document.querySelector("#detail-json").textContent = JSON.stringify(event, null, 2);
    detail.showModal();
  };
  return el("tr", {},
    el("td", {}, when(event.received_at)), el("td", {}, event.type), el("td", {}, event.name ?? ""),
    el("td", {}, who(event)),
    el("td", {}, el("button", { type: "button", class: "link mono", onclick: open, "aria-label": `Show event ${event.id}` }, event.id)));
}

async function load(reset) {
  const params = filters();
  params.set("limit", "50");
  if (!reset && cursor) params.set("cursor", cursor);
  const page = await api(`events?${params}`);
  if (reset) {
    tbody.replaceChildren();
    shown = 0;
  }
  tbody.append(...page.data.map(row));
  shown += page.data.length;
  cursor = page.next_cursor;
  more.hidden = !cursor;
  document.querySelector("#shown").textContent = shown ? `${number(shown)} shown` : "No events match.";
  const exportParams = filters();
  document.querySelector("#export").href = `/api/v1/workspaces/${document.body.dataset.workspace}/events/export?${exportParams}`;
  document.body.dataset.ready = "true";
}

// Filters from the address (a link from another page: /console/events?type=audit).
for (const [name, value] of new URLSearchParams(location.search)) {
  const field = form.elements.namedItem(name);
  if (field) field.value = value;
}
form.addEventListener("submit", (event) => {
  event.preventDefault();
  history.replaceState(null, "", `?${filters()}`);
  load(true);
});
more.addEventListener("click", () => load(false));
document.querySelector("#close-detail").addEventListener("click", () => detail.close());
await load(true);
