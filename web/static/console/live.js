// The live debugger: an EventSource on the workspace's live stream (authorised by a
// short-lived token from the API). Events arrive into a buffer; the page is redrawn at most
// once per animation frame and keeps the newest 500 rows, so a thousand events a second
// cannot freeze the tab. Paused, events are counted and kept waiting, not lost from the count.
import { EVENT_TYPES, api, el, number } from "./console.js";

const KEEP = 500;
const form = document.querySelector("#live-filters");
const feed = document.querySelector("#feed");
const pauseButton = document.querySelector("#pause");
const state = document.querySelector("#state");
const counters = { received: 0, waiting: 0, dropped: 0 };
let incoming = [];
let kept = [];
let paused = false;
let frame = 0;
let source = null;

function options() {
  const data = new FormData(form);
  return { types: data.get("types"), names: data.get("names"), source_id: data.get("source_id"),
           search: String(data.get("search") ?? "").toLowerCase(), raw: data.get("raw") === "on" };
}

function render() {
  frame = 0;
  if (!paused && incoming.length) {
    kept = incoming.reverse().concat(kept).slice(0, KEEP);
    incoming = [];
    counters.waiting = 0;
    draw();
  }
  for (const name of Object.keys(counters)) document.querySelector(`#${name}`).textContent = number(counters[name]);
}

function draw() {
  const { search, raw } = options();
  const rows = [];
  for (const { event, text } of kept) {
    if (search && !text.toLowerCase().includes(search)) continue;
    rows.push(el("li", {},
      el("div", { class: "row" }, el("strong", {}, `${event.type} · ${event.name ?? ""}`),
         el("span", { class: "muted mono" }, `${event.received_at} · ${event.id}`)),
      el("pre", { class: "mono json" }, raw ? text : JSON.stringify(event, null, 2))));
  }
  feed.replaceChildren(...rows);
}

function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

async function connect() {
  source?.close();
  state.textContent = "connecting";
  const { token } = await api("events/live-token", { method: "POST" });
  const { types, names, source_id } = options();
  const params = new URLSearchParams({ token });
  if (types) params.set("types", types);
  if (names) params.set("names", names);
  if (source_id) params.set("source_id", source_id);
  source = new EventSource(`/api/v1/workspaces/${document.body.dataset.workspace}/events/live?${params}`);
  source.onopen = () => { state.textContent = paused ? "paused" : "live"; document.body.dataset.ready = "true"; };
  source.onerror = () => { state.textContent = "reconnecting"; };
  const onEvent = (message) => {
    counters.received += 1;
    incoming.push({ event: JSON.parse(message.data), text: message.data });
    if (incoming.length > KEEP) incoming.splice(0, incoming.length - KEEP); // the oldest waiting ones go; the count stays
    if (paused) counters.waiting += 1;
    schedule();
  };
  for (const type of [...EVENT_TYPES, "message"]) source.addEventListener(type, onEvent);
  source.addEventListener("dropped", (message) => {
    counters.dropped += JSON.parse(message.data).count;
    schedule();
  });
}

pauseButton.addEventListener("click", () => {
  paused = !paused;
  pauseButton.textContent = paused ? "Resume" : "Pause";
  pauseButton.setAttribute("aria-pressed", String(paused));
  state.textContent = paused ? "paused" : "live";
  schedule();
});
document.querySelector("#clear").addEventListener("click", () => { kept = []; draw(); });
form.addEventListener("submit", (event) => { event.preventDefault(); connect(); });
form.elements.namedItem("search").addEventListener("input", draw);
form.elements.namedItem("raw").addEventListener("change", draw);
addEventListener("pagehide", () => source?.close());
await connect();
