// Transformations: a plain textarea made into a small code editor (line numbers, Tab indents,
// Esc releases Tab for keyboard users), Run test, Save as a new version, Activate (the API's
// 422 test_failed shown in place), and the versions.
import { ApiError, api, el, number, toast, when } from "./console.js";

const $ = (selector) => document.querySelector(selector);
const code = $("#code");
const gutter = $("#gutter");
let current = null;
let tabReleased = false;
const EXAMPLE = `function transform(event) {\n  if (event.event === "internal") return null;\n  event.properties = { ...event.properties, seen: true };\n  return event;\n}\n`;

function lines() {
  const count = code.value.split("\n").length;
  gutter.textContent = Array.from({ length: count }, (_, i) => i + 1).join("\n");
  gutter.scrollTop = code.scrollTop;
}
code.addEventListener("input", lines);
code.addEventListener("scroll", () => (gutter.scrollTop = code.scrollTop));
code.addEventListener("keydown", (event) => {
  if (event.key === "Escape") { tabReleased = true; return; }
  if (event.key !== "Tab" || tabReleased || event.shiftKey) return;
  event.preventDefault();
  const { selectionStart: start, selectionEnd: end, value } = code;
  code.value = `${value.slice(0, start)}  ${value.slice(end)}`;
  code.selectionStart = code.selectionEnd = start + 2;
  lines();
});
code.addEventListener("blur", () => (tabReleased = false));

function showError(text) {
  const box = $("#error");
  box.textContent = text;
  box.hidden = !text;
  $("#result").hidden = false;
}

function json(selector, what) {
  const text = $(selector).value.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ApiError(0, { message: `The ${what} is not JSON: ${error.message}` });
  }
}
const input = () => json("#input", "test input");

function describe(error) {
  const at = Array.isArray(error.details) ? error.details.find((d) => d.line) : null;
  if (at) return `Line ${at.line}, column ${at.column}: ${at.message}`;
  if (error.code === "test_failed") {
    const d = error.details;
    return `${error.message} Expected ${JSON.stringify(d.expected)}, got ${d.error ?? JSON.stringify(d.output)}.`;
  }
  return error.message;
}

async function save(extra = {}) {
  const body = { name: $("#name").value.trim() || "Untitled", source_code: code.value, ...extra };
  const testInput = input();
  if (testInput !== undefined) body.test_input = testInput;
  const expected = json("#expected", "expected output");
  if (expected !== undefined) body.test_output = expected;
  current = current
    ? await api(`event-transformations/${current.id}`, { method: "PUT", json: body })
    : await api("event-transformations", { method: "POST", json: body });
  await listAll(current.id);
  show(current);
  return current;
}

async function guarded(action) {
  showError("");
  try {
    await action();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    showError(describe(error));
  }
}

$("#run").addEventListener("click", () => guarded(async () => {
  if (!current || code.value !== current.source_code) await save();
  const testInput = input();
  const result = await api(`event-transformations/${current.id}/test`, { method: "POST", json: testInput === undefined ? {} : { input: testInput } });
  $("#output").textContent = result.dropped ? "(dropped: the transformation returned null)" : JSON.stringify(result.output, null, 2);
  $("#logs").textContent = result.logs.join("\n") || "(none)";
  $("#duration").textContent = `Version ${result.version}, ${result.duration_ms.toFixed(1)} ms` +
    (result.matches_expected === null ? "" : result.matches_expected ? " · matches the expected output" : " · differs from the expected output");
  showError(result.error ?? "");
}));
$("#save").addEventListener("click", () => guarded(async () => { await save(); toast(`Saved version ${current.version}`); }));
$("#activate").addEventListener("click", () => guarded(async () => { await save({ status: "active" }); toast("Active"); }));

function show(t) {
  current = t;
  $("#name").value = t?.name ?? "";
  code.value = t?.source_code ?? EXAMPLE;
  $("#input").value = t?.test_input ? JSON.stringify(t.test_input, null, 2) : '{\n  "type": "track",\n  "event": "Signed Up",\n  "properties": {}\n}';
  $("#expected").value = t?.test_output ? JSON.stringify(t.test_output, null, 2) : "";
  $("#status").textContent = t ? `${t.status} · version ${t.version}` : "new";
  lines();
  versions();
}

async function versions() {
  if (!current) return $("#versions").replaceChildren();
  const { data } = await api(`event-transformations/${current.id}/versions`);
  $("#versions").replaceChildren(...data.map((v) => el("li", { value: v.version },
    el("div", { class: "row" }, el("strong", {}, `Version ${number(v.version)}`), when(v.created_at),
       el("button", { type: "button", onclick: () => { code.value = v.source_code; lines(); toast(`Version ${v.version} loaded: save to make it current`); } },
          "Load into the editor")),
  )));
}

async function listAll(selected) {
  const { data } = await api("event-transformations?limit=100");
  $("#pick").replaceChildren(el("option", { value: "" }, "New transformation"),
    ...data.map((t) => el("option", { value: t.id, selected: t.id === selected }, t.name)));
  return data;
}

$("#pick").addEventListener("change", async (event) => {
  show(event.target.value ? await api(`event-transformations/${event.target.value}`) : null);
});
const all = await listAll();
show(all[0] ?? null);
if (all[0]) $("#pick").value = all[0].id;
document.body.dataset.ready = "true";
