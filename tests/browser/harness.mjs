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
