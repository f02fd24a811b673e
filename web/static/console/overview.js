import { EVENT_TYPES as TYPES, api, el, number, when } from "./console.js";

async function counts() {
  const week = await api("events/volume?hours=168");
  const sum = (rows) => rows.reduce((total, row) => total + row.event_count, 0);
  const now = Date.now();
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  document.querySelector("#week").textContent = number(sum(week));
  document.querySelector("#day").textContent = number(sum(week.filter((r) => now - Date.parse(r.hour_bucket) < 24 * 3600e3)));
  document.querySelector("#today").textContent = number(sum(week.filter((r) => Date.parse(r.hour_bucket) >= midnight.getTime() - 3600e3 + 1 &&
                                                                          Date.parse(r.hour_bucket) + 3600e3 > midnight.getTime())));
}

async function chart(hours) {
  const rows = await api(`events/volume?hours=${hours}`);
  const bucket = hours > 48 ? 24 : 1; // a bar per hour for a day, per day for a week
  const end = Math.floor(Date.now() / 3600e3) * 3600e3;
  const bars = [];
  for (let i = hours / bucket - 1; i >= 0; i--) bars.push({ start: end - (i * bucket + bucket - 1) * 3600e3, counts: {} });
  for (const row of rows) {
    const t = Date.parse(row.hour_bucket);
    const bar = bars.find((b) => t >= b.start && t < b.start + bucket * 3600e3);
    if (bar) bar.counts[row.event_type] = (bar.counts[row.event_type] ?? 0) + row.event_count;
  }
  const max = Math.max(1, ...bars.map((b) => Object.values(b.counts).reduce((a, c) => a + c, 0)));
  const figure = document.querySelector("#chart");
  const detail = document.querySelector("#chart-detail");
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${bars.length * 10} 100`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  bars.forEach((bar, i) => {
    const group = document.createElementNS(svgNS, "g");
    const total = Object.values(bar.counts).reduce((a, c) => a + c, 0);
    const label = `${new Date(bar.start).toLocaleString()}: ${number(total)} events` +
      (total ? ` (${Object.entries(bar.counts).map(([t, c]) => `${t} ${number(c)}`).join(", ")})` : "");
    group.setAttribute("tabindex", "0");
    group.setAttribute("class", "bar");
    group.setAttribute("aria-label", label);
    const title = document.createElementNS(svgNS, "title");
    title.textContent = label;
    group.append(title);
    const hit = document.createElementNS(svgNS, "rect");
    Object.entries({ x: i * 10, y: 0, width: 10, height: 100, class: "hit" }).forEach(([k, v]) => hit.setAttribute(k, v));
    group.append(hit);
    let y = 100;
    for (const type of TYPES) {
      const count = bar.counts[type];
      if (!count) continue;
      const h = (count / max) * 96;
      y -= h;
      const rect = document.createElementNS(svgNS, "rect");
      Object.entries({ x: i * 10 + 1, y, width: 8, height: h, class: `t-${type}` }).forEach(([k, v]) => rect.setAttribute(k, v));
      group.append(rect);
    }
    const show = () => (detail.textContent = label);
    group.addEventListener("mouseenter", show);
    group.addEventListener("focus", show);
    svg.append(group);
  });
  const legend = el("ul", { class: "legend" }, TYPES.map((t) => el("li", {}, el("span", { class: `swatch t-${t}` }), t)));
  figure.replaceChildren(svg, legend);
}

async function rules() {
  const { data } = await api("event-forwarding-rules?limit=100");
  const rows = data.map((rule) => el("tr", {},
    el("td", {}, rule.name),
    el("td", {}, el("span", { class: `badge ${rule.stats.healthy ? "ok" : "bad"}` }, rule.enabled ? (rule.stats.healthy ? "healthy" : "failing") : "disabled")),
    el("td", {}, `${rule.stats.lag_seconds.toFixed(1)} s`),
    el("td", {}, number(rule.stats.pending)),
    el("td", {}, number(rule.stats.dead_lettered)),
    el("td", {}, rule.stats.last_error ? [rule.stats.last_error, " ", when(rule.stats.last_error_at)] : "none")));
  document.querySelector("#rules tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No rules yet."))]));
}

async function sources() {
  const { data } = await api("event-keys?limit=100");
  data.sort((a, b) => (b.last_used_at ?? "").localeCompare(a.last_used_at ?? ""));
  const rows = data.map((s) => el("tr", {}, el("td", {}, s.name), el("td", {}, s.status), el("td", {}, when(s.last_used_at))));
  document.querySelector("#sources tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 3, class: "muted" }, "No sources yet."))]));
}

document.querySelectorAll("input[name=range]").forEach((input) => input.addEventListener("change", () => chart(Number(input.value))));
await Promise.all([counts(), chart(24), rules(), sources()]);
document.body.dataset.ready = "true";
