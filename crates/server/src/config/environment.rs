//! How the environment becomes settings: `STRATA_*` names to keys, `<VARIABLE>_FILE` contents, and
//! the names under our prefix that are no setting (reported, refused when a typo, or ignored when
//! a Kubernetes service link).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use figment::Figment;
use figment::providers::Serialized;
use figment::value::{Dict, Value};

use super::variables::Variables;
use super::{ConfigError, config_error};

pub(super) fn variable_for(key: &str) -> String {
    match key {
        "database_url" | "database_url_file" | "redis_url" | "redis_url_file" => {
            key.to_ascii_uppercase()
        }
        other => format!("STRATA_{}", other.to_ascii_uppercase()),
    }
}

/// The settings that `<VARIABLE>_FILE` may hold instead, by key and variable.
const FROM_FILES: [(&str, &str); 7] = [
    ("jwt_secret", "STRATA_JWT_SECRET"),
    ("jwt_previous_secrets", "STRATA_JWT_PREVIOUS_SECRETS"),
    ("jwt_private_key_pem", "STRATA_JWT_PRIVATE_KEY_PEM"),
    ("jwt_public_key_pem", "STRATA_JWT_PUBLIC_KEY_PEM"),
    ("cursor_secret", "STRATA_CURSOR_SECRET"),
    ("database_url", "DATABASE_URL"),
    ("redis_url", "REDIS_URL"),
];

/// Sets each setting whose `_FILE` variant is set to that file's content, minus one trailing
/// newline (editors and `echo` add one; no key ends with one). Both set is refused rather than
/// one silently winning over the other.
pub(super) fn read_files(mut figment: Figment) -> Result<Figment, ConfigError> {
    for (key, variable) in FROM_FILES {
        let file_key = format!("{key}_file");
        if !figment.contains(&file_key) {
            continue;
        }
        let file_variable = format!("{variable}_FILE");
        let path: PathBuf = figment
            .extract_inner(&file_key)
            .map_err(|error| config_error(&file_variable, error.kind.to_string()))?;
        if figment.contains(key) {
            return Err(config_error(
                &file_variable,
                format!("is set together with {variable}: set only one"),
            ));
        }
        let content = std::fs::read_to_string(&path).map_err(|error| {
            config_error(
                &file_variable,
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        let content = content.strip_suffix('\n').map_or(content.as_str(), |line| {
            line.strip_suffix('\r').unwrap_or(line)
        });
        figment = figment.merge((key, content));
    }
    Ok(figment)
}

/// A `STRATA_*` variable that names no setting: ignored, and reported for the caller to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    /// The variable.
    pub variable: String,
    /// The setting it resembles, if one does.
    pub suggestion: Option<String>,
}

impl std::fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a setting and is ignored", self.variable)?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, " (did you mean {suggestion}?)")?;
        }
        Ok(())
    }
}

/// The keys of [`Variables`]: asked of serde with a key it lacks, which `deny_unknown_fields`
/// answers with all of them, so that no hand-kept list can drift from the struct.
fn setting_keys() -> Option<&'static [&'static str]> {
    let error = Figment::from(("?", 0)).extract::<Variables>().err()?;
    match error.kind {
        figment::error::Kind::UnknownField(_, keys) => Some(keys),
        _ => None,
    }
}

/// Keys that name no setting are taken out, so that what platforms put under our prefix cannot
/// stop the process: Kubernetes' service links (for a Service named `strata-…`) silently, any
/// other with a report. One within a typo of a setting is refused instead: a misspelt secret or
/// proxy list ignored with only a log line would leave production on a default.
pub(super) fn without_unknown(
    figment: Figment,
) -> Result<(Figment, Vec<UnknownVariable>), ConfigError> {
    // Failing either, extraction itself names the problem.
    let (Some(keys), Ok(data)) = (setting_keys(), figment.extract::<Dict>()) else {
        return Ok((figment, Vec::new()));
    };
    let mut kept = Dict::new();
    let mut unknown = Vec::new();
    for (key, value) in data {
        let variable = variable_for(&key);
        if is_service_link(&variable, &value) {
            continue;
        }
        if keys.contains(&key.as_str()) {
            kept.insert(key, value);
            continue;
        }
        let nearest = |within: &dyn Fn(&str) -> usize| {
            keys.iter()
                // Optimal string alignment: a swap of neighbours (`PROT` for `PORT`) is one edit.
                .map(|setting| (*setting, strsim::osa_distance(&key, setting)))
                .filter(|(setting, distance)| *distance <= within(setting))
                .min_by_key(|(_, distance)| *distance)
                .map(|(setting, _)| variable_for(setting))
        };
        // One or two edits (one in a short name) is a slip of the keyboard.
        if let Some(setting) = nearest(&|setting| if setting.len() < 6 { 1 } else { 2 }) {
            return Err(config_error(
                &variable,
                format!("is not a setting: did you mean {setting}?"),
            ));
        }
        unknown.push(UnknownVariable {
            variable,
            suggestion: nearest(&|setting| setting.len() / 2),
        });
    }
    Ok((Figment::from(Serialized::defaults(kept)), unknown))
}

/// Whether a variable is one of the Docker-link variables the kubelet sets for each Service of the
/// namespace (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT>]`, `<NAME>_PORT`,
/// `<NAME>_PORT_<n>_<PROTOCOL>[_PROTO|_PORT|_ADDR]`). The value must have the link's shape too,
/// so that an operator's port number under such a name is still reported.
fn is_service_link(variable: &str, value: &Value) -> bool {
    let text = match value {
        Value::String(_, text) => text.clone(),
        Value::Num(..) => value.to_u128().map(|n| n.to_string()).unwrap_or_default(),
        _ => return false,
    };
    let is_port = |text: &str| text.parse::<u16>().is_ok();
    let is_address = |text: &str| text.parse::<IpAddr>().is_ok();
    let is_link = |text: &str| {
        ["tcp://", "udp://", "sctp://"].iter().any(|scheme| {
            text.strip_prefix(scheme)
                .is_some_and(|address| address.parse::<SocketAddr>().is_ok())
        })
    };
    if let Some(name) = variable.strip_suffix("_SERVICE_HOST") {
        return !name.is_empty() && is_address(&text);
    }
    if let Some(at) = variable.find("_SERVICE_PORT") {
        let rest = &variable[at + "_SERVICE_PORT".len()..];
        return at > 0
            && (rest.is_empty() || rest.len() > 1 && rest.starts_with('_'))
            && is_port(&text);
    }
    variable.match_indices("_PORT").any(|(at, _)| {
        let rest = &variable[at + "_PORT".len()..];
        if at == 0 {
            return false;
        }
        if rest.is_empty() {
            return is_link(&text);
        }
        let parts: Vec<&str> = rest.split('_').skip(1).collect();
        let (port, protocol, field) = match parts.as_slice() {
            [port, protocol] => (*port, *protocol, None),
            [port, protocol, field] => (*port, *protocol, Some(*field)),
            _ => return false,
        };
        if !rest.starts_with('_') || !is_port(port) || !["TCP", "UDP", "SCTP"].contains(&protocol) {
            return false;
        }
        match field {
            None => is_link(&text),
            Some("PROTO") => text == protocol.to_ascii_lowercase(),
            Some("PORT") => text == port,
            Some("ADDR") => is_address(&text),
            Some(_) => false,
        }
    })
}

/// figment reports an unknown field without a path; recover its name from the message.
pub(super) fn unknown_variable(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .map(variable_for)
        .unwrap_or_else(|| "STRATA_*".to_owned())
}
