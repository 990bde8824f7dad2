/**
 * Express (or plain `node:http`) middleware: the session cookie in, a
 * validated session out (`req.session`), renewed tokens written back, and
 * CSRF protection on unsafe methods, with the same cookie and CSRF rules as
 * the Rust layer (tessera-axum).
 *
 * ```ts
 * app.use(express.urlencoded({ extended: false }));
 * app.use(tesseraSession({ client: new TesseraClient({ baseUrl, apiKey }) }));
 * app.post("/login", async (req, res) => {
 *   await req.tessera.login(user, { authLevel: 1 });
 *   res.redirect("/");
 * });
 * ```
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { isIP } from "node:net";
import { parse as parseQuery } from "node:querystring";

import { TesseraClient } from "./client";
import {
  checkCookieSettings,
  DEFAULT_COOKIE_NAME,
  type CookieSettings,
  readSessionCookie,
  removalCookie,
  type SameSite,
  setCookie,
} from "./cookies";
import {
  CSRF_DATA_KEY,
  type CsrfErrorCode,
  crossSiteEvidence,
  csrfMessage,
  isUnsafe,
  mask,
  newSecret,
  verify,
} from "./csrf";
import { TesseraError } from "./errors";
import type { ClientInfo, InvalidReason, Issued, Session, SessionData, UpdateRequest } from "./types";

/** Settings of {@link tesseraSession}; every one but `client` has a secure default. */
export interface TesseraSessionOptions {
  /** The tesserad client (one per process). */
  client: TesseraClient;
  /** The cookie name (default `__Host-tessera`). */
  cookieName?: string;
  /**
   * The `Secure` attribute (default `true`). `false` is for development over
   * plain HTTP and needs a name without the `__Host-`/`__Secure-` prefix.
   */
  secure?: boolean;
  /** `lax` (default) or `strict`. */
  sameSite?: SameSite;
  /** CSRF protection of unsafe methods (default on). */
  csrf?: boolean;
  /** The header carrying the CSRF token (default `X-CSRF-Token`). */
  csrfHeader?: string;
  /** The urlencoded form field carrying the CSRF token (default `csrf_token`). */
  csrfField?: string;
  /** Other origins (`scheme://host[:port]`) allowed to send unsafe requests (with a valid token). */
  trustedOrigins?: string[];
  /** Requests exempt from the CSRF check (webhooks authenticated otherwise, say). */
  csrfExempt?: (req: IncomingMessage) => boolean;
  /** Largest urlencoded body read to find the CSRF field (default 1 MiB). */
  maxFormBytes?: number;
  /**
   * The browser's IP, for client binding and guessing detection. Default:
   * Express's `req.ip` (which follows `trust proxy`), else the peer address.
   */
  clientIp?: (req: IncomingMessage) => string | undefined;
}

/** A data change: `data` replaces, `patch` merges (RFC 7396); `version` makes it compare-and-swap. */
export interface SessionUpdate {
  data?: SessionData;
  patch?: SessionData;
  /** Write only if the session is still at this version (else `version_conflict`, 409). */
  version?: number;
}

declare global {
  // Express merges this into its Request type (as passport and multer do).
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The validated session (its data without the CSRF secret), or `null`. */
      session: Session | null;
      /** Session operations of this request. */
      tessera: SessionHandle;
    }
  }
}

type Change = { kind: "keep" } | { kind: "set"; token: string } | { kind: "remove" };

interface Settings {
  client: TesseraClient;
  cookie: CookieSettings;
  csrf: boolean;
  csrfHeader: string;
  csrfField: string;
  trustedOrigins: string[];
  csrfExempt: ((req: IncomingMessage) => boolean) | undefined;
  maxFormBytes: number;
  clientIp: (req: IncomingMessage) => string | undefined;
}

type Req = IncomingMessage & { ip?: string; body?: unknown; _body?: boolean };

/**
 * The session operations of one request (`req.tessera`). Operations run one
 * at a time; those that change the cookie must finish before the response
 * headers are sent.
 */
export class SessionHandle {
  /** Why a presented cookie gave no session (`malformed`, `expired_idle`, …), else `null`. */
  rejected: InvalidReason | null = null;

  private token: string | undefined;
  private raw: Session | null = null;
  private view: Session | null = null;
  private change: Change = { kind: "keep" };
  private readonly hadCookie: boolean;
  private queue: Promise<unknown> = Promise.resolve();

  /** @internal */
  constructor(
    private readonly settings: Settings,
    private readonly req: Req,
    private readonly res: ServerResponse,
    hadCookie: boolean,
  ) {
    this.hadCookie = hadCookie;
  }

  /** The validated session (data without the CSRF secret), or `null`. */
  get session(): Session | null {
    return this.view;
  }

  /** The client sent to tesserad for binding: the request's IP and User-Agent. */
  get clientInfo(): ClientInfo {
    const info: ClientInfo = {};
    const ip = normaliseIp(this.settings.clientIp(this.req));
    if (ip !== undefined) info.ip = ip;
    const agent = this.req.headers["user-agent"];
    if (agent !== undefined) info.user_agent = agent;
    return info;
  }

  /**
   * A masked CSRF token for this session (different on every call); creates
   * an anonymous session, or the session's secret, when there is none yet.
   */
  csrfToken(): Promise<string> {
    return this.serial(async () => {
      const secret = this.secret();
      if (secret !== undefined) return mask(secret);
      const fresh = newSecret();
      if (this.raw === null || this.token === undefined) {
        await this.createAnonymous({ [CSRF_DATA_KEY]: fresh });
      } else {
        this.adoptSession(await this.settings.client.update({ token: this.token, patch: { [CSRF_DATA_KEY]: fresh } }));
      }
      return mask(fresh);
    });
  }

  /**
   * Signs `subject` in: always a new token (the one from before is dead at
   * once: no fixation) and a new CSRF secret. An anonymous session's data
   * (or the same subject's) is kept, another subject's never; `data` is
   * merged onto it.
   */
  login(subject: string, options: { authLevel?: number; data?: SessionData } = {}): Promise<Session> {
    return this.serial(async () => {
      const current = this.raw;
      const carried =
        current !== null && (current.subject === null || current.subject === subject)
          ? withoutSecret(current.data)
          : {};
      const data = { ...carried, ...withoutSecret(options.data ?? {}), [CSRF_DATA_KEY]: newSecret() };
      const issued = await this.settings.client.login({
        ...(this.token !== undefined && current !== null ? { token: this.token } : {}),
        subject,
        auth_level: options.authLevel ?? 1,
        data,
        client: this.clientInfo,
      });
      this.adoptIssued(issued);
      return this.view as Session;
    });
  }

  /** Ends the session; the response removes the cookie and sends `Clear-Site-Data: "cookies"`. */
  logout(): Promise<void> {
    return this.serial(async () => {
      if (this.raw !== null && this.token !== undefined) {
        await this.settings.client.logout(this.token);
      }
      const changed = this.change.kind !== "keep";
      this.raw = null;
      this.view = null;
      this.token = undefined;
      if (this.hadCookie || changed) this.setChange({ kind: "remove" });
    });
  }

  /**
   * Changes the session data: `data` replaces it, `patch` merges into it.
   * With `version`, only if the session is still at that version: a
   * {@link TesseraError} `version_conflict` (409, `currentVersion`) otherwise.
   * Without a session, one is created (anonymous) holding the data. The
   * CSRF secret is kept whatever the change.
   */
  update(change: SessionUpdate): Promise<Session> {
    return this.serial(async () => {
      if ((change.data === undefined) === (change.patch === undefined)) {
        throw new TesseraError("invalid_request", "give either `data` (replace) or `patch` (merge)", 400);
      }
      if (this.raw === null || this.token === undefined) {
        if (change.version !== undefined) {
          throw new TesseraError("version_conflict", "there is no session at that version", 409);
        }
        const data = change.data ?? mergePatch({}, change.patch ?? {});
        await this.createAnonymous(withoutSecret(data));
        return this.view as Session;
      }
      const request: UpdateRequest = { token: this.token };
      if (change.data !== undefined) {
        const secret = this.secret();
        request.data = { ...withoutSecret(change.data), ...(secret !== undefined ? { [CSRF_DATA_KEY]: secret } : {}) };
      } else {
        request.patch = withoutSecret(change.patch ?? {});
      }
      if (change.version !== undefined) request.version = change.version;
      this.adoptSession(await this.settings.client.update(request));
      return this.view as Session;
    });
  }

  /** Reads the session again (after a `version_conflict`, say); `null` if it ended meanwhile. */
  refresh(): Promise<Session | null> {
    return this.serial(async () => {
      if (this.token === undefined) return null;
      await this.validate(this.token);
      return this.view;
    });
  }

  /** A new token for the same session (after a privilege change, say). */
  rotate(): Promise<Session | null> {
    return this.serial(async () => {
      if (this.raw === null || this.token === undefined) return null;
      this.adoptIssued(await this.settings.client.rotate(this.token));
      return this.view;
    });
  }

  /** Every valid session of the signed-in subject ("your devices"), oldest first. */
  sessions(): Promise<Session[]> {
    return this.serial(async () => {
      const subject = this.signedIn().subject as string;
      return (await this.settings.client.listSubjectSessions(subject)).map(publicView);
    });
  }

  /** Ends every other session of the signed-in subject ("sign out everywhere else"); returns how many. */
  revokeOthers(): Promise<number> {
    return this.serial(async () => {
      const session = this.signedIn();
      return this.settings.client.revokeSubjectSessions(session.subject as string, session.id);
    });
  }

  // ----- internals ---------------------------------------------------------

  /** @internal Validates a presented token; invalid ones leave the request anonymous. */
  async validate(token: string): Promise<void> {
    try {
      const valid = await this.settings.client.validate(token, this.clientInfo);
      this.token = valid.token ?? token;
      this.adoptSession(valid.session);
      if (valid.token !== undefined) this.setChange({ kind: "set", token: valid.token });
    } catch (error) {
      if (error instanceof TesseraError && error.error === "invalid_session") {
        this.rejected = error.reason ?? "unknown";
        this.raw = null;
        this.view = null;
        this.token = undefined;
        return;
      }
      throw error;
    }
  }

  /** @internal The session data's CSRF secret, if there is one. */
  secret(): string | undefined {
    const secret = this.raw?.data[CSRF_DATA_KEY];
    return typeof secret === "string" ? secret : undefined;
  }

  /** @internal Writes the cookie change into the response headers (once, as they leave). */
  writeHeaders(): void {
    const res = this.res;
    const noStore = "no-store";
    switch (this.change.kind) {
      case "keep":
        if (this.raw !== null && !res.hasHeader("cache-control")) res.setHeader("cache-control", noStore);
        return;
      case "set":
        appendSetCookie(res, this.settings.cookie.name, setCookie(this.settings.cookie, this.change.token));
        res.setHeader("cache-control", noStore);
        return;
      case "remove":
        appendSetCookie(res, this.settings.cookie.name, removalCookie(this.settings.cookie));
        res.setHeader("clear-site-data", '"cookies"');
        res.setHeader("cache-control", noStore);
        return;
    }
  }

  private serial<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.queue.then(operation);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private signedIn(): Session {
    if (this.raw === null || this.raw.subject === null) {
      throw new TesseraError("not_authenticated", "this needs a signed-in session", 401);
    }
    return this.raw;
  }

  private async createAnonymous(data: SessionData): Promise<void> {
    this.adoptIssued(await this.settings.client.create({ data, client: this.clientInfo }));
  }

  private adoptIssued(issued: Issued): void {
    this.setChange({ kind: "set", token: issued.token });
    this.token = issued.token;
    this.rejected = null;
    this.adoptSession(issued.session);
  }

  private adoptSession(session: Session): void {
    this.raw = session;
    this.view = publicView(session);
  }

  private setChange(change: Change): void {
    if (this.res.headersSent) {
      throw new Error("the response headers were already sent: change the session before responding");
    }
    this.change = change;
  }
}

/**
 * The session middleware. Validates the session cookie through tesserad on
 * every request that carries one (a failure of tesserad or its store is
 * passed to `next(err)` as a {@link TesseraError} with status 503: fail
 * closed), then checks CSRF on unsafe methods (403 with a `Tessera-Error`
 * code), then calls the next handler.
 */
export function tesseraSession(
  options: TesseraSessionOptions,
): (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void {
  if (!(options.client instanceof TesseraClient)) {
    throw new TypeError("tesseraSession needs a TesseraClient as `client`");
  }
  const cookie: CookieSettings = {
    name: options.cookieName ?? DEFAULT_COOKIE_NAME,
    secure: options.secure ?? true,
    sameSite: options.sameSite ?? "lax",
  };
  checkCookieSettings(cookie);
  const csrfHeader = (options.csrfHeader ?? "x-csrf-token").toLowerCase();
  if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(csrfHeader)) {
    throw new TypeError(`\`${options.csrfHeader}\` is not a valid header name for the CSRF token`);
  }
  const csrfField = options.csrfField ?? "csrf_token";
  if (csrfField === "") throw new TypeError("the CSRF form field name must not be empty");
  for (const origin of options.trustedOrigins ?? []) {
    const separator = origin.indexOf("://");
    const authority = separator > 0 ? origin.slice(separator + 3) : "";
    if (authority === "" || authority.includes("/")) {
      throw new TypeError(
        `trusted origin \`${origin}\` must be scheme://host[:port] with no path, like https://app.example.com`,
      );
    }
  }
  const settings: Settings = {
    client: options.client,
    cookie,
    csrf: options.csrf ?? true,
    csrfHeader,
    csrfField,
    trustedOrigins: [...(options.trustedOrigins ?? [])],
    csrfExempt: options.csrfExempt,
    maxFormBytes: options.maxFormBytes ?? 1024 * 1024,
    clientIp: options.clientIp ?? ((req: Req) => req.ip ?? req.socket.remoteAddress),
  };

  return (incoming, res, next) => {
    const req = incoming as Req;
    serve(settings, req, res).then((proceed) => {
      if (proceed) next();
    }, next);
  };
}

/** Resolves `true` when the request goes on to the application. */
async function serve(settings: Settings, req: Req, res: ServerResponse): Promise<boolean> {
  const presented = readSessionCookie(req.headers.cookie, settings.cookie.name);
  const handle = new SessionHandle(settings, req, res, presented.kind !== "nothing");
  Object.defineProperty(req, "tessera", { value: handle, configurable: true, enumerable: true });
  Object.defineProperty(req, "session", {
    get: () => handle.session,
    configurable: true,
    enumerable: true,
  });
  hookHeaders(res, handle);

  if (presented.kind === "credential") {
    await handle.validate(presented.value);
  } else if (presented.kind === "unreadable") {
    handle.rejected = "malformed";
  }

  if (!settings.csrf || !isUnsafe(req.method ?? "GET") || settings.csrfExempt?.(req)) {
    return true;
  }
  const evidence = crossSiteEvidence(req.headers, settings.trustedOrigins);
  if (evidence !== undefined) return refuse(res, settings, "csrf_cross_site", evidence);
  let token = firstValue(req.headers[settings.csrfHeader]);
  if (token === undefined) {
    const form = await formField(req, settings.csrfField, settings.maxFormBytes);
    if (form.error !== undefined) {
      res.statusCode = form.error.status;
      return plain(res, "bad_body", form.error.message);
    }
    token = form.value;
  }
  if (token === undefined) return refuse(res, settings, "csrf_missing_token");
  if (handle.session === null) return refuse(res, settings, "csrf_no_session");
  const secret = handle.secret();
  if (secret === undefined) return refuse(res, settings, "csrf_no_session");
  if (!verify(secret, token)) return refuse(res, settings, "csrf_invalid_token");
  return true;
}

function refuse(res: ServerResponse, settings: Settings, code: CsrfErrorCode, evidence?: string): false {
  res.statusCode = 403;
  const detail = { header: "X-CSRF-Token", field: settings.csrfField, ...(evidence ? { evidence } : {}) };
  if (settings.csrfHeader !== "x-csrf-token") detail.header = settings.csrfHeader;
  return plain(res, code, csrfMessage(code, detail));
}

function plain(res: ServerResponse, code: string, message: string): false {
  res.setHeader("content-type", "text/plain; charset=utf-8");
  res.setHeader("cache-control", "no-store");
  res.setHeader("tessera-error", code);
  res.end(`${message}\n`);
  return false;
}

/** Runs `handle.writeHeaders()` right before the response headers leave. */
function hookHeaders(res: ServerResponse, handle: SessionHandle): void {
  const writeHead = res.writeHead;
  let written = false;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    if (!written) {
      written = true;
      // Headers passed to writeHead itself are merged in first, so that
      // the session's Set-Cookie and Cache-Control apply on top of them.
      const last = args[args.length - 1];
      if (last !== null && typeof last === "object" && !Array.isArray(last)) {
        for (const [name, value] of Object.entries(last as OutgoingHttpHeaders)) {
          if (value !== undefined) this.setHeader(name, value);
        }
        args = args.slice(0, -1);
      }
      handle.writeHeaders();
    }
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as typeof res.writeHead;
}

/** Adds a Set-Cookie for `name`, replacing any other one for the same name (one per name). */
function appendSetCookie(res: ServerResponse, name: string, value: string): void {
  const existing = res.getHeader("set-cookie");
  const list = existing === undefined ? [] : Array.isArray(existing) ? existing : [String(existing)];
  const others = list.filter((cookie) => !cookie.startsWith(`${name}=`));
  res.setHeader("set-cookie", [...others, value]);
}

async function formField(
  req: Req,
  field: string,
  limit: number,
): Promise<{ value?: string; error?: { status: number; message: string } }> {
  const type = req.headers["content-type"];
  if (type === undefined || !type.trimStart().toLowerCase().startsWith("application/x-www-form-urlencoded")) {
    return {};
  }
  let body: unknown = req.body;
  if (body === undefined || body === null || typeof body !== "object") {
    if (req.readableEnded) return {};
    let bytes: Buffer;
    try {
      bytes = await readLimited(req, limit);
    } catch (error) {
      const tooLarge = error instanceof RangeError;
      return {
        error: {
          status: tooLarge ? 413 : 400,
          message: `cannot read the request body: ${(error as Error).message}`,
        },
      };
    }
    body = parseQuery(bytes.toString("utf8"));
    // Body parsers further down skip a request already read (body-parser 1
    // looks at `_body`, 2 at whether the stream has finished).
    req.body = body;
    req._body = true;
  }
  const value = (body as Record<string, unknown>)[field];
  return { value: firstValue(value) };
}

function readLimited(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.resume();
        reject(new RangeError(`the form body is over ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

function firstValue(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (Array.isArray(value) && typeof value[0] === "string") return value[0];
  return undefined;
}

/** A session as the application sees it: the CSRF secret left out of the data. */
function publicView(session: Session): Session {
  if (!(CSRF_DATA_KEY in session.data)) return session;
  return { ...session, data: withoutSecret(session.data) };
}

function withoutSecret(data: SessionData): SessionData {
  if (!(CSRF_DATA_KEY in data)) return data;
  const { [CSRF_DATA_KEY]: _secret, ...rest } = data;
  return rest;
}

/** An RFC 7396 merge patch applied to `target` (for a session created from a patch). */
function mergePatch(target: SessionData, patch: SessionData): SessionData {
  const result: SessionData = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete result[key];
    } else if (typeof value === "object" && !Array.isArray(value)) {
      const base = result[key];
      result[key] = mergePatch(
        base !== null && typeof base === "object" && !Array.isArray(base) ? (base as SessionData) : {},
        value as SessionData,
      );
    } else {
      result[key] = value;
    }
  }
  return result;
}

/** The IP as tesserad parses it (`::ffff:1.2.3.4` as IPv4), or nothing if it is not one. */
function normaliseIp(ip: string | undefined): string | undefined {
  if (ip === undefined) return undefined;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  // tesserad parses a plain address: no IPv6 zone (`fe80::1%eth0`).
  const candidate = mapped ? mapped[1]! : ip.replace(/%.*$/, "");
  return isIP(candidate) === 0 ? undefined : candidate;
}
