//! The request id: taken from `X-Request-Id` when it is well-formed, otherwise generated (UUIDv7),
//! echoed in the response header, in every log line of the request and in problem bodies.

use std::future::Future;

use actix_web::http::header::{HeaderMap, HeaderName};
use uuid::Uuid;

/// The header carrying the id in and out.
pub const HEADER: &str = "x-request-id";
/// [`HEADER`] as a header name.
pub const HEADER_NAME: HeaderName = HeaderName::from_static(HEADER);

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id from the caller's header if it is 1–128 characters of `[A-Za-z0-9._:-]`, else a new one.
pub fn from_headers(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        })
        .map_or_else(
            || {
                Uuid::now_v7()
                    .hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer())
                    .to_owned()
            },
            str::to_owned,
        )
}

/// Runs `future` with `id` as the current request id. Not an `async fn`: that would wrap the
/// task-local future in one more state machine, moved along with it on every request.
pub fn scope<F: Future>(id: String, future: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, future)
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            HeaderName::from_static(HEADER),
            HeaderValue::from_str(value).expect("header"),
        );
        map
    }

    #[test]
    fn a_well_formed_id_is_kept_and_anything_else_replaced() {
        assert_eq!(from_headers(&headers("abc-123.x:y_z")), "abc-123.x:y_z");
        assert_ne!(from_headers(&headers("has space")), "has space");
        assert_ne!(from_headers(&headers(&"a".repeat(129))), "a".repeat(129));
        assert_eq!(from_headers(&HeaderMap::new()).len(), 36);
    }
}
