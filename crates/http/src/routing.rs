//! Mounting and documenting a route in one act.
//!
//! An area of the API lists its operations once, in [`Routes`]: each [`Operation`] is a handler
//! together with the `#[utoipa::path]` attribute written on it, and the problems it can answer.
//! The server mounts the handler at the path and method the attribute documents, and the OpenAPI
//! document is assembled from the same list, so a route cannot be served undocumented, documented
//! unserved, or mounted at another path than the one its documentation names. Write operations
//! with `operation!`.

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Responder, web};
use serde::de::DeserializeOwned;
use strata_domain::{FieldError, PageLimit, ValidationErrors};
use utoipa::openapi::path::{HttpMethod, Operation as Documented};
use utoipa::openapi::tag::{Tag, TagBuilder};
use utoipa::openapi::{RefOr, Schema};

use crate::problem::{ApiError, ProblemCode};

/// The schemas of a document, by name.
pub(crate) type Schemas = BTreeMap<String, RefOr<Schema>>;

/// One operation: `#[utoipa::path]`-documented handler, mounted where its documentation says,
/// with its problems. `operation!(handler)` or `operation!(handler, || Problems::of([…]))`.
macro_rules! operation {
    ($handler:ident) => {
        $crate::routing::operation!($handler, $crate::routing::Problems::none)
    };
    ($handler:ident, $problems:expr) => {
        ::pastey::paste! {
            $crate::routing::Operation::new::<[<__path_ $handler>], _, _>($handler, $problems)
        }
    };
}

pub(crate) use operation;

/// No route matched: 404 naming the method and path.
pub(crate) async fn unmatched(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ProblemCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

/// What an operation can answer beyond what its shape implies (see the docs area's catalogue): the use
/// case's own errors, and the validation failures of its body and query when they differ from
/// the usual ones.
#[derive(Default)]
pub struct Problems {
    /// The errors the use case raises, as the one mapping in [`crate::problem`] renders them.
    pub(crate) own: Vec<ApiError>,
    /// A refused body; by default an unknown field, as the JSON extractor reports it.
    pub(crate) body: Option<ApiError>,
    /// A refused query string; by default a page limit out of range.
    pub(crate) query: Option<ApiError>,
}

impl Problems {
    /// Nothing of its own.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// The use case's errors.
    pub(crate) fn of(own: impl IntoIterator<Item = ApiError>) -> Self {
        Self {
            own: own.into_iter().collect(),
            ..Self::default()
        }
    }

    /// A body of type `T` with a field it does not have, as the JSON extractor refuses it.
    pub(crate) fn body<T: DeserializeOwned>(self) -> Self {
        self.body_invalid(unknown_field_error(unknown_field::<T>()))
    }

    /// `error` as the example of a refused body.
    pub(crate) fn body_invalid(mut self, error: ApiError) -> Self {
        self.body = Some(error);
        self
    }

    /// `error` as the example of a refused query string.
    pub(crate) fn query_invalid(mut self, error: ApiError) -> Self {
        self.query = Some(error);
        self
    }

    /// The example of a refused body (taken: it is used once).
    pub(crate) fn take_body_error(&mut self) -> ApiError {
        self.body
            .take()
            .unwrap_or_else(|| unknown_field_error("unknown field `colour`".to_owned()))
    }

    /// The example of a refused query string (taken: it is used once).
    pub(crate) fn take_query_error(&mut self) -> ApiError {
        self.query.take().unwrap_or_else(|| {
            ApiError::validation(ValidationErrors(
                PageLimit::parse(Some("1000")).err().into_iter().collect(),
            ))
        })
    }
}

fn unknown_field_error(message: String) -> ApiError {
    ApiError::validation(ValidationErrors::single(FieldError::new(
        "colour",
        "unknown_field",
        message,
    )))
}

/// serde's message for a `colour` field that `T` does not have.
fn unknown_field<T: DeserializeOwned>() -> String {
    serde_json::from_value::<T>(serde_json::json!({ "colour": "red" }))
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default()
}

/// A documented handler, ready to mount and to describe.
pub struct Operation {
    path: String,
    method: HttpMethod,
    route: actix_web::Route,
    describe: fn() -> Documented,
    schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
    problems: fn() -> Problems,
}

impl Operation {
    /// `handler`, documented by `P` (the struct `#[utoipa::path]` generates beside it).
    pub fn new<P, F, Args>(handler: F, problems: fn() -> Problems) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let methods = P::methods();
        let [method] = methods.as_slice() else {
            panic!("{} must document exactly one method", P::path());
        };
        Self {
            path: P::path(),
            method: method.clone(),
            route: web::route().method(actix_method(method)).to(handler),
            describe: describe::<P>,
            schemas: <P as utoipa::__dev::SchemaReferences>::schemas,
            problems,
        }
    }
}

/// The operation with its tags, as `#[derive(OpenApi)]` would list it.
fn describe<P: utoipa::Path + utoipa::__dev::Tags<'static>>() -> Documented {
    let mut operation = P::operation();
    let tags = operation.tags.get_or_insert_with(Vec::new);
    tags.extend(
        <P as utoipa::__dev::Tags>::tags()
            .into_iter()
            .map(str::to_owned),
    );
    operation
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Post => Method::POST,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// A resource (one path, its methods) or a scope of them.
enum Node {
    Resource {
        path: String,
        operations: Vec<Operation>,
    },
    Scope {
        prefix: &'static str,
        routes: Routes,
    },
}

/// One area of the API: its operations, in the order they are matched, and its documentation
/// (tags, and rules the schema attributes cannot state). What it mounts is what it documents.
pub struct Routes {
    base: String,
    nodes: Vec<Node>,
    tags: Vec<Tag>,
    rules: Vec<fn(&mut Schemas)>,
}

/// One operation of the document with what it can answer.
pub(crate) struct Described {
    /// Its path, as documented.
    pub(crate) path: String,
    /// Its method.
    pub(crate) method: HttpMethod,
    /// Its documentation.
    pub(crate) operation: Documented,
    /// Its problems.
    pub(crate) problems: Problems,
}

impl Routes {
    /// The routes of an area mounted inside the scope `base` (`""` at the root): every path an
    /// operation documents starts with `base`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            nodes: Vec::new(),
            tags: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// The scope the area is mounted in.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Adds a tag of the document, with its description.
    pub fn tag(mut self, name: &str, description: &str) -> Self {
        self.tags.push(
            TagBuilder::new()
                .name(name)
                .description(Some(description))
                .build(),
        );
        self
    }

    /// Adds a rule that changes the area's schemas once they are all collected.
    pub fn rule(mut self, rule: fn(&mut Schemas)) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds `operation`, on the resource of its path (made when it is the first on it).
    pub fn route(mut self, operation: Operation) -> Self {
        let Some(relative) = operation.path.strip_prefix(self.base.as_str()) else {
            panic!(
                "{} is documented outside the scope {} it is mounted in",
                operation.path, self.base
            );
        };
        let relative = relative.to_owned();
        let existing = self.nodes.iter_mut().find_map(|node| match node {
            Node::Resource { path, operations } if *path == relative => Some(operations),
            _ => None,
        });
        match existing {
            Some(operations) => operations.push(operation),
            None => self.nodes.push(Node::Resource {
                path: relative,
                operations: vec![operation],
            }),
        }
        self
    }

    /// Adds a scope at `prefix` (matched by its prefix before any of its routes), holding what
    /// `build` adds.
    pub fn scope(mut self, prefix: &'static str, build: impl FnOnce(Routes) -> Routes) -> Self {
        let routes = build(Routes::new(&format!("{}{prefix}", self.base)));
        // The area's documentation is its scopes' too: tags and rules are kept at the top.
        self.tags.extend(routes.tags.iter().cloned());
        self.rules.extend(routes.rules.iter().copied());
        self.nodes.push(Node::Scope { prefix, routes });
        self
    }

    /// Mounts every route, each at the path and method its documentation names.
    pub fn configure(self, cfg: &mut web::ServiceConfig) {
        for node in self.nodes {
            match node {
                Node::Resource { path, operations } => {
                    let resource = operations
                        .into_iter()
                        .fold(web::resource(path), |resource, operation| {
                            resource.route(operation.route)
                        });
                    cfg.service(resource);
                }
                Node::Scope { prefix, routes } => {
                    cfg.service(web::scope(prefix).configure(|cfg| routes.configure(cfg)));
                }
            }
        }
    }

    /// The area's tags.
    pub(crate) fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// The area's schema rules, nested scopes' included.
    pub(crate) fn rules(&self) -> &[fn(&mut Schemas)] {
        &self.rules
    }

    /// Every operation, described, with the schemas their bodies name.
    pub(crate) fn describe(&self, schemas: &mut Vec<(String, RefOr<Schema>)>) -> Vec<Described> {
        let mut described = Vec::new();
        for node in &self.nodes {
            match node {
                Node::Resource { operations, .. } => {
                    for operation in operations {
                        (operation.schemas)(schemas);
                        described.push(Described {
                            path: operation.path.clone(),
                            method: operation.method.clone(),
                            operation: (operation.describe)(),
                            problems: (operation.problems)(),
                        });
                    }
                }
                Node::Scope { routes, .. } => described.extend(routes.describe(schemas)),
            }
        }
        described
    }
}

/// The object schema in `schema`, if it is one written out (not a reference).
pub(crate) fn object_mut(
    schema: Option<&mut RefOr<Schema>>,
) -> Option<&mut utoipa::openapi::schema::Object> {
    match schema {
        Some(RefOr::T(Schema::Object(object))) => Some(object),
        _ => None,
    }
}
