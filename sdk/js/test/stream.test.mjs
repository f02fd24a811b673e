// The SDK against a real Headwater API (HEADWATER_URL; tests/test_sdk_js.py starts one and
// runs these). Faults come from a real HTTP server on 127.0.0.1 in front of the API.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";

import { CATEGORIES, checkEvent, stream } from "../dist/index.js";

const BASE = process.env.HEADWATER_URL;
const skip = BASE ? false : "HEADWATER_URL is not set (make test starts an API and sets it)";
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const event = (n = 0, extra = {}) => ({
  action: "user.created", category: "mutation", actor: { id: `u_${n}`, type: "user" }, tenant_id: "acme",
  metadata: { n }, ...extra,
});

const quiet = { warn() {} };

/** A fetch that records every request body it passes on. */
function recording() {
  const bodies = [];
  const fetchImpl = async (url, init) => {
    if (init?.body) bodies.push(init.body);
    return fetch(url, init);
  };
  return { bodies, fetch: fetchImpl };
}

async function count(s) {
  return (await s.info()).event_count;
}

describe("stream", { skip }, () => {
  test("makes a UUIDv4 claim token, says not_created before the first send, then counts", async () => {
    const s = stream({ baseUrl: BASE, logger: quiet });
    assert.match(s.token, UUID4);
    assert.deepEqual(await s.info(), { claim_token: s.token, status: "not_created", event_count: 0 });
    const key = s.log(event(1));
    assert.ok(key.length > 0);
    await s.close();
    const info = await s.info();
    assert.equal(info.status, "active");
    assert.equal(info.event_count, 1);
    assert.throws(() => s.log(event(2)), /closed/);
  });

  test("takes a token the app already has", async () => {
    const token = crypto.randomUUID();
    const s = stream({ baseUrl: BASE, token, logger: quiet });
    assert.equal(s.token, token);
    s.log(event());
    await s.close();
    assert.equal(await count(stream({ baseUrl: BASE, token, flushOnExit: false })), 1);
  });

  test("a bad event throws at log() and never takes its neighbours down", async () => {
    const s = stream({ baseUrl: BASE, logger: quiet });
    s.log(event(1));
    assert.throws(() => s.log(event(2, { category: "misc" })), /category must be one of/);
    assert.throws(() => s.log(event(3, { action: "Created" })), /action/);
    assert.throws(() => s.log({ ...event(4), actor: { id: "u" } }), /actor/);
    assert.throws(() => s.log({ ...event(5), tenant_id: "" }), /tenant_id/);
    assert.throws(() => s.log(event(6, { metadata: [1] })), /metadata/);
    s.log(event(7));
    await s.close();
    assert.equal(await count(s), 2);
    assert.deepEqual([...CATEGORIES], ["auth", "access", "mutation", "admin", "security", "system"]);
    assert.doesNotThrow(() => checkEvent(event()));
  });

  test("batches by count and by bytes", async () => {
    const byCount = recording();
    const s = stream({ baseUrl: BASE, fetch: byCount.fetch, logger: quiet });
    for (let i = 0; i < 250; i++) s.log(event(i));
    await s.flush();
    assert.deepEqual(byCount.bodies.map((b) => JSON.parse(b).events.length), [100, 100, 50]);
    assert.equal(await count(s), 250);

    const byBytes = recording();
    const big = stream({ baseUrl: BASE, fetch: byBytes.fetch, maxBatchBytes: 20_000, logger: quiet });
    for (let i = 0; i < 30; i++) big.log(event(i, { metadata: { blob: "x".repeat(2_000) } }));
    await big.close();
    assert.ok(byBytes.bodies.length >= 3, `${byBytes.bodies.length} requests`);
    for (const body of byBytes.bodies) assert.ok(new TextEncoder().encode(body).length <= 20_000 + 64);
    assert.equal(await count(big), 30);
  });

  test("sends on its own after the flush interval", async () => {
    const s = stream({ baseUrl: BASE, flushIntervalMs: 100, logger: quiet });
    s.log(event());
    const deadline = Date.now() + 5_000;
    while ((await count(s)) < 1) {
      assert.ok(Date.now() < deadline, "the event was not sent without a flush");
      await new Promise((r) => setTimeout(r, 50));
    }
    await s.close();
  });

  test("a full queue drops the newest event, counts it and says so", async () => {
    const drops = [];
    const s = stream({ baseUrl: BASE, maxQueue: 3, batchSize: 100, flushIntervalMs: 10_000, logger: quiet,
                       onDrop: (events, reason) => drops.push([events.length, reason]) });
    for (let i = 0; i < 5; i++) s.log(event(i));
    assert.equal(s.dropped, 2);
    assert.deepEqual(drops, [[1, "queue_full"], [1, "queue_full"]]);
    await s.close();
    assert.equal(await count(s), 3);
  });
});

/** A real HTTP server in front of the API that fails the first `failures` requests its own way. */
function faultyProxy(fault) {
  const seen = { requests: 0, times: [] };
  const server = http.createServer(async (req, res) => {
    seen.requests += 1;
    seen.times.push(Date.now());
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const upstream = await fetch(BASE + req.url, {
      method: req.method, headers: { "content-type": req.headers["content-type"] ?? "application/json" },
      body: req.method === "POST" ? Buffer.concat(chunks) : undefined,
    });
    const body = Buffer.from(await upstream.arrayBuffer());
    const answer = fault(seen.requests, upstream.status, body);
    if (answer === "reset") {
      req.socket.destroy();
      return;
    }
    const [status, headers, payload] = answer ?? [upstream.status, { "content-type": "application/json" }, body];
    res.writeHead(status, headers).end(payload);
  });
  return { seen, server, listen: () => new Promise((r) => server.listen(0, "127.0.0.1", () => r(`http://127.0.0.1:${server.address().port}`))) };
}

describe("retries", { skip }, () => {
  let proxy;
  let url;
  before(async () => {
    // 1: stored, but the answer says 503 (Retry-After: 1). 2: stored again, answer cut off.
    // 3: 429 with Retry-After: 0. Then the API's own answers.
    proxy = faultyProxy((n) => {
      if (n === 1) return [503, { "content-type": "application/json", "retry-after": "1" }, '{"error":{"code":"storage_unavailable"}}'];
      if (n === 2) return "reset";
      if (n === 3) return [429, { "content-type": "application/json", "retry-after": "0" }, '{"error":{"code":"rate_limited"}}'];
      return undefined;
    });
    url = await proxy.listen();
  });
  after(() => proxy.server.close());

  test("retries 5xx, 429 and network errors, honours Retry-After, stores each event once", async () => {
    const s = stream({ baseUrl: url, logger: quiet, maxBackoffMs: 300 });
    for (let i = 0; i < 5; i++) s.log(event(i));
    await s.flush();
    assert.equal(proxy.seen.requests, 4);
    assert.ok(proxy.seen.times[1] - proxy.seen.times[0] >= 950, "Retry-After: 1 was not honoured");
    assert.equal(await count(stream({ baseUrl: BASE, token: s.token, flushOnExit: false })), 5);
    assert.equal(s.dropped, 0);
    await s.close();
  });
});

describe("refusals", { skip }, () => {
  test("a 4xx drops only the events it names, with a warning", async () => {
    const warnings = [];
    const drops = [];
    const s = stream({ baseUrl: BASE, logger: { warn: (m) => warnings.push(m) },
                       onDrop: (events, reason) => drops.push(...events.map((e) => [e.metadata.n, reason])) });
    let deep = {};
    for (let i = 0; i < 12; i++) deep = { deep };
    s.log(event(0));
    s.log(event(1, { metadata: { n: 1, deep } })); // nests deeper than the server allows
    s.log(event(2));
    await s.close();
    assert.deepEqual(drops, [[1, "refused"]]);
    assert.equal(s.dropped, 1);
    assert.ok(warnings.some((w) => w.includes("1 event(s) refused")), warnings.join("\n"));
    assert.equal(await count(s), 2);
  });

  test("close() gives up on a server that stays down after its timeout, counting what it drops", async () => {
    const down = http.createServer((req, res) => res.writeHead(503, { "retry-after": "5" }).end());
    await new Promise((r) => down.listen(0, "127.0.0.1", r));
    const drops = [];
    const s = stream({ baseUrl: `http://127.0.0.1:${down.address().port}`, logger: quiet,
                       onDrop: (events, reason) => drops.push([events.length, reason]) });
    s.log(event(0));
    s.log(event(1));
    const started = Date.now();
    await s.close(500);
    assert.ok(Date.now() - started < 3_000);
    assert.equal(s.dropped, 2);
    assert.deepEqual(drops, [[2, "closed"]]);
    down.close();
  });
});

describe("Node exit", { skip }, () => {
  test("an app that never flushes still sends before it exits", async () => {
    const { spawn } = await import("node:child_process");
    const script = `
      import { stream } from ${JSON.stringify(new URL("../dist/index.js", import.meta.url).href)};
      const s = stream({ baseUrl: ${JSON.stringify(BASE)}, flushIntervalMs: 60000 });
      s.log({ action: "app.exited", category: "system", actor: { id: "svc", type: "service" }, tenant_id: "acme" });
      console.log(s.token);`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script]);
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    const code = await new Promise((r) => child.on("exit", r));
    assert.equal(code, 0);
    assert.equal(await count(stream({ baseUrl: BASE, token: out.trim(), flushOnExit: false })), 1);
  });

  test("SIGTERM flushes when asked", async () => {
    const { spawn } = await import("node:child_process");
    const script = `
      import { stream } from ${JSON.stringify(new URL("../dist/index.js", import.meta.url).href)};
      const s = stream({ baseUrl: ${JSON.stringify(BASE)}, flushIntervalMs: 60000, handleSigterm: true });
      s.log({ action: "app.stopped", category: "system", actor: { id: "svc", type: "service" }, tenant_id: "acme" });
      console.log(s.token);
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script]);
    const token = await new Promise((r) => child.stdout.once("data", (d) => r(String(d).trim())));
    child.kill("SIGTERM");
    const code = await new Promise((r) => child.on("exit", r));
    assert.equal(code, 143);
    assert.equal(await count(stream({ baseUrl: BASE, token, flushOnExit: false })), 1);
  });
});
