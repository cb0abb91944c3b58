//! The PostgreSQL and Redis servers every command works against.
//!
//! Each is, in order of preference: the server named by DATABASE_URL / REDIS_URL when it answers,
//! the local default port when something answers there, or a private server started here from the
//! machine's binaries (installed with apt-get when we are root on a Debian-like system) with its
//! data under `target/xtask`. Private servers are stopped when the [`Stack`] is dropped, which
//! happens on every way out of the process except SIGKILL.

mod postgres;
pub(crate) mod redis;

use std::time::Duration;

use tokio::net::TcpStream;

use crate::urls;

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
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

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

        let (database_url, private_postgres) =
            match choose_postgres(env_database_url.as_deref(), &database, forced_private).await {
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

        let (redis_url, private_redis) = match choose_redis(forced_private).await {
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

async fn choose_postgres(
    env_url: Option<&str>,
    database: &str,
    forced_private: bool,
) -> Option<String> {
    if forced_private {
        eprintln!("xtask: postgres: {PRIVATE_KNOB}=1, not looking for a running server");
        return None;
    }
    if let Some(url) = env_url {
        match urls::host_port(url, 5432) {
            Some((host, port)) if answers(&host, port).await => {
                eprintln!("xtask: postgres: DATABASE_URL ({})", urls::redacted(url));
                return Some(url.to_owned());
            }
            _ => eprintln!(
                "xtask: postgres: DATABASE_URL ({}) does not answer; trying {}:{}",
                urls::redacted(url),
                LOCAL_POSTGRES.0,
                LOCAL_POSTGRES.1
            ),
        }
    }
    let (host, port) = LOCAL_POSTGRES;
    if answers(host, port).await {
        eprintln!("xtask: postgres: local default {host}:{port}");
        return Some(format!("postgres://postgres@{host}:{port}/{database}"));
    }
    None
}

async fn choose_redis(forced_private: bool) -> Option<String> {
    if forced_private {
        eprintln!("xtask: redis: {PRIVATE_KNOB}=1, not looking for a running server");
        return None;
    }
    if let Some(url) = non_empty_var("REDIS_URL") {
        match urls::host_port(&url, 6379) {
            Some((host, port)) if answers(&host, port).await => {
                eprintln!("xtask: redis: REDIS_URL ({})", urls::redacted(&url));
                return Some(url);
            }
            _ => eprintln!(
                "xtask: redis: REDIS_URL ({}) does not answer; trying {}:{}",
                urls::redacted(&url),
                LOCAL_REDIS.0,
                LOCAL_REDIS.1
            ),
        }
    }
    let (host, port) = LOCAL_REDIS;
    if answers(host, port).await {
        eprintln!("xtask: redis: local default {host}:{port}");
        return Some(format!("redis://{host}:{port}"));
    }
    None
}

/// Whether something accepts TCP connections at `host:port` within a second.
pub async fn answers(host: &str, port: u16) -> bool {
    let connect = async {
        for address in tokio::net::lookup_host((host, port)).await.ok()? {
            if TcpStream::connect(address).await.is_ok() {
                return Some(());
            }
        }
        None
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, connect).await,
        Ok(Some(()))
    )
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
