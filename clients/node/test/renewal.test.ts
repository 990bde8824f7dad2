/**
 * Token renewal with short timings (`--renew-after 2s --rotation-grace 1s
 * --touch-after 1s`): the renewed token reaches the browser through the
 * middleware's Set-Cookie, and a rotated-away token presented after its
 * grace ends the whole session (theft detection).
 */
import assert from "node:assert/strict";
import { after, before, it } from "node:test";

import { createApp } from "../examples/express-app/app";
import { rejectsWith, sleep } from "./helpers/assert";
import { Browser, listen } from "./helpers/browser";
import { startTesserad, type Tesserad } from "./helpers/tesserad";

const RENEW_AFTER_MS = 2000;
const GRACE_MS = 1000;
const SET_COOKIE = /^__Host-tessera=(tss_[A-Za-z0-9_-]+); HttpOnly; SameSite=Lax; Secure; Path=\/$/;

let server: Tesserad;
let app: { url: string; close(): Promise<void> };

before(async () => {
  server = await startTesserad({ args: ["--renew-after", "2s", "--rotation-grace", "1s", "--touch-after", "1s"] });
  app = await listen(createApp({ client: server.client }));
});
after(async () => {
  await app?.close();
  await server?.stop();
});

it("the client sees a renewed token, and the old one is theft after its grace", async () => {
  const client = server.client;
  const issued = await client.create({ subject: "alice" });
  assert.equal((await client.validate(issued.token)).token, undefined);
  await sleep(RENEW_AFTER_MS + 300);
  const renewed = await client.validate(issued.token);
  assert.ok(renewed.token, "a token older than --renew-after is renewed");
  assert.notEqual(renewed.token, issued.token);
  // Until the successor is presented, the old token still resolves and
  // hands the same successor out again (its first delivery may be lost).
  const inGrace = await client.validate(issued.token);
  assert.equal(inGrace.session.id, issued.session.id);
  assert.equal(inGrace.token, renewed.token);
  assert.equal((await client.validate(renewed.token)).token, undefined);
  await sleep(GRACE_MS + 300);
  await rejectsWith(client.validate(issued.token), "invalid_session", { reason: "reused" });
  // Reuse of a rotated-away token revokes the session: the new token is dead too.
  await rejectsWith(client.validate(renewed.token), "invalid_session");
});

it("the middleware hands the renewed token to the browser", async () => {
  const browser = new Browser(app.url);
  const form = await browser.get("/login");
  await browser.submit("/login", { csrf_token: Browser.csrfField(form), username: "alice", password: "alice-password" });
  const first = browser.cookies.get("__Host-tessera")!;
  const page = await browser.get("/");
  const csrf = Browser.csrfField(page);
  assert.deepEqual(page.setCookies, []);

  await sleep(RENEW_AFTER_MS + 300);
  const renewedPage = await browser.get("/");
  assert.match(renewedPage.text, /id="whoami">alice</);
  assert.equal(renewedPage.setCookies.length, 1);
  const match = SET_COOKIE.exec(renewedPage.setCookies[0]!);
  assert.ok(match, renewedPage.setCookies[0]);
  assert.notEqual(match[1], first);
  assert.equal(renewedPage.headers["cache-control"], "no-store");
  assert.equal(browser.cookies.get("__Host-tessera"), match[1]);

  // The browser goes on with the new cookie; a form from before the renewal
  // still posts (the CSRF secret belongs to the session, not the token).
  const counted = await browser.submit("/count", { csrf_token: csrf });
  assert.equal(counted.status, 303, counted.text);
  assert.deepEqual(counted.setCookies, []);
  assert.match((await browser.get("/")).text, /id="counter">1</);

  // Forward-auth renews too, and says so with Set-Cookie.
  await sleep(RENEW_AFTER_MS + 300);
  const current = browser.cookies.get("__Host-tessera")!;
  const auth = await server.client.forwardAuth({ cookie: `__Host-tessera=${current}`, userAgent: browser.userAgent });
  assert.equal(auth?.subject, "alice");
  const setCookie = auth?.setCookie ?? "";
  assert.match(setCookie, /^__Host-tessera=tss_[A-Za-z0-9_-]+;/);
  assert.deepEqual(
    setCookie.split("; ").slice(1).sort(),
    ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"],
    setCookie,
  );
});

it("a browser that lost the renewed cookie gets it again, without a theft alarm", async () => {
  const browser = new Browser(app.url);
  const form = await browser.get("/login");
  await browser.submit("/login", { csrf_token: Browser.csrfField(form), username: "bob", password: "bob-password" });
  const stale = browser.cookies.get("__Host-tessera")!;
  await sleep(RENEW_AFTER_MS + 300);
  // This response carries the new cookie, which is "lost" on the way.
  const renewed = await browser.get("/api/me");
  assert.equal(renewed.setCookies.length, 1);
  const successor = browser.cookies.get("__Host-tessera")!;
  assert.notEqual(successor, stale);
  browser.cookies.set("__Host-tessera", stale);
  await sleep(GRACE_MS + 300);
  // Past the grace, the old cookie still signs in and brings the same successor.
  const again = await browser.get("/api/me");
  const seen = JSON.parse(again.text);
  assert.equal(seen.session?.subject, "bob", again.text);
  assert.equal(again.setCookies.length, 1);
  assert.equal(browser.cookies.get("__Host-tessera"), successor);
});
