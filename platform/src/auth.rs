//! Caller identity from `authorization: Bearer <JWT>` metadata, and the roles it carries.
//!
//! Verification keys: an HS256 shared secret (development: it can also mint), or — for services
//! that only verify — an RS256/ES256 public key (PEM) or a JWKS file (keys chosen by `kid`).
//! `exp` and `sub` are required; `nbf` is checked; `iss` and `aud` are checked when configured;
//! the clock leeway is configurable. Roles come from a configurable claim (`roles` by default;
//! a dotted path such as `realm_access.roles` reaches into an object; the value may be an array
//! of strings or one space-separated string, as OAuth `scope` is).
//!
//! The model: a token whose `sub` is a UUID is a *user* (participants and instructors are
//! users; which one they are for a course is decided by the domain and the read models). The
//! roles [`ROLE_SERVICE`] (the projections' calls to the event store) and [`ROLE_OPERATOR`]
//! (admin RPCs) are granted by the claim.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use uuid::Uuid;

/// The role of an end user (implied by a UUID subject; `command-svc token` also writes it).
pub const ROLE_USER: &str = "user";
/// The role of a service reading the event store (the query services' projections).
pub const ROLE_SERVICE: &str = "service";
/// The role of an operator: admin RPCs, and everything a service may read.
pub const ROLE_OPERATOR: &str = "operator";

/// The claims we mint (development and tests). Verification reads any claims.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user's UUID, or a service's name.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    #[serde(default)]
    pub iat: u64,
    /// Roles (the default roles claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// Who is calling: the verified subject and roles of a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim as sent.
    pub subject: String,
    /// The user, when `sub` is a UUID.
    pub user: Option<Uuid>,
    /// Roles from the roles claim.
    pub roles: BTreeSet<String>,
}

impl Identity {
    /// Whether the token grants `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// Whether this is an operator.
    pub fn is_operator(&self) -> bool {
        self.has_role(ROLE_OPERATOR)
    }

    /// The user this identity acts as, or PERMISSION_DENIED for a service identity.
    pub fn user_id(&self) -> Result<Uuid, tonic::Status> {
        self.user.ok_or_else(|| {
            tonic::Status::permission_denied("this call needs a user identity (a UUID subject)")
        })
    }
}

/// Why a call is not authenticated. Messages are safe to return to the caller.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` metadata.
    #[error("missing `authorization: Bearer <token>` metadata")]
    Missing,
    /// Not a bearer token.
    #[error("authorization metadata must be `Bearer <token>`")]
    Malformed,
    /// Signature, expiry or claims wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl From<AuthError> for tonic::Status {
    fn from(err: AuthError) -> Self {
        tonic::Status::unauthenticated(err.to_string())
    }
}

/// One verification key and the algorithms it may verify.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithm: Algorithm,
}

/// Verifies bearer tokens.
#[derive(Clone)]
pub struct Authenticator {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    roles_claim: String,
    /// Tokens verified earlier, by their whole text (signature included): a long-lived client
    /// sends the same token with every call, so its signature and claims are checked once and
    /// afterwards only its validity window. (HS256 verification was ~7% of command-svc's CPU
    /// under load; an RS256/ES256 signature check costs more than the request itself.)
    verified: moka::sync::Cache<String, Arc<Verified>>,
}

/// A verified token: who it names and when it is valid.
#[derive(Debug)]
struct Verified {
    identity: Identity,
    exp: u64,
    nbf: Option<u64>,
}

impl Verified {
    fn valid_at(&self, now: u64, leeway: u64) -> bool {
        now <= self.exp.saturating_add(leeway)
            && self.nbf.is_none_or(|nbf| nbf <= now.saturating_add(leeway))
    }
}

/// Most verified tokens remembered, and for how long at most.
const VERIFIED_TOKENS: u64 = 10_000;
const VERIFIED_FOR: Duration = Duration::from_secs(600);

fn verified_cache() -> moka::sync::Cache<String, Arc<Verified>> {
    moka::sync::Cache::builder().max_capacity(VERIFIED_TOKENS).time_to_live(VERIFIED_FOR).build()
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.keys.iter().map(|k| k.algorithm).collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("roles_claim", &self.roles_claim)
            .finish()
    }
}

impl Authenticator {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with_keys(vec![Key {
            kid: None,
            key: DecodingKey::from_secret(secret),
            algorithm: Algorithm::HS256,
        }])
    }

    /// RS256 (RSA) or ES256 (P-256) with a PEM public key.
    pub fn public_key_pem(pem: &[u8]) -> anyhow::Result<Self> {
        let key = match DecodingKey::from_rsa_pem(pem) {
            Ok(key) => Key { kid: None, key, algorithm: Algorithm::RS256 },
            Err(_) => Key {
                kid: None,
                key: DecodingKey::from_ec_pem(pem)
                    .map_err(|_| anyhow::anyhow!("not an RSA or EC public key in PEM"))?,
                algorithm: Algorithm::ES256,
            },
        };
        Ok(Self::with_keys(vec![key]))
    }

    /// The RSA and EC keys of a JWKS document (symmetric keys are refused: a verifier must
    /// not be able to sign).
    pub fn jwks(json: &[u8]) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_slice(json)?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS384)) => Algorithm::RS384,
                (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS512)) => Algorithm::RS512,
                (AlgorithmParameters::RSA(_), _) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(_), Some(KeyAlgorithm::ES384)) => {
                    Algorithm::ES384
                }
                (AlgorithmParameters::EllipticCurve(_), _) => Algorithm::ES256,
                _ => anyhow::bail!("JWKS keys must be RSA or EC public keys"),
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                key: DecodingKey::from_jwk(jwk)?,
                algorithm,
            });
        }
        anyhow::ensure!(!keys.is_empty(), "the JWKS has no keys");
        Ok(Self::with_keys(keys))
    }

    fn with_keys(keys: Vec<Key>) -> Self {
        Self {
            keys,
            issuer: None,
            audience: None,
            leeway: 30,
            roles_claim: "roles".into(),
            verified: verified_cache(),
        }
    }

    /// Requires `iss` to be `issuer`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self.verified = verified_cache(); // other rules: nothing verified before holds
        self
    }

    /// Requires `aud` to name `audience`.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self.verified = verified_cache();
        self
    }

    /// Clock leeway for `exp` and `nbf`, in seconds (applied to remembered tokens too).
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// The claim roles are read from (a dotted path reaches into objects).
    pub fn with_roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.roles_claim = claim.into();
        self.verified = verified_cache();
        self
    }

    /// The caller from request metadata; `Ok(None)` when no `authorization` is sent.
    pub fn identify(&self, metadata: &MetadataMap) -> Result<Option<Identity>, AuthError> {
        let Some(value) = metadata.get("authorization") else { return Ok(None) };
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed)?
            .trim();
        self.verify(token).map(Some)
    }

    /// The caller's user id from request metadata (a token is required and must name a user).
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Uuid, AuthError> {
        let identity = self.identify(metadata)?.ok_or(AuthError::Missing)?;
        identity.user.ok_or_else(|| AuthError::Invalid("`sub` must be a user's UUID".to_owned()))
    }

    /// The identity a token names, if the token is valid.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if let Some(verified) = self.verified.get(token)
            && verified.valid_at(jsonwebtoken::get_current_timestamp(), self.leeway)
        {
            return Ok(verified.identity.clone());
        }
        // Unknown, or outside its validity window: the whole check (which names the problem).
        let verified = self.verify_signed(token)?;
        let identity = verified.identity.clone();
        self.verified.insert(token.to_owned(), Arc::new(verified));
        Ok(identity)
    }

    fn verify_signed(&self, token: &str) -> Result<Verified, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let key = match &header.kid {
            Some(kid) if self.keys.iter().any(|k| k.kid.is_some()) => {
                self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
            }
            _ => self.keys.iter().find(|k| k.algorithm == header.alg),
        }
        .ok_or_else(|| AuthError::Invalid("no verification key for this token".to_owned()))?;
        let mut validation = Validation::new(key.algorithm);
        let mut required = vec!["exp", "sub"];
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| AuthError::Invalid("`sub` must be a string".to_owned()))?
            .to_owned();
        let mut roles = BTreeSet::new();
        let mut value = Some(&claims);
        for part in self.roles_claim.split('.') {
            value = value.and_then(|v| v.get(part));
        }
        match value {
            Some(serde_json::Value::Array(items)) => {
                roles.extend(items.iter().filter_map(|v| v.as_str()).map(str::to_owned));
            }
            Some(serde_json::Value::String(text)) => {
                roles.extend(text.split_whitespace().map(str::to_owned));
            }
            _ => {}
        }
        let user = Uuid::parse_str(&subject).ok();
        if user.is_some() {
            roles.insert(ROLE_USER.to_owned());
        }
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| AuthError::Invalid("`exp` must be a number of seconds".to_owned()))?;
        let nbf = claims.get("nbf").and_then(serde_json::Value::as_u64);
        Ok(Verified { identity: Identity { subject, user, roles }, exp, nbf })
    }
}

/// How a service verifies bearer tokens: flags with environment fallbacks, shared by every
/// service of the mesh.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// HS256 secret that verifies (and, for `command-svc token`, signs) bearer tokens; at least
    /// 16 characters. For development: services that only verify should get a public key.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<String>,
    /// PEM public key (RSA for RS256, P-256 for ES256) that verifies bearer tokens.
    #[arg(long, env = "AUTH_JWT_PUBLIC_KEY_FILE")]
    pub auth_jwt_public_key_file: Option<PathBuf>,
    /// JWKS file (RSA/EC public keys, chosen by `kid`) that verifies bearer tokens.
    #[arg(long, env = "AUTH_JWKS_FILE")]
    pub auth_jwks_file: Option<PathBuf>,
    /// Required `iss` of bearer tokens (not checked when unset).
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// Required `aud` of bearer tokens (not checked when unset).
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// Clock leeway for `exp` and `nbf`, in seconds.
    #[arg(long, env = "AUTH_LEEWAY_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub auth_leeway_secs: u64,
    /// Claim that carries roles (`service`, `operator`); a dotted path reaches into objects
    /// (e.g. `realm_access.roles`); an array of strings or a space-separated string.
    #[arg(long, env = "AUTH_ROLES_CLAIM", default_value = "roles")]
    pub auth_roles_claim: String,
}

impl Default for AuthArgs {
    fn default() -> Self {
        Self {
            auth_jwt_secret: None,
            auth_jwt_public_key_file: None,
            auth_jwks_file: None,
            auth_issuer: None,
            auth_audience: None,
            auth_leeway_secs: 30,
            auth_roles_claim: "roles".to_owned(),
        }
    }
}

impl AuthArgs {
    /// HS256 with `secret` (tests and development).
    pub fn hs256(secret: &str) -> Self {
        Self { auth_jwt_secret: Some(secret.to_owned()), ..Self::default() }
    }

    /// The verifier these settings describe; a clear error when they are missing or invalid.
    pub fn authenticator(&self) -> anyhow::Result<Authenticator> {
        let read = |path: &PathBuf, name: &str| {
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading {name} {}: {e}", path.display()))
        };
        let configured = [
            self.auth_jwt_secret.is_some(),
            self.auth_jwt_public_key_file.is_some(),
            self.auth_jwks_file.is_some(),
        ];
        if configured.iter().filter(|c| **c).count() > 1 {
            anyhow::bail!(
                "set only one of AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY_FILE and AUTH_JWKS_FILE"
            );
        }
        let auth = match (
            &self.auth_jwks_file,
            &self.auth_jwt_public_key_file,
            &self.auth_jwt_secret,
        ) {
            (Some(path), _, _) => Authenticator::jwks(&read(path, "AUTH_JWKS_FILE")?)
                .map_err(|e| anyhow::anyhow!("AUTH_JWKS_FILE is not a usable JWKS: {e}"))?,
            (None, Some(path), _) => {
                Authenticator::public_key_pem(&read(path, "AUTH_JWT_PUBLIC_KEY_FILE")?)
                    .map_err(|e| anyhow::anyhow!("AUTH_JWT_PUBLIC_KEY_FILE: {e}"))?
            }
            (None, None, Some(secret)) if secret.len() < 16 => {
                anyhow::bail!("AUTH_JWT_SECRET must be at least 16 characters")
            }
            (None, None, Some(secret)) => Authenticator::hs256(secret.as_bytes()),
            (None, None, None) => anyhow::bail!(
                "set AUTH_JWT_PUBLIC_KEY_FILE or AUTH_JWKS_FILE (or AUTH_JWT_SECRET in development) to verify bearer tokens"
            ),
        };
        let mut auth =
            auth.with_leeway(self.auth_leeway_secs).with_roles_claim(&self.auth_roles_claim);
        if let Some(issuer) = &self.auth_issuer {
            auth = auth.with_issuer(issuer);
        }
        if let Some(audience) = &self.auth_audience {
            auth = auth.with_audience(audience);
        }
        Ok(auth)
    }
}

/// The bearer token a client sends with every call that carries none of its own: fixed, or
/// read from a file at every call (so that a token rotated on disk, e.g. a mounted Kubernetes
/// Secret, is picked up).
#[derive(Clone, Default)]
pub enum Credential {
    /// No `authorization` metadata.
    #[default]
    None,
    /// This token.
    Token(String),
    /// The token in this file (surrounding whitespace ignored).
    File(PathBuf),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("Credential::None"),
            Credential::Token(_) => f.write_str("Credential::Token(<redacted>)"),
            Credential::File(path) => write!(f, "Credential::File({})", path.display()),
        }
    }
}

impl Credential {
    /// A fixed token, or the token file, or none; a clear error when both are given.
    pub fn from_settings(
        token: Option<&str>,
        file: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        match (token, file) {
            (Some(_), Some(_)) => anyhow::bail!("set a token or a token file, not both"),
            (Some(token), None) => Ok(Credential::Token(token.trim().to_owned())),
            (None, Some(path)) => {
                std::fs::metadata(path)
                    .map_err(|e| anyhow::anyhow!("token file {}: {e}", path.display()))?;
                Ok(Credential::File(path.to_owned()))
            }
            (None, None) => Ok(Credential::None),
        }
    }

    fn header(
        &self,
    ) -> Result<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>, tonic::Status> {
        let token = match self {
            Credential::None => return Ok(None),
            Credential::Token(token) => token.clone(),
            Credential::File(path) => std::fs::read_to_string(path).map_err(|err| {
                tracing::warn!(%err, path = %path.display(), "cannot read the token file");
                tonic::Status::unavailable("the client's credential is unreadable")
            })?,
        };
        format!("Bearer {}", token.trim())
            .parse()
            .map(Some)
            .map_err(|_| tonic::Status::invalid_argument("the client's token is not ASCII"))
    }
}

impl tonic::service::Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        // A request that already carries a token keeps it.
        if request.metadata().contains_key("authorization") {
            return Ok(request);
        }
        if let Some(value) = self.header()? {
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// Mints an HS256 token for `sub`, valid for `ttl` (development and tests).
pub fn mint_hs256(secret: &[u8], sub: Uuid, ttl: Duration) -> anyhow::Result<String> {
    mint_hs256_with_roles(secret, &sub.to_string(), &[ROLE_USER], ttl)
}

/// Mints an HS256 token for `sub` carrying `roles` in the `roles` claim (development and tests).
pub fn mint_hs256_with_roles(
    secret: &[u8],
    sub: &str,
    roles: &[&str],
    ttl: Duration,
) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let claims = Claims {
        sub: sub.to_owned(),
        exp: (now + ttl).as_secs(),
        iat: now.as_secs(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

/// A token for `sub` with `roles`, valid for `ttl`, signed with a PEM private key: RS256 for an
/// RSA key, ES256 for a P-256 key (development: the services then verify with the matching
/// public key, `AUTH_JWT_PUBLIC_KEY_FILE`, and hold no signing material).
pub fn mint_pem_with_roles(
    private_key_pem: &[u8],
    sub: &str,
    roles: &[&str],
    ttl: Duration,
) -> anyhow::Result<String> {
    let (algorithm, key) = match EncodingKey::from_rsa_pem(private_key_pem) {
        Ok(key) => (Algorithm::RS256, key),
        Err(_) => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(private_key_pem).map_err(|_| {
                anyhow::anyhow!("not a PEM RSA or P-256 private key (PKCS#8 or PKCS#1)")
            })?,
        ),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let claims = Claims {
        sub: sub.to_owned(),
        exp: (now + ttl).as_secs(),
        iat: now.as_secs(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    };
    Ok(jsonwebtoken::encode(&Header::new(algorithm), &claims, &key)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        md.insert("authorization", value.parse().expect("ascii"));
        md
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
    }

    fn sign(header: Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&header, claims, key).expect("encodes")
    }

    fn hs(claims: &serde_json::Value) -> String {
        sign(Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(b"secret"))
    }

    /// Key pairs made for these tests only (`openssl genrsa 2048`, `openssl ecparam -name
    /// prime256v1`).
    const RSA_PRIVATE: &[u8] = include_bytes!("../testdata/test-rsa-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../testdata/test-rsa-public.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("../testdata/test-ec-private.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../testdata/test-ec-public.pem");

    #[test]
    fn tokens_minted_with_a_private_key_verify_with_its_public_key_only() {
        for (private, public, other) in
            [(RSA_PRIVATE, RSA_PUBLIC, EC_PUBLIC), (EC_PRIVATE, EC_PUBLIC, RSA_PUBLIC)]
        {
            let token = mint_pem_with_roles(
                private,
                "query-services",
                &[ROLE_SERVICE],
                Duration::from_secs(60),
            )
            .expect("minted");
            let identity =
                Authenticator::public_key_pem(public).expect("key").verify(&token).expect("valid");
            assert!(identity.has_role(ROLE_SERVICE));
            assert!(Authenticator::public_key_pem(other).expect("key").verify(&token).is_err());
        }
        assert!(mint_pem_with_roles(b"not a key", "x", &[], Duration::from_secs(60)).is_err());
    }

    #[test]
    fn a_minted_token_authenticates_its_subject_as_a_user() {
        let user = Uuid::now_v7();
        let token = mint_hs256(b"secret", user, Duration::from_secs(60)).expect("mints");
        let auth = Authenticator::hs256(b"secret");
        assert_eq!(auth.authenticate(&metadata(&format!("Bearer {token}"))).expect("valid"), user);
        let identity = auth.verify(&token).expect("valid");
        assert!(identity.has_role(ROLE_USER) && !identity.is_operator());
    }

    #[test]
    fn wrong_secret_expired_missing_and_malformed_tokens_are_refused() {
        let user = Uuid::now_v7();
        let auth = Authenticator::hs256(b"secret");
        let other = mint_hs256(b"other", user, Duration::from_secs(60)).expect("mints");
        assert!(matches!(
            auth.authenticate(&metadata(&format!("Bearer {other}"))),
            Err(AuthError::Invalid(_))
        ));
        let expired = hs(&json!({"sub": user.to_string(), "exp": now() - 3600}));
        assert!(matches!(auth.verify(&expired), Err(AuthError::Invalid(_))));
        assert!(matches!(auth.authenticate(&MetadataMap::new()), Err(AuthError::Missing)));
        assert!(matches!(auth.identify(&MetadataMap::new()), Ok(None)));
        assert!(matches!(auth.authenticate(&metadata("Basic abc")), Err(AuthError::Malformed)));
    }

    #[test]
    fn a_remembered_token_is_still_refused_outside_its_validity_window_and_when_altered() {
        let auth = Authenticator::hs256(b"secret").with_leeway(30);
        let sub = Uuid::now_v7().to_string();
        // Expired 10 s ago: valid with 30 s of leeway, and remembered.
        let token = hs(&json!({"sub": sub, "exp": now() - 10}));
        assert_eq!(auth.verify(&token).expect("within the leeway").subject, sub);
        assert_eq!(auth.verify(&token).expect("remembered").subject, sub);
        // The same remembered token, under a leeway it no longer fits.
        let strict = auth.clone().with_leeway(0);
        assert!(matches!(strict.verify(&token), Err(AuthError::Invalid(_))));
        // Another signature is another token, checked in full.
        let at = token.len() - 5;
        let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
        let altered = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
        assert!(matches!(auth.verify(&altered), Err(AuthError::Invalid(_))));
        // Stricter rules forget what the looser ones accepted.
        assert!(auth.clone().with_issuer("https://idp").verify(&token).is_err());
    }

    #[test]
    fn a_token_not_valid_before_a_future_time_is_refused_beyond_the_leeway() {
        let auth = Authenticator::hs256(b"secret").with_leeway(5);
        let sub = Uuid::now_v7().to_string();
        let early = hs(&json!({"sub": sub, "exp": now() + 600, "nbf": now() + 120}));
        assert!(matches!(auth.verify(&early), Err(AuthError::Invalid(_))));
        let within_leeway = hs(&json!({"sub": sub, "exp": now() + 600, "nbf": now() + 2}));
        assert!(auth.verify(&within_leeway).is_ok());
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured_and_ignored_otherwise() {
        let sub = Uuid::now_v7().to_string();
        let idp =
            hs(&json!({"sub": sub, "exp": now() + 60, "iss": "https://idp", "aud": "courses"}));
        assert!(Authenticator::hs256(b"secret").verify(&idp).is_ok(), "aud alone is no reason");
        let strict =
            Authenticator::hs256(b"secret").with_issuer("https://idp").with_audience("courses");
        assert!(strict.verify(&idp).is_ok());
        let other_aud =
            hs(&json!({"sub": sub, "exp": now() + 60, "iss": "https://idp", "aud": "other"}));
        assert!(strict.verify(&other_aud).is_err());
        let other_iss =
            hs(&json!({"sub": sub, "exp": now() + 60, "iss": "https://evil", "aud": "courses"}));
        assert!(strict.verify(&other_iss).is_err());
        let none = hs(&json!({"sub": sub, "exp": now() + 60}));
        assert!(strict.verify(&none).is_err(), "configured iss/aud are required");
    }

    #[test]
    fn roles_come_from_the_configured_claim_as_an_array_or_a_scope_string() {
        let auth = Authenticator::hs256(b"secret");
        let service =
            hs(&json!({"sub": "query-redis-svc", "exp": now() + 60, "roles": ["service"]}));
        let identity = auth.verify(&service).expect("valid");
        assert!(identity.has_role(ROLE_SERVICE));
        assert_eq!(identity.user, None, "a service is not a user");
        assert!(identity.user_id().is_err());
        let keycloak =
            hs(&json!({"sub": "ops", "exp": now() + 60, "realm_access": {"roles": ["operator"]}}));
        let nested = Authenticator::hs256(b"secret").with_roles_claim("realm_access.roles");
        assert!(nested.verify(&keycloak).expect("valid").is_operator());
        assert!(!auth.verify(&keycloak).expect("valid").is_operator(), "other claim, no role");
        let scoped = hs(&json!({"sub": "ops", "exp": now() + 60, "scope": "read operator"}));
        let scope = Authenticator::hs256(b"secret").with_roles_claim("scope");
        assert!(scope.verify(&scoped).expect("valid").is_operator());
    }

    #[test]
    fn rs256_and_es256_tokens_verify_with_the_public_key_and_hs256_ones_do_not() {
        let user = Uuid::now_v7();
        let claims = json!({"sub": user.to_string(), "exp": now() + 60});
        let rsa = sign(
            Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("key"),
        );
        let auth = Authenticator::public_key_pem(RSA_PUBLIC).expect("public key");
        assert_eq!(auth.verify(&rsa).expect("valid").user, Some(user));
        let hs = mint_hs256(b"whatever-secret-0123456789", user, Duration::from_secs(60))
            .expect("mints");
        assert!(matches!(auth.verify(&hs), Err(AuthError::Invalid(_))), "no algorithm confusion");

        let ec = sign(
            Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(EC_PRIVATE).expect("key"),
        );
        let auth = Authenticator::public_key_pem(EC_PUBLIC).expect("public key");
        assert_eq!(auth.verify(&ec).expect("valid").user, Some(user));
        assert!(auth.verify(&rsa).is_err());
    }

    #[test]
    fn a_jwks_picks_the_key_named_by_kid_and_refuses_symmetric_keys() {
        // The EC public key as a JWK (x, y of the PEM's point).
        let pem = pem_point(EC_PUBLIC);
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "x": pem.0, "y": pem.1, "alg": "ES256", "use": "sig"}
        ]});
        let auth = Authenticator::jwks(jwks.to_string().as_bytes()).expect("jwks");
        let claims = json!({"sub": Uuid::now_v7().to_string(), "exp": now() + 60});
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".into());
        let key = EncodingKey::from_ec_pem(EC_PRIVATE).expect("key");
        assert!(auth.verify(&sign(header.clone(), &claims, &key)).is_ok());
        header.kid = Some("unknown".into());
        assert!(auth.verify(&sign(header, &claims, &key)).is_err());
        let symmetric = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(Authenticator::jwks(symmetric.to_string().as_bytes()).is_err());
    }

    /// The base64url x and y of an uncompressed P-256 point at the end of a SPKI PEM.
    fn pem_point(pem: &[u8]) -> (String, String) {
        let text = std::str::from_utf8(pem).expect("utf8");
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64_decode(&body);
        let point = &der[der.len() - 64..];
        (base64url(&point[..32]), base64url(&point[32..]))
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let mut buffer = 0u32;
        let mut bits = 0;
        for c in text.bytes().filter(|c| *c != b'=') {
            let value = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
            buffer = (buffer << 6) | value;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        out
    }

    fn base64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn auth_args_build_the_verifier_they_describe_or_say_what_is_missing() {
        assert!(AuthArgs::default().authenticator().is_err());
        assert!(AuthArgs::hs256("short").authenticator().is_err());
        assert!(AuthArgs::hs256("long-enough-secret-0123").authenticator().is_ok());
        let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        for file in ["test-rsa-public.pem", "test-ec-public.pem"] {
            let args = AuthArgs {
                auth_jwt_public_key_file: Some(testdata.join(file)),
                ..AuthArgs::default()
            };
            assert!(args.authenticator().is_ok(), "{file}");
        }
        let both = AuthArgs {
            auth_jwt_public_key_file: Some(testdata.join("test-rsa-public.pem")),
            ..AuthArgs::hs256("long-enough-secret-0123")
        };
        assert!(both.authenticator().is_err(), "a verifier holds one kind of key");
    }

    #[test]
    fn a_subject_that_is_not_a_uuid_is_no_user() {
        let token = hs(&json!({"sub": "alice", "exp": now() + 60}));
        let auth = Authenticator::hs256(b"secret");
        assert_eq!(auth.verify(&token).expect("valid").user, None);
        assert!(matches!(
            auth.authenticate(&metadata(&format!("Bearer {token}"))),
            Err(AuthError::Invalid(_))
        ));
    }
}
