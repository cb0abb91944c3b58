//! Access tokens: signed JWTs with the claims `sub, role, jti, sid, iat, exp, iss, aud`.
//!
//! The algorithm is configurable (HS256 by default; RS/PS/ES/EdDSA with PEM keys). Tokens carry the
//! `kid` of the key that signed them, and keys retired by a rotation stay accepted for verification
//! until the tokens they signed have expired. Validation checks the signature, the algorithm (only
//! the configured one: `none` and algorithm confusion are refused), `exp`, `iss` and `aud`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, TimeZone, Utc};
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{
    AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind,
};
use serde::{Deserialize, Serialize};
use strata_domain::Role;
use uuid::Uuid;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user's id.
    pub sub: Uuid,
    /// The user's role when the token was issued.
    pub role: Role,
    /// This token's id, for revocation.
    pub jti: Uuid,
    /// The login session (refresh-token family) the token belongs to.
    pub sid: Uuid,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Issued at, µs since the epoch: `iat` alone cannot tell a token issued just before a
    /// revocation of every earlier token from one issued just after it in the same second.
    /// Absent from tokens of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_us: Option<i64>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
}

impl AccessClaims {
    /// `exp` as a timestamp.
    pub fn expires_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.exp, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// When the token was issued, to the µs when it says so. Otherwise the start of its `iat`
    /// second: the earliest it can have been issued, so that a revocation later in that second
    /// refuses it rather than let it through.
    pub fn issued_at(&self) -> DateTime<Utc> {
        let whole_second = Utc
            .timestamp_opt(self.iat, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.iat_us
            .filter(|micros| micros.div_euclid(1_000_000) == self.iat)
            .and_then(DateTime::<Utc>::from_timestamp_micros)
            .unwrap_or(whole_second)
    }
}

/// How far the clocks of two instances may disagree. The verifier's leeway on `exp` tolerates it
/// for valid tokens, and revocations are kept that much longer than the revoking instance's own
/// clock says is needed, for verifiers whose clocks lag behind it.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);

/// `instant` plus `duration`, saturating at the latest representable instant.
fn later_by(instant: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| instant.checked_add_signed(duration))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Key material for one signing key.
#[derive(Clone)]
pub enum JwtKey {
    /// A shared secret for HS256/384/512.
    Hmac(Vec<u8>),
    /// PEM keys for the asymmetric algorithms; the private key is needed only to sign.
    Pem {
        /// PKCS#8 private key (absent for a key kept only to verify).
        private: Option<Vec<u8>>,
        /// Public key.
        public: Vec<u8>,
    },
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwtKey::Hmac(_) => "JwtKey::Hmac(<redacted>)",
            JwtKey::Pem { .. } => "JwtKey::Pem(<redacted>)",
        })
    }
}

/// How access tokens are signed and checked.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `iss` written and required.
    pub issuer: String,
    /// `aud` written and required.
    pub audience: String,
    /// Lifetime of an access token.
    pub access_ttl: Duration,
    /// The one algorithm accepted.
    pub algorithm: Algorithm,
    /// `kid` of the current key, written into each token's header.
    pub kid: Option<String>,
    /// The current key.
    pub key: JwtKey,
    /// Retired keys still accepted for verification, by `kid`.
    pub previous_keys: Vec<(String, JwtKey)>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Well-formed and authentic, but past `exp`.
    #[error("token expired")]
    Expired,
    /// Anything else: bad signature, wrong algorithm, issuer or audience, unknown `kid`, garbage.
    /// The reason is for logs only.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Signs and verifies access tokens.
pub struct JwtCodec {
    settings: JwtSettings,
    encoding: EncodingKey,
    current: DecodingKey,
    by_kid: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for JwtCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtCodec")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn decoding_key(algorithm: Algorithm, key: &JwtKey) -> anyhow::Result<DecodingKey> {
    let family = algorithm.family();
    Ok(match (family, key) {
        (AlgorithmFamily::Hmac, JwtKey::Hmac(secret)) => DecodingKey::from_secret(secret),
        (AlgorithmFamily::Rsa, JwtKey::Pem { public, .. }) => DecodingKey::from_rsa_pem(public)?,
        (AlgorithmFamily::Ec, JwtKey::Pem { public, .. }) => DecodingKey::from_ec_pem(public)?,
        (AlgorithmFamily::Ed, JwtKey::Pem { public, .. }) => DecodingKey::from_ed_pem(public)?,
        _ => return Err(anyhow!("the key does not suit the algorithm {algorithm:?}")),
    })
}

fn encoding_key(algorithm: Algorithm, key: &JwtKey) -> anyhow::Result<EncodingKey> {
    let family = algorithm.family();
    Ok(match (family, key) {
        (AlgorithmFamily::Hmac, JwtKey::Hmac(secret)) => EncodingKey::from_secret(secret),
        (
            AlgorithmFamily::Rsa,
            JwtKey::Pem {
                private: Some(private),
                ..
            },
        ) => EncodingKey::from_rsa_pem(private)?,
        (
            AlgorithmFamily::Ec,
            JwtKey::Pem {
                private: Some(private),
                ..
            },
        ) => EncodingKey::from_ec_pem(private)?,
        (
            AlgorithmFamily::Ed,
            JwtKey::Pem {
                private: Some(private),
                ..
            },
        ) => EncodingKey::from_ed_pem(private)?,
        _ => {
            return Err(anyhow!(
                "the signing key does not suit the algorithm {algorithm:?}"
            ));
        }
    })
}

impl JwtCodec {
    /// Builds the codec; fails when a key does not suit the algorithm or cannot be read.
    pub fn new(settings: JwtSettings) -> anyhow::Result<Self> {
        if let JwtKey::Hmac(secret) = &settings.key
            && secret.len() < 32
        {
            return Err(anyhow!("an HMAC secret must be at least 32 bytes"));
        }
        let encoding = encoding_key(settings.algorithm, &settings.key)?;
        let current = decoding_key(settings.algorithm, &settings.key)?;
        let mut by_kid = HashMap::new();
        if let Some(kid) = &settings.kid {
            by_kid.insert(kid.clone(), current.clone());
        }
        for (kid, key) in &settings.previous_keys {
            by_kid.insert(kid.clone(), decoding_key(settings.algorithm, key)?);
        }
        let mut validation = Validation::new(settings.algorithm);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = CLOCK_SKEW.as_secs();
        Ok(Self {
            settings,
            encoding,
            current,
            by_kid,
            validation,
        })
    }

    /// Lifetime of the tokens this codec issues.
    pub fn access_ttl(&self) -> Duration {
        self.settings.access_ttl
    }

    /// The instant from which no instance accepts a token expiring at `exp` any more. This codec
    /// accepts it while the current whole second is at most `exp` plus the leeway, so until one
    /// second past that; an instance whose clock lags by up to [`CLOCK_SKEW`] accepts it for that
    /// much longer again.
    pub fn accepted_until(&self, exp: DateTime<Utc>) -> DateTime<Utc> {
        let beyond_exp = Duration::from_secs(self.validation.leeway + 1) + CLOCK_SKEW;
        later_by(exp, beyond_exp)
    }

    /// How long, from `now`, a token expiring at `exp` must stay revoked to be refused for as long
    /// as any instance would accept it (zero when none would any more).
    pub fn revocation_ttl(&self, exp: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
        (self.accepted_until(exp) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    }

    /// How long a revocation of every token issued before `now` must be kept: such a token
    /// expires at most one access lifetime after `now`, and is accepted until
    /// [`accepted_until`](Self::accepted_until) that.
    pub fn revocation_ttl_of_earlier_tokens(&self, now: DateTime<Utc>) -> Duration {
        self.revocation_ttl(later_by(now, self.access_ttl()), now)
    }

    /// Issues a token for `sub` in session `sid`, valid from `now` for the configured lifetime.
    pub fn issue(
        &self,
        sub: Uuid,
        role: Role,
        sid: Uuid,
        jti: Uuid,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(String, AccessClaims)> {
        let ttl = i64::try_from(self.settings.access_ttl.as_secs())?;
        let claims = AccessClaims {
            sub,
            role,
            jti,
            sid,
            iat: now.timestamp(),
            iat_us: Some(now.timestamp_micros()),
            exp: now.timestamp() + ttl,
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
        };
        let mut header = Header::new(self.settings.algorithm);
        header.kid = self.settings.kid.clone();
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, JwtError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Invalid(e.to_string()))?;
        if header.alg != self.settings.algorithm {
            return Err(JwtError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = match &header.kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .ok_or_else(|| JwtError::Invalid(format!("unknown kid {kid:?}")))?,
            None => &self.current,
        };
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => JwtError::Expired,
                _ => JwtError::Invalid(e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn settings(secret: &[u8], kid: Option<&str>) -> JwtSettings {
        JwtSettings {
            issuer: "strata".into(),
            audience: "strata-api".into(),
            access_ttl: Duration::from_secs(900),
            algorithm: Algorithm::HS256,
            kid: kid.map(str::to_owned),
            key: JwtKey::Hmac(secret.to_vec()),
            previous_keys: Vec::new(),
        }
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn issue(codec: &JwtCodec, now: DateTime<Utc>) -> String {
        codec
            .issue(
                Uuid::now_v7(),
                Role::Customer,
                Uuid::now_v7(),
                Uuid::now_v7(),
                now,
            )
            .expect("issue")
            .0
    }

    #[test]
    fn an_issued_token_verifies_with_all_its_claims() -> anyhow::Result<()> {
        let codec = JwtCodec::new(settings(SECRET, Some("k1")))?;
        let (token, claims) = codec.issue(
            Uuid::now_v7(),
            Role::Admin,
            Uuid::now_v7(),
            Uuid::now_v7(),
            Utc::now(),
        )?;
        assert_eq!(codec.verify(&token)?, claims);
        assert_eq!(claims.exp - claims.iat, 900);
        Ok(())
    }

    #[test]
    fn a_token_is_never_accepted_from_the_instant_its_revocation_may_end() -> anyhow::Result<()> {
        let codec = JwtCodec::new(settings(SECRET, None))?;
        let mut accepted = Vec::new();
        for past_exp in 0..=8 {
            let now = Utc::now();
            let issued = now - chrono::Duration::seconds(900 + past_exp);
            let token = issue(&codec, issued);
            let exp = codec.verify(&token).map(|claims| claims.expires_at());
            if let Ok(exp) = exp {
                accepted.push(past_exp);
                // Whatever second this ran in: while the codec accepts, a revocation lasting
                // until `accepted_until` still covers the token, with the skew to spare.
                assert!(
                    codec.accepted_until(exp) - Utc::now()
                        > chrono::Duration::from_std(CLOCK_SKEW)?,
                    "{past_exp} s past exp"
                );
            }
        }
        assert!(
            accepted.contains(&0) && accepted.contains(&4),
            "{accepted:?}"
        );
        assert!(!accepted.contains(&7), "{accepted:?}");
        Ok(())
    }

    #[test]
    fn the_issue_instant_is_carried_to_the_microsecond() -> anyhow::Result<()> {
        let codec = JwtCodec::new(settings(SECRET, None))?;
        let at = Utc
            .timestamp_opt(1_800_000_000, 123_456_789)
            .single()
            .unwrap();
        let (token, claims) = codec.issue(
            Uuid::now_v7(),
            Role::Customer,
            Uuid::now_v7(),
            Uuid::now_v7(),
            at,
        )?;
        let whole_second = Utc.timestamp_opt(1_800_000_000, 0).single().unwrap();
        let microsecond = Utc
            .timestamp_opt(1_800_000_000, 123_456_000)
            .single()
            .unwrap();
        assert_eq!(
            (claims.iat, claims.iat_us),
            (1_800_000_000, Some(1_800_000_000_123_456))
        );
        assert_eq!(claims.issued_at(), microsecond);
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap_or_default())?,
        )?;
        assert_eq!(payload["iat_us"], 1_800_000_000_123_456_i64);

        // Without it (an older version's token), or with one from another second than `iat`
        // (never written so), only the start of the `iat` second is known.
        for iat_us in [None, Some(1_800_000_001_000_000)] {
            let claims = AccessClaims {
                iat_us,
                ..claims.clone()
            };
            assert_eq!(claims.issued_at(), whole_second, "{iat_us:?}");
        }
        Ok(())
    }

    #[test]
    fn an_expired_token_is_reported_as_expired() -> anyhow::Result<()> {
        let codec = JwtCodec::new(settings(SECRET, None))?;
        let token = issue(&codec, Utc::now() - chrono::Duration::hours(1));
        assert!(matches!(codec.verify(&token), Err(JwtError::Expired)));
        Ok(())
    }

    #[test]
    fn a_token_signed_with_another_key_or_tampered_is_invalid() -> anyhow::Result<()> {
        let codec = JwtCodec::new(settings(SECRET, None))?;
        let other = JwtCodec::new(settings(b"another-secret-of-at-least-32-bytes!", None))?;
        assert!(matches!(
            codec.verify(&issue(&other, Utc::now())),
            Err(JwtError::Invalid(_))
        ));

        let token = issue(&codec, Utc::now());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1])?)?;
        claims["role"] = "admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
        assert!(matches!(
            codec.verify(&parts.join(".")),
            Err(JwtError::Invalid(_))
        ));
        Ok(())
    }

    #[test]
    fn alg_none_is_refused() -> anyhow::Result<()> {
        let codec = JwtCodec::new(settings(SECRET, None))?;
        let token = issue(&codec, Utc::now());
        let payload = token.split('.').nth(1).unwrap_or_default();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(matches!(
            codec.verify(&format!("{header}.{payload}.")),
            Err(JwtError::Invalid(_))
        ));
        Ok(())
    }

    #[test]
    fn wrong_issuer_or_audience_is_refused() -> anyhow::Result<()> {
        let codec = JwtCodec::new(settings(SECRET, None))?;
        let foreign = JwtCodec::new(JwtSettings {
            issuer: "someone-else".into(),
            ..settings(SECRET, None)
        })?;
        assert!(matches!(
            codec.verify(&issue(&foreign, Utc::now())),
            Err(JwtError::Invalid(_))
        ));
        let foreign = JwtCodec::new(JwtSettings {
            audience: "other-api".into(),
            ..settings(SECRET, None)
        })?;
        assert!(matches!(
            codec.verify(&issue(&foreign, Utc::now())),
            Err(JwtError::Invalid(_))
        ));
        Ok(())
    }

    #[test]
    fn tokens_of_a_retired_key_verify_after_rotation_by_kid() -> anyhow::Result<()> {
        let old = JwtCodec::new(settings(SECRET, Some("2026-01")))?;
        let token = issue(&old, Utc::now());
        let rotated = JwtCodec::new(JwtSettings {
            previous_keys: vec![("2026-01".into(), JwtKey::Hmac(SECRET.to_vec()))],
            ..settings(b"the-new-secret-for-2026-02-rotation!", Some("2026-02"))
        })?;
        assert!(rotated.verify(&token).is_ok());
        assert!(rotated.verify(&issue(&rotated, Utc::now())).is_ok());
        let unknown = JwtCodec::new(settings(SECRET, Some("nobody-knows-me")))?;
        assert!(matches!(
            rotated.verify(&issue(&unknown, Utc::now())),
            Err(JwtError::Invalid(_))
        ));
        Ok(())
    }

    /// A throwaway P-256 key pair, for tests only.
    const TEST_EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgZcPUAnOhqm9evvyP
klTfB/a3neOASliCLTR11EzfjSuhRANCAAR3hm2IyMEctKUGiaw5T5efWDjryGcl
+qozVl713oz3VkKJkheMZRa/XjZMnLLgDWB0R+ZD6BEz7JIzbbQuO8jf
-----END PRIVATE KEY-----
";
    const TEST_EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEd4ZtiMjBHLSlBomsOU+Xn1g468hn
JfqqM1Ze9d6M91ZCiZIXjGUWv142TJyy4A1gdEfmQ+gRM+ySM220LjvI3w==
-----END PUBLIC KEY-----
";

    #[test]
    fn es256_with_pem_keys_signs_and_verifies_and_refuses_an_hmac_token() -> anyhow::Result<()> {
        let codec = JwtCodec::new(JwtSettings {
            algorithm: Algorithm::ES256,
            key: JwtKey::Pem {
                private: Some(TEST_EC_PRIVATE.as_bytes().to_vec()),
                public: TEST_EC_PUBLIC.as_bytes().to_vec(),
            },
            ..settings(SECRET, Some("ec-1"))
        })?;
        let token = issue(&codec, Utc::now());
        let header = jsonwebtoken::decode_header(&token)?;
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (Algorithm::ES256, Some("ec-1"))
        );
        assert!(codec.verify(&token).is_ok());
        // Algorithm confusion: an HS256 token is refused by an ES256 verifier whatever its key.
        let hmac = JwtCodec::new(settings(SECRET, Some("ec-1")))?;
        assert!(matches!(
            codec.verify(&issue(&hmac, Utc::now())),
            Err(JwtError::Invalid(_))
        ));
        Ok(())
    }

    #[test]
    fn a_key_that_does_not_suit_the_algorithm_is_refused_at_start() {
        let mismatched = JwtSettings {
            algorithm: Algorithm::RS256,
            ..settings(SECRET, None)
        };
        assert!(JwtCodec::new(mismatched).is_err());
    }

    #[test]
    fn short_hmac_secrets_are_refused_at_start() {
        assert!(JwtCodec::new(settings(b"short", None)).is_err());
    }
}
