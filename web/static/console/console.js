// Shared by every console page: the API client (session cookie + CSRF token), copy buttons,
// small DOM helpers. No framework: each page is a server-rendered shell plus one module.
import { el, when } from "./dom.js";

export { el, when };

const body = document.body;
export const workspace = body.dataset.workspace;
/** models.canonical.EventType, the one list, as the page was rendered with it. */
export const EVENT_TYPES = (body.dataset.eventTypes ?? "").split(",").filter(Boolean);
const csrf = body.dataset.csrf;

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error?.code;
    this.details = error?.details;
  }
}

/** A call to the JSON API as the signed-in user. `path` under /api/v1/workspaces/<id> unless absolute. */
export async function api(path, { method = "GET", json, allow = [] } = {}) {
  const url = path.startsWith("/") ? path : `/api/v1/workspaces/${workspace}/${path}`;
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (json !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, { method, headers, body: json === undefined ? undefined : JSON.stringify(json),
                                      credentials: "same-origin" });
  if (response.status === 401 && !allow.includes(401)) {
    location.assign("/console/sign-in");
    throw new ApiError(401, { message: "signed out" });
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data?.error);
  return data;
}

export function toast(message) {
  const box = document.querySelector(".toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.hidden = true), 4000);
}

export function number(n) {
  return new Intl.NumberFormat().format(n);
}

// Copy buttons: data-copy="<selector>" copies that element's value or text.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  const text = "value" in source ? source.value : source.textContent;
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied");
  } catch {
    if ("select" in source) source.select();
    toast("Press Ctrl+C to copy");
  }
});
