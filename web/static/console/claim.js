import { ApiError, api, el, number, when } from "./console.js";

const form = document.querySelector("#lookup");
const stream = document.querySelector("#stream");
const message = document.querySelector("#message");
const claimButton = document.querySelector("#claim");
let token = null;

const MESSAGES = {
  stream_not_found: "No stream has this claim token. Check it, or send an event with it first.",
  invalid_token: "A claim token is a UUID, like 0f8fad5b-d9cb-469f-a165-70867728950e.",
  stream_expired: "This stream has expired: its events were deleted after 7 days unclaimed.",
  stream_already_claimed: "This stream has already been claimed; it takes no more claims.",
};

function say(text, kind = "info", ...extra) {
  message.replaceChildren(text, ...extra);
  message.className = `card narrow ${kind}`;
  message.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  message.hidden = true;
  stream.hidden = true;
  token = new FormData(form).get("token").trim();
  try {
    const info = await api(`/api/v1/streams/${encodeURIComponent(token)}/info`);
    document.querySelector("#status").textContent = info.status;
    document.querySelector("#count").textContent = number(info.event_count);
    document.querySelector("#expires").replaceChildren(when(info.expires_at));
    claimButton.disabled = info.status !== "active";
    stream.hidden = false;
    if (info.status === "expired") say(MESSAGES.stream_expired, "error");
    if (info.status === "claimed") say(MESSAGES.stream_already_claimed, "error");
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    say(MESSAGES[error.code] ?? (error.status === 422 || error.status === 400 ? MESSAGES.invalid_token : error.message), "error");
  }
});

claimButton.addEventListener("click", async () => {
  claimButton.disabled = true;
  try {
    const answer = await api("/api/v1/streams/claim", { method: "POST", json: { claim_token: token } });
    stream.hidden = true;
    say(`Claimed: ${number(answer.event_count)} events moved into this workspace. `, "ok",
        el("a", { href: "/console/events?type=audit" }, "See them"));
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    say(MESSAGES[error.code] ?? error.message, "error");
  }
});
document.body.dataset.ready = "true";
