#!/usr/bin/env bash
# A real OpenID provider for the gateway's security tests: the certified `oidc-provider`
# package from npm, installed under the cache and started on 127.0.0.1:$OIDC_PORT (9400) with
# an RSA and an EC signing key and one client per role (client-credentials grant), their
# secrets made at first start into $ARUS_CACHE/oidc/clients.json (never in the clone).
# Prints four lines for up.sh: the issuer, the clients file, the provider script (tests start
# a second provider from it to rotate keys, and sign crafted tokens with `sign.mjs` beside it),
# the keys file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib.sh"

OIDC_PROVIDER_VERSION=9.13.3
OIDC_PORT="${OIDC_PORT:-9400}"
root="$ARUS_CACHE/oidc-provider-$OIDC_PROVIDER_VERSION"
state="$ARUS_CACHE/oidc"
mkdir -p "$root" "$state"

if [[ ! -f "$root/node_modules/oidc-provider/package.json" ]]; then
  command -v node >/dev/null || apt_install nodejs npm
  command -v npm >/dev/null || die "npm not found (Debian: apt-get install npm)"
  say "installing oidc-provider@$OIDC_PROVIDER_VERSION from npm into $root"
  (cd "$root" && npm install --no-audit --no-fund --silent "oidc-provider@$OIDC_PROVIDER_VERSION" \
    >"$ARUS_LOGS/oidc-install.log" 2>&1) || die "npm install oidc-provider failed: see $ARUS_LOGS/oidc-install.log"
fi
# The script runs beside its node_modules (ES modules resolve packages from where they are).
cp "$here/oidc/provider.mjs" "$here/oidc/sign.mjs" "$root/"

issuer="http://127.0.0.1:$OIDC_PORT"
if port_open 127.0.0.1 "$OIDC_PORT"; then
  say "an OpenID provider already listens on $issuer"
else
  say "starting oidc-provider on $issuer (log: $ARUS_LOGS/oidc.log)"
  (
    cd "$root"
    nohup node provider.mjs --port "$OIDC_PORT" --keys "$state/keys.json" --clients "$state/clients.json" \
      >"$ARUS_LOGS/oidc.log" 2>&1 &
    echo $! >"$ARUS_CACHE/oidc.pid"
  )
  discovery() { curl -sf "$issuer/.well-known/openid-configuration" >/dev/null; }
  wait_until 30 "oidc-provider on $issuer" discovery || die "oidc-provider did not answer within 30 s: see $ARUS_LOGS/oidc.log"
fi
echo "$issuer"
echo "$state/clients.json"
echo "$root/provider.mjs"
echo "$state/keys.json"
