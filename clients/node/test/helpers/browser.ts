/**
 * A minimal browser for driving the example app over real HTTP: a cookie
 * jar that follows Set-Cookie (including removal), the Origin header on
 * unsafe requests as browsers send it, and no automatic redirects.
 */
import * as http from "node:http";

export interface Page {
  status: number;
  headers: http.IncomingHttpHeaders;
  setCookies: string[];
  text: string;
}

export class Browser {
  readonly cookies = new Map<string, string>();

  constructor(
    readonly base: string,
    readonly userAgent = "TestBrowser/1.0",
  ) {}

  async get(path: string, headers: http.OutgoingHttpHeaders = {}): Promise<Page> {
    return this.request("GET", path, undefined, headers);
  }

  /** A form submission (`application/x-www-form-urlencoded`). */
  async submit(path: string, fields: Record<string, string>, headers: http.OutgoingHttpHeaders = {}): Promise<Page> {
    const body = new URLSearchParams(fields).toString();
    return this.request("POST", path, body, {
      "content-type": "application/x-www-form-urlencoded",
      ...headers,
    });
  }

  /** A JSON call, as a script of the page would make it. */
  async json(method: string, path: string, value: unknown, headers: http.OutgoingHttpHeaders = {}): Promise<Page> {
    return this.request(method, path, JSON.stringify(value), { "content-type": "application/json", ...headers });
  }

  /** The CSRF token of the first form of a page. */
  static csrfField(page: Page): string {
    const match = /name="csrf_token" value="([^"]+)"/.exec(page.text);
    if (!match) throw new Error(`no csrf_token field in:\n${page.text}`);
    return match[1]!;
  }

  cookieHeader(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join("; ");
  }

  request(method: string, path: string, body: string | undefined, headers: http.OutgoingHttpHeaders): Promise<Page> {
    const url = new URL(path, this.base);
    const outgoing: http.OutgoingHttpHeaders = { "user-agent": this.userAgent, ...headers };
    if (this.cookies.size > 0 && outgoing.cookie === undefined) outgoing.cookie = this.cookieHeader();
    if (method !== "GET" && method !== "HEAD" && outgoing.origin === undefined) {
      outgoing.origin = url.origin;
    }
    if (body !== undefined) outgoing["content-length"] = Buffer.byteLength(body);
    return new Promise((resolve, reject) => {
      const request = http.request(url, { method, headers: outgoing, agent: false }, (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const setCookies = response.headers["set-cookie"] ?? [];
          for (const line of setCookies) this.apply(line);
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            setCookies,
            text: Buffer.concat(chunks).toString("utf8"),
          });
        });
        response.on("error", reject);
      });
      request.on("error", reject);
      request.end(body);
    });
  }

  private apply(line: string): void {
    const [pair, ...attributes] = line.split(";");
    const eq = pair!.indexOf("=");
    const name = pair!.slice(0, eq).trim();
    const value = pair!.slice(eq + 1).trim();
    const removed = attributes.some((a) => a.trim().toLowerCase() === "max-age=0");
    if (removed) this.cookies.delete(name);
    else this.cookies.set(name, value);
  }
}

/** Serves an Express app on a free loopback port. */
export function listen(app: http.RequestListener): Promise<{ url: string; close(): Promise<void> }> {
  return new Promise((resolve) => {
    const server = http.createServer(app);
    server.keepAliveTimeout = 1000;
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}
