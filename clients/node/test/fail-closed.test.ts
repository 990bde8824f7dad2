/**
 * Fail closed: with tesserad's Redis store killed, every validation is
 * `503 store_unavailable` — through the client, forward-auth and the
 * middleware — and with tesserad itself gone, `server_unreachable` (503).
 * Nothing is ever treated as valid meanwhile.
 */
import assert from "node:assert/strict";
import { after, before, it } from "node:test";

import { createApp } from "../examples/express-app/app";
import { rejectsWith } from "./helpers/assert";
import { Browser, listen } from "./helpers/browser";
import { startRedis, startTesserad, type Redis, type Tesserad } from "./helpers/tesserad";

let redis: Redis;
let server: Tesserad;
let app: { url: string; close(): Promise<void> };

before(async () => {
  redis = await startRedis();
  server = await startTesserad({ store: redis.url, args: ["--request-timeout", "2s"] });
  app = await listen(createApp({ client: server.client }));
});
after(async () => {
  await app?.close();
  await server?.stop();
  await redis?.kill();
});

it("answers 503 while the store is down, and the middleware fails closed", async () => {
  const browser = new Browser(app.url);
  const form = await browser.get("/login");
  const signedIn = await browser.submit("/login", {
    csrf_token: Browser.csrfField(form),
    username: "alice",
    password: "alice-password",
  });
  assert.equal(signedIn.status, 303);
  const page = await browser.get("/");
  assert.match(page.text, /id="whoami">alice</);
  const issued = await server.client.create({ subject: "bob" });
  assert.deepEqual(await server.client.readyz(), { status: "ready" });

  await redis.kill();

  await rejectsWith(server.client.validate(issued.token), "store_unavailable", { status: 503 });
  await rejectsWith(server.client.create(), "store_unavailable", { status: 503 });
  await rejectsWith(server.client.readyz(), "store_unavailable", { status: 503 });
  await rejectsWith(
    server.client.forwardAuth({ cookie: `__Host-tessera=${issued.token}` }),
    "store_unavailable",
  );

  const down = await browser.get("/");
  assert.equal(down.status, 503);
  assert.equal(JSON.parse(down.text).error, "store_unavailable");
  assert.deepEqual(down.setCookies, [], "the cookie is kept for when the store is back");
  // An unsafe request fails closed too (503, not a CSRF 403 nor a pass).
  const post = await browser.submit("/count", { csrf_token: Browser.csrfField(page) });
  assert.equal(post.status, 503);
  // A visitor without a cookie needs no validation and is served anonymously.
  assert.equal((await new Browser(app.url).get("/")).status, 200);
});

it("answers 503 server_unreachable once tesserad itself is gone", async () => {
  const token = `tss_${"A".repeat(47)}`;
  await server.stop();
  await rejectsWith(server.client.validate(token), "server_unreachable", { status: 503 });
  const page = await new Browser(app.url).get("/", { cookie: `__Host-tessera=${token}` });
  assert.equal(page.status, 503);
  assert.equal(JSON.parse(page.text).error, "server_unreachable");
});
