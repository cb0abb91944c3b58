//! Whether a server will have us: a real login and a real command, not merely an accepted TCP
//! connection.
//!
//! A stock Debian machine runs the packaged PostgreSQL on 127.0.0.1:5432, which accepts the
//! connection and then asks for a password, and a Redis may be set up with `requirepass`. A port
//! that answers is therefore not a server the commands can use; only a login (and, for Redis, a
//! `PING` after it) tells, and its refusal says why.

use std::fmt;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::urls;

/// How long the TCP connection may take: a local server accepts at once, and an address nobody
/// listens on should not hold the commands up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the login and the first command may take once connected; a loaded machine's SCRAM
/// exchange takes milliseconds, so this only stops a server that never answers.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a server made of our login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// It let us in and answered a query (`SELECT 1`, `PING`).
    Ready,
    /// Nothing accepts connections there.
    Unreachable,
    /// Something accepts connections there but did not let us in.
    Refused(Refusal),
}

/// Why a server that answers did not let us in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It asks for a password and the URL has none.
    WantsPassword(String),
    /// It refused the password the URL gave.
    WrongPassword(String),
    /// It refused the login for another reason (no such role or database, no `pg_hba.conf`
    /// entry, no permission), or did not speak the protocol expected.
    Other(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WantsPassword(detail) => write!(f, "wants a password ({detail})"),
            Self::WrongPassword(detail) => write!(f, "refuses the password ({detail})"),
            Self::Other(detail) => write!(f, "refuses the login ({detail})"),
        }
    }
}

/// Logs in to the PostgreSQL server and database `url` names and runs `SELECT 1`.
pub async fn postgres(url: &str) -> Probe {
    let Some((host, port)) = urls::host_port(url, 5432) else {
        return Probe::Unreachable;
    };
    if !accepts(&host, port).await {
        return Probe::Unreachable;
    }
    let login = async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        let answered = client.simple_query("SELECT 1").await;
        drop(client);
        let _ = connection.await;
        answered.map(drop)
    };
    match tokio::time::timeout(LOGIN_TIMEOUT, login).await {
        Ok(Ok(())) => Probe::Ready,
        Ok(Err(error)) => Probe::Refused(postgres_refusal(&error)),
        Err(_) => Probe::Refused(Refusal::Other(format!(
            "no answer to a login within {}s",
            LOGIN_TIMEOUT.as_secs()
        ))),
    }
}

fn postgres_refusal(error: &tokio_postgres::Error) -> Refusal {
    use tokio_postgres::error::SqlState;
    if let Some(db) = error.as_db_error() {
        let detail = db.message().to_owned();
        return if *db.code() == SqlState::INVALID_PASSWORD {
            Refusal::WrongPassword(detail)
        } else {
            Refusal::Other(detail)
        };
    }
    // The driver gives up before answering an authentication request it has no password for; its
    // error kind is private, so the message is all there is to go by.
    let cause = std::error::Error::source(error).map(ToString::to_string);
    if cause.as_deref() == Some("password missing") {
        return Refusal::WantsPassword("the URL has none".to_owned());
    }
    Refusal::Other(error.to_string())
}

/// Connects to the Redis server `url` names (authenticating and selecting the database as the URL
/// says, like the API) and sends `PING`.
pub async fn redis(url: &str) -> Probe {
    let Some((host, port)) = urls::host_port(url, 6379) else {
        return Probe::Unreachable;
    };
    if !accepts(&host, port).await {
        return Probe::Unreachable;
    }
    let client = match redis::Client::open(url) {
        Ok(client) => client,
        Err(error) => return Probe::Refused(Refusal::Other(format!("not a Redis URL: {error}"))),
    };
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(LOGIN_TIMEOUT, ping).await {
        Ok(Ok(_)) => Probe::Ready,
        Ok(Err(error)) => Probe::Refused(redis_refusal(&error)),
        Err(_) => Probe::Refused(Refusal::Other(format!(
            "no answer to PING within {}s",
            LOGIN_TIMEOUT.as_secs()
        ))),
    }
}

fn redis_refusal(error: &redis::RedisError) -> Refusal {
    let detail = || {
        [error.code(), error.detail()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    };
    match error.code() {
        Some("NOAUTH") => Refusal::WantsPassword(detail()),
        Some("WRONGPASS") => Refusal::WrongPassword(detail()),
        // The client turns the server's refusal of the URL's credentials into an error of its own.
        _ if error.kind() == redis::ErrorKind::AuthenticationFailed => {
            Refusal::WrongPassword(error.detail().unwrap_or("AUTH failed").to_owned())
        }
        Some(_) => Refusal::Other(detail()),
        None => Refusal::Other(error.to_string()),
    }
}

/// Whether something accepts TCP connections at `host:port` within a second. Only for servers we
/// started ourselves: someone else's may accept and still refuse us (see [`postgres`]).
pub async fn accepts(host: &str, port: u16) -> bool {
    let connect = async {
        for address in tokio::net::lookup_host((host, port)).await.ok()? {
            if TcpStream::connect(address).await.is_ok() {
                return Some(());
            }
        }
        None
    };
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, connect).await,
        Ok(Some(()))
    )
}
