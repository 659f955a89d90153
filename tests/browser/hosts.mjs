// Signing in once across hosts in a real browser (DESIGN.md §8): headless Chromium (Debian's
// package), driven by playwright-core, over plain HTTP against a real Caddy
// (examples/Caddyfile.forward-auth) that asks doorman about every request for `app.test`,
// `b.test` and the login host `login.test`, all mapped to 127.0.0.1 inside Chromium
// (--host-resolver-rules), so the browser sees three sites with cookies of their own.
//
// The point: the login form is posted on the login host, whose page is served with a
// Content-Security-Policy whose `form-action` Chromium applies to every redirect that follows
// the submission, so the 303 on to another host's /_doorman/callback?code=… must be allowed by
// it (doorman adds each [forward_auth] allowed_hosts entry to form-action when signing in across
// hosts is on).
//
// Run by tests/browser.rs, which starts the demo app, doorman (forward-auth only, the dashboard
// route in redirect mode, [login] public_origin = LOGIN_ORIGIN) and Caddy, and sets:
//   APP_ORIGIN     http://app.test:PORT (Caddy)
//   OTHER_ORIGIN   http://b.test:PORT (Caddy)
//   LOGIN_ORIGIN   http://login.test:PORT (Caddy; doorman's public_origin)
//   COOKIE_NAME    doorman's session cookie over plain HTTP (doorman_session)
//   ARTIFACTS      folder for the screenshots (hosts-login.png, hosts-app.png, hosts-b.png)
//   CHROMIUM       the browser binary (default /usr/bin/chromium; playwright never downloads one)
//   LOGIN_USER, LOGIN_PASSWORD  a user of doorman's users file (default alice / alice-correct-horse)
//
// Prints one line per check; exits non-zero at the first failed check, saying what was wrong.

import { mkdirSync } from 'node:fs';
import {
  check, launch, pathOf, runJourneys, shot as harnessShot,
} from './harness.mjs';

const trim = (v) => (v || '').replace(/\/+$/, '');
const APP_ORIGIN = trim(process.env.APP_ORIGIN);
const OTHER_ORIGIN = trim(process.env.OTHER_ORIGIN);
const LOGIN_ORIGIN = trim(process.env.LOGIN_ORIGIN);
const COOKIE = process.env.COOKIE_NAME || 'doorman_session';
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const USERNAME = process.env.LOGIN_USER || 'alice';
const PASSWORD = process.env.LOGIN_PASSWORD || 'alice-correct-horse';
const LOGIN_PATH = '/_doorman/login';
const CALLBACK_PATH = '/_doorman/callback';

for (const [name, value] of [['APP_ORIGIN', APP_ORIGIN], ['OTHER_ORIGIN', OTHER_ORIGIN], ['LOGIN_ORIGIN', LOGIN_ORIGIN]]) {
  if (!/^http:\/\/[a-z.]+\.test:\d+$/.test(value)) {
    console.error(`error: ${name} must be http://<host>.test:PORT (the gateway), got ${JSON.stringify(value)}`);
    process.exit(2);
  }
}
mkdirSync(ARTIFACTS, { recursive: true });

/** What the pages said on the console, printed when a check fails. */
const consoleLines = [];

const shot = (page, name) => harnessShot(ARTIFACTS, page, name);
const originOf = (page) => new URL(page.url()).origin;
const hostOf = (origin) => new URL(origin).hostname;

// Every *.test name is loopback, where Caddy listens; nothing else is resolved.
const browser = await launch(CHROMIUM, ['--host-resolver-rules=MAP *.test 127.0.0.1']);

await runJourneys(browser, [acrossHosts], consoleLines);

// ---------------------------------------------------------------------------------------------

/**
 * Wait for the browser to land on `url` after `action`. A navigation the browser refuses (a
 * Content-Security-Policy directive that blocks a hop of the redirect chain) fails the check
 * with what it said.
 */
async function landsOn(page, url, action, cspViolations, what) {
  const outcome = await Promise.all([page.waitForURL(url), action()]).then(
    () => null,
    (e) => String(e.message || e).split('\n')[0],
  );
  // The browser reports a refused navigation on the console just after the navigation fails.
  if (outcome !== null) await page.waitForTimeout(250);
  check(
    what,
    outcome === null && page.url() === url,
    [page.url(), outcome, ...cspViolations].filter(Boolean).join('\n  '),
  );
}

/** The session cookie `origin`'s host holds, checked to be host-only (no Domain). */
async function hostOnlyCookie(context, origin) {
  const host = hostOf(origin);
  const jar = (await context.cookies(origin)).filter((c) => c.name === COOKIE);
  check(`${host} holds one ${COOKIE}`, jar.length === 1, JSON.stringify(jar));
  const [cookie] = jar;
  // Playwright reports a Domain cookie's domain with a leading dot; a host-only one without.
  check(
    `${host}'s ${COOKIE} is host-only (no Domain), HttpOnly, SameSite=Lax, Path=/`,
    cookie.domain === host && cookie.httpOnly === true && cookie.sameSite === 'Lax' && cookie.path === '/',
    JSON.stringify(cookie),
  );
  return cookie;
}

/** Sign in on the login host for app.test, then reach b.test without the password. */
async function acrossHosts() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const cspViolations = [];
  page.on('console', (msg) => {
    consoleLines.push(`[${msg.type()}] ${msg.location().url || page.url()}: ${msg.text()}`);
    if (/Content Security Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
  // Every answer of the gateway's hosts, in order, to show the redirect chain.
  const hops = [];
  page.on('response', (res) => {
    const location = res.headers().location;
    hops.push(`${res.status()} ${res.url()}${location ? ` -> ${location}` : ''}`);
  });
  const appDashboard = `${APP_ORIGIN}/dashboard`;
  const otherDashboard = `${OTHER_ORIGIN}/dashboard`;

  // 1. app.test without a session: the gateway sends the browser to the login host.
  const first = await page.goto(appDashboard);
  check(`GET ${appDashboard} answers with a page`, first && first.ok(), first && first.status());
  check(
    `app.test's /dashboard without a session lands on ${LOGIN_ORIGIN}${LOGIN_PATH}`,
    originOf(page) === LOGIN_ORIGIN && pathOf(page) === LOGIN_PATH,
    page.url(),
  );
  check(
    `the login page carries the original page as next (${appDashboard})`,
    new URL(page.url()).searchParams.get('next') === appDashboard,
    page.url(),
  );
  // Checked after the browser's own verdict on the redirect (step 2), which is the point.
  const csp = first.headers()['content-security-policy'] || '';
  await page.getByLabel('User name').fill(USERNAME);
  await page.getByLabel('Password').fill(PASSWORD);
  await shot(page, 'hosts-login.png');

  // 2. The form, posted on login.test: 303 to app.test's callback with a code, whose 303 goes
  //    on to the dashboard. Chromium holds both hops to the login page's form-action.
  const submit = page.getByRole('button', { name: 'Sign in' });
  const start = hops.length;
  await landsOn(
    page,
    appDashboard,
    () => submit.click(),
    cspViolations,
    `after signing in on login.test the browser is on ${appDashboard}`,
  );
  check(
    "the login page's form-action names the other hosts",
    /form-action 'self'[^;]* app\.test:\*/.test(csp) && /form-action 'self'[^;]* b\.test:\*/.test(csp),
    csp,
  );
  const chain = hops.slice(start);
  check(
    `the way back went through app.test's ${CALLBACK_PATH}?code=…`,
    chain.some((h) => h.startsWith('303 ') && h.includes(`-> ${APP_ORIGIN}${CALLBACK_PATH}?code=`)) &&
      chain.some((h) => h.startsWith(`303 ${APP_ORIGIN}${CALLBACK_PATH}?code=`)),
    chain.join('\n  '),
  );
  const heading = (await page.locator('h1').innerText()).trim();
  check(
    `the app behind app.test saw X-Auth-User ${USERNAME} ("Welcome, user ${USERNAME}")`,
    heading === `Welcome, user ${USERNAME}`,
    JSON.stringify(heading),
  );
  await shot(page, 'hosts-app.png');
  const loginCookie = await hostOnlyCookie(context, LOGIN_ORIGIN);
  const appCookie = await hostOnlyCookie(context, APP_ORIGIN);
  check('app.test has a session of its own, not the login host\'s', appCookie.value !== loginCookie.value);
  check(
    'b.test has no cookie yet',
    (await context.cookies(OTHER_ORIGIN)).every((c) => c.name !== COOKIE),
  );
  const reload = await page.goto(appDashboard);
  check('app.test\'s session holds on the next page load', reload.ok() && page.url() === appDashboard, page.url());

  // 3. b.test: the login host knows the browser, so it answers with another one-time code,
  //    no form; b.test's callback makes it a cookie of b.test's own.
  const bStart = hops.length;
  await landsOn(
    page,
    otherDashboard,
    () => page.goto(otherDashboard),
    cspViolations,
    `${otherDashboard} opens without the password (via the login host's code)`,
  );
  const bChain = hops.slice(bStart);
  check(
    `b.test went to the login host and back through its own ${CALLBACK_PATH}?code=…`,
    bChain.some((h) => h.startsWith(`302 ${otherDashboard}`) && h.includes(`-> ${LOGIN_ORIGIN}${LOGIN_PATH}?next=`)) &&
      bChain.some((h) => h.startsWith(`303 ${LOGIN_ORIGIN}${LOGIN_PATH}`) && h.includes(`-> ${OTHER_ORIGIN}${CALLBACK_PATH}?code=`)) &&
      bChain.some((h) => h.startsWith(`303 ${OTHER_ORIGIN}${CALLBACK_PATH}?code=`)),
    bChain.join('\n  '),
  );
  check(
    'no password was asked for on the way (the login host never showed its page)',
    !bChain.some((h) => h.startsWith(`200 ${LOGIN_ORIGIN}`)),
    bChain.join('\n  '),
  );
  const bHeading = (await page.locator('h1').innerText()).trim();
  check(
    `the app behind b.test saw X-Auth-User ${USERNAME}`,
    bHeading === `Welcome, user ${USERNAME}`,
    JSON.stringify(bHeading),
  );
  await shot(page, 'hosts-b.png');
  const bCookie = await hostOnlyCookie(context, OTHER_ORIGIN);
  check(
    'the three hosts hold three different sessions',
    new Set([loginCookie.value, appCookie.value, bCookie.value]).size === 3,
  );

  check('no Content-Security-Policy violations', cspViolations.length === 0, cspViolations.join('\n'));
  await context.close();
}
