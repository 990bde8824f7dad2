/** The client against a real tesserad (memory store): every endpoint and its errors. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { BROWSER_OPERATIONS, OPERATIONS, TesseraClient, type TesseraClient as Client } from "../src/index";
import { rejectsWith } from "./helpers/assert";
import { startTesserad, type Tesserad } from "./helpers/tesserad";

let server: Tesserad;
let client: Client;
const browser = { ip: "203.0.113.9", user_agent: "Firefox/140" };
/**
 * The reason tesserad gives for the token of a session that was logged out
 * or revoked: the record is gone, so `unknown` (the document's `revoked`
 * is what a token superseded by login gets).
 */
const ENDED = "unknown";

before(async () => {
  server = await startTesserad();
  client = server.client;
});
after(async () => server?.stop());

describe("lifecycle", () => {
  it("creates, validates, updates, logs in, rotates and logs out", async () => {
    const created = await client.create({ data: { theme: "dark" }, client: browser });
    assert.match(created.token, /^tss_/);
    assert.equal(created.session.subject, null);
    assert.equal(created.session.auth_level, 0);
    assert.deepEqual(created.session.data, { theme: "dark" });
    assert.deepEqual(created.session.client, { ip: "203.0.113.9", user_agent: "Firefox/140" });
    assert.match(created.session.id, /^[A-Za-z0-9_-]{22}$/);

    const valid = await client.validate(created.token, browser);
    assert.equal(valid.session.id, created.session.id);
    assert.equal(valid.token, undefined, "a fresh token is not renewed");

    const patched = await client.update({ token: created.token, patch: { cart: [42] } });
    assert.deepEqual(patched.data, { theme: "dark", cart: [42] });
    assert.equal(patched.version, created.session.version + 1);
    const replaced = await client.update({ token: created.token, data: { only: true }, version: patched.version });
    assert.deepEqual(replaced.data, { only: true });
    const removed = await client.update({ token: created.token, patch: { only: null } });
    assert.deepEqual(removed.data, {});

    const login = await client.login({ token: created.token, subject: "alice", auth_level: 2, client: browser });
    assert.notEqual(login.token, created.token);
    assert.equal(login.session.id, created.session.id, "the id is stable across login");
    assert.equal(login.session.subject, "alice");
    assert.equal(login.session.auth_level, 2);
    assert.ok(login.session.authenticated_at);

    const rotated = await client.rotate(login.token);
    assert.notEqual(rotated.token, login.token);
    assert.equal(rotated.session.id, created.session.id);
    assert.equal((await client.validate(rotated.token)).session.subject, "alice");

    await client.logout(rotated.token);
    await rejectsWith(client.validate(rotated.token), "invalid_session", { status: 401, reason: ENDED });
    // Logout is idempotent, also for tokens that never existed.
    await client.logout(rotated.token);
    await client.logout("garbage");
  });

  it("creates a signed-in session with its own timeouts", async () => {
    const issued = await client.create({ subject: "carol", idle_timeout_s: 60, absolute_timeout_s: 120 });
    assert.equal(issued.session.subject, "carol");
    const created = Date.parse(issued.session.created_at);
    assert.equal(Date.parse(issued.session.idle_expires_at) - created, 60_000);
    assert.equal(Date.parse(issued.session.absolute_expires_at) - created, 120_000);
  });

  it("login without a token starts a new session", async () => {
    const issued = await client.login({ subject: "dave", data: { a: 1 } });
    assert.equal(issued.session.subject, "dave");
    assert.equal(issued.session.auth_level, 1, "the default level");
    assert.deepEqual(issued.session.data, { a: 1 });
  });
});

describe("fixation", () => {
  it("refuses the pre-login token at once", async () => {
    const anonymous = await client.create({ data: { cart: [1] } });
    const login = await client.login({ token: anonymous.token, subject: "alice" });
    await rejectsWith(client.validate(anonymous.token), "invalid_session", { reason: "revoked" });
    // The anonymous data is carried over; the new token works.
    assert.deepEqual((await client.validate(login.token)).session.data, { cart: [1] });
  });

  it("never carries another subject's data", async () => {
    const bob = await client.create({ subject: "bob", data: { secret: "bob's" } });
    const alice = await client.login({ token: bob.token, subject: "alice" });
    assert.deepEqual(alice.session.data, {});
  });
});

describe("revocation", () => {
  it("revokes one session by id", async () => {
    const issued = await client.create({ subject: "erin" });
    assert.deepEqual(await client.getSession(issued.session.id), issued.session);
    assert.equal(await client.revokeSession(issued.session.id), true);
    await rejectsWith(client.validate(issued.token), "invalid_session", { reason: ENDED });
    assert.equal(await client.getSession(issued.session.id), null);
    assert.equal(await client.revokeSession(issued.session.id), false);
  });

  it("revokes a subject's sessions, except one", async () => {
    const [a, b, c] = await Promise.all([
      client.create({ subject: "frank" }),
      client.create({ subject: "frank" }),
      client.create({ subject: "frank" }),
    ]);
    const listed = await client.listSubjectSessions("frank");
    assert.deepEqual(new Set(listed.map((s) => s.id)), new Set([a.session.id, b.session.id, c.session.id]));
    assert.equal(await client.revokeSubjectSessions("frank", b.session.id), 2);
    await rejectsWith(client.validate(a.token), "invalid_session", { reason: ENDED });
    await rejectsWith(client.validate(c.token), "invalid_session", { reason: ENDED });
    assert.equal((await client.validate(b.token)).session.subject, "frank");
    assert.deepEqual((await client.listSubjectSessions("frank")).map((s) => s.id), [b.session.id]);
    assert.equal(await client.revokeSubjectSessions("frank"), 1);
    await rejectsWith(client.validate(b.token), "invalid_session");
  });

  it("addresses subjects that are not plain path segments", async () => {
    for (const subject of ["..", ".", "a/b", "zoë", "100%", "a b?c#d"]) {
      const issued = await client.create({ subject });
      const listed = await client.listSubjectSessions(subject);
      assert.deepEqual(listed.map((s) => s.id), [issued.session.id], subject);
      assert.equal(await client.revokeSubjectSessions(subject), 1, subject);
      await rejectsWith(client.validate(issued.token), "invalid_session");
    }
    await rejectsWith(client.listSubjectSessions(""), "invalid_request", { status: 400 });
  });
});

describe("compare-and-swap", () => {
  it("answers 409 with the current version for a stale one", async () => {
    const issued = await client.create({ data: { n: 0 } });
    const v1 = issued.session.version;
    const next = await client.update({ token: issued.token, patch: { n: 1 }, version: v1 });
    assert.equal(next.version, v1 + 1);
    await rejectsWith(client.update({ token: issued.token, patch: { n: 2 }, version: v1 }), "version_conflict", {
      status: 409,
      currentVersion: v1 + 1,
    });
    assert.deepEqual((await client.validate(issued.token)).session.data, { n: 1 });
  });
});

describe("bad input", () => {
  it("refuses malformed and unknown tokens", async () => {
    await rejectsWith(client.validate("garbage"), "invalid_session", { status: 401, reason: "malformed" });
    const unknown = `tss_${"A".repeat(43)}`;
    const error = await rejectsWith(client.validate(unknown), "invalid_session", { status: 401 });
    assert.ok(error.reason === "malformed" || error.reason === "unknown", error.reason);
    // A well-formed token (valid checksum) of no session.
    const issued = await client.create();
    await client.logout(issued.token);
    await rejectsWith(client.update({ token: issued.token, patch: {} }), "invalid_session", { reason: ENDED });
  });

  it("refuses oversized data and bodies with 413", async () => {
    const issued = await client.create();
    const big = "x".repeat(70 * 1024);
    await rejectsWith(client.update({ token: issued.token, data: { big } }), "payload_too_large", { status: 413 });
    await rejectsWith(client.create({ data: { big } }), "payload_too_large", { status: 413 });
    // A body over tesserad's 256 KiB is refused by the client before it is
    // sent (the server, refusing it unread, may reset the connection while
    // the client still writes). Under that limit, data over 64 KiB is the
    // server's refusal.
    const huge = { data: { big: "x".repeat(300 * 1024) } };
    await rejectsWith(client.create(huge), "payload_too_large", { status: 413 });
    const error = await rejectsWith(client.create({ data: { big: "x".repeat(200 * 1024) } }), "payload_too_large");
    assert.doesNotMatch(error.message, /request body is \d+ bytes/, "the server's answer, not the client's");
    // Nothing was written.
    assert.deepEqual((await client.validate(issued.token)).session.data, {});
  });

  it("refuses bad requests with 400", async () => {
    const issued = await client.create();
    await rejectsWith(client.update({ token: issued.token }), "invalid_request", { status: 400 });
    await rejectsWith(client.update({ token: issued.token, data: {}, patch: {} }), "invalid_request");
    await rejectsWith(client.create({ subject: "s".repeat(257) }), "invalid_request", { status: 400 });
    await rejectsWith(client.validate(issued.token, { ip: "not an ip" }), "invalid_request", { status: 400 });
    await rejectsWith(client.getSession("not-an-id"), "invalid_request", { status: 400 });
    await rejectsWith(client.revokeSubjectSessions("x", "not-an-id"), "invalid_request", { status: 400 });
  });

  it("an unknown id is not found", async () => {
    assert.equal(await client.getSession("AAAAAAAAAAAAAAAAAAAAAA"), null);
    assert.equal(await client.revokeSession("AAAAAAAAAAAAAAAAAAAAAA"), false);
  });

  it("a wrong API key is unauthorized", async () => {
    const wrong = new TesseraClient({ baseUrl: server.url, apiKey: "tsk_wrong" });
    try {
      await rejectsWith(wrong.create(), "unauthorized", { status: 401 });
      await rejectsWith(wrong.stats(), "unauthorized");
      // The open endpoints need no key.
      assert.equal((await wrong.healthz()).status, "ok");
    } finally {
      wrong.close();
    }
  });

  it("an unreachable server fails closed with server_unreachable", async () => {
    const nowhere = new TesseraClient({ baseUrl: "http://127.0.0.1:1", apiKey: "tsk_x", timeoutMs: 2000 });
    await rejectsWith(nowhere.validate("tss_x"), "server_unreachable", { status: 503 });
    nowhere.close();
  });
});

describe("admin, operations and forward-auth", () => {
  it("revoke-all ends every session and raises the epoch", async () => {
    const other = await startTesserad();
    try {
      const a = await other.client.create({ subject: "x" });
      const b = await other.client.create();
      const epoch = await other.client.revokeAll();
      assert.ok(epoch >= 1);
      await rejectsWith(other.client.validate(a.token), "invalid_session");
      await rejectsWith(other.client.validate(b.token), "invalid_session");
      assert.ok((await other.client.revokeAll()) > epoch);
      // New sessions work after it.
      const c = await other.client.create();
      assert.ok((await other.client.validate(c.token)).session);
    } finally {
      await other.stop();
    }
  });

  it("reports stats, health, readiness, metrics and the document", async () => {
    const stats = await client.stats();
    assert.equal(stats.store, "memory:");
    assert.ok(stats.operations.some((o) => o.operation === "create" && o.outcome === "ok" && o.count > 0));
    assert.deepEqual(await client.healthz(), { status: "ok" });
    assert.deepEqual(await client.readyz(), { status: "ready" });
    assert.match(await client.metrics(), /tessera_operations_total/);
    const document = await client.openapi();
    assert.equal(document.openapi, "3.1.0");
  });

  it("has a method for every operation of the document", async () => {
    const document = (await client.openapi()) as { paths: Record<string, Record<string, { operationId: string }>> };
    const ids = Object.values(document.paths).flatMap((item) => Object.values(item).map((op) => op.operationId));
    assert.deepEqual(new Set(ids), new Set([...Object.keys(OPERATIONS), ...BROWSER_OPERATIONS]));
    for (const method of Object.values(OPERATIONS)) {
      assert.equal(typeof client[method], "function", method);
    }
  });

  it("forward-auth reads the cookie and refuses anonymous sessions", async () => {
    const signedIn = await client.create({ subject: "zoë" });
    const result = await client.forwardAuth({ cookie: `x=1; __Host-tessera=${signedIn.token}`, userAgent: "UA" });
    assert.deepEqual(result, { subject: "zoë", sessionId: signedIn.session.id });
    const anonymous = await client.create();
    assert.equal(await client.forwardAuth({ cookie: `__Host-tessera=${anonymous.token}` }), null);
    assert.equal(await client.forwardAuth({}), null);
    assert.equal(await client.forwardAuth({ cookie: "__Host-tessera=garbage" }), null);
  });
});
