// Headless Chromium as both browser scripts start it: Debian's binary (playwright never
// downloads one), nothing that reaches off the machine, and doorman's self-signed test
// certificate accepted.

import { chromium } from 'playwright-core';

/** Launch the Chromium at `executablePath`. */
export function launch(executablePath) {
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
    ],
  });
}
