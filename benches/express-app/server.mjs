// Row (c) of benches/run.sh: the tutorial stack doorman replaces, doing the same session job.
// The tutorial's stack: Express 5 + express-session + connect-redis + node-redis.
//   POST /login  (form: username, password) -> sets req.session.userId, 302/200, Set-Cookie connect.sid
//   GET  /dashboard -> 200 "Welcome, user X" if req.session.userId, else 401
//   GET  /auth   -> 204 + X-Auth-User if logged in, else 401 (for an nginx auth_request setup; benches/run.sh does not measure it)
// Env: PORT (default 18082), HOST (127.0.0.1), REDIS_URL (redis://127.0.0.1:6390/0)
//
// connect-redis import: since v8 it is a NAMED export: import {RedisStore} from "connect-redis"
// (v7 and earlier: default export). connect-redis 10.x declares engines node>=22; on Node 20
// we pin ^9.0.0, whose code (index.ts) is identical to 10.0.0.
import express from "express";
import session from "express-session";
import { RedisStore } from "connect-redis";
import { createClient } from "redis";

const PORT = Number(process.env.PORT || 18082);
const HOST = process.env.HOST || "127.0.0.1";
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6390/0";

const redisClient = createClient({ url: REDIS_URL });
redisClient.on("error", (e) => console.error("redis error", e));
await redisClient.connect();

const app = express();
app.disable("x-powered-by");
app.use(
  session({
    store: new RedisStore({ client: redisClient, prefix: "sess:" }),
    resave: false, // tutorial default: touch (EXPIRE) instead of re-save on each request
    saveUninitialized: false,
    secret: "bench-secret-not-for-production",
    name: "connect.sid",
  }),
);
app.use(express.urlencoded({ extended: false }));

app.post("/login", (req, res, next) => {
  const { username, password } = req.body || {};
  if (!username || password !== "bench") return res.status(401).send("bad credentials\n");
  req.session.regenerate((err) => {
    if (err) return next(err);
    req.session.userId = username;
    req.session.save((err2) => (err2 ? next(err2) : res.send("logged in\n")));
  });
});

app.get("/dashboard", (req, res) => {
  if (!req.session.userId) return res.status(401).send("Unauthorized\n");
  res.send(`Welcome, user ${req.session.userId}\n`);
});

app.get("/auth", (req, res) => {
  if (!req.session.userId) return res.status(401).end();
  res.set("X-Auth-User", String(req.session.userId)).status(204).end();
});

app.listen(PORT, HOST, () => console.log(`express peer listening on ${HOST}:${PORT} redis=${REDIS_URL}`));
