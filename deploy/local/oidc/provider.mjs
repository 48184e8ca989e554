// A real OpenID provider for the integration tests: the certified `oidc-provider` package
// (npm), issuing JWT access tokens by the client-credentials grant for one client per role.
//
//   node provider.mjs --port 9400 --keys keys.json --clients clients.json
//
// `keys.json`: the signing keys, private JWKs (made with fresh RSA and EC keys when the file
// does not exist; the first signs). `clients.json`: the clients and their secrets (made when
// missing, secrets random; tests read them from it). Prints `listening <issuer>` once up.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import Provider from 'oidc-provider';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const port = Number(args.port ?? 9400);
// The audience the gateway checks; resource indicators (RFC 8707) must be absolute URIs, so
// the indicator is its https:// form and the token's `aud` the bare name.
const audience = args.audience ?? 'api.healthinsurance.com';
const resource = `https://${audience}`;
const scopes = ['claims.read', 'claims.write', 'member.read', 'member.write', 'provider.read', 'admin.all'];

function privateJwk(type, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}` };
}

function loadOrMake(path, make) {
  if (path && fs.existsSync(path)) return JSON.parse(fs.readFileSync(path, 'utf8'));
  const value = make();
  if (path) fs.writeFileSync(path, JSON.stringify(value, null, 2), { mode: 0o600 });
  return value;
}

const keys = loadOrMake(args.keys, () => ({
  keys: [
    privateJwk('rsa', { modulusLength: 2048 }, 'RS256'),
    privateJwk('ec', { namedCurve: 'P-256' }, 'ES256'),
  ],
}));

// One client per role the gateway knows; `arus_*` metadata becomes claims of its tokens.
const secret = () => crypto.randomBytes(24).toString('base64url');
const client = (id, scope, claims) => ({
  client_id: id,
  client_secret: secret(),
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope,
  ...claims,
});
const clients = loadOrMake(args.clients, () => [
  client('member-m1', 'member.read claims.read', { arus_role: 'member', arus_member_id: 'M1' }),
  client('member-m2', 'member.read claims.read', { arus_role: 'member', arus_member_id: 'M2' }),
  client('provider-p1', 'claims.read claims.write provider.read member.read', { arus_role: 'provider', arus_provider_id: 'P1' }),
  client('provider-p2', 'claims.read claims.write provider.read member.read', { arus_role: 'provider', arus_provider_id: 'P2' }),
  client('partner-x1', 'claims.write member.read', { arus_role: 'partner', arus_partner_id: 'X1' }),
  client('internal-ops', scopes.join(' '), { arus_role: 'internal' }),
  client('internal-narrow', 'claims.read', { arus_role: 'internal' }),
]);

const signingAlg = args.alg ?? keys.keys[0].alg;
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients,
  jwks: keys,
  scopes,
  extraClientMetadata: { properties: ['arus_role', 'arus_member_id', 'arus_provider_id', 'arus_partner_id'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: scopes.join(' '),
        audience,
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: signingAlg } },
      }),
    },
  },
  async extraTokenClaims(ctx, token) {
    const found = await ctx.oidc.provider.Client.find(token.clientId);
    const claims = {};
    for (const name of ['arus_role', 'arus_member_id', 'arus_provider_id', 'arus_partner_id']) {
      if (found?.[name]) claims[name] = found[name];
    }
    return claims;
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
