// The three benchmark routes with express-session on Express:
//   node app.js --listen 127.0.0.1:8080 --store memory:        (its MemoryStore)
//   node app.js --listen 127.0.0.1:8080 --store redis://H:P    (connect-redis)
// Idle timeout one hour: the cookie's maxAge, which express-session slides on
// every request (touching the store), and the store's TTL follows it.
import { parseArgs } from "node:util";
import express from "express";
import session from "express-session";
import { RedisStore } from "connect-redis";
import { createClient } from "redis";

const IDLE_TIMEOUT_MS = 60 * 60 * 1000;

const { values: args } = parseArgs({
  options: {
    listen: { type: "string", default: "127.0.0.1:8080" },
    store: { type: "string", default: "memory:" },
  },
});
const separator = args.listen.lastIndexOf(":");
const host = args.listen.slice(0, separator);
const port = Number(args.listen.slice(separator + 1));

let store;
if (args.store.startsWith("redis://")) {
  const client = createClient({ url: args.store });
  client.on("error", (error) => console.error("redis error:", error));
  await client.connect();
  store = new RedisStore({ client });
} else if (args.store === "memory:") {
  store = undefined; // express-session's MemoryStore
} else {
  console.error("--store must be `memory:` or `redis://HOST:PORT`");
  process.exit(2);
}

const app = express();
app.disable("x-powered-by");
app.disable("etag");
app.use(
  session({
    store,
    secret: "tessera-bench-express-session-secret",
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: IDLE_TIMEOUT_MS },
  }),
);

let nextUserId = 0;

app.post("/login", (req, res, next) => {
  const userId = ++nextUserId;
  req.session.regenerate((error) => {
    if (error) return next(error);
    req.session.user_id = userId;
    req.session.counter = 0;
    res.json({ user_id: userId });
  });
});

app.get("/me", (req, res) => {
  if (req.session.user_id === undefined) return res.sendStatus(401);
  res.json({ user_id: req.session.user_id, counter: req.session.counter });
});

app.post("/incr", (req, res) => {
  if (req.session.user_id === undefined) return res.sendStatus(401);
  req.session.counter += 1;
  res.json({ counter: req.session.counter });
});

app.listen(port, host, () => {
  console.log(`express-session listening on ${args.listen} (store ${args.store})`);
});
