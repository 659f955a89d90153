// What the browser scripts share: headless Chromium as they start it (Debian's binary,
// playwright never downloads one; nothing that reaches off the machine; doorman's self-signed
// test certificate accepted), their one-line checks and their screenshots.

import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** A failed check: its message is the whole report. */
export class CheckFailed extends Error {}

/** Checks passed so far. */
export let passed = 0;

/** One check: prints `ok - what`, or throws with what was expected and what was seen. */
export function check(what, ok, seen) {
  if (!ok) {
    throw new CheckFailed(`FAIL - ${what}${seen === undefined ? '' : `\n  seen: ${seen}`}`);
  }
  passed += 1;
  console.log(`ok - ${what}`);
}

/** A full-page screenshot of `page` as `name` in the `artifacts` folder. */
export async function shot(artifacts, page, name) {
  const path = join(artifacts, name);
  await page.screenshot({ path, fullPage: true });
  console.log(`   screenshot: ${path}`);
}

/** The path of the page's URL. */
export const pathOf = (page) => new URL(page.url()).pathname;

/**
 * Load `${base}/dashboard` without a session: it must answer with a page, the login page at
 * `loginPath` (the route's redirect). Every journey starts this way.
 */
export async function dashboardLandsOnLogin(page, base, loginPath) {
  const first = await page.goto(`${base}/dashboard`);
  check('GET /dashboard answers with a page', first && first.ok(), first && first.status());
  check(`/dashboard without a session lands on ${loginPath}`, pathOf(page) === loginPath, page.url());
}

/** Launch the Chromium at `executablePath`, with `extraArgs` after the usual ones. */
export function launch(executablePath, extraArgs = []) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      '--ignore-certificate-errors',
      ...extraArgs,
    ],
  });
}

/**
 * The session cookie `name` in the browser's jar for `url`, after the checks every journey
 * makes of it: invisible to the page's scripts, Secure, HttpOnly, SameSite=Lax, Path=/, and
 * 32 random bytes (43 characters of base64url).
 */
export async function checkSessionCookie(page, context, url, name) {
  const visible = await page.evaluate(() => document.cookie);
  check(
    'document.cookie does not show the session cookie',
    !visible.includes('doorman_session'),
    JSON.stringify(visible),
  );
  const jar = await context.cookies(url);
  const cookie = jar.find((c) => c.name === name);
  check(`the cookie jar holds ${name}`, !!cookie, JSON.stringify(jar.map((c) => c.name)));
  check(
    `${name} is Secure, HttpOnly, SameSite=Lax, Path=/`,
    cookie.secure === true && cookie.httpOnly === true && cookie.sameSite === 'Lax' && cookie.path === '/',
    JSON.stringify({ secure: cookie.secure, httpOnly: cookie.httpOnly, sameSite: cookie.sameSite, path: cookie.path }),
  );
  check(
    `${name} carries 32 random bytes (43 characters of base64url)`,
    /^[A-Za-z0-9_-]{43}$/.test(cookie.value),
    `${cookie.value.length} characters`,
  );
  return cookie;
}

/**
 * Run `journeys` in order with `browser`, close it whatever happens, and report: every check
 * passed, or the failed check (with `consoleLines`, the browser's console, when there are any)
 * and exit 1.
 */
export async function runJourneys(browser, journeys, consoleLines = []) {
  let failed = null;
  try {
    for (const journey of journeys) {
      await journey();
    }
  } catch (e) {
    failed = e;
  } finally {
    await browser.close().catch(() => {});
  }
  if (failed) {
    console.error(failed instanceof CheckFailed ? failed.message : `FAIL - ${failed.stack || failed}`);
    if (consoleLines.length > 0) console.error(`browser console:\n  ${consoleLines.join('\n  ')}`);
    console.error(`browser test: ${passed} checks passed, then one failed`);
    process.exit(1);
  }
  console.log(`browser test: all ${passed} checks passed`);
}
