//! `strata healthcheck`: one plain-HTTP probe of the process next door, so a container runtime's
//! health check needs neither a shell nor curl in the image.
//!
//! It speaks just enough HTTP/1.1 for a `GET` over loopback: one request with `Connection: close`,
//! and the status line of the answer (parsed by `httparse`, the parser actix itself uses). Healthy
//! means `200`; anything else, including no answer within the timeout, is a failure with one line
//! saying what was seen.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Bytes read at most before the status line and headers must be complete: a health endpoint's
/// headers are a few hundred bytes, and a peer streaming more is not a Strata process.
const MAX_HEAD: usize = 16 * 1024;

/// What to ask, and of whom.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Where the process listens, as reachable from inside its own network namespace.
    pub address: SocketAddr,
    /// The request target, an absolute path such as `/health/ready`.
    pub path: String,
    /// The bound on the whole exchange: connect, send, and read the status line.
    pub timeout: Duration,
}

/// Why a probe did not find the process healthy.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing accepted the connection (not started yet, crashed, or another port).
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// Where the probe connected.
        address: SocketAddr,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// The connection broke while sending or reading.
    #[error("{address} broke the connection: {source}")]
    Io {
        /// Where the probe connected.
        address: SocketAddr,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// No complete answer in time: a process so overloaded or stuck is not healthy.
    #[error("no answer from http://{address}{path} within {}s", timeout.as_secs_f64())]
    Timeout {
        /// Where the probe connected.
        address: SocketAddr,
        /// What it asked for.
        path: String,
        /// The bound that passed.
        timeout: Duration,
    },
    /// The peer answered something that is not an HTTP/1.x response head.
    #[error("http://{address}{path} did not answer HTTP: {reason}")]
    NotHttp {
        /// Where the probe connected.
        address: SocketAddr,
        /// What it asked for.
        path: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// An answer, but not `200`: draining (503), a dependency refused by the deep check, or a
    /// wrong path (404).
    #[error("GET http://{address}{path} answered {status}")]
    Status {
        /// Where the probe connected.
        address: SocketAddr,
        /// What it asked for.
        path: String,
        /// The status code of the answer.
        status: u16,
    },
}

/// Where to connect to reach a server listening on `host`: a wildcard listener (`0.0.0.0`, `::`)
/// is reached on the loopback address of its family, any other address as it is. Host names are
/// resolved, first address first.
pub async fn address_of(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() => Ok((Ipv4Addr::LOCALHOST, port).into()),
        Ok(IpAddr::V6(ip)) if ip.is_unspecified() => Ok((Ipv6Addr::LOCALHOST, port).into()),
        Ok(ip) => Ok((ip, port).into()),
        Err(_) => tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} resolves to no address"),
                )
            }),
    }
}

/// Checks that `path` can go on a request line: an absolute path with no whitespace or control
/// characters (which would let an argument forge the rest of the request).
pub fn valid_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} is not an absolute path (it must start with /)"
        ));
    }
    if path
        .bytes()
        .any(|byte| byte.is_ascii_whitespace() || byte.is_ascii_control())
    {
        return Err(format!("{path:?} holds whitespace or control characters"));
    }
    Ok(path.to_owned())
}

/// Sends the probe; `Ok` carries the `200`, every other outcome is the reason it failed.
pub async fn check(probe: &Probe) -> Result<u16, ProbeError> {
    match tokio::time::timeout(probe.timeout, exchange(probe)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ProbeError::Timeout {
            address: probe.address,
            path: probe.path.clone(),
            timeout: probe.timeout,
        }),
    }
}

async fn exchange(probe: &Probe) -> Result<u16, ProbeError> {
    let address = probe.address;
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|source| ProbeError::Connect { address, source })?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: strata-healthcheck\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        probe.path
    );
    let io = |source| ProbeError::Io { address, source };
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let not_http = |reason: String| ProbeError::NotHttp {
        address,
        path: probe.path.clone(),
        reason,
    };
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await.map_err(io)?;
        if read == 0 {
            return Err(not_http(format!(
                "the connection closed after {} bytes, before the end of the response head",
                head.len()
            )));
        }
        head.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let status = response.code.unwrap_or_default();
                return if status == 200 {
                    Ok(status)
                } else {
                    Err(ProbeError::Status {
                        address,
                        path: probe.path.clone(),
                        status,
                    })
                };
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(not_http(format!(
                    "no end of the response head in {MAX_HEAD} bytes"
                )));
            }
            Err(error) => return Err(not_http(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A peer that reads the request, then writes `answer` (in pieces of `piece` bytes) and closes.
    async fn peer(answer: &'static [u8], piece: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = [0_u8; 1024];
            let _ = stream.read(&mut request).await;
            for part in answer.chunks(piece.max(1)) {
                if stream.write_all(part).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        address
    }

    fn probe(address: SocketAddr) -> Probe {
        Probe {
            address,
            path: "/health/ready".into(),
            timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn a_200_is_healthy_even_when_the_head_arrives_in_pieces() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        for piece in [answer.len(), 7, 1] {
            let address = peer(answer, piece).await;
            assert_eq!(check(&probe(address)).await.expect("healthy"), 200);
        }
    }

    #[tokio::test]
    async fn every_other_status_is_unhealthy_and_named() {
        for (answer, status) in [
            (
                &b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\n\r\n"[..],
                503,
            ),
            (b"HTTP/1.1 404 Not Found\r\n\r\n", 404),
            (b"HTTP/1.0 204 No Content\r\n\r\n", 204),
            (
                b"HTTP/1.1 301 Moved Permanently\r\nlocation: /\r\n\r\n",
                301,
            ),
        ] {
            let address = peer(answer, answer.len()).await;
            let error = check(&probe(address)).await.expect_err("unhealthy");
            assert!(
                matches!(error, ProbeError::Status { status: s, .. } if s == status),
                "{error}"
            );
            assert!(
                error.to_string().ends_with(&format!("answered {status}")),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn an_answer_that_is_not_http_is_unhealthy() {
        for answer in [
            &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
            b"-ERR unknown command\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n",
            b"",
        ] {
            let address = peer(answer, answer.len()).await;
            let error = check(&probe(address)).await.expect_err("not HTTP");
            assert!(
                matches!(error, ProbeError::NotHttp { .. }),
                "{answer:?}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn a_head_without_end_is_cut_off() {
        static ENDLESS: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            while head.len() <= MAX_HEAD {
                head.extend_from_slice(b"x-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
            }
            head
        });
        let address = peer(ENDLESS.as_slice(), 4096).await;
        let error = check(&probe(address)).await.expect_err("cut off");
        assert!(matches!(error, ProbeError::NotHttp { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_peer_that_accepts_and_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let held = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
        let probe = Probe {
            timeout: Duration::from_millis(300),
            ..probe(address)
        };
        let error = check(&probe).await.expect_err("timed out");
        assert!(matches!(error, ProbeError::Timeout { .. }), "{error}");
        assert!(error.to_string().contains("within 0.3s"), "{error}");
        held.abort();
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_failure() {
        let address = {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listener.local_addr().expect("address")
        };
        let error = check(&probe(address)).await.expect_err("refused");
        assert!(matches!(error, ProbeError::Connect { .. }), "{error}");
    }

    #[tokio::test]
    async fn wildcard_listeners_are_reached_on_loopback() {
        for (host, expected) in [
            ("0.0.0.0", "127.0.0.1:8080"),
            ("::", "[::1]:8080"),
            ("[::]", "[::1]:8080"),
            ("127.0.0.1", "127.0.0.1:8080"),
            ("10.1.2.3", "10.1.2.3:8080"),
            ("fd00::1", "[fd00::1]:8080"),
            ("localhost", ""),
        ] {
            let address = address_of(host, 8080).await.expect("address");
            if expected.is_empty() {
                assert!(address.ip().is_loopback(), "{host} -> {address}");
            } else {
                assert_eq!(address.to_string(), expected, "{host}");
            }
        }
    }

    #[test]
    fn paths_that_would_forge_the_request_are_refused() {
        assert_eq!(valid_path("/health/live").as_deref(), Ok("/health/live"));
        assert_eq!(
            valid_path("/health?deep=1").as_deref(),
            Ok("/health?deep=1")
        );
        for bad in [
            "health",
            "",
            "/health HTTP/1.1\r\nHost: x",
            "/a b",
            "/a\tb",
            "/a\nb",
            "http://x/health",
        ] {
            assert!(valid_path(bad).is_err(), "{bad:?}");
        }
    }
}
