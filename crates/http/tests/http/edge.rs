//! The middleware on a real actix server: a panicking handler becomes a 500 problem response and
//! the worker keeps serving.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use strata_http::middleware::observe;

async fn boom() -> HttpResponse {
    panic!("SELECT secret FROM vault")
}

async fn fine() -> HttpResponse {
    HttpResponse::Ok().body("fine")
}

fn get(port: u16, path: &str, request_id: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: {request_id}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_problem_json_and_the_server_survives() -> anyhow::Result<()>
{
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(|| {
        App::new()
            .wrap(from_fn(|req, next| observe(req, next, None)))
            .route("/boom", web::get().to(boom))
            .route("/fine", web::get().to(fine))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);

    let crashed = tokio::task::spawn_blocking(move || get(port, "/boom", "req-panic-1")).await??;
    let lower = crashed.to_ascii_lowercase();
    assert!(crashed.starts_with("HTTP/1.1 500"), "{crashed}");
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{crashed}"
    );
    assert!(lower.contains("x-request-id: req-panic-1"), "{crashed}");
    assert!(crashed.contains(r#""code":"INTERNAL""#), "{crashed}");
    assert!(
        crashed.contains(r#""request_id":"req-panic-1""#),
        "{crashed}"
    );
    assert!(
        !crashed.contains("SELECT"),
        "internals never reach the client: {crashed}"
    );

    let after = tokio::task::spawn_blocking(move || get(port, "/fine", "req-2")).await??;
    assert!(
        after.starts_with("HTTP/1.1 200"),
        "the worker survives: {after}"
    );
    handle.stop(false).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_s_own_bare_errors_are_turned_into_problems() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(|| {
        App::new()
            .wrap(from_fn(|req, next| observe(req, next, None)))
            .service(web::resource("/only-post").route(web::post().to(fine)))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    let response = tokio::task::spawn_blocking(move || get(port, "/only-post", "r")).await??;
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
    assert!(
        response.contains(r#""code":"METHOD_NOT_ALLOWED""#),
        "{response}"
    );
    handle.stop(false).await;
    Ok(())
}

#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn boom_with_credentials(req: actix_web::HttpRequest, _body: web::Bytes) -> HttpResponse {
    // A handler that holds the credentials when it fails must not get them logged.
    let _credentials = req.headers().get("authorization");
    panic!("handler failed while processing a login")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_never_logs_the_authorization_header_or_the_body() -> anyhow::Result<()> {
    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || sink.clone())
        .finish();
    // Global: actix's worker threads do not inherit a thread-local default. No other test of this
    // binary installs a subscriber.
    tracing::subscriber::set_global_default(subscriber)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(|| {
        App::new()
            .wrap(from_fn(|req, next| observe(req, next, None)))
            .route("/login", web::post().to(boom_with_credentials))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);

    let response = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        let body = r#"{"email":"a@b.co","password":"hunter2-body-secret"}"#;
        write!(
            stream,
            "POST /login HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer header-secret-token\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        std::io::Result::Ok(response)
    })
    .await??;
    assert!(response.starts_with("HTTP/1.1 500"), "{response}");
    handle.stop(false).await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone())?;
    assert!(
        logs.contains("handler panicked"),
        "the panic is logged: {logs}"
    );
    for secret in ["header-secret-token", "hunter2-body-secret", "Bearer"] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
    Ok(())
}
