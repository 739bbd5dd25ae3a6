//! Caller identity from `authorization: Bearer <JWT>` metadata.
//!
//! HS256 with a shared secret, or RS256 with a public key (PEM). `sub` must be the user's UUID and
//! `exp` is required.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use uuid::Uuid;

/// The claims we read and mint.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user's UUID.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    #[serde(default)]
    pub iat: u64,
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

/// Verifies bearer tokens.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("algorithms", &self.validation.algorithms).finish()
    }
}

impl Authenticator {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// RS256 with a PEM public key.
    pub fn rs256_pem(public_key_pem: &[u8]) -> anyhow::Result<Self> {
        Ok(Self::new(DecodingKey::from_rsa_pem(public_key_pem)?, Algorithm::RS256))
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Self { key, validation }
    }

    /// The caller's user id from request metadata.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Uuid, AuthError> {
        let value = metadata.get("authorization").ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed)?
            .trim();
        self.verify(token)
    }

    /// The user id a token names, if the token is valid.
    pub fn verify(&self, token: &str) -> Result<Uuid, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        Uuid::parse_str(&data.claims.sub)
            .map_err(|_| AuthError::Invalid("`sub` must be a UUID".to_owned()))
    }
}

/// How a service verifies bearer tokens: flags with environment fallbacks, shared by every
/// service of the mesh.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// HS256 secret that verifies bearer tokens (at least 16 characters).
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<String>,
    /// PEM public key that verifies RS256 bearer tokens instead of the HS256 secret.
    #[arg(long, env = "AUTH_JWT_PUBLIC_KEY_FILE")]
    pub auth_jwt_public_key_file: Option<std::path::PathBuf>,
}

impl AuthArgs {
    /// HS256 with `secret` (tests and development).
    pub fn hs256(secret: &str) -> Self {
        Self { auth_jwt_secret: Some(secret.to_owned()), auth_jwt_public_key_file: None }
    }

    /// The verifier these settings describe; a clear error when they are missing or invalid.
    pub fn authenticator(&self) -> anyhow::Result<Authenticator> {
        match (&self.auth_jwt_public_key_file, &self.auth_jwt_secret) {
            (Some(path), _) => {
                let pem = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("reading AUTH_JWT_PUBLIC_KEY_FILE {}: {e}", path.display())
                })?;
                Authenticator::rs256_pem(&pem).map_err(|e| {
                    anyhow::anyhow!("AUTH_JWT_PUBLIC_KEY_FILE is not an RSA public key: {e}")
                })
            }
            (None, Some(secret)) if secret.len() < 16 => {
                anyhow::bail!("AUTH_JWT_SECRET must be at least 16 characters")
            }
            (None, Some(secret)) => Ok(Authenticator::hs256(secret.as_bytes())),
            (None, None) => anyhow::bail!(
                "set AUTH_JWT_SECRET (HS256) or AUTH_JWT_PUBLIC_KEY_FILE (RS256) to verify bearer tokens"
            ),
        }
    }
}

/// Mints an HS256 token for `sub`, valid for `ttl` (development and tests).
pub fn mint_hs256(secret: &[u8], sub: Uuid, ttl: Duration) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let claims = Claims { sub: sub.to_string(), exp: (now + ttl).as_secs(), iat: now.as_secs() };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        md.insert("authorization", value.parse().expect("ascii"));
        md
    }

    #[test]
    fn a_minted_token_authenticates_its_subject() {
        let user = Uuid::now_v7();
        let token = mint_hs256(b"secret", user, Duration::from_secs(60)).expect("mints");
        let auth = Authenticator::hs256(b"secret");
        assert_eq!(auth.authenticate(&metadata(&format!("Bearer {token}"))).expect("valid"), user);
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
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        let claims = Claims { sub: user.to_string(), exp: now - 3600, iat: now - 7200 };
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("encodes");
        assert!(matches!(auth.verify(&expired), Err(AuthError::Invalid(_))));
        assert!(matches!(auth.authenticate(&MetadataMap::new()), Err(AuthError::Missing)));
        assert!(matches!(auth.authenticate(&metadata("Basic abc")), Err(AuthError::Malformed)));
    }

    /// A key pair made for these tests only (`openssl genrsa 2048`).
    const TEST_PRIVATE_KEY: &[u8] = include_bytes!("../testdata/test-rsa-private.pem");
    const TEST_PUBLIC_KEY: &[u8] = include_bytes!("../testdata/test-rsa-public.pem");

    #[test]
    fn rs256_tokens_verify_with_the_public_key_and_hs256_ones_do_not() {
        let user = Uuid::now_v7();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        let claims = Claims { sub: user.to_string(), exp: now + 60, iat: now };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(TEST_PRIVATE_KEY).expect("private key"),
        )
        .expect("encodes");
        let auth = Authenticator::rs256_pem(TEST_PUBLIC_KEY).expect("public key");
        assert_eq!(auth.verify(&token).expect("valid"), user);
        let hs = mint_hs256(b"whatever-secret-0123456789", user, Duration::from_secs(60))
            .expect("mints");
        assert!(matches!(auth.verify(&hs), Err(AuthError::Invalid(_))), "no algorithm confusion");
    }

    #[test]
    fn auth_args_build_the_verifier_they_describe_or_say_what_is_missing() {
        assert!(AuthArgs::default().authenticator().is_err());
        assert!(AuthArgs::hs256("short").authenticator().is_err());
        assert!(AuthArgs::hs256("long-enough-secret-0123").authenticator().is_ok());
        let args = AuthArgs {
            auth_jwt_secret: None,
            auth_jwt_public_key_file: Some(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("testdata/test-rsa-public.pem"),
            ),
        };
        assert!(args.authenticator().is_ok());
    }

    #[test]
    fn a_subject_that_is_not_a_uuid_is_refused() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        let claims = Claims { sub: "alice".into(), exp: now + 60, iat: now };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s"),
        )
        .expect("encodes");
        assert!(matches!(Authenticator::hs256(b"s").verify(&token), Err(AuthError::Invalid(_))));
    }
}
