//! Keys anyone who has read the repository knows or could guess: shipped placeholders, short or
//! patterned keys, malformed rotations, ambiguous or unreadable secret files. Each case loads the
//! settings the way `strata` does at start-up (`Settings::from_figment` over the environment's
//! values, parsed as figment's `Env` parses them); add a case with one line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::value::Value;
use strata_server::Environment::{self, Development, Production, Test};
use strata_server::{ConfigError, Settings};

/// What loading must do.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Load.
    Accepted,
    /// Refuse with an error naming every variable of the case and containing this text.
    Refused(&'static str),
}
use Expect::{Accepted, Refused};

/// Keys as `openssl rand -base64 32`, `-hex 32` and `-base64 48` print them.
const GOOD: &str = "eOC0wPSAqxmPiF52RDkCEuy+Fuk5HlZxV1apDUyhZJk=";
const GOOD_HEX: &str = "2851ef06c389735ed211df5ff37ed50476e8fa80f2d1e59f4365b518e040c5c0";
const GOOD_48: &str = "0rFLeeKRn6olSXAjNbbmI+xDyQXRFUziFT/Kbi5rhWCAe7NaPyDOALxElsQFQ5Tx";

/// As the value of a `*_FILE` variable: a path nothing can be read from.
const UNREADABLE: &str = "<unreadable>";

/// `(STRATA_ENV, variables, value, expectation)`. Every variable (space-separated) is set to the
/// value; a `*_FILE` one to the path of a file holding the value and a newline (or of a missing
/// file, for [`UNREADABLE`]). Unless the case sets it, `STRATA_JWT_SECRET` is [`GOOD`].
#[rustfmt::skip]
const CASES: &[(Environment, &str, &str, Expect)] = &[
    // The placeholders shipped in deploy/ (every one: see the test below), and edits of them.
    (Production, "STRATA_JWT_SECRET", "CHANGE-ME-to-at-least-32-random-bytes-0000", Refused("placeholder")),
    (Production, "STRATA_JWT_SECRET", "replace-me-with-at-least-32-random-bytes-0000", Refused("placeholder")),
    (Production, "STRATA_JWT_SECRET", "replace-me-strata-postgres-password", Refused("placeholder")),
    (Production, "STRATA_JWT_SECRET", "CHANGE-ME", Refused("placeholder")),
    (Production, "STRATA_JWT_SECRET", "change-me-to-at-least-32-random-bytes-0001", Refused("placeholder")),
    (Production, "STRATA_CURSOR_SECRET", "CHANGE-ME-to-at-least-32-random-bytes-0000", Refused("placeholder")),
    (Production, "STRATA_JWT_PREVIOUS_SECRETS", "old=replace-me-with-at-least-32-random-bytes-0000", Refused("placeholder")),
    (Production, "DATABASE_URL", "postgres://strata:CHANGE-ME@pgbouncer:5432/strata", Refused("placeholder")),
    (Production, "DATABASE_URL", "postgres://strata:replace-me-strata-postgres-password@pgbouncer:5432/strata", Refused("placeholder")),
    (Production, "REDIS_URL", "redis://:CHANGE-ME@redis:6379", Refused("placeholder")),
    // Short or patterned keys.
    (Production, "STRATA_JWT_SECRET", "x19x4opKQlUj3rykalOgeuKNEoDUOGY", Refused("at least 32 bytes")),
    (Production, "STRATA_JWT_SECRET", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Refused("patterned")),
    (Production, "STRATA_JWT_SECRET", "abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc", Refused("patterned")),
    (Production, "STRATA_JWT_SECRET", "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", Refused("patterned")),
    (Production, "STRATA_JWT_SECRET", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", Refused("patterned")),
    (Production, "STRATA_JWT_SECRET", "test-secret-test-secret-test-secret!", Refused("patterned")),
    (Production, "STRATA_CURSOR_SECRET", "x19x4opKQlUj3rykalOgeuKNEoDUOGY", Refused("at least 32 bytes")),
    (Production, "STRATA_CURSOR_SECRET", "abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc", Refused("patterned")),
    (Production, "STRATA_JWT_PREVIOUS_SECRETS", "old=x19x4opKQlUj3rykalOgeuKNEoDUOGY", Refused("at least 32 bytes")),
    (Production, "STRATA_JWT_PREVIOUS_SECRETS", "old=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Refused("patterned")),
    // Rotations that are malformed, empty or ambiguous, in every environment.
    (Production, "STRATA_JWT_PREVIOUS_SECRETS", "old=", Refused("empty secret")),
    (Development, "STRATA_JWT_PREVIOUS_SECRETS", "old=   ", Refused("empty secret")),
    (Test, "STRATA_JWT_PREVIOUS_SECRETS", "=2851ef06c389735ed211df5ff37ed50476e8fa80f2d1e59f4365b518e040c5c0", Refused("empty kid")),
    (Development, "STRATA_JWT_PREVIOUS_SECRETS", "old=eOC0wPSAqxmPiF52RDkCEuy+Fuk5HlZxV1apDUyhZJk=,old=2851ef06c389735ed211df5ff37ed50476e8fa80f2d1e59f4365b518e040c5c0", Refused("duplicate")),
    (Production, "STRATA_JWT_PREVIOUS_SECRETS", "eOC0wPSAqxmPiF52RDkCEuy", Refused("kid=secret")),
    (Test, "STRATA_JWT_PREVIOUS_SECRETS", "old=eOC0wPSAqxmPiF52RDkCEuy+Fuk5HlZxV1apDUyhZJk=,", Refused("empty entry")),
    (Development, "STRATA_JWT_PREVIOUS_SECRETS", "old=short", Refused("at least 32 bytes")),
    // Good keys, and what stays allowed outside production.
    (Production, "STRATA_JWT_SECRET", GOOD, Accepted),
    (Production, "STRATA_JWT_SECRET", GOOD_HEX, Accepted),
    (Production, "STRATA_CURSOR_SECRET", GOOD_48, Accepted),
    (Production, "STRATA_JWT_PREVIOUS_SECRETS", "2026-01=2851ef06c389735ed211df5ff37ed50476e8fa80f2d1e59f4365b518e040c5c0, 2025-07=0rFLeeKRn6olSXAjNbbmI+xDyQXRFUziFT/Kbi5rhWCAe7NaPyDOALxElsQFQ5Tx", Accepted),
    (Production, "STRATA_JWT_PREVIOUS_SECRETS", "", Accepted),
    (Test, "STRATA_JWT_SECRET", "test-secret-test-secret-test-secret!", Accepted),
    (Development, "STRATA_JWT_SECRET", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Accepted),
    (Development, "STRATA_JWT_SECRET", "x19x4opKQlUj3rykalOgeuKNEoDUOGY", Refused("at least 32 bytes")),
    // Secrets mounted as files.
    (Production, "STRATA_JWT_SECRET_FILE", GOOD_HEX, Accepted),
    (Production, "STRATA_CURSOR_SECRET_FILE", GOOD_48, Accepted),
    (Production, "STRATA_JWT_PREVIOUS_SECRETS_FILE", "2026-01=0rFLeeKRn6olSXAjNbbmI+xDyQXRFUziFT/Kbi5rhWCAe7NaPyDOALxElsQFQ5Tx", Accepted),
    (Production, "DATABASE_URL_FILE", "postgres://strata:Vd3kQm9pXr2LwZ7s@pgbouncer:5432/strata", Accepted),
    (Production, "REDIS_URL_FILE", "redis://redis:6379", Accepted),
    (Production, "STRATA_JWT_SECRET_FILE", "CHANGE-ME-to-at-least-32-random-bytes-0000", Refused("placeholder")),
    (Production, "STRATA_JWT_SECRET_FILE", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Refused("patterned")),
    (Production, "STRATA_JWT_PREVIOUS_SECRETS_FILE", "old=", Refused("empty secret")),
    (Production, "STRATA_JWT_SECRET STRATA_JWT_SECRET_FILE", GOOD, Refused("only one")),
    (Test, "STRATA_CURSOR_SECRET STRATA_CURSOR_SECRET_FILE", GOOD_48, Refused("only one")),
    (Production, "DATABASE_URL DATABASE_URL_FILE", "postgres://strata:Vd3kQm9pXr2LwZ7s@pgbouncer:5432/strata", Refused("only one")),
    (Production, "STRATA_JWT_SECRET_FILE", UNREADABLE, Refused("cannot read")),
    (Development, "STRATA_JWT_PRIVATE_KEY_PEM_FILE", UNREADABLE, Refused("cannot read")),
    (Production, "STRATA_JWT_PREVIOUS_SECRETS_FILE", UNREADABLE, Refused("cannot read")),
    (Production, "REDIS_URL_FILE", UNREADABLE, Refused("cannot read")),
];

#[test]
fn weak_published_and_ambiguous_secrets_are_refused_by_name() {
    let files = Files::new();
    let mut failures = Vec::new();
    for (index, &(environment, variables, value, expect)) in CASES.iter().enumerate() {
        let names: Vec<&str> = variables.split_whitespace().collect();
        let mut env = BTreeMap::from([("STRATA_ENV".to_owned(), env_name(environment).to_owned())]);
        if !names
            .iter()
            .any(|name| name.starts_with("STRATA_JWT_SECRET"))
        {
            env.insert("STRATA_JWT_SECRET".into(), GOOD.into());
        }
        let mut unreadable = None;
        for name in &names {
            let set = match name.strip_suffix("_FILE") {
                Some(_) if value == UNREADABLE => {
                    let path = files.missing(index);
                    unreadable = Some(path.display().to_string());
                    path.display().to_string()
                }
                Some(_) => files.holding(index, name, value).display().to_string(),
                None => value.to_owned(),
            };
            env.insert((*name).to_owned(), set);
        }
        let case = format!("{environment:?} {variables}={value:?}");
        match (load(&env), expect) {
            (Ok(_), Accepted) => {}
            (Err(error), Accepted) => failures.push(format!("{case}: refused: {error}")),
            (Ok(_), Refused(why)) => {
                failures.push(format!("{case}: accepted, must be refused ({why})"))
            }
            (Err(error), Refused(why)) => {
                let message = error.to_string();
                if !names.contains(&error.variable.as_str())
                    || !names.iter().all(|name| message.contains(name))
                {
                    failures.push(format!(
                        "{case}: the error does not name {variables}: {message}"
                    ));
                }
                if !message.contains(why) {
                    failures.push(format!("{case}: the error does not say {why:?}: {message}"));
                }
                if let Some(path) = &unreadable
                    && !message.contains(path.as_str())
                {
                    failures.push(format!(
                        "{case}: the error does not name the file: {message}"
                    ));
                }
                // A refused key must not reach the log that reports the refusal.
                if value
                    .split([',', '='])
                    .any(|secret| secret.trim().len() >= 8 && message.contains(secret.trim()))
                {
                    failures.push(format!("{case}: the error repeats the secret: {message}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every placeholder-looking word of deploy/ and the README is in the list the binary refuses,
/// and is refused; every secret-named setting there is a placeholder or a `${...}` reference.
#[test]
fn every_placeholder_the_repository_ships_is_listed_and_refused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    collect(&root.join("deploy"), &mut files);
    let looks_placeholder = |word: &str| {
        let word = word.to_ascii_lowercase();
        ["change-me", "changeme", "replace-me", "replaceme"]
            .iter()
            .any(|marker| word.contains(marker))
    };
    let mut found = BTreeMap::new();
    let mut problems = Vec::new();
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file).expect("readable")).into_owned();
        let origin = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            if looks_placeholder(word) {
                found.insert(word.to_owned(), origin.clone());
            }
        }
        for line in text.lines() {
            let line = line.trim_start_matches([' ', '#', '-']);
            let Some((name, value)) = line.split_once([':', '=']) else {
                continue;
            };
            let name = name.trim();
            let secret_named = ["SECRET", "PASSWORD", "PRIVATE_KEY"]
                .iter()
                .any(|part| name.contains(part));
            let value = value.trim().trim_matches(['"', '\'']);
            if secret_named
                && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                && !value.is_empty()
                && !value.starts_with("${")
                && !looks_placeholder(value)
            {
                problems.push(format!(
                    "{origin}: {name} is set to a value that is not a placeholder"
                ));
            }
        }
    }
    assert!(
        !found.is_empty(),
        "no placeholder found: the scan is broken"
    );
    for (word, origin) in &found {
        if !strata_server::secrets::PLACEHOLDERS.contains(&word.as_str()) {
            problems.push(format!(
                "{origin}: {word:?} is missing from secrets::PLACEHOLDERS"
            ));
        }
        let env = BTreeMap::from([
            ("STRATA_ENV".to_owned(), "production".to_owned()),
            ("STRATA_JWT_SECRET".to_owned(), word.clone()),
        ]);
        match load(&env) {
            Err(error)
                if error.variable == "STRATA_JWT_SECRET"
                    && error.message.contains("placeholder") => {}
            other => problems.push(format!(
                "{origin}: {word:?} as STRATA_JWT_SECRET: {other:?}"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Loads `env` as `strata` does: `STRATA_*` and the URL variables, each value parsed as figment's
/// `Env` parses it, extracted and validated by `Settings::from_figment`.
fn load(env: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
    let figment = env.iter().fold(Figment::new(), |figment, (name, raw)| {
        let key = name
            .strip_prefix("STRATA_")
            .unwrap_or(name)
            .to_ascii_lowercase();
        let value: Value = raw.parse().expect("parsing a value is infallible");
        figment.merge((key, value))
    });
    Settings::from_figment(figment)
}

fn env_name(environment: Environment) -> &'static str {
    match environment {
        Development => "development",
        Test => "test",
        Production => "production",
    }
}

fn collect(directory: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).expect("deploy/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// A private directory for the cases' secret files, removed afterwards.
struct Files(PathBuf);

impl Files {
    fn new() -> Self {
        let directory =
            std::env::temp_dir().join(format!("strata-secrets-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&directory).expect("a temporary directory");
        Self(directory)
    }

    /// A file holding `value` as a mounted secret does: with a trailing newline.
    fn holding(&self, case: usize, name: &str, value: &str) -> PathBuf {
        let path = self.0.join(format!("{case}-{name}"));
        std::fs::write(&path, format!("{value}\n")).expect("a secret file");
        path
    }

    fn missing(&self, case: usize) -> PathBuf {
        self.0.join(format!("{case}-missing"))
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
