// The hosted sign-in pages and the end-user dashboard in headless Chromium (Debian's, through
// playwright-core): sign-in with a password, TOTP enrollment (the secret read off the page) and
// verification, an expired password, wrong passwords then lockout, a form without its CSRF token,
// an open-redirect fromURI, the sessions page, and axe-core's accessibility rules on each page.
//
// Screenshots of every page go to e2e/test-output/pages/ (gitignored). The pages run no
// JavaScript; the tests only type, click and read. axe-core is evaluated through the DevTools
// protocol (page.evaluate), which the pages' Content-Security-Policy does not apply to, so the
// pages are checked exactly as served.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Authenticator, PASSWORD, PASSWORD_2, Admin, uniqueLogin } from './authn-kit.mjs';
import { browserSkipReason, launchBrowser } from './browser-kit.mjs';
import { startServer } from './server.mjs';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHOTS = path.join(E2E_DIR, 'test-output', 'pages');
const require = createRequire(import.meta.url);

const skipReason = await browserSkipReason();
let axeSource = null;
try {
  axeSource = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
} catch {
  axeSource = null;
}

async function shot(page, name) {
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Runs axe-core on the page; fails on serious or critical violations (WCAG 2.x A/AA and best practice). */
async function assertAccessible(page, what) {
  assert.ok(axeSource, 'axe-core is not installed (run npm ci in e2e/)');
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${what}: axe-core found serious violations: ${JSON.stringify(bad, null, 2)}`);
  return result;
}

describe('hosted sign-in pages and dashboard in Chromium', { skip: skipReason ?? false }, () => {
  let server;
  let admin;
  let browser;

  before(async () => {
    server = await startServer({ env: { LATCHKEY_AUTHN_RATE_LIMIT_PER_USERNAME: '50', LATCHKEY_AUTHN_RATE_LIMIT_PER_IP: '0' } });
    admin = new Admin(server.orgUrl, server.token);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  /** A fresh browser (own cookies) for each test. */
  async function fresh() {
    await browser?.close();
    browser = await launchBrowser();
    return browser.page;
  }

  async function newUser(tag, password = PASSWORD) {
    const user = await admin.createUser({ tag, password });
    return { id: user.id, login: user.profile.login };
  }

  async function signIn(page, login, password, query = '') {
    await page.goto(`${server.orgUrl}/login/login.htm${query}`);
    await page.getByLabel('Username').fill(login);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForLoadState('load');
  }

  test('sign in with a password lands on the dashboard; sign-in and dashboard pass axe', async () => {
    const page = await fresh();
    const { login } = await newUser('pages-pw');
    const response = await page.goto(`${server.orgUrl}/login/login.htm`);
    assert.equal(response.status(), 200);
    const csp = response.headers()['content-security-policy'];
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /frame-ancestors 'none'/);
    await shot(page, 'signin');
    await assertAccessible(page, 'sign-in page');
    await page.setViewportSize({ width: 360, height: 740 });
    await shot(page, 'signin-phone');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, 'no horizontal scrolling at 360 px');
    await page.setViewportSize({ width: 900, height: 600 });

    // Keyboard only: focus starts in the username field; Tab to the password, Enter submits.
    await page.keyboard.type(login);
    await page.keyboard.press('Tab');
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${server.orgUrl}/app/UserHome`);
    assert.match(await page.locator('h1').innerText(), /Your apps/);
    assert.match(await page.locator('main').innerText(), /No apps assigned yet/);
    await shot(page, 'dashboard');
    await assertAccessible(page, 'dashboard');

    await page.getByRole('link', { name: 'My sessions' }).click();
    await page.waitForURL(`${server.orgUrl}/app/UserHome/sessions`);
    assert.match(await page.locator('main').innerText(), /This browser/);
    await shot(page, 'sessions');
    await assertAccessible(page, 'sessions page');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${server.orgUrl}/login/login.htm`);
    const home = await page.goto(`${server.orgUrl}/app/UserHome`);
    assert.equal(new URL(home.url()).pathname, '/login/login.htm', 'signed out: the dashboard asks to sign in');
  });

  test('TOTP: enroll by reading the secret off the page, then sign in with a code', async () => {
    const snapshot = await admin.snapshot();
    try {
      await admin.enrollSettings('REQUIRED', 'OPTIONAL');
      await admin.updateSignOnRule((s) => { s.requireFactor = true; });
      const page = await fresh();
      const { login } = await newUser('pages-totp');
      await signIn(page, login, PASSWORD);
      assert.match(await page.locator('h1').innerText(), /Set up two-step verification/);
      await shot(page, 'mfa-enroll-choose');
      await assertAccessible(page, 'MFA enroll (choose)');
      await page.getByRole('button', { name: /Set up Okta Verify/ }).click();
      await page.waitForLoadState('load');
      const secret = await page.locator('#shared-secret').getAttribute('data-secret');
      assert.match(secret, /^[A-Z2-7]{16,}$/, `a base32 secret on the page: ${secret}`);
      const qr = page.locator('img.qr');
      assert.equal(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), true, 'the QR code loads');
      await shot(page, 'mfa-enroll-activate');
      await assertAccessible(page, 'MFA enroll (activate)');
      const app = new Authenticator(secret);

      await page.getByLabel('Then enter the 6-digit code').fill('000000');
      await page.getByRole('button', { name: 'Verify and finish' }).click();
      await page.waitForLoadState('load');
      assert.match(await page.getByRole('alert').innerText(), /not correct/);
      await shot(page, 'mfa-enroll-wrong-code');
      await page.getByLabel('Then enter the 6-digit code').fill(await app.nextCode());
      await page.getByRole('button', { name: 'Verify and finish' }).click();
      await page.waitForURL(`${server.orgUrl}/app/UserHome`);

      const again = await fresh();
      await signIn(again, login, PASSWORD);
      assert.match(await again.locator('h1').innerText(), /Enter your verification code/);
      await shot(again, 'mfa-verify');
      await assertAccessible(again, 'MFA verify');
      await again.getByLabel('Verification code').fill(await app.nextCode());
      await again.getByRole('button', { name: 'Verify' }).click();
      await again.waitForURL(`${server.orgUrl}/app/UserHome`);
    } finally {
      await admin.restore(snapshot);
    }
  });

  test('an expired password is changed on the page', async () => {
    const page = await fresh();
    const { id, login } = await newUser('pages-expired');
    await admin.apiOk('POST', `/api/v1/users/${id}/lifecycle/expire_password`);
    await signIn(page, login, PASSWORD);
    assert.match(await page.locator('h1').innerText(), /Your password has expired/);
    await shot(page, 'password-expired');
    await assertAccessible(page, 'password change');
    await page.getByLabel('Current password').fill(PASSWORD);
    await page.getByLabel('New password', { exact: true }).fill(PASSWORD_2);
    await page.getByLabel('Repeat the new password').fill(PASSWORD_2);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.waitForURL(`${server.orgUrl}/app/UserHome`);
    const next = await fresh();
    await signIn(next, login, PASSWORD_2);
    assert.equal(new URL(next.url()).pathname, '/app/UserHome', 'the new password works');
  });

  test('wrong passwords, then the account is locked', async () => {
    const snapshot = await admin.snapshot();
    try {
      await admin.passwordSettings((p) => {
        p.lockout.maxAttempts = 3;
        p.lockout.showLockoutFailures = true;
      });
      const page = await fresh();
      const { login } = await newUser('pages-lock');
      await signIn(page, login, 'not-the-password');
      assert.match(await page.getByRole('alert').innerText(), /username or password is not correct/);
      assert.equal(await page.getByLabel('Username').inputValue(), login, 'the username is kept');
      assert.equal(await page.getByLabel('Username').getAttribute('aria-invalid'), 'true');
      await shot(page, 'signin-wrong-password');
      await assertAccessible(page, 'sign-in page with an error');
      await signIn(page, login, 'not-the-password-2');
      await signIn(page, login, 'not-the-password-3');
      assert.match(await page.locator('h1').innerText(), /Your account is locked/);
      await shot(page, 'locked-out');
      await signIn(page, login, PASSWORD);
      assert.match(await page.locator('h1').innerText(), /Your account is locked/, 'even the right password');
    } finally {
      await admin.restore(snapshot);
    }
  });

  test('a form without its CSRF token is refused', async () => {
    const page = await fresh();
    const { login } = await newUser('pages-csrf');
    await page.goto(`${server.orgUrl}/login/login.htm`);
    await page.evaluate(() => document.querySelector('input[name="_csrf"]').remove());
    await page.getByLabel('Username').fill(login);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/login/login.htm') && r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    assert.equal(response.status(), 403);
    assert.match(await page.locator('h1').innerText(), /This form has expired/);
    const requestId = response.headers()['x-okta-request-id'];
    assert.ok(requestId && (await page.locator('main').innerText()).includes(requestId), 'the request id is shown');
    await shot(page, 'error-csrf');
    await assertAccessible(page, 'error page');
    const home = await page.goto(`${server.orgUrl}/app/UserHome`);
    assert.equal(new URL(home.url()).pathname, '/login/login.htm', 'not signed in');
  });

  test('an open-redirect fromURI is not followed; a local one is', async () => {
    const { login } = await newUser('pages-redirect');
    for (const evil of ['https://evil.example/phish', '//evil.example/phish', '/\\evil.example/phish']) {
      const page = await fresh();
      await signIn(page, login, PASSWORD, `?fromURI=${encodeURIComponent(evil)}`);
      assert.equal(page.url(), `${server.orgUrl}/app/UserHome`, `fromURI ${evil} must not be followed`);
    }
    const page = await fresh();
    await signIn(page, login, PASSWORD, `?fromURI=${encodeURIComponent('/app/UserHome/sessions')}`);
    assert.equal(page.url(), `${server.orgUrl}/app/UserHome/sessions`);
  });

  // The SP-initiated SAML flow through this page is in saml-browser.test.mjs (a pysaml2 SP).
});
