//! `/problems/{code}`: the page each problem's `type` URI points to, generated from the catalogue.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::problem::{ApiError, ProblemCode};
use crate::routing::{Problems, Routes, operation};

/// The problem pages' route and documentation (at the root, outside `/v1`).
pub(crate) fn routes() -> Routes {
    Routes::new("").route(operation!(page, || {
        Problems::of([ApiError::new(ProblemCode::NotFound, "no such problem type")])
    }))
}

/// A problem type, as JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ProblemType)]
pub struct ProblemTypeView {
    /// The `type` URI.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The stable code.
    pub code: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// The title.
    pub title: &'static str,
    /// What it means and what to do.
    pub description: &'static str,
}

impl From<ProblemCode> for ProblemTypeView {
    fn from(code: ProblemCode) -> Self {
        let (status, name, title) = code.describe();
        Self {
            type_uri: code.type_uri(),
            code: name,
            status: status.as_u16(),
            title,
            description: code.explanation(),
        }
    }
}

/// A human page for one problem code.
#[utoipa::path(
    get,
    path = "/problems/{code}",
    tag = "docs",
    operation_id = "getProblem",
    params(("code" = String, Path, description = "The code in kebab case, as in the `type` URI (`validation-failed`).", example = "insufficient-stock")),
    responses(
        (status = 200, description = "The page: HTML, or JSON when the client accepts `application/json` first.",
            content(
                (String = "text/html", example = json!("<!doctype html>…")),
                (ProblemTypeView = "application/json"),
            )),
    ),
)]
pub(crate) async fn page(
    req: HttpRequest,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Some(code) = ProblemCode::from_slug(&code) else {
        return Err(ApiError::new(ProblemCode::NotFound, "no such problem type"));
    };
    let view = ProblemTypeView::from(code);
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept.starts_with("application/json") || accept.starts_with("application/problem+json")
        });
    let response = HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::VARY, "Accept"))
        .take();
    if wants_json {
        return Ok({ response }.json(view));
    }
    Ok({ response }
        .content_type("text/html; charset=utf-8")
        .body(html(&view)))
}

fn html(view: &ProblemTypeView) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{code} — Strata API</title></head>\n<body>\n<h1>{title}</h1>\n\
         <p><code>{code}</code> · HTTP {status}</p>\n<p>{description}</p>\n\
         <p>Every error is <code>application/problem+json</code>: \
         <code>{{type, title, status, detail, code, request_id, trace_id?, errors?}}</code>. \
         See <a href=\"/docs/\">the API documentation</a>.</p>\n</body></html>\n",
        code = escape(view.code),
        title = escape(view.title),
        status = view.status,
        description = escape(view.description),
    )
}

/// Escapes text for HTML (the catalogue's texts are ours, but backticks and ampersands appear).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_page_that_says_what_it_is() {
        for code in ProblemCode::ALL {
            assert_eq!(ProblemCode::from_slug(&code.slug()), Some(code));
            let view = ProblemTypeView::from(code);
            assert_eq!(view.type_uri, code.type_uri());
            let page = html(&view);
            assert!(page.contains(code.as_str()), "{page}");
            assert!(!code.explanation().is_empty());
        }
        assert_eq!(ProblemCode::from_slug("no-such-thing"), None);
    }
}
