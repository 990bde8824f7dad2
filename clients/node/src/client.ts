import * as http from "node:http";
import * as https from "node:https";

import { TesseraError } from "./errors";
import type {
  ClientInfo,
  CreateRequest,
  ErrorBody,
  Health,
  Issued,
  LoginRequest,
  OperationId,
  Session,
  Stats,
  UpdateRequest,
  Validated,
} from "./types";

/** How to reach tesserad. */
export interface TesseraClientOptions {
  /** The server, e.g. `http://127.0.0.1:7450` (a path prefix is kept). */
  baseUrl: string;
  /** An API key (`tesserad keys create`), sent as `Authorization: Bearer …`. */
  apiKey: string;
  /** How long one call may take before it fails with `server_unreachable` (default 10 000 ms). */
  timeoutMs?: number;
  /** Largest number of connections kept to the server (default 64). */
  maxSockets?: number;
  /** A private CA (PEM) for an `https://` server. */
  ca?: string | Buffer;
  /**
   * Largest request body sent (default 256 KiB, tesserad's limit). A larger
   * one fails here with `payload_too_large` (413): the server would refuse it
   * before reading it and close the connection, which a client still
   * writing sees as a reset rather than as the 413.
   */
  maxBodyBytes?: number;
}

/** What `GET /v1/auth` (forward-auth) said about a browser's cookie. */
export interface ForwardAuthResult {
  /** The signed-in subject (percent-decoded). */
  subject: string;
  /** The public session id. */
  sessionId: string;
  /** Present when the token was renewed: pass it on to the browser. */
  setCookie?: string;
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_BODY_BYTES = 256 * 1024;

/**
 * A client for tesserad's HTTP API: one method per endpoint, typed bodies,
 * and every failure a {@link TesseraError}. Connections are kept alive and
 * shared by all calls; create one client per process.
 */
export class TesseraClient {
  private readonly transport: typeof http | typeof https;
  private readonly agent: http.Agent;
  private readonly host: string;
  private readonly port: number;
  private readonly prefix: string;
  private readonly authorization: string;
  private readonly timeoutMs: number;
  private readonly maxBodyBytes: number;

  constructor(options: TesseraClientOptions) {
    const url = new URL(options.baseUrl);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`baseUrl must be http:// or https://, got ${options.baseUrl}`);
    }
    if (!options.apiKey) {
      throw new TypeError("apiKey is required");
    }
    const secure = url.protocol === "https:";
    this.transport = secure ? https : http;
    const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 64 };
    this.agent = secure
      ? new https.Agent({ ...agentOptions, ca: options.ca })
      : new http.Agent(agentOptions);
    this.host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    this.port = url.port ? Number(url.port) : secure ? 443 : 80;
    this.prefix = url.pathname.replace(/\/+$/, "");
    this.authorization = `Bearer ${options.apiKey}`;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  // ----- sessions ----------------------------------------------------------

  /** `POST /v1/sessions`: a new session and its first token. */
  async create(request: CreateRequest = {}): Promise<Issued> {
    return this.json<Issued>("POST", "/v1/sessions", request, 201);
  }

  /**
   * `POST /v1/sessions/validate`. When the result has a `token`, the token
   * was renewed: hand the new one to the client (the old one keeps working
   * only for the server's `--rotation-grace`).
   */
  async validate(token: string, client?: ClientInfo): Promise<Validated> {
    return this.json<Validated>("POST", "/v1/sessions/validate", { token, client }, 200);
  }

  /**
   * `POST /v1/sessions/update`: `data` replaces, `patch` merges (RFC 7396);
   * with `version`, only if the session is still at that version (else
   * `version_conflict` with `currentVersion`).
   */
  async update(request: UpdateRequest): Promise<Session> {
    const body = await this.json<{ session: Session }>("POST", "/v1/sessions/update", request, 200);
    return body.session;
  }

  /**
   * `POST /v1/sessions/login`: always a new token; the presented one
   * (`request.token`) is dead at once. Without a valid token a new session starts.
   */
  async login(request: LoginRequest): Promise<Issued> {
    return this.json<Issued>("POST", "/v1/sessions/login", request, 200);
  }

  /** `POST /v1/sessions/rotate`: a new token for the same session. */
  async rotate(token: string): Promise<Issued> {
    return this.json<Issued>("POST", "/v1/sessions/rotate", { token }, 200);
  }

  /** `POST /v1/sessions/logout`: ends the session (unknown tokens are fine). */
  async logout(token: string): Promise<void> {
    await this.call("POST", "/v1/sessions/logout", { token }, 204);
  }

  // ----- admin -------------------------------------------------------------

  /** `GET /v1/sessions/{id}`: the session, or `null` when no valid session has this id. */
  async getSession(id: string): Promise<Session | null> {
    try {
      const body = await this.json<{ session: Session }>("GET", `/v1/sessions/${segment(id)}`, undefined, 200);
      return body.session;
    } catch (error) {
      if (error instanceof TesseraError && error.error === "not_found") return null;
      throw error;
    }
  }

  /** `DELETE /v1/sessions/{id}`: `true` if a session ended, `false` if there was none. */
  async revokeSession(id: string): Promise<boolean> {
    try {
      await this.call("DELETE", `/v1/sessions/${segment(id)}`, undefined, 204);
      return true;
    } catch (error) {
      if (error instanceof TesseraError && error.error === "not_found") return false;
      throw error;
    }
  }

  /** `GET /v1/subjects/{subject}/sessions`: the subject's valid sessions, oldest first. */
  async listSubjectSessions(subject: string): Promise<Session[]> {
    const body = await this.json<{ sessions: Session[] }>(
      "GET",
      `/v1/subjects/${subjectSegment(subject)}/sessions`,
      undefined,
      200,
    );
    return body.sessions;
  }

  /**
   * `DELETE /v1/subjects/{subject}/sessions`: ends every session of the
   * subject except the one with id `except`; returns how many ended.
   */
  async revokeSubjectSessions(subject: string, except?: string): Promise<number> {
    const query = except === undefined ? "" : `?except=${encodeURIComponent(except)}`;
    const body = await this.json<{ revoked: number }>(
      "DELETE",
      `/v1/subjects/${subjectSegment(subject)}/sessions${query}`,
      undefined,
      200,
    );
    return body.revoked;
  }

  /** `POST /v1/admin/revoke-all`: ends every session; returns the new global epoch. */
  async revokeAll(): Promise<number> {
    const body = await this.json<{ epoch: number }>("POST", "/v1/admin/revoke-all", undefined, 200);
    return body.epoch;
  }

  /** `GET /v1/stats`: what the server has done since it started. */
  async stats(): Promise<Stats> {
    return this.json<Stats>("GET", "/v1/stats", undefined, 200);
  }

  // ----- forward-auth and operations ---------------------------------------

  /**
   * `GET /v1/auth` as a reverse proxy calls it: the browser's `Cookie`
   * header in; the subject out, or `null` when the cookie gives no
   * signed-in session. A store outage is thrown (`store_unavailable`)
   * rather than reported as "not signed in".
   */
  async forwardAuth(request: {
    cookie?: string;
    userAgent?: string;
    realIp?: string;
  }): Promise<ForwardAuthResult | null> {
    const headers: http.OutgoingHttpHeaders = {};
    if (request.cookie !== undefined) headers.cookie = request.cookie;
    if (request.userAgent !== undefined) headers["user-agent"] = request.userAgent;
    if (request.realIp !== undefined) headers["x-real-ip"] = request.realIp;
    const response = await this.send("GET", "/v1/auth", undefined, headers, false);
    if (response.status === 200) {
      const subject = header(response.headers, "tessera-subject");
      const sessionId = header(response.headers, "tessera-session-id");
      if (subject === undefined || sessionId === undefined) {
        throw new TesseraError("unexpected_response", "forward-auth answered 200 without the subject headers", 502);
      }
      const result: ForwardAuthResult = { subject: decodeURIComponent(subject), sessionId };
      const setCookie = response.headers["set-cookie"]?.[0];
      if (setCookie !== undefined) result.setCookie = setCookie;
      return result;
    }
    const error = toError(response);
    if (response.status === 401 && error.error !== "store_unavailable") return null;
    throw error;
  }

  /** `GET /healthz`: the process is up. */
  async healthz(): Promise<Health> {
    return this.json<Health>("GET", "/healthz", undefined, 200, false);
  }

  /** `GET /readyz`: the store answers (`store_unavailable` otherwise). */
  async readyz(): Promise<Health> {
    return this.json<Health>("GET", "/readyz", undefined, 200, false);
  }

  /** `GET /metrics`: Prometheus text. */
  async metrics(): Promise<string> {
    return (await this.call("GET", "/metrics", undefined, 200, false)).body;
  }

  /** `GET /openapi.json`: the server's OpenAPI document. */
  async openapi(): Promise<Record<string, unknown>> {
    return this.json<Record<string, unknown>>("GET", "/openapi.json", undefined, 200, false);
  }

  // ----- transport ---------------------------------------------------------

  private async json<T>(
    method: string,
    path: string,
    body: unknown,
    expected: number,
    authorized = true,
  ): Promise<T> {
    const response = await this.call(method, path, body, expected, authorized);
    try {
      return JSON.parse(response.body) as T;
    } catch (cause) {
      throw new TesseraError("unexpected_response", `${method} ${path}: the answer is not JSON`, 502, { cause });
    }
  }

  private async call(
    method: string,
    path: string,
    body: unknown,
    expected: number,
    authorized = true,
  ): Promise<RawResponse> {
    const response = await this.send(method, path, body, {}, authorized);
    if (response.status !== expected) throw toError(response);
    return response;
  }

  private async send(
    method: string,
    path: string,
    body: unknown,
    headers: http.OutgoingHttpHeaders,
    authorized: boolean,
  ): Promise<RawResponse> {
    // A string (not a Buffer): Node then sends the headers and the body in
    // one write instead of a writev, which costs noticeably more per call.
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const length = payload === undefined ? 0 : Buffer.byteLength(payload);
    if (length > this.maxBodyBytes) {
      throw new TesseraError(
        "payload_too_large",
        `the request body is ${length} bytes, over the limit of ${this.maxBodyBytes}`,
        413,
      );
    }
    const outgoing: http.OutgoingHttpHeaders = { ...headers, accept: "application/json" };
    if (authorized) outgoing.authorization = this.authorization;
    if (payload !== undefined) {
      outgoing["content-type"] = "application/json";
      outgoing["content-length"] = length;
    }
    try {
      return await this.once(method, path, payload, outgoing);
    } catch (error) {
      // A kept-alive connection the server closed just as it was reused:
      // the request never reached it, so it is sent again once.
      if (isStaleConnection(error)) return this.once(method, path, payload, outgoing);
      throw error;
    }
  }

  private once(
    method: string,
    path: string,
    payload: string | undefined,
    headers: http.OutgoingHttpHeaders,
  ): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const request = this.transport.request(
        {
          agent: this.agent,
          host: this.host,
          port: this.port,
          method,
          path: this.prefix + path,
          headers,
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () => {
            clearTimeout(timer);
            resolve({
              status: response.statusCode ?? 0,
              headers: response.headers,
              body: Buffer.concat(chunks).toString("utf8"),
            });
          });
          response.on("error", fail);
        },
      );
      const timer = setTimeout(() => {
        request.destroy(new TimeoutError(`no answer from tesserad within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      function fail(cause: Error): void {
        clearTimeout(timer);
        if (request.reusedSocket && (cause as NodeJS.ErrnoException).code === "ECONNRESET") {
          reject(new StaleConnection(cause));
          return;
        }
        reject(
          new TesseraError("server_unreachable", `${method} ${path}: ${cause.message}`, 503, { cause }),
        );
      }
      request.on("error", fail);
      request.end(payload);
    });
  }
}

/**
 * Operations of the OpenAPI document that browsers reach through the proxy
 * (device-bound sessions): the client has no method for them.
 */
export const BROWSER_OPERATIONS = ["dbsc_register", "dbsc_refresh"] as const;

/**
 * Which client method serves each other operation of the OpenAPI document.
 * Typed against the generated operation ids: a new endpoint in the document
 * fails to compile here once the types are regenerated.
 */
export const OPERATIONS: Record<
  Exclude<OperationId, (typeof BROWSER_OPERATIONS)[number]>,
  keyof TesseraClient
> = {
  create: "create",
  validate: "validate",
  update: "update",
  login: "login",
  rotate: "rotate",
  logout: "logout",
  get_session: "getSession",
  revoke_session: "revokeSession",
  list_subject_sessions: "listSubjectSessions",
  revoke_subject_sessions: "revokeSubjectSessions",
  revoke_all: "revokeAll",
  stats: "stats",
  forward_auth: "forwardAuth",
  healthz: "healthz",
  readyz: "readyz",
  metrics: "metrics",
  openapi_json: "openapi",
};

class TimeoutError extends Error {}

class StaleConnection extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
  }
}

function isStaleConnection(error: unknown): boolean {
  return error instanceof StaleConnection;
}

function header(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** A path segment: percent-encoded, including `.` (see {@link subjectSegment}). */
function segment(text: string): string {
  return encodeURIComponent(text).replace(/\./g, "%2E");
}

/**
 * A subject as a path segment. Every byte that is not unreserved is
 * percent-encoded, dots too: this client sends the path as written, so a
 * subject such as `..` reaches the server instead of being resolved away
 * (a WHATWG URL parser, e.g. `fetch`, would turn `/v1/subjects/../sessions`
 * into `/v1/sessions`).
 */
function subjectSegment(subject: string): string {
  if (subject === "") {
    throw new TesseraError("invalid_request", "the subject must not be empty", 400);
  }
  return segment(subject);
}

function toError(response: RawResponse): TesseraError {
  let body: Partial<ErrorBody> | undefined;
  try {
    body = JSON.parse(response.body) as Partial<ErrorBody>;
  } catch {
    body = undefined;
  }
  if (body && typeof body.error === "string" && typeof body.message === "string") {
    return new TesseraError(body.error, body.message, response.status, {
      ...(body.reason ? { reason: body.reason } : {}),
      ...(typeof body.current_version === "number" ? { currentVersion: body.current_version } : {}),
    });
  }
  return new TesseraError(
    "unexpected_response",
    `tesserad answered ${response.status} with a body that is not an API error`,
    response.status >= 400 ? response.status : 502,
  );
}
