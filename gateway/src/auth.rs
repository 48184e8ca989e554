//! Who is calling: OAuth 2.0 bearer tokens — JWTs (RFC 9068 access tokens) signed by the
//! issuer with RS256 or ES256 (RS384/512, PS256, ES384 too), verified with `jsonwebtoken`
//! against the issuer's published keys. The keys come from its
//! `.well-known/openid-configuration` (`jwks_uri`), are cached, and are fetched again when a
//! token names a key id the cache does not have (at most every [`REFRESH_EVERY`]), so the
//! issuer rotates keys without a gateway restart. `iss`, `aud` and `exp` are required,
//! `exp`/`nbf` checked with [`LEEWAY`]; `alg: none` and HMAC are refused (a public key is never
//! an HMAC secret).
//!
//! A token's claims name the caller: `arus_role` (`member`, `provider`, `partner`,
//! `internal`) with `arus_member_id`, `arus_provider_id` or `arus_partner_id` for the first
//! three; `scope` (space-separated); `client_id` (or `azp`, else `sub`) for the client.
//!
//! [`DevIssuer`] is the second implementation of the key source: an issuer inside the process
//! with a fresh key, for `arus demo --serve` and the tests, clearly development only.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// Least time between two fetches of the issuer's keys (a stream of tokens with made-up key
/// ids cannot turn into a stream of fetches).
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);

/// The audience tokens are for, unless configured otherwise (the seed's).
pub const DEFAULT_AUDIENCE: &str = "api.healthinsurance.com";

/// Signature algorithms accepted: asymmetric only.
const ACCEPTED: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];

/// Where an issuer's current signing keys come from.
pub trait KeySource: Send + Sync {
    /// The issuer's keys now.
    fn keys(&self) -> Result<JwkSet, String>;
}

/// Keys found through the issuer's discovery document, over HTTP(S).
pub struct Discovered {
    issuer: String,
    agent: ureq::Agent,
}

impl Discovered {
    /// The issuer at `issuer` (its URL, as tokens name it in `iss`).
    pub fn new(issuer: &str) -> Self {
        let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().new_agent();
        Discovered { issuer: issuer.trim_end_matches('/').to_owned(), agent }
    }

    fn get(&self, url: &str) -> Result<String, String> {
        let mut response = self.agent.get(url).call().map_err(|e| format!("GET {url}: {e}"))?;
        response.body_mut().with_config().limit(1 << 20).read_to_string().map_err(|e| format!("GET {url}: {e}"))
    }
}

impl KeySource for Discovered {
    fn keys(&self) -> Result<JwkSet, String> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let discovery: Discovery =
            serde_json::from_str(&self.get(&url)?).map_err(|e| format!("{url}: not a discovery document: {e}"))?;
        // The document must be the issuer's own (OpenID Connect Discovery §4.3).
        if discovery.issuer.trim_end_matches('/') != self.issuer {
            return Err(format!("{url} names another issuer, {}", discovery.issuer));
        }
        let keys = self.get(&discovery.jwks_uri)?;
        serde_json::from_str(&keys).map_err(|e| format!("{}: not a JWK set: {e}", discovery.jwks_uri))
    }
}

/// Verifies bearer tokens of one issuer for one audience.
pub struct Authenticator {
    issuer: String,
    audience: String,
    source: Box<dyn KeySource>,
    keys: RwLock<Keys>,
    refresh_every: Duration,
    /// Tokens verified already, until they expire: a client sends the same token with every
    /// request, and its signature does not change (key rotation leaves it valid; a JWT is not
    /// revoked before `exp`). Keyed by the whole token.
    verified: std::sync::Mutex<std::collections::HashMap<String, (Caller, u64)>>,
}

/// Verified tokens remembered, at most (then forgotten all at once: a bound, not a policy).
const VERIFIED_KEPT: usize = 16_384;

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// Why a token was not accepted: words for `error_description`, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(pub &'static str);

const UNKNOWN_KEY: Rejected = Rejected("the token is signed with a key the issuer does not publish");

impl Authenticator {
    /// Tokens of `issuer` for `audience`, its keys from `source` (fetched now: an issuer that
    /// cannot be reached is an error at start, not a 401 for every caller later).
    pub fn new(issuer: &str, audience: &str, source: Box<dyn KeySource>) -> Result<Self, String> {
        let set = source.keys()?;
        Ok(Authenticator {
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            source,
            keys: RwLock::new(Keys { set, fetched: Instant::now() }),
            refresh_every: REFRESH_EVERY,
            verified: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Fetches the keys again on an unknown key id at most every `every` (default
    /// [`REFRESH_EVERY`]).
    pub fn refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
    }

    /// Tokens of the issuer at `issuer`, found by discovery.
    pub fn discover(issuer: &str, audience: &str) -> Result<Self, String> {
        Self::new(issuer, audience, Box::new(Discovered::new(issuer)))
    }

    /// The caller a token names, or why it is refused. May fetch the issuer's keys (blocking)
    /// when the token's key is not known yet.
    pub fn verify(&self, token: &str) -> Result<Caller, Rejected> {
        self.check(token, true)?.ok_or(UNKNOWN_KEY)
    }

    /// [`verify`](Self::verify) without fetching: `None` when the token's key is not among
    /// the keys known now (then `verify` may find it).
    pub fn verify_cached(&self, token: &str) -> Result<Option<Caller>, Rejected> {
        self.check(token, false)
    }

    fn check(&self, token: &str, fetch: bool) -> Result<Option<Caller>, Rejected> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some((caller, exp)) = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(token)
            && now < exp + LEEWAY.as_secs()
        {
            return Ok(Some(caller.clone()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected("the token is not a signed JWT"))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(Rejected("the token's algorithm is not accepted (asymmetric signatures only)"));
        }
        let kid = header.kid.as_deref().ok_or(Rejected("the token names no key (kid)"))?;
        let jwk = match self.known(kid) {
            Some(jwk) => jwk,
            None if !fetch => return Ok(None),
            None => {
                self.refresh();
                self.known(kid).ok_or(UNKNOWN_KEY)?
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| Rejected("the issuer's key cannot be read"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Rejected(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidAudience => "the token is for another audience",
                ErrorKind::InvalidIssuer => "the token is from another issuer",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (exp, iss, aud, sub)",
                ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key",
                _ => "the token cannot be verified",
            })
        })?;
        let exp = data.claims.exp;
        let caller = data.claims.caller()?;
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_KEPT {
            verified.clear();
        }
        verified.insert(token.to_owned(), (caller.clone(), exp));
        Ok(Some(caller))
    }

    fn known(&self, kid: &str) -> Option<Jwk> {
        let keys = self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.set.find(kid).cloned()
    }

    /// Fetches the keys again unless that was done less than `refresh_every` ago; a failed
    /// fetch keeps the keys there were.
    fn refresh(&self) {
        {
            let keys = self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            if keys.fetched.elapsed() < self.refresh_every {
                return;
            }
        }
        let mut keys = self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if keys.fetched.elapsed() < self.refresh_every {
            return;
        }
        keys.fetched = Instant::now();
        if let Ok(set) = self.source.keys() {
            keys.set = set;
        }
    }
}

/// A token's claims, as arus reads them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry, seconds since the epoch (checked by the validation; kept to forget a verified
    /// token when it expires).
    #[serde(default, skip_serializing)]
    pub exp: u64,
    /// The subject (for the client-credentials grant, the client).
    pub sub: String,
    /// RFC 9068's client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OpenID's authorized party, when `client_id` is not there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// Scopes, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `member`, `provider`, `partner` or `internal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arus_role: Option<String>,
    /// The member a `member` token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arus_member_id: Option<String>,
    /// The provider a `provider` token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arus_provider_id: Option<String>,
    /// The partner a `partner` token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arus_partner_id: Option<String>,
    /// `premium` for the premium rate-limit tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arus_tier: Option<String>,
}

impl Claims {
    fn caller(self) -> Result<Caller, Rejected> {
        let id = |value: Option<String>, missing: &'static str| {
            value.filter(|v| crate::commands::valid_id(v)).ok_or(Rejected(missing))
        };
        let role = match self.arus_role.as_deref() {
            Some("member") => Role::Member(id(self.arus_member_id, "a member token names no member")?),
            Some("provider") => Role::Provider(id(self.arus_provider_id, "a provider token names no provider")?),
            Some("partner") => Role::Partner(id(self.arus_partner_id, "a partner token names no partner")?),
            Some("internal") => Role::Internal,
            _ => return Err(Rejected("the token carries no role arus knows")),
        };
        let scopes = self.scope.as_deref().unwrap_or("").split_whitespace().map(str::to_owned).collect();
        let client_id = self.client_id.or(self.azp).unwrap_or_else(|| self.sub.clone());
        let premium = self.arus_tier.as_deref() == Some("premium");
        Ok(Caller { subject: self.sub, client_id, role, scopes, premium })
    }
}

/// A caller with a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's subject.
    pub subject: String,
    /// The client the token was issued to (rate limits and idempotency keys are per client).
    pub client_id: String,
    /// What the caller is.
    pub role: Role,
    /// What the token allows.
    pub scopes: Vec<String>,
    /// In the premium rate-limit tier.
    pub premium: bool,
}

impl Caller {
    /// Whether the token carries `scope` (or `admin.all`, which allows everything).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == "admin.all")
    }
}

/// What a caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A member: itself and, as a subscriber, its family.
    Member(String),
    /// A provider: eligibility of anyone, its own claims and authorizations.
    Provider(String),
    /// A partner system.
    Partner(String),
    /// The insurer's own staff and services.
    Internal,
}

impl Role {
    /// The role's name, as in `arus_role`.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Member(_) => "member",
            Role::Provider(_) => "provider",
            Role::Partner(_) => "partner",
            Role::Internal => "internal",
        }
    }
}

/// An issuer inside this process, for development and tests only: a fresh P-256 key each
/// start, tokens signed with it (ES256) for whatever claims are asked for.
pub struct DevIssuer {
    issuer: String,
    key: EncodingKey,
    jwk: Jwk,
}

impl DevIssuer {
    /// A development issuer named `issuer` (its `iss`).
    pub fn new(issuer: &str) -> Result<Self, String> {
        let pair = rcgen::KeyPair::generate().map_err(|e| format!("a development key: {e}"))?;
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|e| e.to_string())?;
        jwk.common.key_id = Some(format!("dev-{:08x}", clock_nanos()));
        Ok(DevIssuer { issuer: issuer.to_owned(), key, jwk })
    }

    /// The issuer's name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A token for `audience` with `claims`, valid for `ttl` from now.
    pub fn token(&self, audience: &str, claims: &Claims, ttl: Duration) -> String {
        #[derive(Serialize)]
        struct Signed<'a> {
            #[serde(flatten)]
            claims: &'a Claims,
            iss: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
        }
        let now = jsonwebtoken::get_current_timestamp();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = self.jwk.common.key_id.clone();
        header.typ = Some("at+jwt".to_owned());
        let signed = Signed { claims, iss: &self.issuer, aud: audience, iat: now, exp: now + ttl.as_secs() };
        jsonwebtoken::encode(&header, &signed, &self.key).expect("an ES256 key signs")
    }

    /// Its keys, for an [`Authenticator`] (another handle on the same key).
    pub fn key_source(&self) -> Box<dyn KeySource> {
        Box::new(DevKeys(JwkSet { keys: vec![self.jwk.clone()] }))
    }

    /// An authenticator of this issuer's tokens for `audience`.
    pub fn authenticator(&self, audience: &str) -> Authenticator {
        Authenticator::new(&self.issuer, audience, self.key_source()).expect("in-process keys are always there")
    }
}

struct DevKeys(JwkSet);

impl KeySource for DevKeys {
    fn keys(&self) -> Result<JwkSet, String> {
        Ok(self.0.clone())
    }
}

/// A key id's distinguishing part: the clock's nanoseconds (ids need not be secret).
fn clock_nanos() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}

/// The claims of a development token for a role: `member` (M1 unless `id`), `provider`,
/// `partner`, `internal` (every scope).
pub fn dev_claims(role: &str, id: &str) -> Claims {
    let (scope, member, provider, partner) = match role {
        "member" => ("member.read claims.read", Some(id), None, None),
        "provider" => ("claims.read claims.write provider.read member.read", None, Some(id), None),
        "partner" => ("claims.write member.read", None, None, Some(id)),
        _ => ("claims.read claims.write member.read member.write provider.read admin.all", None, None, None),
    };
    Claims {
        exp: 0,
        sub: format!("dev-{role}-{id}"),
        client_id: Some(format!("dev-{role}-{id}")),
        azp: None,
        scope: Some(scope.to_owned()),
        arus_role: Some(if matches!(role, "member" | "provider" | "partner") { role } else { "internal" }.to_owned()),
        arus_member_id: member.map(str::to_owned),
        arus_provider_id: provider.map(str::to_owned),
        arus_partner_id: partner.map(str::to_owned),
        arus_tier: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verified token is remembered until it expires, and only that token: a token one
    /// character off is verified (and refused) on its own.
    #[test]
    fn a_verified_token_is_remembered_not_its_look_alikes() {
        let issuer = DevIssuer::new("arus-test").expect("an issuer");
        let authenticator = issuer.authenticator(DEFAULT_AUDIENCE);
        let token = issuer.token(DEFAULT_AUDIENCE, &dev_claims("member", "M1"), Duration::from_secs(600));
        let first = authenticator.verify(&token).expect("verified");
        assert_eq!(authenticator.verify_cached(&token), Ok(Some(first.clone())));
        assert_eq!(authenticator.verified.lock().expect("a lock").len(), 1);
        let mut forged = token.clone();
        forged.pop();
        assert!(authenticator.verify(&forged).is_err(), "a look-alike is verified on its own");
        // What is remembered is answered without a signature check while it has not expired,
        // and not after: a planted entry for text that is no token shows which.
        let now = jsonwebtoken::get_current_timestamp();
        authenticator.verified.lock().expect("a lock").insert("planted".to_owned(), (first.clone(), now + 60));
        assert_eq!(authenticator.verify_cached("planted"), Ok(Some(first.clone())));
        authenticator.verified.lock().expect("a lock").insert("planted".to_owned(), (first, now - 3_600));
        assert!(authenticator.verify_cached("planted").is_err(), "an expired entry is not used");
    }
}
