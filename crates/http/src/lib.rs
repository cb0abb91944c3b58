//! Strata's HTTP adapter on actix-web: routes, controllers, DTOs, extractors, middleware and the
//! one mapping from use-case errors to RFC 9457 problem responses.
//!
//! [`build_app`] is the whole HTTP surface; the server binary and the HTTP tests both serve it, so
//! what is tested is what runs.
//!
//! The API is organised by area, one module each ([`auth`], [`users`], [`catalog`], [`orders`],
//! [`billing`], [`admin`], [`exports`], [`problems`], [`health`], [`docs`]): its handlers with
//! their `#[utoipa::path]` documentation, its DTOs, its examples, and one [`routing::Routes`]
//! that both mounts its operations and describes them (with the problems each can answer). The
//! rest is what every area shares: extractors, ETags, the problem mapping, the edge and the
//! middleware.

pub mod admin;
pub mod auth;
pub mod billing;
pub mod catalog;
pub mod docs;
pub mod dto;
pub mod edge;
pub mod etag;
mod examples;
pub mod exports;
pub mod extract;
pub mod headers;
pub mod health;
pub mod metrics;
pub mod middleware;
pub mod orders;
pub mod problem;
pub mod problems;
pub mod request_id;
pub mod routing;
pub mod state;
pub mod trace;
pub mod users;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Compress, from_fn};
use std::collections::BTreeMap;

use actix_web::{App, web};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi as Document;

pub use health::Health;
pub use problem::{ApiError, ProblemCode};
pub use state::AppState;

/// The application: every route, the error handlers and the middleware, around `state`.
pub fn build_app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let cors_origins = state.edge.settings().cors_origins.clone();
    let hsts = state.edge.hsts().cloned();
    App::new()
        .app_data(web::Data::new(state))
        .app_data(web::Data::new(docs::Source(document)))
        .app_data(
            web::PathConfig::default().error_handler(|_, _| {
                ApiError::new(ProblemCode::NotFound, "no such resource").into()
            }),
        )
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            ApiError::validation(strata_domain::ValidationErrors::single(
                strata_domain::FieldError::new("query", "invalid", error.to_string()),
            ))
            .into()
        }))
        .configure(mount)
        .default_service(web::to(routing::unmatched))
        // Innermost first; edge.rs explains the order.
        .wrap(from_fn(edge::guard))
        .wrap(Compress::default())
        .wrap(edge::cors(&cors_origins))
        // Boxed: actix keeps the outermost layer's future inside every connection's task, so an
        // unboxed one costs each idle keep-alive connection its size (half a KiB) too.
        .wrap(from_fn(move |req, next| {
            Box::pin(middleware::observe(req, next, hsts.clone()))
        }))
}

/// Every area, in the order of the document's tags; the areas under `/v1` are matched in this
/// order too, each behind its own static prefix (a scope, or a path without parameters), so no
/// route pays for the patterns of the areas before it.
pub(crate) fn areas() -> Vec<routing::Routes> {
    vec![
        auth::routes(),
        users::routes(),
        exports::routes(),
        catalog::routes(),
        orders::routes(),
        billing::routes(),
        admin::routes(),
        health::routes(),
        docs::routes(),
        problems::routes(),
    ]
}

/// Mounts every area: those under `/v1` in one scope (rate limited by the edge), the others at
/// the root.
fn mount(cfg: &mut web::ServiceConfig) {
    let (versioned, root): (Vec<_>, Vec<_>) =
        areas().into_iter().partition(|area| area.base() == "/v1");
    cfg.service(web::scope("/v1").configure(|cfg| {
        for area in versioned {
            area.configure(cfg);
        }
    }));
    for area in root {
        area.configure(cfg);
    }
}

/// The complete OpenAPI 3.1 document: what every area mounts, as its attributes describe it, with
/// the problems each operation can answer.
pub fn document() -> Document {
    let mut document = docs::Info::openapi();
    let mut schemas = Vec::new();
    let mut tags = Vec::new();
    let mut rules = Vec::new();
    let mut problems = BTreeMap::new();
    for area in areas() {
        tags.extend(area.tags().iter().cloned());
        rules.extend(area.rules().iter().copied());
        for described in area.describe(&mut schemas) {
            document.paths.add_path_operation(
                &described.path,
                vec![described.method.clone()],
                described.operation,
            );
            problems.insert(
                (
                    described.path,
                    docs::catalogue::method_name(&described.method),
                ),
                described.problems,
            );
        }
    }
    document.tags = Some(tags);
    document
        .components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    docs::catalogue::complete(&mut document, problems);
    if let Some(components) = document.components.as_mut() {
        for rule in rules {
            rule(&mut components.schemas);
        }
    }
    document
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The module of the crate each file belongs to: its first path component (`catalog` for
    /// `catalog/dto.rs`), `lib` for the crate root.
    fn module_of(relative: &Path) -> String {
        let first = relative
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        first.trim_end_matches(".rs").to_owned()
    }

    /// Every `crate::<name>` a file's code (not its comments) names.
    fn named_modules(source: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for line in source.lines() {
            let code = line.split("//").next().unwrap_or_default();
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
        names
    }

    /// Module → modules it imports, from every file under `src/`; an item of the crate root
    /// (`crate::areas`) counts as `lib`.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![root.clone()];
        let mut sources = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("src is readable") {
                    files.push(entry.expect("a directory entry").path());
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&root).expect("under src").to_owned();
                sources.push((
                    module_of(&relative),
                    std::fs::read_to_string(&path).expect("a file"),
                ));
            }
        }
        let modules: BTreeSet<String> = sources.iter().map(|(m, _)| m.clone()).collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (module, source) in &sources {
            let edges = graph.entry(module.clone()).or_default();
            for name in named_modules(source) {
                let target = if modules.contains(&name) {
                    name
                } else {
                    "lib".to_owned()
                };
                if target != *module {
                    edges.insert(target);
                }
            }
        }
        graph
    }

    /// A circle through `from`, if one exists, skipping imports of `state` (`AppState`, which
    /// every handler takes and which holds the edge and the health checks).
    fn circle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
        let mut stack = vec![vec![from.to_owned()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().cloned().unwrap_or_default();
            for next in graph.get(&last).into_iter().flatten() {
                if next == "state" {
                    continue;
                }
                let mut longer = path.clone();
                longer.push(next.clone());
                if next == from {
                    return Some(longer);
                }
                if seen.insert(next.clone()) {
                    stack.push(longer);
                }
            }
        }
        None
    }

    #[test]
    fn no_module_imports_itself_in_a_circle_but_through_app_state() {
        let graph = imports();
        assert!(graph.contains_key("catalog") && graph["catalog"].contains("routing"));
        let circles: Vec<String> = graph
            .keys()
            .filter_map(|module| circle(&graph, module))
            .map(|circle| circle.join(" → "))
            .collect();
        assert!(circles.is_empty(), "import circles: {circles:#?}");
    }

    #[test]
    fn a_circle_is_found_and_app_state_breaks_none() {
        let graph: BTreeMap<String, BTreeSet<String>> = [
            ("a", vec!["b"]),
            ("b", vec!["c", "state"]),
            ("c", vec!["a"]),
            ("state", vec!["d"]),
            ("d", vec!["state"]),
        ]
        .into_iter()
        .map(|(m, to)| (m.to_owned(), to.into_iter().map(str::to_owned).collect()))
        .collect();
        assert_eq!(
            circle(&graph, "a").map(|c| c.join(" → ")),
            Some("a → b → c → a".to_owned())
        );
        assert_eq!(circle(&graph, "d"), None);
    }
}
