// Signing in with OpenID Connect in a real browser: headless Chromium (Debian's package), driven
// by playwright-core, over HTTPS against doorman in front of the demo app, with a real provider
// (Node's oidc-provider, tests/oidc/provider.mjs) on plain http://127.0.0.1.
//
// Run by tests/browser.rs, which starts the demo app, the provider and doorman (TLS, the
// dashboard route in redirect mode, [oidc] naming the provider) and sets:
//   BASE_URL       https://127.0.0.1:PORT (doorman)
//   ISSUER         http://127.0.0.1:PORT (the provider; its test-only /test/sessions counts
//                  signed-in provider sessions)
//   PROVIDER_NAME  doorman's [oidc] name: the button reads "Sign in with PROVIDER_NAME"
//   OIDC_USER, OIDC_PASSWORD  an account at the provider (default alice / the harness password)
//   OIDC_EMAIL     that account's email: the user name doorman gives the app (user_claim "email")
//   OIDC_GROUPS    its groups, comma-separated (doorman's groups_claim)
//   ARTIFACTS      folder for the screenshots (oidc-login.png, oidc-provider.png,
//                  oidc-dashboard.png, oidc-logout.png, oidc-signed-out.png, oidc-again.png)
//   CHROMIUM       the browser binary (default /usr/bin/chromium; playwright never downloads one)
//
// The browser reaches nothing but loopback: any other request (the provider's stock logout page
// imports a web font) is aborted and listed at the end.
//
// Prints one line per check; exits non-zero at the first failed check, saying what was wrong.

import { mkdirSync } from 'node:fs';
import { request } from 'playwright-core';
import {
  check, checkSessionCookie, dashboardLandsOnLogin, launch, pathOf, runJourneys, shot as harnessShot,
} from './harness.mjs';

const BASE_URL = (process.env.BASE_URL || '').replace(/\/+$/, '');
const ISSUER = (process.env.ISSUER || '').replace(/\/+$/, '');
const PROVIDER_NAME = process.env.PROVIDER_NAME || 'Test SSO';
const ACCOUNT = process.env.OIDC_USER || 'alice';
const PASSWORD = process.env.OIDC_PASSWORD || 'oidc-correct-horse';
const EMAIL = process.env.OIDC_EMAIL || 'alice@example.com';
const GROUPS = (process.env.OIDC_GROUPS ?? 'staff').split(',').filter(Boolean);
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const COOKIE = '__Host-doorman_session';
const FLOW_COOKIE = '__Host-doorman_oidc_';
const LOGIN_PATH = '/_doorman/login';
const START_PATH = '/_doorman/oidc/start';
const CALLBACK_PATH = '/_doorman/oidc/callback';
const LOGOUT_PATH = '/_doorman/logout';
const LOGOUT_BUTTON = 'Yes, sign me out';
/** How long doorman may take to discover the provider (it starts before the provider does). */
const DISCOVERY_LIMIT_MS = 30_000;

if (!BASE_URL.startsWith('https://')) {
  console.error(`error: BASE_URL must be doorman's https:// address, got ${JSON.stringify(BASE_URL)}`);
  process.exit(2);
}
if (!ISSUER.startsWith('http://127.0.0.1:')) {
  console.error(`error: ISSUER must be the test provider's http://127.0.0.1:PORT, got ${JSON.stringify(ISSUER)}`);
  process.exit(2);
}
mkdirSync(ARTIFACTS, { recursive: true });

/** What the pages said on the console, printed when a check fails. */
const consoleLines = [];

const shot = (page, name) => harnessShot(ARTIFACTS, page, name);
const originOf = (page) => new URL(page.url()).origin;
const isLoopback = (url) => ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);

/** Doorman's "Sign in with …" control: a button today, and a link would do as well. */
const providerButton = (page) => {
  const name = `Sign in with ${PROVIDER_NAME}`;
  return page.getByRole('button', { name }).or(page.getByRole('link', { name }));
};

/** The provider's count of signed-in sessions (its test-only endpoint), fetched from Node. */
async function providerSessions() {
  const res = await fetch(`${ISSUER}/test/sessions`);
  if (!res.ok) throw new Error(`${ISSUER}/test/sessions answered ${res.status}`);
  return (await res.json()).sessions;
}

const browser = await launch(CHROMIUM);

await runJourneys(browser, [waitForDiscovery, oidcJourney], consoleLines);

// ---------------------------------------------------------------------------------------------

/**
 * Doorman starts before the provider (the provider's client needs doorman's address), so its
 * button answers 503 until discovery succeeds: wait for the 302, with a request context of
 * its own (no cookie of the browser's changes).
 */
async function waitForDiscovery() {
  const api = await request.newContext({ ignoreHTTPSErrors: true });
  const deadline = Date.now() + DISCOVERY_LIMIT_MS;
  let res;
  for (;;) {
    res = await api.get(`${BASE_URL}${START_PATH}?next=/dashboard`, { maxRedirects: 0 });
    if (res.status() !== 503 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  check(
    `doorman discovered the provider: ${START_PATH} answers 302, not 503`,
    res.status() === 302,
    `${res.status()} ${(await res.text()).slice(0, 200)}`,
  );
  const to = new URL(res.headers().location || '', BASE_URL);
  check(
    "the button's start redirects to the provider's authorization endpoint",
    to.origin === ISSUER && to.pathname === '/auth',
    to.href,
  );
  check(
    `the announced redirect_uri is exactly ${BASE_URL}${CALLBACK_PATH}`,
    to.searchParams.get('redirect_uri') === `${BASE_URL}${CALLBACK_PATH}`,
    to.searchParams.get('redirect_uri'),
  );
  check(
    'the authorization request uses the code flow with PKCE S256, state and nonce',
    to.searchParams.get('response_type') === 'code' &&
      to.searchParams.get('code_challenge_method') === 'S256' &&
      !!to.searchParams.get('code_challenge') &&
      !!to.searchParams.get('state') &&
      !!to.searchParams.get('nonce'),
    to.search,
  );
  await api.dispose();
}

/**
 * Click `button` on doorman's login page and check that the browser lands on the provider's
 * sign-in interaction. A navigation the browser refuses (e.g. a Content-Security-Policy
 * directive that blocks a hop of the redirect chain) fails the check with what it said.
 */
async function toProvider(page, button, cspViolations, what) {
  const outcome = await Promise.all([
    page.waitForURL((url) => url.origin === ISSUER && url.pathname.startsWith('/interaction/')),
    button.click(),
  ]).then(
    () => null,
    (e) => String(e.message || e).split('\n')[0],
  );
  // The browser reports a refused navigation on the console just after the navigation fails.
  if (outcome !== null) await page.waitForTimeout(250);
  check(
    what,
    outcome === null && originOf(page) === ISSUER,
    [page.url(), outcome, ...cspViolations].filter(Boolean).join('\n  '),
  );
}

/** Sign in at the provider, see the app greet the user, log out of both, and stay out. */
async function oidcJourney() {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 800 },
  });
  context.setDefaultTimeout(15_000);
  const offMachine = [];
  await context.route(
    (url) => !isLoopback(url),
    (route) => {
      let from = '';
      try {
        from = route.request().frame().url();
      } catch {
        // not a page's request
      }
      offMachine.push({ url: route.request().url(), from });
      return route.abort();
    },
  );
  const page = await context.newPage();
  const cspViolations = [];
  page.on('console', (msg) => {
    consoleLines.push(`[${msg.type()}] ${msg.location().url || page.url()}: ${msg.text()}`);
    if (/Content Security Policy/i.test(msg.text()) && (msg.location().url || '').startsWith(BASE_URL)) {
      cspViolations.push(msg.text());
    }
  });
  // doorman's answers to the callback and to logout, as the browser got them.
  const seen = {};
  page.on('response', (res) => {
    const url = new URL(res.url());
    if (url.origin !== BASE_URL) return;
    if (url.pathname === CALLBACK_PATH) seen.callback = res;
    if (url.pathname === LOGOUT_PATH) seen.logout = res;
  });
  const flowCookies = async () =>
    (await context.cookies(BASE_URL)).filter((c) => c.name.includes('doorman_oidc_'));

  check('the provider has no signed-in session yet', (await providerSessions()) === 0);

  // 1. Not signed in: /dashboard redirects to the login page, which offers the provider.
  await dashboardLandsOnLogin(page, BASE_URL, LOGIN_PATH);
  const button = providerButton(page);
  check(
    `the login page shows a "Sign in with ${PROVIDER_NAME}" button`,
    (await button.count()) === 1 && (await button.isVisible()),
  );
  const buttonBox = await button.boundingBox();
  const passwordBox = await page.getByLabel('Password').boundingBox();
  check(
    'the provider button sits above the password form',
    buttonBox && passwordBox && buttonBox.y + buttonBox.height <= passwordBox.y,
    JSON.stringify({ button: buttonBox, password: passwordBox }),
  );
  await shot(page, 'oidc-login.png');

  // 2. The button: a GET form to doorman's start, which sends the browser to the provider.
  await toProvider(page, button, cspViolations, "clicking the button lands on the provider's sign-in page");
  const login = page.locator('input[name="login"]');
  const password = page.locator('input[name="password"]');
  check(
    "the provider asks for a login and a password",
    (await login.count()) === 1 && (await password.getAttribute('type')) === 'password',
  );
  const flows = await flowCookies();
  check(
    `doorman set one flow cookie ${FLOW_COOKIE}<12 characters>`,
    flows.length === 1 && new RegExp(`^${FLOW_COOKIE}[A-Za-z0-9_-]{12}$`).test(flows[0].name),
    JSON.stringify(flows.map((c) => c.name)),
  );
  check(
    'the flow cookie is Secure, HttpOnly, SameSite=Lax, Path=/',
    flows[0].secure === true &&
      flows[0].httpOnly === true &&
      flows[0].sameSite === 'Lax' &&
      flows[0].path === '/',
    JSON.stringify(flows[0]),
  );
  await login.fill(ACCOUNT);
  await password.fill(PASSWORD);
  await shot(page, 'oidc-provider.png');

  // 3. Signing in at the provider: back through doorman's callback to the dashboard.
  await Promise.all([
    page.waitForURL(`${BASE_URL}/dashboard`),
    page.getByRole('button', { name: 'Sign in', exact: true }).click(),
  ]);
  check('after signing in the browser is back on /dashboard', pathOf(page) === '/dashboard', page.url());
  check(
    "doorman's callback answered 303 to /dashboard",
    seen.callback && seen.callback.status() === 303 && seen.callback.headers().location === '/dashboard',
    seen.callback && `${seen.callback.status()} ${seen.callback.headers().location}`,
  );
  const heading = (await page.locator('h1').innerText()).trim();
  check(
    `the app saw X-Auth-User ${EMAIL} ("Welcome, user ${EMAIL}")`,
    heading === `Welcome, user ${EMAIL}`,
    JSON.stringify(heading),
  );
  await shot(page, 'oidc-dashboard.png');
  const session = await page.evaluate(async () => {
    const res = await fetch('/_doorman/session');
    return { status: res.status, body: await res.json().catch(() => null) };
  });
  check(
    `doorman's session is ${EMAIL} in groups ${JSON.stringify(GROUPS)} (the groups claim)`,
    session.status === 200 &&
      session.body.user === EMAIL &&
      JSON.stringify(session.body.groups) === JSON.stringify(GROUPS),
    JSON.stringify(session),
  );
  check('the provider holds one signed-in session', (await providerSessions()) === 1);

  // 4. The cookies: the session's, as the login form makes it; the flow's, gone.
  await checkSessionCookie(page, context, BASE_URL, COOKIE);
  const leftover = await flowCookies();
  check(
    'no doorman_oidc_ flow cookie remains after the callback',
    leftover.length === 0,
    JSON.stringify(leftover.map((c) => c.name)),
  );
  const reload = await page.goto(`${BASE_URL}/dashboard`);
  check('the session holds on the next request', reload.ok() && pathOf(page) === '/dashboard', page.url());

  // 5. Log out the way a page does (a same-origin form POST): doorman ends its session and
  //    sends the browser to the provider's logout, which asks first.
  await Promise.all([
    page.waitForURL((url) => url.origin === ISSUER && url.pathname.startsWith('/session/end')),
    page.evaluate((action) => {
      const form = document.createElement('form');
      form.method = 'post';
      form.action = action;
      document.body.append(form);
      form.submit();
    }, LOGOUT_PATH),
  ]);
  const to = new URL(seen.logout?.headers().location || '', BASE_URL);
  check(
    "logout answered 303 to the provider's end_session_endpoint",
    seen.logout && seen.logout.status() === 303 && to.origin === ISSUER && to.pathname === '/session/end',
    seen.logout && `${seen.logout.status()} ${to.href}`,
  );
  check(
    `logout names ${BASE_URL}/ as post_logout_redirect_uri, with an id_token_hint`,
    to.searchParams.get('post_logout_redirect_uri') === `${BASE_URL}/` &&
      /^[\w-]+\.[\w-]+\.[\w-]+$/.test(to.searchParams.get('id_token_hint') || ''),
    to.search,
  );
  const gone = (await context.cookies(BASE_URL)).find((c) => c.name === COOKIE);
  check('logout removed the session cookie', !gone, gone && JSON.stringify(gone));
  const confirm = page.getByRole('button', { name: LOGOUT_BUTTON });
  check(
    `the provider asks to confirm ("${LOGOUT_BUTTON}")`,
    (await confirm.count()) === 1,
    (await page.content()).slice(0, 300),
  );
  await shot(page, 'oidc-logout.png');
  await Promise.all([page.waitForURL(`${BASE_URL}/`), confirm.click()]);
  check('after the provider signs out the browser is back on doorman\'s /', page.url() === `${BASE_URL}/`, page.url());
  const home = (await page.locator('h1').innerText()).trim();
  check('the public home page shows', /^Home/.test(home), JSON.stringify(home));
  await shot(page, 'oidc-signed-out.png');

  // 6. Signed out of both: the provider's session ended, and nothing signs the browser back in.
  check("the provider's session ended (/test/sessions: 0)", (await providerSessions()) === 0);
  await page.goto(`${BASE_URL}/dashboard`);
  check(
    `after logout /dashboard sends the browser to ${LOGIN_PATH} again`,
    pathOf(page) === LOGIN_PATH,
    page.url(),
  );
  await toProvider(
    page,
    providerButton(page),
    cspViolations,
    'the button leads to the provider again',
  );
  check(
    "the provider asks for the password again (no silent sign-back-in)",
    (await page.locator('input[name="password"]').count()) === 1,
    page.url(),
  );
  const none = (await context.cookies(BASE_URL)).find((c) => c.name === COOKIE);
  check('still no session cookie', !none, none && JSON.stringify(none));
  await shot(page, 'oidc-again.png');

  check('no Content-Security-Policy violations on doorman\'s pages', cspViolations.length === 0, cspViolations.join('\n'));
  const fromDoorman = offMachine.filter((r) => r.from.startsWith(BASE_URL));
  check(
    "doorman's pages load nothing from off the machine",
    fromDoorman.length === 0,
    JSON.stringify(fromDoorman),
  );
  if (offMachine.length > 0) {
    const urls = [...new Set(offMachine.map((r) => r.url))];
    console.log(`   blocked (the provider's pages, not doorman's): ${urls.join(', ')}`);
  }
  await context.close();
}
