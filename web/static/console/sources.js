import { api, el, toast, when } from "./console.js";

const tbody = document.querySelector("#sources tbody");
const confirmBox = document.querySelector("#confirm");
let created = null;

function snippet(kind, key) {
  const base = location.origin;
  switch (kind) {
    case "python":
      return `import segment.analytics as analytics\nanalytics.write_key = "${key}"\nanalytics.host = "${base}"\nanalytics.track("user_1", "Signed Up", {"plan": "pro"})\nanalytics.flush()`;
    case "js":
      return `AnalyticsBrowser.load({ writeKey: "${key}", cdnSettings: { integrations: { "Segment.io": { apiKey: "${key}", apiHost: "${location.host}/v1", protocol: "${location.protocol.replace(":", "")}" } } } },\n  { integrations: { "Segment.io": { apiHost: "${location.host}/v1", protocol: "${location.protocol.replace(":", "")}" } } })`;
    case "node":
      return `const { Analytics } = require("@segment/analytics-node");\nconst analytics = new Analytics({ writeKey: "${key}", host: "${base}" });\nanalytics.track({ userId: "user_1", event: "Signed Up", properties: { plan: "pro" } });`;
    default:
      return `curl -X POST ${base}/v1/track -H 'X-Write-Key: ${key}' -H 'Content-Type: application/json' \\\n  -d '{"event": "Signed Up", "userId": "user_1", "properties": {"plan": "pro"}}'`;
  }
}

function showSnippet() {
  document.querySelector("#snippet").textContent = snippet(document.querySelector("#snippet-kind").value, created.key);
}

function ask() {
  confirmBox.showModal();
  return new Promise((resolve) => {
    const done = (answer) => () => { confirmBox.close(); resolve(answer); };
    document.querySelector("#confirm-yes").onclick = done(true);
    document.querySelector("#confirm-no").onclick = done(false);
    confirmBox.oncancel = done(false);
  });
}

async function load() {
  const { data } = await api("event-keys?limit=100");
  tbody.replaceChildren(...data.map((source) => el("tr", {},
    el("td", {}, source.name), el("td", { class: "mono" }, source.key), el("td", {}, source.status),
    el("td", {}, when(source.last_used_at)),
    el("td", { class: "actions" },
      source.status === "active" ? [
        el("button", { type: "button", "aria-label": `Send a test event with ${source.name}`, onclick: async () => {
          await api(`event-keys/${source.id}/test-event`, { method: "POST" });
          toast(`Test event sent with ${source.name}`);
          load();
        } }, "Send test event"), " ",
        el("button", { type: "button", class: "danger", "aria-label": `Revoke ${source.name}`, onclick: async () => {
          if (!(await ask())) return;
          await api(`event-keys/${source.id}`, { method: "DELETE" });
          toast(`${source.name} revoked`);
          load();
        } }, "Revoke")] : "")),
  ));
  if (!data.length) tbody.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No sources yet: create one above.")));
  document.body.dataset.ready = "true";
}

document.querySelector("#create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  created = await api("event-keys", { method: "POST", json: { name: new FormData(form).get("name") } });
  document.querySelector("#created-name").textContent = created.name;
  document.querySelector("#created-key").value = created.key;
  showSnippet();
  document.querySelector("#created").hidden = false;
  form.reset();
  load();
});
document.querySelector("#snippet-kind").addEventListener("change", showSnippet);
await load();
