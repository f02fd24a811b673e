// DOM helpers shared by the console's pages and the customer viewer: no state, no API calls.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function when(iso) {
  if (!iso) return "never";
  const date = new Date(iso);
  return el("time", { datetime: iso, title: iso }, date.toLocaleString());
}

/** A filter form as query parameters: empty fields left out; `start` and `end` (local
 * date-times) become `since` and `until` (ISO, UTC). */
export function formParams(form) {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) {
    if (!value) continue;
    if (name === "start") params.set("since", new Date(value).toISOString());
    else if (name === "end") params.set("until", new Date(value).toISOString());
    else params.set(name, value);
  }
  return params;
}
