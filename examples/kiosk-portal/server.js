// A kiosk / shared-desk portal backend, written the way the one in the story was: the user types
// a username and password into *our* form, the backend checks them with Okta's primary
// authentication API, and sends the browser to the SAML app's embed link with the session token.
//
//   POST {LATCHKEY_URL}/api/v1/authn {username, password}  ->  {status: "SUCCESS", sessionToken}
//   302  EMBED_LINK?sessionToken=...   ->  the IdP sets its session cookie and posts a SAML
//                                          Response to the app
//
// Against Okta Classic the second person at the same browser arrives at the app as the first one
// (the first person's session cookie wins over the new token). Against Latchkey, unchanged, the
// token wins. See README.md.
//
// Configuration (environment):
//   LATCHKEY_URL        the IdP's base URL              (default http://127.0.0.1:8080)
//   EMBED_LINK          the SAML app's embed link       (from the app's _links.appLinks[0].href);
//                       when unset and LATCHKEY_API_TOKEN is set, the first active SAML app's
//   PORT                port to listen on               (default 3000; 0 = any free port)
//   HOST                address to listen on            (default 127.0.0.1)
//   PORTAL_URL          how browsers reach this portal  (default http://HOST:PORT), for fromURI
//   LATCHKEY_API_TOKEN  optional admin API token (SSWS): lets /logout end the user's sessions
//                       from this backend with DELETE /api/v1/users/{id}/sessions

const crypto = require('node:crypto');
const express = require('express');
const axios = require('axios');

const LATCHKEY_URL = (process.env.LATCHKEY_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const API_TOKEN = process.env.LATCHKEY_API_TOKEN || '';
const HOST = process.env.HOST || '127.0.0.1';
let EMBED_LINK = process.env.EMBED_LINK || '';
let PORTAL_URL = process.env.PORTAL_URL || '';

const latchkey = axios.create({
  baseURL: LATCHKEY_URL,
  timeout: 10000,
  headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
  validateStatus: () => true, // we look at every answer ourselves
});
const admin = () => ({ headers: { Authorization: `SSWS ${API_TOKEN}` } });

// Who signed in at this kiosk, by a random cookie of ours -> { userId, login }. Only used to show
// how a backend signs a user out (a real portal would keep this in its own session store).
const kioskSessions = new Map();

const app = express();
app.use(express.urlencoded({ extended: false }));

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function page(title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 34rem; margin: 3rem auto; padding: 0 1rem; color: #222; }
  label { display: block; margin-top: 1rem; font-weight: 600; }
  input { width: 100%; padding: .5rem; font-size: 1rem; box-sizing: border-box; }
  button { margin-top: 1.25rem; padding: .6rem 1.2rem; font-size: 1rem; }
  .error { color: #a00; font-weight: 600; }
  code { background: #f2f2f2; padding: 0 .25rem; }
</style></head>
<body><h1>${escape(title)}</h1>${body}</body></html>`;
}

function loginForm(message, username = '') {
  return page('Kiosk portal', `
<p>Sign in to open the app. This is a shared computer: whoever signs in here next gets their own account.</p>
${message ? `<p class="error" role="alert" id="error">${escape(message)}</p>` : ''}
<form method="post" action="/login">
  <label for="username">Username</label>
  <input id="username" name="username" autocomplete="username" value="${escape(username)}" required>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit">Sign in and open the app</button>
</form>
<p><a href="/logout">Sign out</a></p>`);
}

function kioskCookie(req) {
  const m = /(?:^|;\s*)kiosk=([0-9a-f]{32})/.exec(req.headers.cookie || '');
  return m ? m[1] : null;
}

app.get('/', (req, res) => {
  res.send(loginForm(''));
});

app.post('/login', async (req, res) => {
  const username = String(req.body.username || '');
  const password = String(req.body.password || '');
  let r;
  try {
    r = await latchkey.post('/api/v1/authn', { username, password });
  } catch (e) {
    console.error('authn request failed:', e.message);
    return res.status(502).send(loginForm('The sign-in service cannot be reached. Try again in a moment.', username));
  }
  if (r.status === 200 && r.data.status === 'SUCCESS') {
    const token = r.data.sessionToken;
    const user = r.data._embedded && r.data._embedded.user;
    if (user) {
      const id = crypto.randomBytes(16).toString('hex');
      kioskSessions.set(id, { userId: user.id, login: user.profile && user.profile.login });
      res.cookie('kiosk', id, { httpOnly: true, sameSite: 'lax', path: '/' });
    }
    // The line from the story. With Latchkey the token wins over whatever session this browser had.
    return res.redirect(EMBED_LINK + '?sessionToken=' + token);
  }
  if (r.status === 200) {
    // MFA_REQUIRED, PASSWORD_EXPIRED, LOCKED_OUT, ...: not handled by this small portal.
    return res.status(401).send(loginForm(`Sign-in needs another step (${r.data.status}); use the app's own sign-in page.`, username));
  }
  if (r.status === 429) {
    return res.status(429).send(loginForm('Too many attempts. Wait a few seconds and try again.', username));
  }
  return res.status(401).send(loginForm('Sign-in failed: check the username and password.', username));
});

function logoutPage(req, message) {
  const who = kioskSessions.get(kioskCookie(req));
  const signout = `${LATCHKEY_URL}/login/signout?fromURI=${encodeURIComponent(PORTAL_URL + '/')}`;
  return page('Sign out', `
${message ? `<p id="result" role="status">${escape(message)}</p>` : ''}
<h2>From this backend</h2>
<p>The portal calls <code>DELETE /api/v1/users/{id}/sessions</code> with its API token. That ends every
Latchkey session of ${who ? `<strong>${escape(who.login)}</strong>` : 'the user who signed in here'}, in every browser.</p>
${API_TOKEN && who
    ? '<form method="post" action="/logout"><button type="submit">End the sessions from the backend</button></form>'
    : `<p><em>${API_TOKEN ? 'Nobody has signed in through this portal in this browser.' : 'Set LATCHKEY_API_TOKEN to enable this.'}</em></p>`}
<h2>From this browser</h2>
<p>A top-level visit to Latchkey's sign-out URL ends the session this browser holds and comes back here
(when this portal's origin is a trusted origin with the REDIRECT scope).</p>
<p><a id="browser-signout" href="${escape(signout)}">Sign out of Latchkey in this browser</a></p>
<p><a href="/">Back to the kiosk</a></p>`);
}

app.get('/logout', (req, res) => {
  res.send(logoutPage(req, ''));
});

app.post('/logout', async (req, res) => {
  const id = kioskCookie(req);
  const who = kioskSessions.get(id);
  if (!API_TOKEN || !who) return res.status(400).send(logoutPage(req, 'Nothing to do.'));
  let r;
  try {
    r = await latchkey.delete(`/api/v1/users/${encodeURIComponent(who.userId)}/sessions`, admin());
  } catch (e) {
    console.error('session revocation failed:', e.message);
    return res.status(502).send(logoutPage(req, 'The sign-in service cannot be reached.'));
  }
  if (r.status !== 204) {
    console.error('DELETE /api/v1/users/{id}/sessions ->', r.status, JSON.stringify(r.data));
    return res.status(502).send(logoutPage(req, `Latchkey answered ${r.status}.`));
  }
  kioskSessions.delete(id);
  res.clearCookie('kiosk', { path: '/' });
  res.send(page('Signed out', `<p id="result" role="status">Signed out: every Latchkey session of ${escape(who.login)} has ended.</p><p><a href="/">Back to the kiosk</a></p>`));
});

// Without EMBED_LINK, look the app up once with the API token (handy with `latchkey serve --demo`).
async function findEmbedLink() {
  const r = await latchkey.get('/api/v1/apps?limit=200', admin());
  if (r.status !== 200) throw new Error(`GET /api/v1/apps -> ${r.status} ${JSON.stringify(r.data)}`);
  const saml = r.data.find((a) => a.signOnMode === 'SAML_2_0' && a.status === 'ACTIVE' && a._links && a._links.appLinks && a._links.appLinks.length);
  if (!saml) throw new Error('no active SAML app with an embed link');
  console.log(`Using the embed link of "${saml.label}"`);
  return saml._links.appLinks[0].href;
}

async function main() {
  if (!EMBED_LINK && API_TOKEN) EMBED_LINK = await findEmbedLink();
  if (!EMBED_LINK) {
    console.error('Set EMBED_LINK to the SAML app\'s embed link (or LATCHKEY_API_TOKEN to look it up).');
    process.exit(2);
  }
  const server = app.listen(Number(process.env.PORT || 3000), HOST, (error) => {
    if (error) {
      console.error(`Kiosk portal cannot listen on ${HOST}:${process.env.PORT || 3000}: ${error.message}`);
      process.exit(1);
    }
    const { port } = server.address();
    if (!PORTAL_URL) PORTAL_URL = `http://${HOST.includes(':') ? `[${HOST}]` : HOST}:${port}`;
    console.log(`Kiosk portal listening on ${PORTAL_URL} (IdP ${LATCHKEY_URL}, app ${EMBED_LINK})`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
