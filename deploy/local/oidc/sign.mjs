// Signs a JWT with one of the provider's own keys, for the gateway's security tests: tokens
// the provider would never issue (expired, for another audience, from another issuer) but
// signed with a key the gateway trusts, so only the claims make them wrong.
//
//   node sign.mjs --keys keys.json --alg RS256 --claims '{"sub":"x",...}'
//   node sign.mjs --keys keys.json --hmac-with-public-key --claims '{...}'
//
// The second signs with HS256 using the RSA key's *public* PEM as the secret (the classic
// key-confusion attack); the gateway must refuse it.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { SignJWT, importJWK } from 'jose';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]?.startsWith('--') ? 'true' : all[i + 1]]] : pairs), []),
);
const keys = JSON.parse(fs.readFileSync(args.keys, 'utf8')).keys;
const claims = JSON.parse(args.claims);

if (args['hmac-with-public-key']) {
  const rsa = keys.find((k) => k.kty === 'RSA');
  const publicPem = crypto.createPublicKey({ key: rsa, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', kid: rsa.kid, typ: 'at+jwt' })
    .sign(new TextEncoder().encode(publicPem));
  console.log(token);
} else {
  const alg = args.alg ?? 'RS256';
  const jwk = keys.find((k) => k.alg === alg);
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg, kid: jwk.kid, typ: 'at+jwt' })
    .sign(await importJWK(jwk, alg));
  console.log(token);
}
