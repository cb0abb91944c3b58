//! A minimal HTTP/1.1 client for driving a local `strata serve` (readiness, an admin token), so
//! that xtask needs no HTTP client crate.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::process::{self, Shutdown};

/// A plain HTTP/1.1 request on a fresh connection, its body read whole: status and body.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    let body = body.unwrap_or_default();
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         {authorization}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .context("the API did not answer in time")??;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .context("not an HTTP response")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `GET /health/ready` on `port` until it answers 200 (at most a minute).
pub async fn wait_ready(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = request(port, "GET", "/health/ready", None, None).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} never became ready on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An account to drive the API as an admin.
pub struct Admin<'a> {
    /// Its email.
    pub email: &'a str,
    /// Its password.
    pub password: &'a str,
    /// Its display name.
    pub display_name: &'a str,
}

/// Registers `admin` (or finds it from an earlier run), runs `grant` (a `strata admin grant`
/// command with the server's environment), logs in and returns the access token.
pub async fn admin_token(
    port: u16,
    admin: &Admin<'_>,
    grant: Command,
    shutdown: &Shutdown,
) -> anyhow::Result<String> {
    let credentials = json!({"email": admin.email, "password": admin.password});
    let mut registration = credentials.clone();
    registration["display_name"] = json!(admin.display_name);
    let registration = registration.to_string();
    let (status, body) =
        request(port, "POST", "/v1/auth/register", None, Some(&registration)).await?;
    if status != 201 && status != 409 {
        bail!("registering {} answered {status}: {body}", admin.email);
    }
    let granted = process::run(grant, "strata admin grant", shutdown).await?;
    if !granted.success() {
        bail!("strata admin grant failed ({granted})");
    }
    let credentials = credentials.to_string();
    let (status, body) = request(port, "POST", "/v1/auth/login", None, Some(&credentials)).await?;
    if status != 200 {
        bail!(
            "logging {} in answered {status}: {body} (did an earlier run register it with another \
             password?)",
            admin.email
        );
    }
    let tokens: Value = serde_json::from_str(&body).context("login body")?;
    tokens["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("login body without an access token")
}
