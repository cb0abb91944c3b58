//! What makes a key unfit: published in this repository, too short, or patterned.
//!
//! Anyone who has read the repository knows its placeholders, and a key that is mostly a pattern
//! (one byte repeated, `abcabc…`, `0123…`) is found long before random search would find one. Random
//! keys are the only ones that pass; these checks refuse the others before a token is signed.

use std::collections::HashSet;

/// Placeholder values shipped in deploy/ and the docs, and the stems they are edited from; a value
/// containing any of them (ignoring case) is refused in production.
pub const PLACEHOLDERS: &[&str] = &[
    "CHANGE-ME-to-at-least-32-random-bytes-0000",
    "replace-me-with-at-least-32-random-bytes-0000",
    "replace-me-strata-postgres-password",
    "CHANGE-ME",
    "changeme",
    "replace-me",
    "replaceme",
];

/// The shortest key accepted: HS256's output size, as RFC 7518 §3.2 asks of its key.
pub const MIN_KEY_BYTES: usize = 32;

/// The lowest [`estimated_bits`] accepted in production. A filter for patterns, not a measure of
/// strength: keys of `openssl rand -base64 32` or `-hex 32` score over 160, the patterned keys of
/// the tests under 35.
pub const MIN_ESTIMATED_BITS: f64 = 64.0;

/// Whether `value` contains a placeholder published in this repository.
pub fn is_placeholder(value: &str) -> bool {
    let value = value.to_ascii_lowercase();
    PLACEHOLDERS
        .iter()
        .any(|placeholder| value.contains(&placeholder.to_ascii_lowercase()))
}

/// Why `key` is unfit as a signing key, if it is: shorter than [`MIN_KEY_BYTES`] anywhere; in
/// `production` also a placeholder or patterned (under [`MIN_ESTIMATED_BITS`]). Never quotes the key.
pub fn unfit_key(key: &str, production: bool) -> Option<String> {
    let advice = "generate one with `openssl rand -base64 48`";
    if production && is_placeholder(key) {
        return Some(format!(
            "is a placeholder published in this repository; {advice}"
        ));
    }
    if key.len() < MIN_KEY_BYTES {
        return Some(format!(
            "must be at least {MIN_KEY_BYTES} bytes (it has {}); {advice}",
            key.len()
        ));
    }
    let bits = estimated_bits(key.as_bytes());
    if production && bits < MIN_ESTIMATED_BITS {
        return Some(format!(
            "looks patterned (repeats, runs or sequences: about {bits:.0} bits, under \
             {MIN_ESTIMATED_BITS}); {advice}"
        ));
    }
    None
}

/// The keys of `STRATA_JWT_PREVIOUS_SECRETS`, `kid=secret[,kid=secret…]`, each trimmed; blank means
/// none. Refuses an empty entry, kid or secret, an entry without `=`, a kid given twice or equal to
/// `current_kid` (tokens of the current key would be checked against the retired one), and a
/// secret [`unfit_key`] refuses. Errors name the kid, never a secret.
pub fn previous_keys<'a>(
    raw: &'a str,
    current_kid: Option<&str>,
    production: bool,
) -> Result<Vec<(&'a str, &'a str)>, String> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut kids = HashSet::new();
    let mut keys = Vec::new();
    for (index, entry) in raw.split(',').enumerate() {
        let position = index + 1;
        if entry.trim().is_empty() {
            return Err(format!(
                "entry {position} is an empty entry; expected kid=secret[,kid=secret…]"
            ));
        }
        let (kid, secret) = entry.split_once('=').ok_or_else(|| {
            format!("entry {position} is not kid=secret; expected kid=secret[,kid=secret…]")
        })?;
        let (kid, secret) = (kid.trim(), secret.trim());
        if kid.is_empty() {
            return Err(format!("entry {position} has an empty kid"));
        }
        if secret.is_empty() {
            return Err(format!("kid {kid:?} has an empty secret"));
        }
        if !kids.insert(kid) || current_kid == Some(kid) {
            return Err(format!(
                "duplicate kid {kid:?} (each retired key, and the current STRATA_JWT_KID, needs \
                 its own)"
            ));
        }
        if let Some(problem) = unfit_key(secret, production) {
            return Err(format!("the secret of kid {kid:?} {problem}"));
        }
        keys.push((kid, secret));
    }
    Ok(keys)
}

/// A rough count of the bits of `key` that are not pattern: the Shannon entropy per byte, of the
/// bytes or of the differences between neighbours (whichever is lower, so that `0123…` and
/// `acegi…` score like `aaaa…`), times the bytes left after a repetition (for the shift `p` that
/// explains most, bytes equal to the one `p` before are not counted, so `abcabc…!` is worth
/// `abc!`). Random keys score near their length times the log of their alphabet.
pub fn estimated_bits(key: &[u8]) -> f64 {
    let differences: Vec<u8> = key.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let per_byte = shannon(key).min(shannon(&differences));
    let unrepeated = (1..=key.len() / 2)
        .map(|shift| {
            shift
                + (shift..key.len())
                    .filter(|&i| key[i] != key[i - shift])
                    .count()
        })
        .min()
        .unwrap_or(key.len());
    per_byte * unrepeated as f64
}

/// Shannon entropy of the distribution of `bytes`, in bits per byte.
fn shannon(bytes: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &byte in bytes {
        counts[usize::from(byte)] += 1;
    }
    let total = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = count as f64 / total;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_score_far_above_the_threshold() {
        for key in [
            "eOC0wPSAqxmPiF52RDkCEuy+Fuk5HlZxV1apDUyhZJk=",
            "zt2dSbY00d3b+JvHGQuhTcm1U6pOAROgUCLBZj/kkrs=",
            "2851ef06c389735ed211df5ff37ed50476e8fa80f2d1e59f4365b518e040c5c0",
            "0rFLeeKRn6olSXAjNbbmI+xDyQXRFUziFT/Kbi5rhWCAe7NaPyDOALxElsQFQ5Tx",
        ] {
            let bits = estimated_bits(key.as_bytes());
            assert!(bits > 2.0 * MIN_ESTIMATED_BITS, "{key}: {bits}");
            assert_eq!(unfit_key(key, true), None);
        }
    }

    #[test]
    fn fresh_random_keys_always_pass() {
        for _ in 0..2000 {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).expect("randomness");
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let bits = estimated_bits(hex.as_bytes());
            assert!(bits > 2.0 * MIN_ESTIMATED_BITS, "{hex}: {bits}");
        }
    }

    #[test]
    fn patterns_score_under_the_threshold() {
        for key in [
            "a".repeat(48),
            "abc".repeat(16),
            "abc".repeat(16) + "!",
            "0123456789".repeat(5),
            "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".into(),
            "acegikmoqsuwy".repeat(3),
            "a".repeat(47) + "b",
            "test-secret-test-secret-test-secret!".into(),
            "k8Jq2LmZ".repeat(6),
        ] {
            let bits = estimated_bits(key.as_bytes());
            assert!(bits < MIN_ESTIMATED_BITS, "{key}: {bits}");
            assert!(unfit_key(&key, true).is_some_and(|why| why.contains("patterned")));
            assert_eq!(
                unfit_key(&key, false),
                None,
                "only production judges patterns"
            );
        }
    }

    #[test]
    fn the_estimate_of_degenerate_input_is_zero() {
        assert_eq!(estimated_bits(b""), 0.0);
        assert_eq!(estimated_bits(b"x"), 0.0);
        assert_eq!(estimated_bits(&[7; 100]), 0.0);
    }

    #[test]
    fn placeholders_are_found_inside_values_whatever_the_case() {
        assert!(is_placeholder("postgres://strata:CHANGE-ME@db/strata"));
        assert!(is_placeholder("Change-Me-to-at-least-32-random-bytes-0001"));
        assert!(!is_placeholder(
            "eOC0wPSAqxmPiF52RDkCEuy+Fuk5HlZxV1apDUyhZJk="
        ));
    }

    #[test]
    fn previous_keys_parse_trimmed_and_refuse_what_is_ambiguous() {
        let good = "2851ef06c389735ed211df5ff37ed50476e8fa80f2d1e59f4365b518e040c5c0";
        assert_eq!(
            previous_keys(&format!(" a = {good} ,b={good}"), Some("c"), true),
            Ok(vec![("a", good), ("b", good)])
        );
        assert_eq!(previous_keys("  ", None, true), Ok(Vec::new()));
        for (raw, why) in [
            (format!("a={good},"), "empty entry"),
            ("a=".into(), "empty secret"),
            (format!("={good}"), "empty kid"),
            (good.into(), "not kid=secret"),
            (format!("a={good},a={good}"), "duplicate"),
            (format!("c={good}"), "duplicate"),
        ] {
            let error = previous_keys(&raw, Some("c"), false).expect_err(&raw);
            assert!(error.contains(why), "{raw}: {error}");
            assert!(!error.contains(good), "{error}");
        }
    }
}
