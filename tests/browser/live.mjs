// Long-lived connections follow their session (DESIGN.md §11), seen from a real browser:
// headless Chromium (Debian's package), driven by playwright-core, over HTTPS (HTTP/2 for
// pages and the event stream, HTTP/1.1 for the WebSocket, as Chromium chooses) against the
// doorman binary in front of the tests' upstream (tests/support/upstream.rs: `/ws-echo`, a
// WebSocket echo; `/quiet/{ms}`, an event stream that stays quiet).
//
// A page holds a WebSocket (or an EventSource) open; the session ends elsewhere; the page must
// see it end — a WebSocket `close` event with code 1008 and reason `session ended`, an
// EventSource `error` — within 1.5 s of the end (the absolute expiry: of the expiry), and an
// EventSource's automatic reconnect must be answered 401.
//
// Run by tests/browser.rs, which starts the upstream and the doormen and sets:
//   EMBEDDED_URL   doorman on the embedded store
//   REVOKE         JSON argv of `doorman sessions revoke --user alice --config <EMBEDDED's>`
//   EXPIRY_URL     doorman on the embedded store with absolute_timeout = ABSOLUTE_MS
//   ABSOLUTE_MS    that timeout, in milliseconds
//   REDIS_A_URL, REDIS_B_URL   two doormen on one Redis, no cache, recheck = "1s"
//   CACHE_A_URL, CACHE_B_URL   two doormen on another Redis, cache = true
//   ARTIFACTS      folder for the screenshot (live.png)
//   CHROMIUM       the browser binary
//   LOGIN_USER, LOGIN_PASSWORD  a user of doorman's users file
//
// Prints one line per check; exits non-zero at the first failed check, saying what was wrong.

import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { check, launch, pathOf, runJourneys, shot } from './harness.mjs';

const env = (name) => {
  const value = (process.env[name] || '').replace(/\/+$/, '');
  if (!value) {
    console.error(`error: ${name} is not set`);
    process.exit(2);
  }
  return value;
};
const EMBEDDED = env('EMBEDDED_URL');
const REVOKE = JSON.parse(env('REVOKE'));
const EXPIRY = env('EXPIRY_URL');
const ABSOLUTE_MS = Number(env('ABSOLUTE_MS'));
const REDIS_A = env('REDIS_A_URL');
const REDIS_B = env('REDIS_B_URL');
const CACHE_A = env('CACHE_A_URL');
const CACHE_B = env('CACHE_B_URL');
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const USERNAME = process.env.LOGIN_USER || 'alice';
const PASSWORD = process.env.LOGIN_PASSWORD || 'alice-correct-horse';
/** How long after the session's end the page may learn of it. */
const LIMIT_MS = 1500;

mkdirSync(ARTIFACTS, { recursive: true });
const consoleLines = [];
const browser = await launch(CHROMIUM);

await runJourneys(
  browser,
  [
    () => socketEndsWhen('a logout in another tab', EMBEDDED, EMBEDDED, logoutIn),
    () => socketEndsWhen('`doorman sessions revoke` on the command line', EMBEDDED, EMBEDDED, revoke),
    () => socketEndsWhen('a logout on another doorman (Redis, recheck = 1s)', REDIS_B, REDIS_A, logoutIn),
    () => socketEndsWhen('a logout on another doorman (Redis with the cache)', CACHE_B, CACHE_A, logoutIn),
    absoluteExpiry,
    eventStream,
  ],
  consoleLines,
);

// ---------------------------------------------------------------------------------------------

/** A fresh browser context (its own cookie jar) and page, with the console collected. */
async function freshPage() {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  return { context, page };
}

/** Sign in through the login form at `base`; the browser lands on `/`. */
async function signIn(page, base) {
  await page.goto(`${base}/_doorman/login?next=/`);
  await page.getByLabel('User name').fill(USERNAME);
  await page.getByLabel('Password').fill(PASSWORD);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign in' }).click()]);
  check(`signed in at ${base}`, pathOf(page) === '/', page.url());
}

/** Log out as a page does (a same-origin form POST), in a second tab of the same browser. */
async function logoutIn(context, base) {
  const tab = await context.newPage();
  await tab.goto(`${base}/`);
  await Promise.all([
    tab.waitForNavigation(),
    tab.evaluate(() => {
      const form = document.createElement('form');
      form.method = 'post';
      form.action = '/_doorman/logout';
      document.body.append(form);
      form.submit();
    }),
  ]);
  await tab.close();
}

/** `doorman sessions revoke --user alice` against the embedded doorman's store. */
async function revoke() {
  const [program, ...args] = REVOKE;
  execFileSync(program, args, { stdio: 'pipe' });
}

/**
 * Open a WebSocket from `page` to `/ws-echo`, check one echo, and start recording its `close`
 * event (code, reason, time on the page's clock) in `window.wsClosed`.
 */
async function openSocket(page) {
  const echoed = await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/ws-echo`);
        window.wsClosed = null;
        ws.onclose = (e) => {
          window.wsClosed = { code: e.code, reason: e.reason, at: performance.now() };
        };
        ws.onerror = () => reject(new Error('WebSocket error before the echo'));
        ws.onopen = () => ws.send('hello');
        ws.onmessage = (e) => resolve(e.data);
        window.ws = ws;
      }),
  );
  check('the WebSocket through doorman is open and echoes', echoed === 'hello', echoed);
}

/** Wait until the page's socket has closed, at most `ms`; what its close event said. */
async function socketClosed(page, ms) {
  const closed = await page
    .waitForFunction(() => window.wsClosed, null, { timeout: ms, polling: 20 })
    .then((h) => h.jsonValue(), () => null);
  if (!closed) consoleLines.push(`socket readyState ${await page.evaluate(() => window.ws.readyState)}`);
  return closed;
}

/**
 * A page at `pageBase` holds a WebSocket; `end(context, endBase)` ends the session; the
 * socket's close event must report 1008 `session ended` within LIMIT_MS.
 */
async function socketEndsWhen(what, pageBase, endBase, end) {
  const { context, page } = await freshPage();
  await signIn(page, endBase);
  if (pageBase !== endBase) await page.goto(`${pageBase}/`);
  await openSocket(page);
  // The cache's tracking connection, where there is one, is up long before this (start-up).
  const started = await page.evaluate(() => performance.now());
  await end(context, endBase);
  const closed = await socketClosed(page, LIMIT_MS + 1000);
  check(
    `${what} closes the page's WebSocket with 1008 "session ended"`,
    closed && closed.code === 1008 && closed.reason === 'session ended',
    JSON.stringify(closed),
  );
  const took = closed.at - started;
  check(`... within ${LIMIT_MS} ms of it (${Math.round(took)} ms)`, took <= LIMIT_MS, `${Math.round(took)} ms`);
  await context.close();
}

/** The session's absolute expiry closes the page's socket, though nobody did anything. */
async function absoluteExpiry() {
  const { context, page } = await freshPage();
  await signIn(page, EXPIRY);
  const signedIn = Date.now();
  await openSocket(page);
  const closed = await socketClosed(page, ABSOLUTE_MS + LIMIT_MS + 1000);
  check(
    'the absolute expiry closes the WebSocket with 1008 "session ended"',
    closed && closed.code === 1008 && closed.reason === 'session ended',
    JSON.stringify(closed),
  );
  const after = Date.now() - signedIn;
  check(
    `... within ${LIMIT_MS} ms of the expiry (${after} ms after signing in, expiry at ${ABSOLUTE_MS})`,
    after <= ABSOLUTE_MS + LIMIT_MS,
    `${after} ms after signing in`,
  );
  await context.close();
}

/**
 * An EventSource gets its error within LIMIT_MS of a logout in another tab, and its automatic
 * reconnect is answered 401 (after which the browser gives up: readyState CLOSED).
 */
async function eventStream() {
  const { context, page } = await freshPage();
  await signIn(page, EMBEDDED);
  const reconnects = [];
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.startsWith('/quiet/')) reconnects.push(r.status());
  });
  const first = await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const events = new EventSource('/quiet/600000');
        window.streamError = null;
        events.onerror = () => {
          if (!window.streamError) window.streamError = { at: performance.now() };
        };
        events.onmessage = (e) => resolve(e.data);
        setTimeout(() => reject(new Error('no event in 5 s')), 5000);
        window.events = events;
      }),
  );
  check('the EventSource through doorman receives its first event', first === 'first', first);
  await shot(ARTIFACTS, page, 'live.png');
  const started = await page.evaluate(() => performance.now());
  await logoutIn(context, EMBEDDED);
  const error = await page
    .waitForFunction(() => window.streamError, null, { timeout: LIMIT_MS + 1000, polling: 20 })
    .then((h) => h.jsonValue(), () => null);
  check('a logout in another tab makes the EventSource report an error', !!error, JSON.stringify(error));
  const took = error.at - started;
  check(`... within ${LIMIT_MS} ms of it (${Math.round(took)} ms)`, took <= LIMIT_MS, `${Math.round(took)} ms`);
  const gaveUp = await page
    .waitForFunction(() => window.events.readyState === EventSource.CLOSED, null, { timeout: 10000 })
    .then(() => true, () => false);
  check(
    "the EventSource's automatic reconnect is answered 401, and the browser stops there",
    gaveUp && reconnects.includes(401),
    JSON.stringify({ statuses: reconnects, readyState: await page.evaluate(() => window.events.readyState) }),
  );
  await context.close();
}
