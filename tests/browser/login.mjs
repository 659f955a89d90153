// The login journey in a real browser: headless Chromium (Debian's package), driven by
// playwright-core, over HTTPS against doorman in front of the demo app.
//
// Run by tests/browser.rs, which starts the demo app and doorman (TLS, the dashboard route in
// redirect mode) and sets:
//   BASE_URL   https://127.0.0.1:PORT (doorman)
//   ARTIFACTS  folder for the screenshots (login.png, error.png, dashboard.png, login-phone.png,
//              login-dark.png)
//   CHROMIUM   the browser binary (default /usr/bin/chromium; playwright never downloads one)
//   LOGIN_USER, LOGIN_PASSWORD  a user of doorman's users file (default alice / alice-correct-horse)
//
// Prints one line per check; exits non-zero at the first failed check, saying what was wrong.

import { mkdirSync } from 'node:fs';
import {
  check, checkSessionCookie, dashboardLandsOnLogin, launch, pathOf, runJourneys, shot as harnessShot,
} from './harness.mjs';

const BASE_URL = (process.env.BASE_URL || '').replace(/\/+$/, '');
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const USERNAME = process.env.LOGIN_USER || 'alice';
const PASSWORD = process.env.LOGIN_PASSWORD || 'alice-correct-horse';
const COOKIE = '__Host-doorman_session';
const LOGIN_PATH = '/_doorman/login';

if (!BASE_URL.startsWith('https://')) {
  console.error(`error: BASE_URL must be doorman's https:// address, got ${JSON.stringify(BASE_URL)}`);
  process.exit(2);
}
mkdirSync(ARTIFACTS, { recursive: true });


const shot = (page, name) => harnessShot(ARTIFACTS, page, name);

const browser = await launch(CHROMIUM);

await runJourneys(browser, [desktopJourney, phoneWidth, darkScheme]);

// ---------------------------------------------------------------------------------------------

/** Log in (wrong password first), look at the cookie, log out, and be sent back to login. */
async function desktopJourney() {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 800 },
  });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const cspViolations = [];
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });

  // 1. Not logged in: /dashboard redirects to the login page.
  await dashboardLandsOnLogin(page, BASE_URL, LOGIN_PATH);
  const protocol = await page.evaluate(
    () => performance.getEntriesByType('navigation')[0]?.nextHopProtocol,
  );
  check('the browser negotiated HTTP/2 over TLS (ALPN h2)', protocol === 'h2', protocol);
  check('the login page is titled "Sign in"', (await page.title()) === 'Sign in', await page.title());
  const user = page.getByLabel('User name');
  const pass = page.getByLabel('Password');
  check('the form has a field labelled "User name"', (await user.count()) === 1);
  check('the form has a password field labelled "Password"', (await pass.getAttribute('type')) === 'password');
  const submit = page.getByRole('button', { name: 'Sign in' });
  check('the form has a "Sign in" button', (await submit.count()) === 1);
  const styled = await page.evaluate(
    () => getComputedStyle(document.querySelector('button')).backgroundColor,
  );
  check(
    "the page's own style applies under its Content-Security-Policy",
    styled && styled !== 'rgba(0, 0, 0, 0)' && !/^rgb\(2[34]\d, 2[34]\d, 2[34]\d\)$/.test(styled),
    styled,
  );
  await shot(page, 'login.png');

  // 2. A wrong password: the page says so, readably, as an alert.
  await user.fill(USERNAME);
  await pass.fill(`${PASSWORD}-wrong`);
  await Promise.all([page.waitForNavigation(), submit.click()]);
  check('a wrong password stays on the login page', pathOf(page) === LOGIN_PATH, page.url());
  const alert = page.getByRole('alert');
  const alertText = (await alert.count()) === 1 ? (await alert.innerText()).trim() : '';
  check(
    'a wrong password shows a readable error (role=alert)',
    /wrong|incorrect|invalid/i.test(alertText) && (await alert.isVisible()),
    JSON.stringify(alertText),
  );
  check(
    'the user name is kept after the failed attempt',
    (await user.inputValue()) === USERNAME,
    await user.inputValue(),
  );
  check(
    'the fields are marked invalid and point at the error',
    (await pass.getAttribute('aria-invalid')) === 'true' &&
      (await pass.getAttribute('aria-describedby')) === (await alert.getAttribute('id')),
  );
  await shot(page, 'error.png');

  // 3. The right password: back to the dashboard, greeted by name.
  await pass.fill(PASSWORD);
  await Promise.all([page.waitForNavigation(), submit.click()]);
  check('after login the browser is back on /dashboard', pathOf(page) === '/dashboard', page.url());
  const heading = (await page.locator('h1').innerText()).trim();
  check(
    `the dashboard greets the user ("Welcome, user ${USERNAME}")`,
    heading === `Welcome, user ${USERNAME}`,
    JSON.stringify(heading),
  );
  await shot(page, 'dashboard.png');

  // 4. The session cookie: invisible to scripts, Secure, HttpOnly, SameSite=Lax, host-only.
  await checkSessionCookie(page, context, BASE_URL, COOKIE);
  const reload = await page.goto(`${BASE_URL}/dashboard`);
  check('the session holds on the next request', reload.ok() && pathOf(page) === '/dashboard', page.url());

  // 5. Log out the way a page does: a same-origin form POST to /_doorman/logout.
  await Promise.all([
    page.waitForNavigation(),
    page.evaluate(() => {
      const form = document.createElement('form');
      form.method = 'post';
      form.action = '/_doorman/logout';
      document.body.append(form);
      form.submit();
    }),
  ]);
  check('logout lands on the public home page', pathOf(page) === '/', page.url());
  const after = (await context.cookies(BASE_URL)).find((c) => c.name === COOKIE);
  check('logout removed the session cookie', !after, after && JSON.stringify(after));
  await page.goto(`${BASE_URL}/dashboard`);
  check(
    `after logout /dashboard sends the browser to ${LOGIN_PATH} again`,
    pathOf(page) === LOGIN_PATH,
    page.url(),
  );
  check('no Content-Security-Policy violations were reported', cspViolations.length === 0, cspViolations.join('\n'));
  await context.close();
}

/** The login page on a phone: nothing scrolls sideways, everything is reachable. */
async function phoneWidth() {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 375, height: 667 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  await page.goto(`${BASE_URL}/dashboard`);
  check('on a phone (375x667), /dashboard lands on the login page', pathOf(page) === LOGIN_PATH, page.url());
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check('the login page does not scroll sideways at 375px', width <= 375, `scrollWidth ${width}`);
  const box = await page.getByRole('button', { name: 'Sign in' }).boundingBox();
  check(
    'the "Sign in" button fits the screen and is a comfortable tap target',
    box && box.x >= 0 && box.x + box.width <= 375 && box.height >= 44,
    JSON.stringify(box),
  );
  const fontSize = await page.evaluate(
    () => parseFloat(getComputedStyle(document.querySelector('#username')).fontSize),
  );
  check('inputs use at least 16px text (no zoom-on-focus on phones)', fontSize >= 16, `${fontSize}px`);
  await shot(page, 'login-phone.png');
  await context.close();
}

/** The login page in a dark colour scheme: the page's dark palette applies. */
async function darkScheme() {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 800 },
    colorScheme: 'dark',
  });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  await page.goto(`${BASE_URL}${LOGIN_PATH}`);
  const bg = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  const [r, g, b] = (bg.match(/\d+/g) || []).map(Number);
  check('in a dark colour scheme the login page turns dark', r + g + b < 120, bg);
  await shot(page, 'login-dark.png');
  await context.close();
}
