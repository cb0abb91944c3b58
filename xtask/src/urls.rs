//! Just enough of `postgres://` and `redis://` connection strings to probe a server and to point a
//! URL at another database, without pulling a URL parser into the developer tooling.

/// The host and port a connection string points at, with the scheme's default port filled in.
pub fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority(url)?;
    // Credentials may contain ':' and '@'; the host starts after the last '@'.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    // libpq accepts a list of hosts; the first is the one tried first.
    let host_port = host_port.split(',').next().unwrap_or_default();
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = match port {
        Some(port) if !port.is_empty() => port.parse().ok()?,
        _ => default_port,
    };
    let host = if host.is_empty() { "localhost" } else { host };
    Some((host.to_owned(), port))
}

/// The database a `postgres://` URL names, if it names one.
pub fn database_name(url: &str) -> Option<String> {
    let after_scheme = &url[url.find("://")? + 3..];
    let path = after_scheme.split(['?', '#']).next().unwrap_or_default();
    let (_, name) = path.split_once('/')?;
    (!name.is_empty()).then(|| name.to_owned())
}

pub use strata_postgres::with_database;

/// `url` with the password (if any) masked, for printing.
pub fn redacted(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..authority_end];
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!(
                "{}{user}:***@{host}{}",
                &url[..start],
                &url[authority_end..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn authority(url: &str) -> Option<&str> {
    let after_scheme = &url[url.find("://")? + 3..];
    after_scheme.split(['/', '?', '#']).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_found_behind_credentials() {
        assert_eq!(
            host_port(
                "postgres://u:p@ss@db.example:6543/app?sslmode=disable",
                5432
            ),
            Some(("db.example".to_owned(), 6543))
        );
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1/strata", 5432),
            Some(("127.0.0.1".to_owned(), 5432))
        );
        assert_eq!(
            host_port("redis://127.0.0.1:6380/0", 6379),
            Some(("127.0.0.1".to_owned(), 6380))
        );
        assert_eq!(
            host_port("redis://[::1]", 6379),
            Some(("::1".to_owned(), 6379))
        );
        assert_eq!(
            host_port("postgres:///strata", 5432),
            Some(("localhost".to_owned(), 5432))
        );
        assert_eq!(host_port("not a url", 5432), None);
    }

    #[test]
    fn the_database_name_is_the_path() {
        assert_eq!(
            database_name("postgres://u@h:5432/app?x=1").as_deref(),
            Some("app")
        );
        assert_eq!(database_name("postgres://u@h:5432/"), None);
        assert_eq!(database_name("postgres://u@h:5432"), None);
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redacted("postgres://u:secret@h:5432/app"),
            "postgres://u:***@h:5432/app"
        );
        assert_eq!(
            redacted("postgres://postgres@h/app"),
            "postgres://postgres@h/app"
        );
    }
}
