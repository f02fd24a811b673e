// Contracts: list, create and edit (the schema's fault shown at its place: the 422's pointer
// becomes a line in the editor), violations grouped by path and kind with counts and last
// seen, and samples.
import { ApiError, api, el, number, when } from "./console.js";

const $ = (selector) => document.querySelector(selector);
const form = $("#contract");
const schema = $("#schema");
let current = null;
const EXAMPLE = { type: "object", required: ["order_id"], properties: { order_id: { type: "string" }, total: { type: "number" } } };

function lines() {
  $("#gutter").textContent = Array.from({ length: schema.value.split("\n").length }, (_, i) => i + 1).join("\n");
}
schema.addEventListener("input", lines);
schema.addEventListener("scroll", () => ($("#gutter").scrollTop = schema.scrollTop));

/** The line of the pretty-printed schema where a JSON pointer lands (its last key's line). */
function lineOf(pointer) {
  const keys = pointer.split("/").slice(1).map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~"));
  const text = schema.value.split("\n");
  let line = 0;
  let depth = 0;
  for (const key of keys) {
    if (/^\d+$/.test(key)) continue;
    const found = text.findIndex((l, i) => i >= line && l.trimStart().startsWith(JSON.stringify(key) + ":") &&
                                              l.length - l.trimStart().length > depth);
    if (found < 0) break;
    line = found;
    depth = text[found].length - text[found].trimStart().length;
  }
  return line + 1;
}

function fault(text, pointer) {
  const box = $("#fault");
  if (!text) { box.hidden = true; return; }
  box.textContent = pointer ? `Line ${lineOf(pointer)} (${pointer}): ${text}` : text;
  box.hidden = false;
  if (pointer) {
    const at = lineOf(pointer);
    const start = schema.value.split("\n").slice(0, at - 1).join("\n").length + (at > 1 ? 1 : 0);
    schema.focus();
    schema.setSelectionRange(start, start + (schema.value.split("\n")[at - 1] ?? "").length);
  }
}

function edit(contract) {
  current = contract;
  $("#contract-title").textContent = contract ? `Edit ${contract.name} (version ${contract.version})` : "New contract";
  form.reset();
  if (contract) {
    for (const name of ["name", "event_type", "event_name", "enforcement_mode", "undeclared_fields"]) {
      form.elements.namedItem(name).value = contract[name] ?? "";
    }
  }
  schema.value = JSON.stringify(contract?.schema_definition ?? EXAMPLE, null, 2);
  lines();
  fault("");
  $("#violations").hidden = !contract;
  if (contract) violations();
}

async function violations() {
  const base = `event-contracts/${current.id}/violations`;
  const [groups, samples] = await Promise.all([api(`${base}?group_by=path,kind`), api(`${base}?limit=20`)]);
  $("#groups tbody").replaceChildren(...groups.data.map((g) => el("tr", {},
    el("td", { class: "mono" }, g.path), el("td", {}, g.kind), el("td", {}, number(g.count)), el("td", {}, when(g.last_seen)))));
  $("#samples tbody").replaceChildren(...samples.data.map((v) => el("tr", {},
    el("td", {}, when(v.occurred_at)), el("td", { class: "mono" }, v.event_id ?? ""), el("td", { class: "mono" }, v.path),
    el("td", {}, v.message), el("td", {}, v.action))));
}

async function load() {
  const { data } = await api("event-contracts?limit=100");
  $("#contracts tbody").replaceChildren(...data.map((c) => el("tr", {},
    el("td", {}, c.name), el("td", {}, `${c.event_type}${c.event_name ? ` · ${c.event_name}` : ""}`), el("td", {}, c.enforcement_mode),
    el("td", {}, number(c.violation_count)),
    el("td", {}, el("button", { type: "button", onclick: () => edit(c), "aria-label": `Edit ${c.name}` }, "Edit")))));
  return data;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  let definition;
  try {
    definition = JSON.parse(schema.value);
  } catch (error) {
    fault(`The schema is not JSON: ${error.message}`);
    return;
  }
  const data = new FormData(form);
  const body = { name: data.get("name"), event_type: data.get("event_type"), event_name: data.get("event_name") || null,
                 enforcement_mode: data.get("enforcement_mode"), undeclared_fields: data.get("undeclared_fields"),
                 schema_definition: definition };
  if (!body.event_name) delete body.event_name;
  try {
    const saved = current ? await api(`event-contracts/${current.id}`, { method: "PUT", json: body })
                          : await api("event-contracts", { method: "POST", json: body });
    await load();
    edit(saved);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    const detail = Array.isArray(error.details) ? error.details[0] : null;
    fault(detail?.pointer !== undefined ? detail.message : error.message, detail?.pointer);
  }
});
$("#new").addEventListener("click", () => edit(null));
const all = await load();
edit(all[0] ?? null);
document.body.dataset.ready = "true";
