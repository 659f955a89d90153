// The tutorial's app, before doorman: the app itself keeps sessions (express-session, stored in
// Redis by connect-redis) and checks `req.session.userId` in every protected handler.
// Env: PORT (default 3000), REDIS_URL (default redis://127.0.0.1:6379).
import express from "express";
import session from "express-session";
import { RedisStore } from "connect-redis"; // a named export since connect-redis 8
import { createClient } from "redis";

const PORT = Number(process.env.PORT || 3000);
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";

const redisClient = createClient({ url: REDIS_URL });
redisClient.on("error", (err) => console.error("redis:", err.message));
await redisClient.connect();

const app = express();
app.use(
  session({
    store: new RedisStore({ client: redisClient, prefix: "sess:" }),
    secret: "keyboard cat",
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 60 * 60 * 1000 },
  }),
);

app.get("/", (req, res) => {
  res.send("Home: anyone can see this page. The /dashboard needs a logged-in user.\n");
});

// A stand-in for the tutorial's login form: a real app checks a password here.
app.get("/login", (req, res, next) => {
  const user = req.query.user;
  if (typeof user !== "string" || user === "") return res.status(400).send("?user= missing\n");
  // A new session id at login, against session fixation.
  req.session.regenerate((err) => {
    if (err) return next(err);
    req.session.userId = /^[0-9]+$/.test(user) ? Number(user) : user;
    req.session.save((err2) => (err2 ? next(err2) : res.redirect("/dashboard")));
  });
});

// The check every protected handler repeats.
app.get("/dashboard", (req, res) => {
  if (req.session.userId === undefined) return res.status(401).send("Unauthorized, please log in\n");
  res.send(`Welcome, user ${req.session.userId}\n`);
});

app.get("/logout", (req, res, next) => {
  req.session.destroy((err) => (err ? next(err) : res.redirect("/")));
});

app.listen(PORT, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${PORT}/`));
