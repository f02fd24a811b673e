/**
 * Headwater's JavaScript SDK for anonymous audit streams, for Node 18+ and browsers.
 *
 *     import { stream } from "@headwater/sdk";
 *     const audit = stream({ baseUrl: "http://127.0.0.1:8000" });
 *     audit.log({ action: "user.created", category: "mutation",
 *                 actor: { id: "u_1", type: "user" }, tenant_id: "acme" });
 *     console.log(audit.token);   // hand it to your user: they claim the stream with it
 *     await audit.close();
 *
 * `log()` checks the event at the call (a mistake throws there, so it never takes the events
 * beside it down) and only queues. Batches leave by count (100), by bytes (60 KB, under the
 * 64 KB a browser allows a request sent while the page goes away) and by time (0.5 s). 429,
 * 5xx and network errors are retried with exponential backoff and jitter, honouring
 * `Retry-After`; a 4xx drops only the events it names. Every event carries an
 * `idempotency_key`, so a retried batch is never stored twice.
 *
 * The queue is bounded (`maxQueue`, 10,000): when it is full, the event being logged is
 * dropped (the queued ones keep their place), counted in `dropped`, reported to `onDrop`.
 */

export const CATEGORIES = ["auth", "access", "mutation", "admin", "security", "system"] as const;
export type Category = (typeof CATEGORIES)[number];

export interface Actor {
  id: string;
  type: string;
  [field: string]: unknown;
}

export interface AuditEvent {
  action: string;
  category: Category;
  actor: Actor;
  tenant_id: string;
  target?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  /** Made up when the event is queued unless given. */
  idempotency_key?: string;
}

export interface StreamInfo {
  claim_token: string;
  /** `not_created` until the first event is stored. */
  status: "active" | "claimed" | "expired" | "not_created";
  event_count: number;
  created_at?: string;
  expires_at?: string;
}

export type DropReason = "queue_full" | "refused" | "closed";

export interface StreamOptions {
  /** Headwater's address; default http://127.0.0.1:8000 (HEADWATER_URL in Node). */
  baseUrl?: string;
  /** A claim token (UUID) to keep using; a fresh UUIDv4 by default. */
  token?: string;
  /** Events per request, at most 100 (the server's limit). */
  batchSize?: number;
  /** Bytes per request body; default 60,000. */
  maxBatchBytes?: number;
  /** How long a queued event may wait for its batch to fill, in ms; default 500. */
  flushIntervalMs?: number;
  /** Queued events at most; default 10,000. A `log()` beyond it is dropped. */
  maxQueue?: number;
  /** The longest wait between retries, in ms; default 30,000. */
  maxBackoffMs?: number;
  /** Send what is queued when the page goes away (browsers) or the event loop empties (Node); default true. */
  flushOnExit?: boolean;
  /** Node: on SIGTERM, send what is queued, then exit. Default false (your app may own SIGTERM). */
  handleSigterm?: boolean;
  /** Called with events dropped for good and why. */
  onDrop?: (events: AuditEvent[], reason: DropReason, detail?: string) => void;
  /** Where warnings go; default `console`. */
  logger?: Pick<Console, "warn">;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

export class HeadwaterError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly body?: unknown,
  ) {
    super(message);
    this.name = "HeadwaterError";
  }
}

const MAX_BATCH = 100;
const KEEPALIVE_LIMIT = 64_000;
const ACTION = /^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/;
const EVENT_INDEX = /^events\[(\d+)\]/;
const encoder = new TextEncoder();

/** Throws a TypeError naming what the server would refuse in this event. */
export function checkEvent(event: AuditEvent): void {
  const e = event as unknown as Record<string, unknown>;
  if (typeof e !== "object" || e === null) throw new TypeError("an event must be an object");
  const action = e.action;
  if (typeof action !== "string" || action.length > 128 || !ACTION.test(action)) {
    throw new TypeError(`action must be dot-namespaced lowercase words, e.g. 'user.created'; got ${JSON.stringify(action)}`);
  }
  if (!(CATEGORIES as readonly unknown[]).includes(e.category)) {
    throw new TypeError(`category must be one of ${CATEGORIES.join(", ")}; got ${JSON.stringify(e.category)}`);
  }
  const actor = e.actor as Record<string, unknown> | undefined;
  if (!isObject(actor) || !actor.id || !actor.type) {
    throw new TypeError(`actor must be an object with an id and a type; got ${JSON.stringify(actor)}`);
  }
  if (typeof e.tenant_id !== "string" || !e.tenant_id) {
    throw new TypeError(`tenant_id must be a non-empty string; got ${JSON.stringify(e.tenant_id)}`);
  }
  for (const name of ["target", "metadata"]) {
    if (e[name] !== undefined && !isObject(e[name])) throw new TypeError(`${name} must be an object`);
  }
  if (e.idempotency_key !== undefined && (typeof e.idempotency_key !== "string" || !e.idempotency_key)) {
    throw new TypeError("idempotency_key must be a non-empty string");
  }
}

/** A stream for `options.token`, or for a fresh UUIDv4 claim token. */
export function stream(options: StreamOptions = {}): Stream {
  return new Stream(options);
}

interface Queued {
  event: AuditEvent;
  bytes: number;
}

export class Stream {
  /** The claim token: give it to the user who will claim these events with a master key. */
  readonly token: string;
  readonly baseUrl: string;
  /** Events dropped for good (queue full, refused by the server, or unsent at close). */
  dropped = 0;

  private readonly batchSize: number;
  private readonly maxBatchBytes: number;
  private readonly flushIntervalMs: number;
  private readonly maxQueue: number;
  private readonly maxBackoffMs: number;
  private readonly options: StreamOptions;
  private readonly fetch: typeof fetch;
  private readonly logger: Pick<Console, "warn">;
  private queue: Queued[] = [];
  private queuedBytes = 0;
  private inFlight: Queued[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private sending: Promise<void> | undefined;
  private wakeRetry: (() => void) | undefined;
  private closed = false;
  private readonly detach: Array<() => void> = [];

  constructor(options: StreamOptions = {}) {
    this.options = options;
    this.token = options.token ?? uuid4();
    this.baseUrl = (options.baseUrl ?? envUrl() ?? "http://127.0.0.1:8000").replace(/\/+$/, "");
    this.batchSize = Math.max(1, Math.min(options.batchSize ?? MAX_BATCH, MAX_BATCH));
    this.maxBatchBytes = Math.max(1024, options.maxBatchBytes ?? 60_000);
    this.flushIntervalMs = options.flushIntervalMs ?? 500;
    this.maxQueue = options.maxQueue ?? 10_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.logger = options.logger ?? console;
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (!fetchImpl) throw new HeadwaterError("no fetch in this runtime: use Node 18+ or pass options.fetch");
    this.fetch = fetchImpl.bind(globalThis);
    if (options.flushOnExit ?? true) this.attachExitHooks();
  }

  /** Checks and queues an event; returns its idempotency key. Throws TypeError on a bad event. */
  log(event: AuditEvent): string {
    if (this.closed) throw new HeadwaterError("this stream is closed");
    checkEvent(event);
    const queued: AuditEvent = { ...event, idempotency_key: event.idempotency_key ?? uuid4() };
    if (this.queue.length >= this.maxQueue) {
      this.drop([queued], "queue_full", `the queue holds ${this.maxQueue} events`);
      return queued.idempotency_key!;
    }
    const bytes = encoder.encode(JSON.stringify(queued)).length + 1;
    this.queue.push({ event: queued, bytes });
    this.queuedBytes += bytes;
    if (this.queue.length >= this.batchSize || this.queuedBytes >= this.maxBatchBytes) this.pump();
    else if (!this.timer && !this.sending) {
      this.timer = setTimeout(() => this.pump(), this.flushIntervalMs);
      unref(this.timer);
    }
    return queued.idempotency_key!;
  }

  /** Sends everything queued; resolves when it is stored (or dropped for good). */
  async flush(): Promise<void> {
    while ((this.queue.length && !this.closed) || this.sending) {
      this.pump();
      await this.sending;
    }
  }

  /**
   * Flushes, then refuses further `log()` calls. After `timeoutMs` (default 30 s) whatever is
   * still unsent — a server that stays down — is dropped and counted.
   */
  async close(timeoutMs = 30_000): Promise<void> {
    if (this.closed) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const outcome = await Promise.race([this.flush().then(() => "done" as const), timedOut]);
    clearTimeout(timer);
    this.closed = true;
    for (const detach of this.detach.splice(0)) detach();
    if (outcome === "timeout") {
      this.wakeRetry?.();
      await this.sending;
      const left = this.queue.splice(0).map((q) => q.event);
      this.queuedBytes = 0;
      if (left.length) this.drop(left, "closed", "not sent before close() timed out");
    }
  }

  /** The stream as the server sees it; `not_created` before its first event is stored. */
  async info(): Promise<StreamInfo> {
    const response = await this.fetch(`${this.baseUrl}/api/v1/streams/${this.token}/info`);
    if (response.status === 404) return { claim_token: this.token, status: "not_created", event_count: 0 };
    const body = await readJson(response);
    if (!response.ok) throw new HeadwaterError(`info: HTTP ${response.status}`, response.status, body);
    return body as StreamInfo;
  }

  /** Events queued or being sent. */
  get pending(): number {
    return this.queue.length + this.inFlight.length;
  }

  // -- sending --------------------------------------------------------------------------
  private pump(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.sending || !this.queue.length) return;
    this.sending = (async () => {
      try {
        while (this.queue.length && !this.closed) await this.send(this.takeBatch());
      } finally {
        this.sending = undefined;
      }
    })();
  }

  private takeBatch(): Queued[] {
    let bytes = 0;
    let count = 0;
    while (count < this.queue.length && count < this.batchSize) {
      const next = this.queue[count].bytes;
      if (count > 0 && bytes + next > this.maxBatchBytes) break;
      bytes += next;
      count += 1;
    }
    this.inFlight = this.queue.splice(0, count);
    this.queuedBytes -= bytes;
    return this.inFlight;
  }

  private async send(batch: Queued[]): Promise<void> {
    let attempt = 0;
    while (batch.length) {
      attempt += 1;
      let wait = Math.min(this.maxBackoffMs, 500 * 2 ** Math.min(attempt, 10)) * (0.5 + Math.random() / 2);
      try {
        const response = await this.fetch(this.eventsUrl(), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ events: batch.map((q) => q.event) }),
        });
        if (response.ok) break;
        const body = await readJson(response);
        if (response.status === 429 || response.status >= 500) {
          wait = retryAfter(response) ?? wait;
          this.logger.warn(`headwater: HTTP ${response.status}; retrying in ${(wait / 1000).toFixed(1)} s`);
        } else {
          const refused = refusedIndexes(body, batch.length);
          const detail = JSON.stringify(body).slice(0, 500);
          this.logger.warn(`headwater: ${refused.size} event(s) refused (HTTP ${response.status}): ${detail}`);
          this.drop(batch.filter((_, i) => refused.has(i)).map((q) => q.event), "refused", detail);
          batch = batch.filter((_, i) => !refused.has(i));
          this.inFlight = batch;
          attempt = 0;
          continue; // the others go again at once
        }
      } catch (error) {
        this.logger.warn(`headwater: send failed (${String(error)}); retrying in ${(wait / 1000).toFixed(1)} s`);
      }
      if (this.closed) {
        this.queue.unshift(...batch); // close() timed out: it drops what is left
        break;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.wakeRetry = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeRetry = undefined;
      if (this.closed) {
        this.queue.unshift(...batch);
        break;
      }
    }
    this.inFlight = [];
  }

  /** The page is going away: hand what is queued to the browser, which sends it after we are gone. */
  private sendOnPageHide(): void {
    const events = [...this.inFlight, ...this.queue].map((q) => q.event);
    this.queue = [];
    this.queuedBytes = 0;
    for (let start = 0; start < events.length; ) {
      let end = start;
      let bytes = 12;
      while (end < events.length && end - start < this.batchSize) {
        const size = encoder.encode(JSON.stringify(events[end])).length + 1;
        if (end > start && bytes + size > KEEPALIVE_LIMIT) break;
        bytes += size;
        end += 1;
      }
      // text/plain needs no preflight, which a page on its way out has no time for; the
      // server reads it as JSON. Idempotency keys make it harmless if a send was already under way.
      void this.fetch(this.eventsUrl(), {
        method: "POST",
        headers: { "Content-Type": "text/plain;charset=UTF-8" },
        body: JSON.stringify({ events: events.slice(start, end) }),
        keepalive: bytes <= KEEPALIVE_LIMIT,
      }).catch(() => undefined);
      start = end;
    }
  }

  private attachExitHooks(): void {
    const target = globalThis as unknown as {
      addEventListener?: (name: string, listener: () => void) => void;
      removeEventListener?: (name: string, listener: () => void) => void;
      document?: unknown;
      process?: NodeProcess;
    };
    if (target.document && target.addEventListener) {
      const onPageHide = () => this.sendOnPageHide();
      target.addEventListener("pagehide", onPageHide);
      this.detach.push(() => target.removeEventListener?.("pagehide", onPageHide));
      return;
    }
    const proc = target.process;
    if (!proc?.on) return;
    const onBeforeExit = () => {
      if (this.queue.length && !this.sending) this.pump();
    };
    proc.on("beforeExit", onBeforeExit);
    this.detach.push(() => proc.off("beforeExit", onBeforeExit));
    if (this.options.handleSigterm) {
      const onSigterm = () => {
        void this.close(5_000).finally(() => proc.exit(143));
      };
      proc.on("SIGTERM", onSigterm);
      this.detach.push(() => proc.off("SIGTERM", onSigterm));
    }
  }

  private eventsUrl(): string {
    return `${this.baseUrl}/api/v1/streams/${this.token}/events`;
  }

  private drop(events: AuditEvent[], reason: DropReason, detail?: string): void {
    if (!events.length) return;
    this.dropped += events.length;
    if (reason === "queue_full") this.logger.warn(`headwater: queue full; dropping ${events[0].action}`);
    this.options.onDrop?.(events, reason, detail);
  }
}

// -- helpers ------------------------------------------------------------------------------
interface NodeProcess {
  on(event: string, listener: () => void): void;
  off(event: string, listener: () => void): void;
  exit(code: number): never;
  env?: Record<string, string | undefined>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function envUrl(): string | undefined {
  const proc = (globalThis as unknown as { process?: NodeProcess }).process;
  return proc?.env?.HEADWATER_URL || undefined;
}

function unref(timer: unknown): void {
  (timer as { unref?: () => void }).unref?.();
}

function uuid4(): string {
  const c = (globalThis as unknown as { crypto?: Crypto }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  if (!c?.getRandomValues) throw new HeadwaterError("no Web Crypto here: pass options.token (a UUIDv4)");
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function readJson(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    return undefined;
  }
}

function retryAfter(response: Response): number | undefined {
  const value = response.headers.get("Retry-After");
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** The events a 4xx answer names (`events[i].…`), or all of them if it names none. */
function refusedIndexes(body: unknown, size: number): Set<number> {
  const named = new Set<number>();
  const details = (body as { error?: { details?: Array<{ field?: unknown }> } })?.error?.details;
  if (Array.isArray(details)) {
    for (const detail of details) {
      const match = EVENT_INDEX.exec(String(detail?.field ?? ""));
      if (match && Number(match[1]) < size) named.add(Number(match[1]));
    }
  }
  return named.size ? named : new Set(Array.from({ length: size }, (_, i) => i));
}
