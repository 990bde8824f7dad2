/**
 * The Express middleware, through the example app over real HTTP, against
 * a real tesserad: cookies, sign-in with CSRF, the counter, fixation,
 * CSRF refusals, compare-and-swap, "sign out everywhere else", sign-out.
 */
import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import { after, before, describe, it } from "node:test";

import { createApp } from "../examples/express-app/app";
import { CSRF_DATA_KEY, tesseraSession } from "../src/index";
import { rejectsWith } from "./helpers/assert";
import { Browser, listen, type Page } from "./helpers/browser";
import { startTesserad, type Tesserad } from "./helpers/tesserad";

const SET_COOKIE = /^__Host-tessera=(tss_[A-Za-z0-9_-]+); HttpOnly; SameSite=Lax; Secure; Path=\/$/;
const REMOVAL = "__Host-tessera=; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT";

let server: Tesserad;
let app: { url: string; close(): Promise<void> };

before(async () => {
  server = await startTesserad();
  app = await listen(createApp({ client: server.client }));
});
after(async () => {
  await app?.close();
  await server?.stop();
});

function tokenOf(page: Page): string {
  assert.equal(page.setCookies.length, 1, `one Set-Cookie expected: ${page.setCookies.join(" | ")}`);
  const match = SET_COOKIE.exec(page.setCookies[0]!);
  assert.ok(match, `unexpected Set-Cookie: ${page.setCookies[0]}`);
  assert.equal(page.headers["cache-control"], "no-store");
  return match[1]!;
}

async function signIn(browser: Browser, user = "alice", password = `${user}-password`): Promise<Page> {
  const form = await browser.get("/login");
  const page = await browser.submit("/login", { csrf_token: Browser.csrfField(form), username: user, password });
  assert.equal(page.status, 303, page.text);
  return page;
}

async function me(browser: Browser): Promise<{ session: { subject: string | null; data: Record<string, unknown>; version: number } | null; rejected: string | null }> {
  const page = await browser.get("/api/me");
  assert.equal(page.status, 200, page.text);
  return JSON.parse(page.text);
}

describe("sign-in, counter, sign-out", () => {
  it("runs the whole flow with the Rust layer's cookie attributes", async () => {
    const browser = new Browser(app.url);
    const home = await browser.get("/");
    assert.match(home.text, /id="whoami">anonymous</);
    assert.deepEqual(home.setCookies, [], "no session is created for a visitor who only reads");

    const form = await browser.get("/login");
    const anonymousToken = tokenOf(form);
    const signedIn = await browser.submit("/login", {
      csrf_token: Browser.csrfField(form),
      username: "alice",
      password: "alice-password",
    });
    assert.equal(signedIn.status, 303);
    assert.equal(signedIn.headers.location, "/");
    const token = tokenOf(signedIn);
    assert.notEqual(token, anonymousToken, "login always issues a new token");

    let page = await browser.get("/");
    assert.match(page.text, /id="whoami">alice</);
    assert.match(page.text, /id="counter">0</);
    assert.deepEqual(page.setCookies, []);
    assert.equal(page.headers["cache-control"], "no-store", "a signed-in page is not cached");
    for (let i = 1; i <= 2; i++) {
      const counted = await browser.submit("/count", { csrf_token: Browser.csrfField(page) });
      assert.equal(counted.status, 303, counted.text);
      page = await browser.get("/");
      assert.match(page.text, new RegExp(`id="counter">${i}<`));
    }

    // The server holds the count and the CSRF secret; the app's view hides the secret.
    const [stored] = await server.client.listSubjectSessions("alice");
    assert.equal(stored!.data.count, 2);
    assert.equal(typeof stored!.data[CSRF_DATA_KEY], "string");
    const seen = await me(browser);
    assert.equal(seen.session!.data.count, 2);
    assert.equal(CSRF_DATA_KEY in seen.session!.data, false);
    // The client binding got the browser's IP and User-Agent.
    assert.deepEqual(stored!.client, { ip: "127.0.0.1", user_agent: "TestBrowser/1.0" });

    const out = await browser.submit("/logout", { csrf_token: Browser.csrfField(page) });
    assert.equal(out.status, 303);
    assert.deepEqual(out.setCookies, [REMOVAL]);
    assert.equal(out.headers["clear-site-data"], '"cookies"');
    assert.equal(out.headers["cache-control"], "no-store");
    assert.equal(browser.cookies.size, 0);
    await rejectsWith(server.client.validate(token), "invalid_session");
    assert.match((await browser.get("/")).text, /anonymous/);
  });

  it("refuses a wrong password without signing in", async () => {
    const browser = new Browser(app.url);
    const form = await browser.get("/login");
    const page = await browser.submit("/login", { csrf_token: Browser.csrfField(form), username: "alice", password: "nope" });
    assert.equal(page.status, 401);
    assert.equal((await me(browser)).session!.subject, null);
  });

  it("kills the pre-login cookie at login (no fixation)", async () => {
    const browser = new Browser(app.url);
    const form = await browser.get("/login");
    const before = tokenOf(form);
    await browser.submit("/login", { csrf_token: Browser.csrfField(form), username: "bob", password: "bob-password" });
    // An attacker who planted or kept the pre-login cookie gets nothing.
    const attacker = new Browser(app.url);
    attacker.cookies.set("__Host-tessera", before);
    const seen = await me(attacker);
    assert.equal(seen.session, null);
    assert.equal(seen.rejected, "revoked");
    assert.equal((await me(browser)).session!.subject, "bob");
    // The CSRF secret was replaced too: the pre-login form's token is refused.
    const stale = await browser.submit("/count", { csrf_token: Browser.csrfField(form) });
    assert.equal(stale.status, 403);
    assert.equal(stale.headers["tessera-error"], "csrf_invalid_token");
  });

  it("loses no increment to parallel requests (compare-and-swap)", async () => {
    const bob = new Browser(app.url);
    await signIn(bob, "bob");
    const page = await bob.get("/");
    const csrf = Browser.csrfField(page);
    const results = await Promise.all(Array.from({ length: 6 }, () => bob.submit("/count", { csrf_token: csrf })));
    assert.deepEqual(results.map((r) => r.status), [303, 303, 303, 303, 303, 303]);
    assert.equal((await me(bob)).session!.data.count, 6);
  });

  it("signs out every other session of the user", async () => {
    const laptop = new Browser(app.url, "Laptop/1.0");
    const phone = new Browser(app.url, "Phone/1.0");
    await signIn(laptop, "alice");
    await signIn(phone, "alice");
    const page = await laptop.get("/");
    const out = await laptop.submit("/sessions/revoke-others", { csrf_token: Browser.csrfField(page) });
    assert.equal(out.status, 303);
    assert.equal((await me(phone)).session, null);
    assert.equal((await me(laptop)).session!.subject, "alice");
    assert.deepEqual((await server.client.listSubjectSessions("alice")).map((s) => s.client?.user_agent), ["Laptop/1.0"]);
  });
});

describe("CSRF", () => {
  async function signedInPage(): Promise<{ browser: Browser; csrf: string }> {
    const browser = new Browser(app.url);
    await signIn(browser, "alice");
    return { browser, csrf: Browser.csrfField(await browser.get("/")) };
  }

  it("masks the token afresh on every page, each one valid", async () => {
    const { browser, csrf } = await signedInPage();
    const again = Browser.csrfField(await browser.get("/"));
    assert.notEqual(again, csrf);
    assert.equal((await browser.submit("/count", { csrf_token: csrf })).status, 303);
    assert.equal((await browser.submit("/count", { csrf_token: again })).status, 303);
  });

  it("refuses a missing, foreign or forged token with 403 and a code", async () => {
    const { browser, csrf } = await signedInPage();
    const other = await signedInPage();
    const cases: Array<[string, () => Promise<Page>, string]> = [
      ["no token", () => browser.submit("/count", {}), "csrf_missing_token"],
      ["token in the query string", () => browser.submit(`/count?csrf_token=${csrf}`, {}), "csrf_missing_token"],
      ["another session's token", () => browser.submit("/count", { csrf_token: other.csrf }), "csrf_invalid_token"],
      ["garbage", () => browser.submit("/count", { csrf_token: "garbage" }), "csrf_invalid_token"],
      ["the unmasked length, wrong bytes", () => browser.submit("/count", { csrf_token: "A".repeat(86) }), "csrf_invalid_token"],
      ["no session", () => new Browser(app.url).submit("/count", { csrf_token: csrf }), "csrf_no_session"],
      [
        "Sec-Fetch-Site: cross-site",
        () => browser.submit("/count", { csrf_token: csrf }, { "sec-fetch-site": "cross-site" }),
        "csrf_cross_site",
      ],
      [
        "Sec-Fetch-Site: same-site",
        () => browser.submit("/count", { csrf_token: csrf }, { "sec-fetch-site": "same-site" }),
        "csrf_cross_site",
      ],
      ["a foreign Origin", () => browser.submit("/count", { csrf_token: csrf }, { origin: "http://evil.example" }), "csrf_cross_site"],
      ["Origin: null", () => browser.submit("/count", { csrf_token: csrf }, { origin: "null" }), "csrf_cross_site"],
    ];
    for (const [name, send, code] of cases) {
      const page = await send();
      assert.equal(page.status, 403, name);
      assert.equal(page.headers["tessera-error"], code, name);
      assert.equal(page.headers["cache-control"], "no-store", name);
      assert.match(page.headers["content-type"] ?? "", /^text\/plain/, name);
    }
    // None of them counted; a proper one does, with Sec-Fetch-Site: same-origin too.
    assert.equal((await me(browser)).session!.data.count, undefined);
    const ok = await browser.submit("/count", { csrf_token: csrf }, { "sec-fetch-site": "same-origin" });
    assert.equal(ok.status, 303);
    assert.equal((await me(browser)).session!.data.count, 1);
  });

  it("accepts the token in the X-CSRF-Token header (JSON API) and refuses stale versions", async () => {
    const browser = new Browser(app.url);
    const csrf = JSON.parse((await browser.get("/api/csrf")).text).token as string;
    const session = (await me(browser)).session!;
    const first = await browser.json("POST", "/api/data", { patch: { theme: "dark" }, version: session.version }, { "x-csrf-token": csrf });
    assert.equal(first.status, 200, first.text);
    const updated = JSON.parse(first.text).session;
    assert.deepEqual(updated.data, { theme: "dark" });
    assert.equal(updated.version, session.version + 1);
    const stale = await browser.json("POST", "/api/data", { patch: { theme: "light" }, version: session.version }, { "x-csrf-token": csrf });
    assert.equal(stale.status, 409);
    assert.deepEqual(JSON.parse(stale.text), {
      error: "version_conflict",
      message: JSON.parse(stale.text).message,
      current_version: session.version + 1,
    });
    // Replacing the data keeps the CSRF secret: the same token still works.
    const replaced = await browser.json("POST", "/api/data", { data: { fresh: true } }, { "x-csrf-token": csrf });
    assert.equal(replaced.status, 200, replaced.text);
    assert.deepEqual(JSON.parse(replaced.text).session.data, { fresh: true });
    const after = await browser.json("POST", "/api/data", { patch: { n: 1 } }, { "x-csrf-token": csrf });
    assert.equal(after.status, 200, after.text);
    // Oversized data is tesserad's 413, passed through.
    const big = await browser.json("POST", "/api/data", { patch: { big: "x".repeat(70 * 1024) } }, { "x-csrf-token": csrf });
    assert.equal(big.status, 413);
    assert.equal(JSON.parse(big.text).error, "payload_too_large");
  });
});

describe("cookies", () => {
  it("serves garbage, duplicated and unknown cookies as anonymous, never a 500", async () => {
    const issued = await server.client.create({ subject: "alice" });
    for (const [cookie, reason] of [
      ["__Host-tessera=garbage", "malformed"],
      ["__Host-tessera=tss_%ff%fe", "malformed"],
      [`__Host-tessera=${"a".repeat(5000)}`, "malformed"],
      [`__Host-tessera=${issued.token}; __Host-tessera=${issued.token}`, "malformed"],
      [`__Host-tessera=tss_${"A".repeat(47)}`, undefined],
    ] as const) {
      const page = await new Browser(app.url).get("/api/me", { cookie });
      assert.equal(page.status, 200, cookie.slice(0, 40));
      const body = JSON.parse(page.text);
      assert.equal(body.session, null);
      if (reason) assert.equal(body.rejected, reason);
      else assert.ok(body.rejected === "malformed" || body.rejected === "unknown");
      assert.deepEqual(page.setCookies, [], "an invalid cookie is left alone (a request from before a login must not undo it)");
    }
    // The real cookie among others is found.
    const page = await new Browser(app.url).get("/api/me", { cookie: `a=1; __Host-tessera=${issued.token}; b=2` });
    assert.equal(JSON.parse(page.text).session.subject, "alice");
  });

  it("a plain cookie name without Secure for development over HTTP", async () => {
    const dev = await listen(createApp({ client: server.client, cookieName: "tessera_dev", secure: false }));
    try {
      const browser = new Browser(dev.url);
      const form = await browser.get("/login");
      assert.match(form.setCookies[0]!, /^tessera_dev=tss_[A-Za-z0-9_-]+; HttpOnly; SameSite=Lax; Path=\/$/);
      await browser.submit("/login", { csrf_token: Browser.csrfField(form), username: "bob", password: "bob-password" });
      assert.equal((await me(browser)).session!.subject, "bob");
    } finally {
      await dev.close();
    }
  });

  it("refuses settings a browser would not honour", () => {
    const client = server.client;
    assert.throws(() => tesseraSession({ client, secure: false }), /__Host- prefix/);
    assert.throws(() => tesseraSession({ client, cookieName: "__Secure-s", secure: false }), /__Secure- prefix/);
    assert.throws(() => tesseraSession({ client, cookieName: "bad name;" }), /not a valid cookie name/);
    assert.throws(() => tesseraSession({ client, trustedOrigins: ["example.com"] }), /scheme:\/\/host/);
    assert.throws(() => tesseraSession({ client, csrfHeader: "bad header" }), /header name/);
    assert.doesNotThrow(() => tesseraSession({ client, cookieName: "plain", secure: false, sameSite: "strict" }));
  });
});

describe("without Express", () => {
  it("serves a plain node:http handler (peer address as the client IP)", async () => {
    const middleware = tesseraSession({ client: server.client, cookieName: "sid", secure: false });
    const plain = await listen((req: IncomingMessage, res: ServerResponse) => {
      middleware(req, res, async (error?: unknown) => {
        const request = req as IncomingMessage & Express.Request;
        if (error) {
          res.statusCode = 500;
          res.end(String(error));
          return;
        }
        if (req.url === "/login") await request.tessera.login("plain", { data: { via: "node:http" } });
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ session: request.session }));
      });
    });
    try {
      const browser = new Browser(plain.url, "Plain/1.0");
      const anonymous = JSON.parse((await browser.get("/")).text);
      assert.equal(anonymous.session, null);
      const login = await browser.get("/login");
      assert.match(login.setCookies[0] ?? "", /^sid=tss_[A-Za-z0-9_-]+; HttpOnly; SameSite=Lax; Path=\/$/);
      const seen = JSON.parse((await browser.get("/")).text).session;
      assert.equal(seen.subject, "plain");
      assert.deepEqual(seen.data, { via: "node:http" });
      assert.deepEqual(seen.client, { ip: "127.0.0.1", user_agent: "Plain/1.0" });
    } finally {
      await plain.close();
    }
  });
});
