// A real OpenID Connect provider for doorman's tests: panva's oidc-provider (OpenID-certified),
// configured from a JSON file and served over plain HTTP on loopback. Started and stopped by
// tests/support/oidc.rs; see that file for the config it writes.
//
//   node tests/oidc/provider.mjs CONFIG.json
//
// CONFIG: { port, issuer?, clients: [client metadata], accounts: { login: { password, claims } },
//           signing_alg?: "RS256" | "ES256", jwks?: { keys: [private JWKs] } }
//
// Prints exactly one line `ready <port>` on stdout once it listens; everything else goes to
// stderr. Exits when stdin closes (the test process that piped it died) or on SIGTERM.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

// oidc-provider prints its notices with console.info, which is stdout: the test reads stdout for
// the `ready` line, so nothing else may land there.
console.info = (...args) => console.error(...args);

const { default: Provider } = await import('oidc-provider');

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts ?? {};
const signingAlg = config.signing_alg ?? 'RS256';

// The account behind a login name, and behind a `sub` (what oidc-provider calls accountId).
const bySub = new Map(
  Object.entries(accounts).map(([login, account]) => [account.claims?.sub ?? login, account]),
);

// Everything the provider stores, in one Map the test endpoint can count. oidc-provider's own
// memory adapter keeps its store private (and warns on every start).
const store = new Map();
class Adapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const expires = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { payload, expires });
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expires <= Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    for (const [key, { payload }] of store) {
      if (key.startsWith(`${this.model}:`) && payload.uid === uid) return this.find(payload.jti);
    }
    return undefined;
  }

  async findByUserCode() { return undefined; }

  async consume(id) {
    const payload = await this.find(id);
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const [key, { payload }] of store) {
      if (payload.grantId === grantId) store.delete(key);
    }
  }
}

// Signed-in sessions only: the provider also stores anonymous ones (e.g. a logout page's xsrf
// secret for a browser with no session), which are no sign-in a test could be asking about.
function liveSessions() {
  let n = 0;
  for (const [key, { payload, expires }] of store) {
    if (key.startsWith('Session:') && expires > Date.now() && payload.accountId) n += 1;
  }
  return n;
}

function signingKeys() {
  if (config.jwks) return config.jwks;
  const { privateKey } = signingAlg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, alg: signingAlg, use: 'sig', kid: crypto.randomUUID() }] };
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginForm(res, uid, error, login = '') {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<input name="login" value="${escape(login)}" autofocus>
<input name="password" type="password">
<button type="submit">Sign in</button>
</form>
</body></html>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Grant what the authorization request asked for, so there is never a consent step: sign-in
// goes from the form straight back to the client, and a second authorize in the same browser
// straight through.
async function grantAll(provider, interaction, accountId) {
  const { prompt: { details }, params } = interaction;
  const grant = interaction.grantId
    ? await provider.Grant.find(interaction.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(details.missingOIDCScope?.join(' ') ?? params.scope);
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

async function interaction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction uid mismatch');

  if (details.prompt.name === 'consent') {
    const grantId = await grantAll(provider, details, details.session.accountId);
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }

  if (action !== 'login' || req.method !== 'POST') {
    loginForm(res, uid);
    return;
  }

  const form = await readForm(req);
  const login = form.get('login') ?? '';
  const account = Object.hasOwn(accounts, login) ? accounts[login] : undefined;
  if (!account || account.password !== form.get('password')) {
    loginForm(res, uid, 'Wrong login or password.', login);
    return;
  }
  const accountId = account.claims?.sub ?? login;
  const grantId = await grantAll(provider, details, accountId);
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

const server = http.createServer();
server.on('error', (err) => {
  console.error(`provider: ${err.stack ?? err}`);
  process.exit(1);
});

// The issuer has to be known before the provider exists, and with port 0 only after binding.
server.listen(config.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = config.issuer ?? `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    adapter: Adapter,
    clients: config.clients ?? [],
    jwks: signingKeys(),
    clientDefaults: {
      grant_types: ['authorization_code'],
      id_token_signed_response_alg: signingAlg,
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    // Doorman reads the ID token, not userinfo: the scopes' claims go into it.
    conformIdTokenClaims: false,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    scopes: ['openid'],
    responseTypes: ['code'],
    pkce: { required: () => true },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // Fixed lifetimes (seconds): the defaults are functions that log a notice on each first use.
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      Grant: 14 * 24 * 3600,
      IdToken: 3600,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
    },
    async findAccount(ctx, sub) {
      const account = bySub.get(sub);
      if (!account) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...account.claims }) };
    },
    async renderError(ctx, out, error) {
      console.error(`provider: ${error?.stack ?? error}`);
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><body><h1>oops! something went wrong</h1>${
        Object.entries(out).map(([k, v]) => `<pre>${escape(k)}: ${escape(v)}</pre>`).join('')
      }</body></html>`;
    },
  });
  provider.on('server_error', (ctx, err) => console.error(`provider: ${err.stack ?? err}`));

  const handle = provider.callback();
  server.on('request', async (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    try {
      if (path === '/test/sessions') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ sessions: liveSessions() }));
        return;
      }
      const match = path.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
      if (match) {
        await interaction(provider, req, res, match[1], match[2]);
        return;
      }
      handle(req, res);
    } catch (err) {
      console.error(`provider: ${req.method} ${req.url}: ${err.stack ?? err}`);
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`error: ${err.message}\n`);
    }
  });

  process.stdout.write(`ready ${port}\n`);
});

process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
