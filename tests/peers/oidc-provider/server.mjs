// An independent OpenID Connect provider for authgate's tests and benchmarks.
//
// node-oidc-provider (panva) configured from one JSON document, given as the
// OIDC_PEER_CONFIG environment variable, as argv[2], or as argv[2] = "@path"
// naming a JSON file. Prints exactly one line "READY <issuer>" on stdout once
// it listens; everything else goes to stderr.
//
// Config (every key optional):
//   host, port            where to listen (port 0 = any free port; default 0)
//   issuer                default http://<host>:<port>
//   clients               [{client_id, client_secret, redirect_uris, grant_types,
//                           token_endpoint_auth_method, scope, ...}] (client metadata)
//   adapter               "map" (default): live payload objects kept by reference
//                         in a Map: no serialization, no persistence, no LRU
//                         eviction, expiry checked on read. "sqlite": a SQL adapter
//                         persisted in SQLite (better-sqlite3): one table keyed by
//                         (model, id), the payload as JSON text, journal_mode=WAL,
//                         synchronous=NORMAL, busy_timeout=5000 and the cache,
//                         mmap and autocheckpoint tuning of authgate's own SQLite
//                         store. "lru": oidc-provider's own development
//                         adapter (an LRU of 1,000 entries)
//   sqlitePath            the "sqlite" adapter's database file (an absolute path:
//                         the peer runs in its install directory); kept on exit.
//                         Default: a fresh file in a new temporary directory,
//                         removed on exit
//   rotateRefreshToken    true (default): every refresh rotates; false: never;
//                         "default": oidc-provider's own policy
//   pkceRequired          require PKCE (S256) from every client (default: public
//                         clients only, as oidc-provider does)
//   idTokenSigningAlg     RS256 (default, as most upstream IdPs) or ES256
//   scopes                extra scope names (e.g. for client_credentials)
//   accounts              {accountId: {extra claims}}; any login name is accepted
//   ttl                   {AccessToken: 3600, RefreshToken: 1209600, ...} in seconds
//   testApi               true: POST /__peer/refresh-tokens mints refresh tokens
//                         without a login (benchmarks, fast test setup)
//
// Logins: devInteractions. GET /interaction/<uid> renders a login form (any
// login, any password) and then a consent form; tests submit them with httpx.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Provider from 'oidc-provider';

function loadConfig() {
  let raw = process.env.OIDC_PEER_CONFIG ?? process.argv[2] ?? '{}';
  if (raw.startsWith('@')) raw = readFileSync(raw.slice(1), 'utf8');
  try {
    return JSON.parse(raw);
  } catch (err) {
    console.error(`oidc-provider peer: config is not JSON: ${err.message}`);
    process.exit(2);
  }
}

const config = loadConfig();
const host = config.host ?? '127.0.0.1';
const epoch = () => Math.floor(Date.now() / 1000);

// --- adapter "map": live objects in a Map, no eviction (DESIGN.md §5) ---------

const storage = new Map(); // key -> {payload, expiresAt}
const grantIndex = new Map(); // grantId -> Set of keys
const uidIndex = new Map(); // session uid -> id
const userCodeIndex = new Map(); // user code -> id
const grantable = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
]);

class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    storage.set(key, { payload, expiresAt });
    if (grantable.has(this.model) && payload.grantId) {
      let members = grantIndex.get(payload.grantId);
      if (!members) grantIndex.set(payload.grantId, (members = new Set()));
      members.add(key);
    }
    if (this.model === 'Session' && payload.uid) uidIndex.set(payload.uid, id);
    if (payload.userCode) userCodeIndex.set(payload.userCode, id);
  }

  async find(id) {
    const key = this.key(id);
    const entry = storage.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      storage.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    const id = uidIndex.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = userCodeIndex.get(userCode);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const entry = storage.get(this.key(id));
    if (entry) entry.payload.consumed = epoch();
  }

  async destroy(id) {
    const key = this.key(id);
    const entry = storage.get(key);
    storage.delete(key);
    if (entry?.payload.grantId) grantIndex.get(entry.payload.grantId)?.delete(key);
  }

  async revokeByGrantId(grantId) {
    for (const key of grantIndex.get(grantId) ?? []) storage.delete(key);
    grantIndex.delete(grantId);
  }
}

// --- adapter "sqlite": persisted in SQLite, as authgate's store is (issue 2) ---
//
// Shaped like the SQL adapters oidc-provider's examples describe: one table
// keyed by (model, id), the payload serialized as JSON text, the columns the
// lookups need (grantId, uid, userCode) indexed, an expiry column. better-sqlite3
// is synchronous: every call is one statement in its own transaction, committed
// (WAL, synchronous=NORMAL) before it returns. Expired rows are not found; nothing
// purges them (a test's or a benchmark's database is thrown away).

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS oidc_payload (
    model     TEXT NOT NULL,
    id        TEXT NOT NULL,
    payload   TEXT NOT NULL,   -- JSON
    grantId   TEXT,
    uid       TEXT,
    userCode  TEXT,
    expiresAt INTEGER,         -- epoch milliseconds; NULL: never
    PRIMARY KEY (model, id)
  );
  CREATE INDEX IF NOT EXISTS oidc_payload_grant ON oidc_payload (grantId) WHERE grantId IS NOT NULL;
  CREATE INDEX IF NOT EXISTS oidc_payload_uid ON oidc_payload (uid) WHERE uid IS NOT NULL;
  CREATE INDEX IF NOT EXISTS oidc_payload_user_code ON oidc_payload (userCode) WHERE userCode IS NOT NULL;
`;

const LIVE = '(expiresAt IS NULL OR expiresAt > ?)';

async function sqliteAdapter(path) {
  const { default: Database } = await import('better-sqlite3');
  const tempDir = path ? undefined : mkdtempSync(join(tmpdir(), 'oidc-peer-sqlite-'));
  const db = new Database(path ?? join(tempDir, 'oidc-provider.db'));
  process.on('exit', () => {
    db.close();
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  });
  if (db.pragma('journal_mode = WAL', { simple: true }) !== 'wal') {
    throw new Error(`${db.name}: journal_mode=WAL refused`);
  }
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  // authgate's store tuning too (src/authgate/store/sqlite.py _TUNING), so that the
  // reference is not slower for want of it: fewer checkpoints, hot pages cached.
  db.pragma('wal_autocheckpoint = 10000');
  db.pragma('cache_size = -65536');
  db.pragma('mmap_size = 268435456');
  db.exec(SCHEMA);

  const select = (where) => db.prepare(
    `SELECT payload FROM oidc_payload WHERE model = ? AND ${where} = ? AND ${LIVE}`,
  ).pluck();
  const sql = {
    upsert: db.prepare(`
      INSERT INTO oidc_payload (model, id, payload, grantId, uid, userCode, expiresAt)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (model, id) DO UPDATE SET
        payload = excluded.payload, grantId = excluded.grantId, uid = excluded.uid,
        userCode = excluded.userCode, expiresAt = excluded.expiresAt`),
    find: select('id'),
    findByUid: select('uid'),
    findByUserCode: select('userCode'),
    // CAST: better-sqlite3 binds a JS number as a REAL, which json_set would write as 1796000000.0
    consume: db.prepare(`UPDATE oidc_payload SET payload = json_set(payload, '$.consumed',
      CAST(? AS INTEGER)) WHERE model = ? AND id = ?`),
    destroy: db.prepare('DELETE FROM oidc_payload WHERE model = ? AND id = ?'),
    // oidc-provider calls this once per grant-bound model (helpers/revoke.js).
    revokeByGrantId: db.prepare('DELETE FROM oidc_payload WHERE model = ? AND grantId = ?'),
  };
  const parsed = (text) => (text === undefined ? undefined : JSON.parse(text));

  return class SqliteAdapter {
    constructor(model) {
      this.model = model;
    }

    async upsert(id, payload, expiresIn) {
      const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null;
      sql.upsert.run(this.model, id, JSON.stringify(payload), payload.grantId ?? null,
        payload.uid ?? null, payload.userCode ?? null, expiresAt);
    }

    async find(id) {
      return parsed(sql.find.get(this.model, id, Date.now()));
    }

    async findByUid(uid) {
      return parsed(sql.findByUid.get(this.model, uid, Date.now()));
    }

    async findByUserCode(userCode) {
      return parsed(sql.findByUserCode.get(this.model, userCode, Date.now()));
    }

    async consume(id) {
      sql.consume.run(epoch(), this.model, id);
    }

    async destroy(id) {
      sql.destroy.run(this.model, id);
    }

    async revokeByGrantId(grantId) {
      sql.revokeByGrantId.run(this.model, grantId);
    }
  };
}

// --- keys, accounts, clients ------------------------------------------------

function jwk(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: `${alg}-${randomUUID()}`, alg, use: 'sig' };
}

const jwks = {
  keys: [
    jwk('rsa', { modulusLength: 2048 }, 'RS256'),
    jwk('ec', { namedCurve: 'P-256' }, 'ES256'),
  ],
};

const accounts = config.accounts ?? {};

async function findAccount(_ctx, sub) {
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        email: `${sub}@example.test`,
        email_verified: true,
        name: sub,
        preferred_username: sub,
        ...accounts[sub],
      };
    },
  };
}

function normalizeClient(client) {
  const grants = client.grant_types ?? ['authorization_code', 'refresh_token'];
  const out = { grant_types: grants, ...client };
  if (!grants.includes('authorization_code')) {
    out.response_types ??= [];
    out.redirect_uris ??= [];
  }
  if (config.idTokenSigningAlg) {
    out.id_token_signed_response_alg ??= config.idTokenSigningAlg;
  }
  return out;
}

const rotate = config.rotateRefreshToken ?? true;

const providerConfig = {
  clients: (config.clients ?? []).map(normalizeClient),
  jwks,
  findAccount,
  cookies: { keys: [randomUUID(), randomUUID()] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', ...(config.scopes ?? [])],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // A confidential client may introspect any token; a public one only its own.
      allowedPolicy: async (ctx, client, token) => (
        client.clientAuthMethod !== 'none' || token.clientId === client.clientId
      ),
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
    },
  },
  pkce: {
    required: (ctx, client) => Boolean(config.pkceRequired) || client.clientAuthMethod === 'none',
  },
  issueRefreshToken: async (ctx, client, code) => (
    client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access')
  ),
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    ClientCredentials: 600,
    Grant: 14 * 24 * 3600,
    IdToken: 3600,
    Interaction: 3600,
    RefreshToken: 14 * 24 * 3600,
    Session: 14 * 24 * 3600,
    ...config.ttl,
  },
};
if (rotate !== 'default') providerConfig.rotateRefreshToken = Boolean(rotate);
const adapter = config.adapter ?? 'map';
if (adapter === 'map') {
  providerConfig.adapter = MapAdapter;
} else if (adapter === 'sqlite') {
  try {
    providerConfig.adapter = await sqliteAdapter(config.sqlitePath);
  } catch (err) {
    console.error(`oidc-provider peer: cannot open the SQLite adapter: ${err.stack ?? err}`);
    process.exit(2);
  }
} else if (adapter !== 'lru') {
  console.error(`oidc-provider peer: unknown adapter ${JSON.stringify(adapter)} (map, sqlite, lru)`);
  process.exit(2);
}

// --- test API: refresh tokens without a login ---------------------------------

async function mintRefreshTokens(provider, body) {
  const client = await provider.Client.find(String(body.client_id));
  if (!client) throw new Error(`unknown client ${body.client_id}`);
  const accountId = String(body.account ?? 'bench-user');
  const scope = String(body.scope ?? 'openid offline_access');
  const count = Math.min(Number(body.count ?? 1), 1_000_000);
  const tokens = [];
  for (let i = 0; i < count; i += 1) {
    // One grant per token, so that reusing one never revokes the others.
    const grant = new provider.Grant({ accountId, clientId: client.clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const rt = new provider.RefreshToken({
      accountId,
      authTime: epoch(),
      client,
      grantId,
      gty: 'authorization_code',
      rotations: 0,
      scope,
    });
    tokens.push(await rt.save());
  }
  return tokens;
}

function testApi(provider, req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    try {
      if (req.method !== 'POST' || req.url !== '/__peer/refresh-tokens') {
        res.writeHead(404).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      const tokens = await mintRefreshTokens(provider, body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ refresh_tokens: tokens }));
    } catch (err) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: String(err.message ?? err) }));
    }
  });
}

// --- listen, then build the provider (the issuer needs the port) ----------------

let handler = (req, res) => res.writeHead(503).end();
const server = http.createServer((req, res) => handler(req, res));
server.keepAliveTimeout = 65_000;

server.listen(config.port ?? 0, host, () => {
  const { port } = server.address();
  const issuer = config.issuer ?? `http://${host}:${port}`;
  let provider;
  try {
    provider = new Provider(issuer, providerConfig);
  } catch (err) {
    console.error(`oidc-provider peer: bad configuration: ${err.stack ?? err}`);
    process.exit(2);
  }
  const callback = provider.callback();
  handler = config.testApi
    ? (req, res) => (req.url.startsWith('/__peer/') ? testApi(provider, req, res) : callback(req, res))
    : callback;
  process.stdout.write(`READY ${issuer}\n`);
});

server.on('error', (err) => {
  console.error(`oidc-provider peer: cannot listen: ${err.message}`);
  process.exit(2);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
