// The tutorial's app as a real peer for doorman's integration tests (tests/support/express.rs):
// Express 5 + express-session, sessions kept in Redis by connect-redis through node-redis.
//
// Environment:
//   PORT         listen on 127.0.0.1:PORT (required)
//   REDIS_URL    redis://127.0.0.1:PORT (required)
//   SECRETS      JSON array of strings, express-session's `secret`: the first signs, all verify
//                (required)
//   PREFIX       connect-redis key prefix (default "sess:")
//   MAX_AGE_MS   session cookie maxAge in milliseconds (default 3600000)
//   COOKIE_NAME  session cookie name (default "connect.sid")
//
// Routes:
//   GET /login?user=ID[&roles=a,b]  session.userId = ID (a JSON number when ID is all digits),
//                                   session.roles = ["a","b"]; 200 {ok, userId}
//   GET /dashboard                  401 {error:"unauthorized"} without session.userId, else 200
//                                   {userId, xAuthUser, xAuthGroups, cookie}
//   GET /headers                    public: 200 {xAuthUser, xAuthGroups, cookie}
//   GET /logout                     destroys the session; 200 {ok:true}
//
// Prints exactly `listening on PORT` on stdout once Redis is connected and the server listens;
// everything else (one line per request, errors) goes to stderr. Exits with a message on stderr
// and status 2 when the port is taken, 1 on any other start failure (Redis not reachable within
// about two seconds, bad environment). Exits on SIGTERM, and, when stdin is a pipe (as the tests
// start it), when that pipe closes: the test process is gone.
//
// connect-redis 8+ has a named export (`import { RedisStore }`), not a default one.
import fs from "node:fs";
import express from "express";
import session from "express-session";
import { RedisStore } from "connect-redis";
import { createClient } from "redis";

function fail(message) {
  console.error(`express peer: ${message}`);
  process.exit(1);
}

function required(name) {
  const value = process.env[name];
  if (value === undefined || value === "") fail(`${name} is not set`);
  return value;
}

const PORT = Number(required("PORT"));
if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) fail(`bad PORT ${process.env.PORT}`);
const REDIS_URL = required("REDIS_URL");
let SECRETS;
try {
  SECRETS = JSON.parse(required("SECRETS"));
} catch (e) {
  fail(`SECRETS is not JSON: ${e.message}`);
}
if (!Array.isArray(SECRETS) || SECRETS.length === 0 || !SECRETS.every((s) => typeof s === "string" && s !== "")) {
  fail("SECRETS must be a non-empty JSON array of non-empty strings");
}
const PREFIX = process.env.PREFIX ?? "sess:";
const MAX_AGE_MS = Number(process.env.MAX_AGE_MS || 3600000);
if (!Number.isInteger(MAX_AGE_MS) || MAX_AGE_MS <= 0) fail(`bad MAX_AGE_MS ${process.env.MAX_AGE_MS}`);
const COOKIE_NAME = process.env.COOKIE_NAME || "connect.sid";

process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
if (fs.fstatSync(0).isFIFO()) {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("close", () => process.exit(0));
  process.stdin.resume();
}

// At start, retries for about two seconds and then give up (the test starts Redis first); once
// connected, keep reconnecting through outages, as a deployed app would.
let connected = false;
const START_RETRIES = 20;
const redisClient = createClient({
  url: REDIS_URL,
  socket: {
    connectTimeout: 2000,
    reconnectStrategy: (retries, cause) => {
      if (connected) return Math.min(50 + retries * 50, 500);
      return retries >= START_RETRIES ? (cause ?? new Error("cannot connect")) : 100;
    },
  },
});
let lastError = "";
redisClient.on("error", (e) => {
  const text = String(e?.message ?? e);
  if (text !== lastError) console.error(`express peer: redis: ${text}`);
  lastError = text;
});
redisClient.on("ready", () => {
  lastError = "";
});
try {
  await redisClient.connect();
} catch (e) {
  fail(`cannot reach Redis at ${REDIS_URL}: ${e?.message ?? e}`);
}
connected = true;

const app = express();
app.disable("x-powered-by");
app.disable("etag");
app.use((req, res, next) => {
  res.on("finish", () => console.error(`${req.method} ${req.originalUrl} ${res.statusCode}`));
  next();
});
app.use(
  session({
    store: new RedisStore({ client: redisClient, prefix: PREFIX }),
    secret: SECRETS,
    name: COOKIE_NAME,
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: MAX_AGE_MS },
  }),
);

/** What the app saw of the headers doorman sets or forwards. */
function seen(req) {
  return {
    xAuthUser: req.get("x-auth-user") ?? null,
    xAuthGroups: req.get("x-auth-groups") ?? null,
    cookie: req.get("cookie") ?? null,
  };
}

app.get("/login", (req, res) => {
  const user = req.query.user;
  if (typeof user !== "string" || user === "") {
    return res.status(400).json({ error: "user missing" });
  }
  // All digits: a JSON number, as apps that key users by a numeric id store it (only while
  // exact: a longer run of digits stays a string).
  const userId = /^[0-9]+$/.test(user) && Number.isSafeInteger(Number(user)) ? Number(user) : user;
  req.session.userId = userId;
  const roles = req.query.roles;
  if (typeof roles === "string") {
    req.session.roles = roles.split(",").filter((r) => r !== "");
  } else {
    delete req.session.roles;
  }
  res.json({ ok: true, userId });
});

app.get("/dashboard", (req, res) => {
  if (req.session.userId === undefined) return res.status(401).json({ error: "unauthorized" });
  res.json({ userId: req.session.userId, ...seen(req) });
});

app.get("/headers", (req, res) => {
  res.json(seen(req));
});

app.get("/logout", (req, res, next) => {
  req.session.destroy((err) => (err ? next(err) : res.json({ ok: true })));
});

app.use((req, res) => res.status(404).json({ error: "not found" }));

// eslint-disable-next-line no-unused-vars
app.use((err, req, res, next) => {
  console.error(`express peer: ${req.method} ${req.originalUrl}: ${err?.stack ?? err}`);
  if (!res.headersSent) res.status(500).json({ error: String(err?.message ?? err) });
});

// Exit status 2: the port is taken (the caller may try another); 1: any other failure.
function cannotListen(err) {
  console.error(`express peer: cannot listen on 127.0.0.1:${PORT}: ${err.message}`);
  process.exit(err.code === "EADDRINUSE" ? 2 : 1);
}
const server = app.listen(PORT, "127.0.0.1", (err) => {
  if (err) return cannotListen(err);
  process.stdout.write(`listening on ${PORT}\n`);
});
server.on("error", cannotListen);
