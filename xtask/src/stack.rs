//! The PostgreSQL and Redis servers every command works against.
//!
//! Each is, in order of preference: the server named by DATABASE_URL / REDIS_URL when it lets us
//! in, the local default port when the server there lets us in without a password, or a private
//! server started here from the machine's binaries (installed with apt-get when we are root on a
//! Debian-like system) with its data under `target/xtask`. "Lets us in" is a real login and query
//! ([`probe`]): a server named by the environment that refuses it is an error, since someone asked
//! for that server; one on the default port that refuses it (Debian's packaged PostgreSQL wants a
//! password) gives way to a private server, with one line saying how to use it instead. Private
//! servers are stopped when the [`Stack`] is dropped, which happens on every way out of the
//! process except SIGKILL.

mod postgres;
pub(crate) mod probe;
pub(crate) mod redis;

use anyhow::bail;

use crate::urls;
use probe::Probe;

pub use postgres::PrivatePostgres;
pub use redis::PrivateRedis;

/// Skips the environment and the local defaults and always starts private servers (set to `1`).
pub const PRIVATE_KNOB: &str = "XTASK_PRIVATE_SERVERS";

/// Tells the failure tests where the PostgreSQL server binaries are.
pub const PG_BIN_VARIABLE: &str = "XTASK_PG_BIN";
/// Tells the failure tests which `redis-server` to run.
pub const REDIS_SERVER_VARIABLE: &str = "XTASK_REDIS_SERVER";

/// The server binaries the failure tests start private servers from (they kill and restart
/// them), found or installed the same way as for private servers.
pub async fn server_binaries() -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    Ok((
        postgres::binaries_dir().await?,
        redis::server_program().await?,
    ))
}

const DEFAULT_DATABASE: &str = "strata";
const LOCAL_POSTGRES: (&str, u16) = ("127.0.0.1", 5432);
const LOCAL_REDIS: (&str, u16) = ("127.0.0.1", 6379);

/// The servers in use, and the private ones to stop when this is dropped.
pub struct Stack {
    database_url: String,
    redis_url: String,
    database: String,
    // Dropped in declaration order: Redis first, then PostgreSQL.
    _redis: Option<PrivateRedis>,
    _postgres: Option<PrivatePostgres>,
}

impl Stack {
    /// Finds or starts both servers, printing one line per server about which one is used.
    pub async fn start() -> anyhow::Result<Self> {
        let forced_private = std::env::var(PRIVATE_KNOB).is_ok_and(|v| v == "1");
        let env_database_url = non_empty_var("DATABASE_URL");
        let database = env_database_url
            .as_deref()
            .and_then(urls::database_name)
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());

        let postgres = choose_postgres(
            env_database_url.as_deref(),
            LOCAL_POSTGRES,
            &database,
            forced_private,
        )
        .await?;
        postgres.print();
        let (database_url, private_postgres) = match postgres.url {
            Some(url) => (url, None),
            None => {
                let server = PrivatePostgres::start().await?;
                eprintln!(
                    "xtask: postgres: private server on port {} (data in {})",
                    server.port(),
                    server.data_dir().display()
                );
                (server.url(&database), Some(server))
            }
        };

        let redis = choose_redis(
            non_empty_var("REDIS_URL").as_deref(),
            LOCAL_REDIS,
            forced_private,
        )
        .await?;
        redis.print();
        let (redis_url, private_redis) = match redis.url {
            Some(url) => (url, None),
            None => {
                let server = PrivateRedis::start().await?;
                eprintln!("xtask: redis: private server on port {}", server.port());
                (server.url(), Some(server))
            }
        };

        Ok(Self {
            database_url,
            redis_url,
            database,
            _redis: private_redis,
            _postgres: private_postgres,
        })
    }

    /// The application database's URL.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The same server's `postgres` maintenance database, where databases are created and dropped.
    pub fn maintenance_url(&self) -> String {
        urls::with_database(&self.database_url, "postgres")
    }

    /// The application database's name.
    pub fn database_name(&self) -> &str {
        &self.database
    }

    /// The Redis URL.
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }
}

/// What a chooser settled on, and the lines it has to say about it.
#[derive(Debug)]
struct Choice {
    /// The server to use; none means a private one.
    url: Option<String>,
    said: Vec<String>,
}

impl Choice {
    fn print(&self) {
        for line in &self.said {
            eprintln!("xtask: {line}");
        }
    }
}

/// DATABASE_URL if it lets us in, else PostgreSQL on `local` as `postgres` if it does, else none.
/// The URL is tried on the `postgres` database, where xtask creates the application database.
async fn choose_postgres(
    env_url: Option<&str>,
    local: (&str, u16),
    database: &str,
    forced_private: bool,
) -> anyhow::Result<Choice> {
    let (host, port) = local;
    let candidate = Candidate {
        tag: "postgres",
        product: "PostgreSQL",
        variable: "DATABASE_URL",
        env_url,
        local_url: format!("postgres://postgres@{host}:{port}/{database}"),
        with_password: format!("postgres://USER:PASSWORD@{host}:{port}/{database}"),
    };
    choose(candidate, local, forced_private, |url| async move {
        probe::postgres(&urls::with_database(&url, "postgres")).await
    })
    .await
}

/// REDIS_URL if it lets us in, else Redis on `local` if it does, else none.
async fn choose_redis(
    env_url: Option<&str>,
    local: (&str, u16),
    forced_private: bool,
) -> anyhow::Result<Choice> {
    let (host, port) = local;
    let candidate = Candidate {
        tag: "redis",
        product: "Redis",
        variable: "REDIS_URL",
        env_url,
        local_url: format!("redis://{host}:{port}"),
        with_password: format!("redis://:PASSWORD@{host}:{port}"),
    };
    choose(candidate, local, forced_private, |url| async move {
        probe::redis(&url).await
    })
    .await
}

/// What differs between choosing PostgreSQL and choosing Redis.
struct Candidate<'a> {
    /// The prefix of the lines said (`postgres`).
    tag: &'static str,
    /// The server's name in those lines (`PostgreSQL`).
    product: &'static str,
    /// The variable that names a server of the user's (`DATABASE_URL`).
    variable: &'static str,
    /// Its value, if set.
    env_url: Option<&'a str>,
    /// The URL tried on the local default address.
    local_url: String,
    /// How to spell that server's URL with a password, for the line that suggests it.
    with_password: String,
}

/// The variable's server if it lets us in, else the local default's if it does, else none (a
/// private server): a server the user named that refuses us is an error, the local default's
/// refusal only a line saying how to use it.
async fn choose<F, Fut>(
    candidate: Candidate<'_>,
    local: (&str, u16),
    forced_private: bool,
    probe: F,
) -> anyhow::Result<Choice>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Probe>,
{
    let Candidate {
        tag,
        product,
        variable,
        env_url,
        local_url,
        with_password,
    } = candidate;
    let mut said = Vec::new();
    if forced_private {
        said.push(format!(
            "{tag}: {PRIVATE_KNOB}=1, not looking for a running server"
        ));
        return Ok(Choice { url: None, said });
    }
    let (host, port) = local;
    if let Some(url) = env_url {
        match probe(url.to_owned()).await {
            Probe::Ready => {
                said.push(format!("{tag}: {variable} ({})", urls::redacted(url)));
                return Ok(Choice {
                    url: Some(url.to_owned()),
                    said,
                });
            }
            // A URL nobody answers at gives way to the others, as the README promises.
            Probe::Unreachable => said.push(format!(
                "{tag}: {variable} ({}) does not answer; trying {host}:{port}",
                urls::redacted(url)
            )),
            // Someone asked for this server; using another would hide their mistake.
            Probe::Refused(refusal) => bail!(
                "{variable} ({}) answers but {refusal}; correct it, or unset it to use \
                 {host}:{port} or a private server",
                urls::redacted(url)
            ),
        }
    }
    match probe(local_url.clone()).await {
        Probe::Ready => {
            said.push(format!("{tag}: local default {host}:{port}"));
            Ok(Choice {
                url: Some(local_url),
                said,
            })
        }
        Probe::Unreachable => Ok(Choice { url: None, said }),
        Probe::Refused(refusal) => {
            said.push(format!(
                "{tag}: {product} on {host}:{port} {refusal}; using a private server instead \
                 — set {variable}={with_password} to use it"
            ));
            Ok(Choice { url: None, said })
        }
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};
    use std::path::{Path, PathBuf};

    use super::probe::Refusal;
    use super::*;
    use crate::system;

    const PASSWORD: &str = "s3cret-for-the-probe";

    /// A directory of the test's own under the temporary directory, which the `postgres` user can
    /// enter; removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            use std::os::unix::fs::PermissionsExt;
            let path = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            Self(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A port on 127.0.0.1 that nothing listens on: the kernel's pick, released at once, and
    /// unlike a fixed number unlikely to be another test's pick at the same moment.
    fn unused_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn postgres_wanting_a_password_on_the_default_port_gives_way_to_a_private_server()
    -> anyhow::Result<()> {
        let scratch = Scratch::new("pg-password");
        let server =
            PrivatePostgres::start_with_password(scratch.path(), unused_port(), PASSWORD).await?;
        let port = server.port();
        let local = ("127.0.0.1", port);

        // What xtask guesses on a stock Debian machine: the superuser, no password.
        let guessed = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        assert!(probe::accepts("127.0.0.1", port).await);
        assert!(
            matches!(
                probe::postgres(&guessed).await,
                Probe::Refused(Refusal::WantsPassword(_))
            ),
            "{:?}",
            probe::postgres(&guessed).await
        );
        let choice = choose_postgres(None, local, "strata", false).await?;
        assert_eq!(choice.url, None);
        let [line] = choice.said.as_slice() else {
            panic!("one line expected: {:?}", choice.said);
        };
        assert!(
            line.starts_with(&format!(
                "postgres: PostgreSQL on 127.0.0.1:{port} wants a password ("
            )),
            "{line}"
        );
        assert!(
            line.ends_with(&format!(
                "; using a private server instead — set \
                 DATABASE_URL=postgres://USER:PASSWORD@127.0.0.1:{port}/strata to use it"
            )),
            "{line}"
        );
        drop(server);
        Ok(())
    }

    #[tokio::test]
    async fn a_database_url_the_server_refuses_is_an_error_naming_it_and_one_it_accepts_is_used()
    -> anyhow::Result<()> {
        let scratch = Scratch::new("pg-database-url");
        let server =
            PrivatePostgres::start_with_password(scratch.path(), unused_port(), PASSWORD).await?;
        let port = server.port();
        let local = ("127.0.0.1", unused_port());

        let wrong = format!("postgres://postgres:wrong@127.0.0.1:{port}/strata");
        assert!(matches!(
            probe::postgres(&urls::with_database(&wrong, "postgres")).await,
            Probe::Refused(Refusal::WrongPassword(_))
        ));
        let error = choose_postgres(Some(&wrong), local, "strata", false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!(
                "DATABASE_URL (postgres://postgres:***@127.0.0.1:{port}/strata) answers but \
                 refuses the password ("
            )),
            "{error}"
        );
        assert!(
            error.ends_with(&format!(
                "; correct it, or unset it to use 127.0.0.1:{} or a private server",
                local.1
            )),
            "{error}"
        );
        assert!(!error.contains("wrong"), "the password is printed: {error}");

        let no_such_role = format!("postgres://nobody-here:{PASSWORD}@127.0.0.1:{port}/strata");
        let error = choose_postgres(Some(&no_such_role), local, "strata", false)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("answers but refuses"), "{error}");

        let right = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/strata");
        let choice = choose_postgres(Some(&right), local, "strata", false).await?;
        assert_eq!(choice.url.as_deref(), Some(right.as_str()));
        drop(server);
        Ok(())
    }

    #[tokio::test]
    async fn nothing_listening_means_a_private_server_without_a_word_and_a_silent_database_url_gives_way()
    -> anyhow::Result<()> {
        let port = unused_port();
        let local = ("127.0.0.1", port);
        assert_eq!(
            probe::postgres(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).await,
            Probe::Unreachable
        );
        let choice = choose_postgres(None, local, "strata", false).await?;
        assert_eq!((choice.url, choice.said.len()), (None, 0));

        let silent = format!("postgres://app@127.0.0.1:{port}/app");
        let choice = choose_postgres(Some(&silent), local, "app", false).await?;
        assert_eq!(choice.url, None);
        assert_eq!(
            choice.said,
            [format!(
                "postgres: DATABASE_URL ({silent}) does not answer; trying 127.0.0.1:{port}"
            )]
        );
        let choice = choose_redis(None, local, false).await?;
        assert_eq!((choice.url, choice.said.len()), (None, 0));
        Ok(())
    }

    #[tokio::test]
    async fn redis_wanting_a_password_on_the_default_port_gives_way_to_a_private_server()
    -> anyhow::Result<()> {
        let scratch = Scratch::new("redis-password");
        let port = system::free_port(unused_port())?;
        let server =
            PrivateRedis::start_in(scratch.path(), port, &["--requirepass", PASSWORD]).await?;
        let local = ("127.0.0.1", port);

        assert!(probe::accepts("127.0.0.1", port).await);
        assert!(
            matches!(
                probe::redis(&server.url()).await,
                Probe::Refused(Refusal::WantsPassword(_))
            ),
            "{:?}",
            probe::redis(&server.url()).await
        );
        let choice = choose_redis(None, local, false).await?;
        assert_eq!(choice.url, None);
        let [line] = choice.said.as_slice() else {
            panic!("one line expected: {:?}", choice.said);
        };
        assert_eq!(
            line,
            &format!(
                "redis: Redis on 127.0.0.1:{port} wants a password (NOAUTH Authentication \
                 required.); using a private server instead — set \
                 REDIS_URL=redis://:PASSWORD@127.0.0.1:{port} to use it"
            )
        );

        let wrong = format!("redis://:wrong@127.0.0.1:{port}");
        let error = choose_redis(Some(&wrong), local, false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!(
                "REDIS_URL (redis://:***@127.0.0.1:{port}) answers but refuses the password"
            )),
            "{error}"
        );
        assert!(
            error.ends_with(&format!(
                "; correct it, or unset it to use 127.0.0.1:{port} or a private server"
            )),
            "{error}"
        );
        assert!(!error.contains("wrong"), "the password is printed: {error}");
        let right = format!("redis://:{PASSWORD}@127.0.0.1:{port}/0");
        let choice = choose_redis(Some(&right), local, false).await?;
        assert_eq!(choice.url.as_deref(), Some(right.as_str()));
        drop(server);
        Ok(())
    }
}
