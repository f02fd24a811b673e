// Destinations and rules: create them; per rule the delivery funnel, dead letters with
// "redrive all matching" (the count first, then every match, not only this page), replay
// since a time, the attempt timeline, and a link to the rule's workflow in the Temporal UI.
import { ApiError, api, el, number, toast, when } from "./console.js";

const body = document.body;
let destinations = [];
let current = null;
let editingDestination = null;
let editingRule = null;

/** What the API refused, said in a toast (anything else is a bug: let it surface). */
function refused(error) {
  if (!(error instanceof ApiError)) throw error;
  toast(error.details?.map((d) => `${d.field}: ${d.message}`).join("; ") || error.message);
}

const list = (text) => String(text ?? "").split(",").map((s) => s.trim()).filter(Boolean);
const isoOf = (local) => (local ? new Date(local).toISOString() : undefined);

async function loadDestinations() {
  ({ data: destinations } = await api("destinations?limit=100"));
  document.querySelector("#destinations tbody").replaceChildren(...destinations.map((d) => el("tr", {},
    el("td", {}, d.name), el("td", {}, d.type), el("td", { class: "mono" }, d.config.url ?? d.config.host ?? ""),
    el("td", { class: "actions" }, el("button", { type: "button", onclick: () => editDestination(d), "aria-label": `Edit ${d.name}` }, "Edit"), " ",
      d.type === "webhook" ? [
      el("button", { type: "button", onclick: () => reveal(d, false), "aria-label": `Reveal the signing secret of ${d.name}` }, "Reveal secret"), " ",
      el("button", { type: "button", onclick: () => reveal(d, true), "aria-label": `Rotate the signing secret of ${d.name}` }, "Rotate")] : ""))));
  document.querySelector("#new-rule select[name=destination_id]").replaceChildren(
    ...destinations.map((d) => el("option", { value: d.id }, d.name)));
}

async function reveal(destination, rotate) {
  const answer = rotate ? await api(`destinations/${destination.id}/rotate-secret`, { method: "POST" })
                        : await api(`destinations/${destination.id}`);
  document.querySelector("#secret").value = answer.signing_secret;
  document.querySelector("#secret-box").hidden = false;
  if (rotate) toast("Rotated: the previous secret keeps signing for 24 hours");
}

async function loadRules() {
  const { data } = await api("event-forwarding-rules?limit=100");
  const names = Object.fromEntries(destinations.map((d) => [d.id, d.name]));
  document.querySelector("#rules tbody").replaceChildren(...data.map((rule) => el("tr", {},
    el("td", {}, rule.name), el("td", {}, names[rule.destination_id] ?? ""),
    el("td", {}, el("span", { class: `badge ${rule.stats.healthy ? "ok" : "bad"}` }, rule.stats.healthy ? "healthy" : "failing")),
    el("td", { "data-delivered": rule.id }, number(rule.stats.delivered)), el("td", {}, number(rule.stats.dead_lettered)),
    el("td", { class: "actions" },
      el("button", { type: "button", onclick: () => open(rule), "aria-label": `Open ${rule.name}` }, "Open"), " ",
      el("button", { type: "button", onclick: () => editRule(rule), "aria-label": `Edit ${rule.name}` }, "Edit"), " ",
      el("button", { type: "button", "aria-label": `${rule.enabled ? "Disable" : "Enable"} ${rule.name}`, onclick: async () => {
        await api(`event-forwarding-rules/${rule.id}`, { method: "PUT", json: { enabled: !rule.enabled } });
        toast(`${rule.name} ${rule.enabled ? "disabled" : "enabled"}`);
        await loadRules();
      } }, rule.enabled ? "Disable" : "Enable")))));
  if (current) current = data.find((r) => r.id === current.id) ?? null;
  return data;
}

async function open(rule) {
  current = rule;
  document.querySelector("#rule").hidden = false;
  document.querySelector("#rule-name").textContent = rule.name;
  const link = document.querySelector("#workflow-link");
  if (body.dataset.temporalUi) {
    link.href = `${body.dataset.temporalUi.replace(/\/$/, "")}/namespaces/${body.dataset.temporalNamespace}/workflows/forward-${rule.id}`;
    link.hidden = false;
  }
  await Promise.all([funnel(), deadLetters(), attempts()]);
  body.dataset.rule = rule.id;
}

async function funnel() {
  const hours = Number(document.querySelector("#funnel-range").value);
  const since = new Date(Date.now() - hours * 3600e3).toISOString();
  const f = await api(`event-forwarding-rules/${current.id}/funnel?since=${encodeURIComponent(since)}`);
  const steps = [["matched", "matched"], ["dropped", "dropped by the transformation"], ["delivered", "delivered"],
                 ["retrying_now", "retrying now"], ["dead_lettered", "dead-lettered"]];
  const top = Math.max(1, f.matched);
  document.querySelector("#funnel").replaceChildren(...steps.map(([key, label]) => el("li", { "data-step": key },
    el("span", { class: "step" }, label), el("strong", {}, number(f[key])),
    el("span", { class: "meter", style: undefined, "aria-hidden": "true" },
       el("span", { class: "fill", "data-width": String(Math.round((f[key] / top) * 100)) })))));
  // Widths through CSSOM (a style attribute would need 'unsafe-inline' in the policy).
  document.querySelectorAll("#funnel .fill").forEach((fill) => (fill.style.width = `${Math.min(100, Number(fill.dataset.width))}%`));
}

function deadFilter() {
  const data = new FormData(document.querySelector("#dead-filters"));
  const filter = {};
  if (data.get("status")) filter.status = Number(data.get("status"));
  if (data.get("error")) filter.error = data.get("error");
  if (data.get("since")) filter.since = isoOf(data.get("since"));
  if (data.get("until")) filter.until = isoOf(data.get("until"));
  return filter;
}

async function deadLetters() {
  const filter = deadFilter();
  const query = new URLSearchParams(Object.entries(filter).map(([k, v]) => [k, String(v)]));
  const [page, { count }] = await Promise.all([
    api(`event-forwarding-rules/${current.id}/dead-letters?limit=50&${query}`),
    api(`event-forwarding-rules/${current.id}/dead-letters/count?${query}`)]);
  document.querySelector("#dead tbody").replaceChildren(...page.data.map((d) => el("tr", {},
    el("td", {}, when(d.last_attempt_at)), el("td", { class: "mono" }, d.event_id), el("td", {}, String(d.last_status ?? "")),
    el("td", {}, String(d.attempts)), el("td", {}, d.error ?? d.response_excerpt ?? ""))));
  document.querySelector("#dead-total").textContent = `${number(count)} match${count === 1 ? "es" : ""}` +
    (count > page.data.length ? ` (the newest ${page.data.length} shown)` : "");
  document.querySelector("#redrive").disabled = count === 0;
}

async function attempts() {
  const { data } = await api(`event-forwarding-rules/${current.id}/deliveries?limit=50`);
  document.querySelector("#attempts tbody").replaceChildren(...data.map((a) => el("tr", {},
    el("td", {}, when(a.attempted_at)), el("td", {}, a.outcome), el("td", {}, String(a.status_code ?? "")),
    el("td", {}, number(a.event_count)), el("td", {}, a.duration_ms == null ? "" : `${Math.round(a.duration_ms)} ms`),
    el("td", { class: "mono" }, (a.error ?? a.response_excerpt ?? "").slice(0, 200)))));
}

document.querySelector("#redrive").addEventListener("click", async () => {
  const filter = deadFilter();
  const query = new URLSearchParams(Object.entries(filter).map(([k, v]) => [k, String(v)]));
  const { count } = await api(`event-forwarding-rules/${current.id}/dead-letters/count?${query}`);
  const dialog = document.querySelector("#confirm-redrive");
  document.querySelector("#redrive-count").textContent =
    `${number(count)} dead letter${count === 1 ? "" : "s"} match${count === 1 ? "es" : ""}: all of them will be sent again, not only those on screen.`;
  dialog.showModal();
  const yes = await new Promise((resolve) => {
    document.querySelector("#redrive-yes").onclick = () => resolve(true);
    document.querySelector("#redrive-no").onclick = () => resolve(false);
    dialog.oncancel = () => resolve(false);
  });
  dialog.close();
  if (!yes) return;
  await api(`event-forwarding-rules/${current.id}/dead-letters/redrive`, { method: "POST", json: filter });
  toast(`Redriving ${number(count)} dead letters`);
  setTimeout(refresh, 1500);
});

document.querySelector("#dead-filters").addEventListener("submit", (event) => { event.preventDefault(); deadLetters(); });
document.querySelector("#funnel-range").addEventListener("change", funnel);
document.querySelector("#replay").addEventListener("submit", async (event) => {
  event.preventDefault();
  const since = isoOf(new FormData(event.target).get("since"));
  await api(`event-forwarding-rules/${current.id}/replay`, { method: "POST", json: { since } });
  toast("Replay started");
});

function editDestination(d) {
  editingDestination = d;
  const form = document.querySelector("#new-destination");
  form.elements.namedItem("name").value = d.name;
  form.elements.namedItem("type").value = d.type;
  form.elements.namedItem("type").disabled = true;
  form.elements.namedItem("url").value = d.config.url ?? d.config.host ?? "";
  form.elements.namedItem("write_key").value = d.config.write_key ?? "";
  form.querySelector("button[type=submit]").textContent = "Save destination";
  form.querySelector("button[type=reset]").hidden = false;
  form.elements.namedItem("name").focus();
}

document.querySelector("#new-destination").addEventListener("reset", (event) => {
  editingDestination = null;
  event.target.elements.namedItem("type").disabled = false;
  event.target.querySelector("button[type=submit]").textContent = "Add destination";
  event.target.querySelector("button[type=reset]").hidden = true;
});

document.querySelector("#new-destination").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const type = editingDestination?.type ?? data.get("type");
  const config = type === "segment" ? { host: data.get("url"), write_key: data.get("write_key") } : { url: data.get("url") };
  try {
    if (editingDestination) {
      await api(`destinations/${editingDestination.id}`, { method: "PUT", json: { name: data.get("name"), config } });
    } else {
      await api("destinations", { method: "POST", json: { name: data.get("name"), type, config } });
    }
  } catch (error) {
    return refused(error);
  }
  toast(editingDestination ? "Destination saved" : "Destination added");
  event.target.reset();
  await loadDestinations();
});

function editRule(rule) {
  editingRule = rule;
  const form = document.querySelector("#new-rule");
  form.elements.namedItem("name").value = rule.name;
  form.elements.namedItem("destination_id").value = rule.destination_id;
  form.elements.namedItem("event_types").value = rule.event_types.join(", ");
  form.elements.namedItem("event_names").value = rule.event_names.join(", ");
  form.elements.namedItem("transformation_id").value = rule.transformation_id ?? "";
  form.querySelector("button[type=submit]").textContent = "Save rule";
  form.querySelector("button[type=reset]").hidden = false;
  form.elements.namedItem("name").focus();
}

document.querySelector("#new-rule").addEventListener("reset", (event) => {
  editingRule = null;
  event.target.querySelector("button[type=submit]").textContent = "Add rule";
  event.target.querySelector("button[type=reset]").hidden = true;
});

document.querySelector("#new-rule").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const body = { name: data.get("name"), destination_id: data.get("destination_id"),
                 event_types: list(data.get("event_types")), event_names: list(data.get("event_names")),
                 transformation_id: data.get("transformation_id") || null };
  if (!editingRule && !body.transformation_id) delete body.transformation_id;
  let rule;
  try {
    rule = editingRule ? await api(`event-forwarding-rules/${editingRule.id}`, { method: "PUT", json: body })
                       : await api("event-forwarding-rules", { method: "POST", json: body });
  } catch (error) {
    return refused(error);
  }
  toast(editingRule ? "Rule saved" : "Rule added");
  event.target.reset();
  await loadRules();
  await open(rule);
});

async function loadTransformations() {
  const { data } = await api("event-transformations?limit=100");
  document.querySelector("#new-rule select[name=transformation_id]").replaceChildren(
    el("option", { value: "" }, "none"), ...data.map((t) => el("option", { value: t.id }, `${t.name} (${t.status})`)));
}

async function refresh() {
  await loadRules();
  if (current) await open(current);
}

// While a rule is open, its numbers follow what happens (every 3 s, paused in a hidden tab).
setInterval(() => { if (current && !document.hidden) refresh(); }, 3000);
await Promise.all([loadDestinations(), loadTransformations()]);
await loadRules();
body.dataset.ready = "true";
