/**
 * An Express app on tesserad sessions: sign in (a form with a CSRF token),
 * a per-session counter, "sign out everywhere else", sign out, and a small
 * JSON API using the `X-CSRF-Token` header.
 *
 *   TESSERAD_URL=http://127.0.0.1:7450 TESSERA_API_KEY=tsk_… node dist/examples/express-app/app.js
 *
 * then open http://localhost:3000 (browsers treat localhost as a secure
 * context, so the `Secure` `__Host-` cookie works over plain HTTP there).
 * Sign in as alice / alice-password or bob / bob-password.
 */
import { scryptSync, timingSafeEqual, randomBytes } from "node:crypto";

import express, { type NextFunction, type Request, type Response } from "express";

import { TesseraClient, TesseraError, tesseraSession, type TesseraSessionOptions } from "../../src/index";

const SALT = randomBytes(16);
const hash = (password: string) => scryptSync(password, SALT, 32);
/** Demo users; a real app looks them up in its database (argon2id or scrypt hashes). */
const USERS = new Map([
  ["alice", hash("alice-password")],
  ["bob", hash("bob-password")],
]);

function checkPassword(username: string, password: string): boolean {
  const expected = USERS.get(username);
  const given = hash(password);
  return expected !== undefined && timingSafeEqual(expected, given);
}

const escape = (text: string) =>
  text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function createApp(options: TesseraSessionOptions): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.use(express.urlencoded({ extended: false }));
  app.use(express.json());
  app.use(tesseraSession(options));

  app.get("/", async (req, res) => {
    const session = req.session;
    if (!session?.subject) {
      res.type("html").send(`<p id="whoami">anonymous</p><a href="/login">Sign in</a>`);
      return;
    }
    const csrf = await req.tessera.csrfToken();
    const count = Number(session.data.count ?? 0);
    const field = `<input type="hidden" name="csrf_token" value="${csrf}">`;
    res.type("html").send(
      `<p id="whoami">${escape(session.subject)}</p><p id="counter">${count}</p>
<form method="post" action="/count">${field}<button>+1</button></form>
<form method="post" action="/sessions/revoke-others">${field}<button>Sign out everywhere else</button></form>
<form method="post" action="/logout">${field}<button>Sign out</button></form>`,
    );
  });

  app.get("/login", async (req, res) => {
    // Creates the anonymous session the token is bound to.
    const csrf = await req.tessera.csrfToken();
    res.type("html").send(
      `<form id="login-form" method="post" action="/login"><input type="hidden" name="csrf_token" value="${csrf}">
<input name="username"><input name="password" type="password"><button>Sign in</button></form>`,
    );
  });

  app.post("/login", async (req, res) => {
    const { username, password } = req.body as { username?: string; password?: string };
    if (!username || !password || !checkPassword(username, password)) {
      res.status(401).type("html").send(`<p>Wrong name or password. <a href="/login">Again</a></p>`);
      return;
    }
    // A new token (the pre-login one is dead at once) and a new CSRF secret.
    await req.tessera.login(username, { authLevel: 1 });
    res.redirect(303, "/");
  });

  app.post("/count", async (req, res) => {
    if (!req.session?.subject) {
      res.status(401).send("sign in first\n");
      return;
    }
    // Compare-and-swap: a parallel request of the same browser loses no increment.
    for (let attempt = 0; ; attempt++) {
      const session = req.session;
      if (!session) throw new TesseraError("invalid_session", "the session ended", 401);
      try {
        await req.tessera.update({ patch: { count: Number(session.data.count ?? 0) + 1 }, version: session.version });
        break;
      } catch (error) {
        if (!(error instanceof TesseraError && error.error === "version_conflict") || attempt >= 10) throw error;
        await req.tessera.refresh();
      }
    }
    res.redirect(303, "/");
  });

  app.post("/sessions/revoke-others", async (req, res) => {
    await req.tessera.revokeOthers();
    res.redirect(303, "/");
  });

  app.post("/logout", async (req, res) => {
    await req.tessera.logout();
    res.redirect(303, "/");
  });

  // JSON API: the CSRF token travels in the X-CSRF-Token header.
  app.get("/api/me", (req, res) => {
    res.json({ session: req.session, rejected: req.tessera.rejected });
  });

  app.get("/api/csrf", async (req, res) => {
    res.json({ token: await req.tessera.csrfToken() });
  });

  app.post("/api/data", async (req, res) => {
    const { patch, data, version } = req.body as { patch?: Record<string, unknown>; data?: Record<string, unknown>; version?: number };
    const session = await req.tessera.update({
      ...(patch !== undefined ? { patch } : {}),
      ...(data !== undefined ? { data } : {}),
      ...(version !== undefined ? { version } : {}),
    });
    res.json({ session });
  });

  app.use((error: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    if (error instanceof TesseraError) {
      res.status(error.status).json({ error: error.error, message: error.message, reason: error.reason, current_version: error.currentVersion });
      return;
    }
    console.error(error);
    res.status(500).json({ error: "internal" });
  });
  return app;
}

if (require.main === module) {
  const baseUrl = process.env.TESSERAD_URL ?? "http://127.0.0.1:7450";
  const apiKey = process.env.TESSERA_API_KEY;
  if (!apiKey) {
    console.error("set TESSERA_API_KEY to a tesserad API key");
    process.exit(2);
  }
  const port = Number(process.env.PORT ?? 3000);
  createApp({ client: new TesseraClient({ baseUrl, apiKey }) }).listen(port, "127.0.0.1", () => {
    console.log(`example app on http://localhost:${port}`);
  });
}
