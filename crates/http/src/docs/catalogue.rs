//! The problem responses of the document, from the catalogue of [`ProblemCode`]s: every
//! operation answers the problems its shape implies (a JSON body, query parameters, an
//! Idempotency-Key, the bearer token, a path id, a rate-limited path) and those its area lists
//! beside it, each rendered exactly as a client receives it; plus the `Problem` schema, the shared
//! response headers and the bearer scheme.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::ResponseError;
use actix_web::body::MessageBody;
use serde_json::Value;
use strata_domain::ValidationErrors;
use strata_services::{AuthError, BillingError, CatalogError, OrderError, UserError};
use utoipa::openapi::example::{Example, ExampleBuilder};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Schema};

use crate::extract::JSON_LIMIT;
use crate::problem::{ApiError, ProblemCode};
use crate::routing::Problems;

/// The name of the bearer security scheme.
pub const BEARER: &str = "bearer";
/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The problems of each operation, by path and method.
pub(crate) type ByOperation = BTreeMap<(String, &'static str), Problems>;

/// Adds what the route attributes leave out, from the catalogue: the `Problem` schema, every
/// operation's problem responses (its own from `problems`), the shared response headers, and the
/// bearer scheme.
pub(crate) fn complete(openapi: &mut Document, mut problems: ByOperation) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Problem".to_owned(), problem_schema().into());
    components
        .schemas
        .insert("FieldError".to_owned(), field_error_schema().into());
    for (name, header) in shared_headers() {
        components.headers.insert(name.to_owned(), header.into());
    }
    components.security_schemes.insert(
        BEARER.to_owned(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An access token from `/v1/auth/register`, `/v1/auth/login` or \
                     `/v1/auth/refresh`: a JWT valid for 15 minutes (`expires_in`). A \
                     missing or invalid token is 401 `UNAUTHENTICATED`, an expired one 401 \
                     `TOKEN_EXPIRED`, one revoked by logout 401 `TOKEN_REVOKED`.",
                ))
                .build(),
        )
        .into(),
    );
    let mut examples = Examples::default();
    for code in ProblemCode::ALL {
        let sample = default_sample(code);
        let mut response =
            problem_response(&mut examples, None, &[sample], catalogue_description(code));
        if code == ProblemCode::MethodNotAllowed {
            response.headers.insert(
                "Allow".to_owned(),
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
                    .description(Some(
                        "The methods the path does support (RFC 9110 §10.2.1), such as \
                         `GET, PATCH`.",
                    ))
                    .example(Some(Value::from("GET, PATCH")))
                    .build()
                    .into(),
            );
        }
        components
            .responses
            .insert(code.as_str().to_owned(), response.into());
    }
    // Samples many operations share, named for what they are rather than where first seen.
    examples.name_as("SERVICE_UNAVAILABLE_overloaded", &ApiError::overloaded());
    examples.name_as(
        "VALIDATION_FAILED_idempotency_key",
        &idempotency_key_invalid(),
    );
    examples.name_as(
        "VALIDATION_FAILED_limit",
        &Problems::none().take_query_error(),
    );
    if let Some(description) = openapi.info.description.as_mut() {
        description.push_str(&codes_table());
    }
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            add_not_modified(operation);
            let own = problems.remove(&(path.clone(), method)).unwrap_or_default();
            add_problems(&mut examples, path, operation, own);
            add_shared_headers(path, operation);
        }
    }
    let components = openapi.components.get_or_insert_with(Default::default);
    components.examples.append(&mut examples.stored);
    refer_to_item_schemas(&mut components.schemas);
}

/// Every operation of a path item, with its method's name.
fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("options", item.options.as_mut()),
        ("head", item.head.as_mut()),
        ("patch", item.patch.as_mut()),
        ("trace", item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation?)))
    .collect()
}

/// The name of `method`, as [`operations`] gives it.
pub(crate) fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "get",
        HttpMethod::Put => "put",
        HttpMethod::Post => "post",
        HttpMethod::Delete => "delete",
        HttpMethod::Options => "options",
        HttpMethod::Head => "head",
        HttpMethod::Patch => "patch",
        HttpMethod::Trace => "trace",
    }
}

/// The bearer security requirement.
fn bearer_requirement() -> SecurityRequirement {
    SecurityRequirement::new(BEARER, Vec::<String>::new())
}

/// True when the operation requires the bearer token.
fn is_authenticated(operation: &Operation) -> bool {
    operation
        .security
        .iter()
        .flatten()
        .any(|requirement| *requirement == bearer_requirement())
}

/// True when `path` spends a rate-limit budget (everything under `/v1/`; health and docs never do).
fn is_rate_limited(path: &str) -> bool {
    path.starts_with("/v1/")
}

fn has_parameter(
    operation: &Operation,
    wanted: impl Fn(&utoipa::openapi::path::Parameter) -> bool,
) -> bool {
    operation
        .parameters
        .iter()
        .flatten()
        .any(|parameter| match parameter {
            RefOr::T(parameter) => wanted(parameter),
            RefOr::Ref(_) => false,
        })
}

/// The problems one operation can answer: those its shape implies (a JSON body, query parameters,
/// an Idempotency-Key, the bearer token), its own (`own`, from its area), 404 for a path id, 429
/// under `/v1/`, and the 503s and 500 any request can meet.
fn problems_of(path: &str, operation: &Operation, mut own: Problems) -> Vec<ApiError> {
    let mut samples: Vec<ApiError> = Vec::new();
    if operation.request_body.is_some() {
        samples.push(malformed_json());
        samples.push(payload_too_large());
        samples.push(unsupported_media_type());
        samples.push(own.take_body_error());
    }
    if has_parameter(operation, |p| p.parameter_in == ParameterIn::Query) {
        samples.push(own.take_query_error());
    }
    if has_parameter(operation, |p| p.name == "Idempotency-Key") {
        samples.push(idempotency_key_invalid());
    }
    if is_authenticated(operation) {
        samples.push(AuthError::Unauthenticated.into());
        samples.push(AuthError::TokenExpired.into());
        samples.push(AuthError::TokenRevoked.into());
    }
    samples.append(&mut own.own);
    if has_parameter(operation, |p| p.parameter_in == ParameterIn::Path)
        && !samples.iter().any(|s| s.code() == ProblemCode::NotFound)
    {
        samples.push(ApiError::new(ProblemCode::NotFound, "no such resource"));
    }
    if is_rate_limited(path) {
        samples.push(ApiError::rate_limited(30));
    }
    samples.push(ApiError::overloaded());
    samples.push(ApiError::unavailable(anyhow::anyhow!(
        "documentation sample"
    )));
    samples.push(ApiError::internal(anyhow::anyhow!("documentation sample")));
    samples
}

fn malformed_json() -> ApiError {
    ApiError::new(
        ProblemCode::MalformedJson,
        "the body is not valid JSON: expected `,` or `}` at line 1 column 24",
    )
}

fn payload_too_large() -> ApiError {
    ApiError::new(
        ProblemCode::PayloadTooLarge,
        format!("the body exceeds {JSON_LIMIT} bytes"),
    )
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        ProblemCode::UnsupportedMediaType,
        "send the body as application/json",
    )
}

/// An `Idempotency-Key` that is not a key, with the domain's own message.
fn idempotency_key_invalid() -> ApiError {
    ApiError::validation(ValidationErrors(
        strata_domain::IdempotencyKey::parse("has space")
            .err()
            .into_iter()
            .collect(),
    ))
}

/// A representative error of each code, for the catalogue in `components.responses`.
fn default_sample(code: ProblemCode) -> ApiError {
    use ProblemCode as P;
    match code {
        P::ValidationFailed => crate::auth::registration_refused(),
        P::MalformedJson => malformed_json(),
        P::UnsupportedMediaType => unsupported_media_type(),
        P::PayloadTooLarge => payload_too_large(),
        P::Unauthenticated => AuthError::Unauthenticated.into(),
        P::TokenExpired => AuthError::TokenExpired.into(),
        P::TokenRevoked => AuthError::TokenRevoked.into(),
        P::Forbidden => UserError::Forbidden.into(),
        P::NotFound => ApiError::new(P::NotFound, "no route for GET /v1/nowhere"),
        P::MethodNotAllowed => {
            ApiError::new(P::MethodNotAllowed, "PUT is not allowed on this resource")
        }
        P::EmailTaken => AuthError::EmailTaken.into(),
        P::SkuTaken => CatalogError::SkuTaken.into(),
        P::Conflict => BillingError::AlreadySubscribed.into(),
        P::InsufficientStock => crate::orders::short_of_stock(),
        P::InvalidTransition => BillingError::NotActive.into(),
        P::IdempotencyKeyReused => OrderError::KeyReused.into(),
        P::RateLimited => ApiError::rate_limited(30),
        P::ServiceUnavailable => ApiError::unavailable(anyhow::anyhow!("documentation sample")),
        P::Internal => ApiError::internal(anyhow::anyhow!("documentation sample")),
    }
}

fn catalogue_description(code: ProblemCode) -> String {
    let (status, code_str, title) = code.describe();
    let when = match code {
        ProblemCode::MethodNotAllowed => {
            " Answered on any path for a method it does not support (this is not listed on each \
             operation)."
        }
        ProblemCode::NotFound => " Also answered for any path that matches no route.",
        _ => "",
    };
    format!("{} `{code_str}`: {title}.{when}", status.as_u16())
}

/// A sample error as a client receives it: status, headers and body.
struct Rendered {
    code: ProblemCode,
    headers: Vec<String>,
    body: Value,
}

/// The `request_id` shown in examples.
const SAMPLE_REQUEST_ID: &str = "0193a5f0-4d5e-7f60-8a1b-2c3d4e5f6a7b";

fn render(error: &ApiError) -> Rendered {
    let response = error.error_response();
    let headers = response
        .headers()
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name != "content-type")
        .collect();
    let mut body = response
        .into_body()
        .try_into_bytes()
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.insert("request_id".to_owned(), Value::from(SAMPLE_REQUEST_ID));
    }
    Rendered {
        code: error.code(),
        headers,
        body,
    }
}

/// The problem examples, each stored once in `components.examples` and referred to from every
/// response that can carry it. The catalogue's sample of a code is named after the code
/// (`NOT_FOUND`); another is named after the code and the first operation that answers it
/// (`NOT_FOUND_getOrder`, then `_2`, `_3` for more of the same operation).
#[derive(Default)]
struct Examples {
    names: BTreeMap<String, String>,
    stored: BTreeMap<String, RefOr<Example>>,
}

impl Examples {
    /// Stores `error`'s example under `name`.
    fn name_as(&mut self, name: &str, error: &ApiError) {
        let sample = render(error);
        if !self.names.contains_key(&sample.body.to_string()) {
            self.store(name.to_owned(), &sample);
        }
    }

    /// The name of `sample`'s example, stored on first use (by `operation_id`, if any).
    fn name(&mut self, sample: &Rendered, operation_id: Option<&str>) -> String {
        if let Some(name) = self.names.get(&sample.body.to_string()) {
            return name.clone();
        }
        let code = sample.code.as_str();
        let base = match operation_id {
            Some(id) => format!("{code}_{id}"),
            None => code.to_owned(),
        };
        let mut name = base.clone();
        let mut count = 1;
        while self.stored.contains_key(&name) {
            count += 1;
            name = format!("{base}_{count}");
        }
        self.store(name.clone(), sample);
        name
    }

    fn store(&mut self, name: String, sample: &Rendered) {
        let code = sample.code.as_str();
        let detail = sample
            .body
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let example = ExampleBuilder::new()
            .summary(format!("{code}: {detail}"))
            .value(Some(sample.body.clone()))
            .build();
        self.stored.insert(name.clone(), example.into());
        self.names.insert(sample.body.to_string(), name);
    }
}

/// One `application/problem+json` response holding every sample (all of one status), an example
/// per sample.
fn problem_response(
    examples: &mut Examples,
    operation_id: Option<&str>,
    samples: &[ApiError],
    description: String,
) -> Response {
    let rendered: Vec<Rendered> = samples.iter().map(render).collect();
    let references = rendered.iter().map(|sample| {
        let name = examples.name(sample, operation_id);
        let reference = RefOr::Ref(Ref::new(format!("#/components/examples/{name}")));
        (name, reference)
    });
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .examples_from_iter(references.collect::<Vec<_>>())
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, content)
        .build();
    attach_error_headers(&mut response, &rendered);
    response
}

/// Headers an error carries (`Retry-After`, `WWW-Authenticate`, `RateLimit-*`), as rendered.
fn attach_error_headers(response: &mut Response, rendered: &[Rendered]) {
    let names: BTreeSet<&str> = rendered
        .iter()
        .flat_map(|sample| sample.headers.iter().map(String::as_str))
        .collect();
    for (name, _) in shared_headers() {
        if names.contains(name.to_ascii_lowercase().as_str()) {
            response.headers.insert(name.to_owned(), header_ref(name));
        }
    }
}

fn header_ref(name: &str) -> RefOr<Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
}

/// Adds the operation's problem responses, one per status.
fn add_problems(examples: &mut Examples, path: &str, operation: &mut Operation, own: Problems) {
    let mut by_status: BTreeMap<u16, Vec<ApiError>> = BTreeMap::new();
    for sample in problems_of(path, operation, own) {
        by_status
            .entry(sample.code().status().as_u16())
            .or_default()
            .push(sample);
    }
    for (status, samples) in by_status {
        let codes: Vec<ProblemCode> = samples.iter().fold(Vec::new(), |mut codes, s| {
            if !codes.contains(&s.code()) {
                codes.push(s.code());
            }
            codes
        });
        let description = codes
            .iter()
            .map(|code| {
                let (_, name, title) = code.describe();
                format!("`{name}`: {title}.")
            })
            .collect::<Vec<_>>()
            .join(" ");
        let problem = problem_response(
            examples,
            operation.operation_id.as_deref(),
            &samples,
            description.clone(),
        );
        let key = status.to_string();
        match operation.responses.responses.get_mut(&key) {
            Some(RefOr::T(existing)) => {
                // A documented non-problem answer of the same status (readiness's 503): the
                // problem body is another representation of it.
                existing.description = format!("{} {description}", existing.description);
                for (media, content) in problem.content {
                    existing.content.insert(media, content);
                }
                for (name, header) in problem.headers {
                    existing.headers.entry(name).or_insert(header);
                }
            }
            _ => {
                operation.responses.responses.insert(key, problem.into());
            }
        }
    }
}

/// The 304 of an operation that takes `If-None-Match`, with the `ETag` and the `Cache-Control`
/// directives of its 200 (written before the colon of that header's description).
fn add_not_modified(operation: &mut Operation) {
    if !has_parameter(operation, |p| p.name == "If-None-Match") {
        return;
    }
    let directives = match operation.responses.responses.get("200") {
        Some(RefOr::T(ok)) => match ok.headers.get("Cache-Control") {
            Some(RefOr::T(header)) => header
                .description
                .as_deref()
                .and_then(|description| description.split(':').next())
                .map(|directives| format!("{}.", directives.trim_end_matches('.'))),
            _ => None,
        },
        _ => None,
    };
    let string = || ObjectBuilder::new().schema_type(Type::String).build();
    let mut not_modified = ResponseBuilder::new()
        .description("Not modified: the `If-None-Match` validator is current.")
        .header(
            "ETag",
            HeaderBuilder::new()
                .schema(Some(string()))
                .description(Some("The current validator."))
                .build(),
        );
    if let Some(directives) = directives {
        not_modified = not_modified.header(
            "Cache-Control",
            HeaderBuilder::new()
                .schema(Some(string()))
                .description(Some(directives))
                .build(),
        );
    }
    operation
        .responses
        .responses
        .entry("304".to_owned())
        .or_insert_with(|| not_modified.build().into());
}

/// The headers of every response of a limited route: the three of the earlier drafts, then the
/// two of the current one.
const RATE_LIMIT_HEADERS: [&str; 5] = [
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
];

/// `X-Request-Id` on every response; the `RateLimit-*` headers on every response of a limited
/// route.
fn add_shared_headers(path: &str, operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        response
            .headers
            .insert("X-Request-Id".to_owned(), header_ref("X-Request-Id"));
        if is_rate_limited(path) {
            for name in RATE_LIMIT_HEADERS {
                response.headers.insert(name.to_owned(), header_ref(name));
            }
        }
    }
}

/// The response headers shared by many operations, as `components.headers`.
fn shared_headers() -> Vec<(&'static str, Header)> {
    let integer = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .build()
    };
    let string = || ObjectBuilder::new().schema_type(Type::String).build();
    let header = |schema: utoipa::openapi::schema::Object, description: &str, example: Value| {
        HeaderBuilder::new()
            .schema(Some(schema))
            .description(Some(description))
            .example(Some(example))
            .build()
    };
    vec![
        (
            "X-Request-Id",
            header(
                string(),
                "The request's id: the caller's own `X-Request-Id` when it is 1–128 characters of \
                 `[A-Za-z0-9._:-]`, else a new UUIDv7. Also the `request_id` of a problem body; \
                 quote it when reporting an error.",
                Value::from(SAMPLE_REQUEST_ID),
            ),
        ),
        (
            "RateLimit-Limit",
            header(
                integer(),
                "Requests the caller's budget allows per window (present while rate limiting is \
                 enabled).",
                Value::from(1200),
            ),
        ),
        (
            "RateLimit-Remaining",
            header(
                integer(),
                "Requests left in the current window.",
                Value::from(1187),
            ),
        ),
        (
            "RateLimit-Reset",
            header(
                integer(),
                "Seconds until a request's slot frees.",
                Value::from(42),
            ),
        ),
        (
            "RateLimit-Policy",
            header(
                string(),
                "The caller's budget as a structured-field list of one item \
                 (draft-ietf-httpapi-ratelimit-headers): the budget's name (`read_anonymous`, \
                 `read_user`, `write_anonymous`, `write_user`, `auth_ip` or `auth_email`), `q` the \
                 requests it allows per window (`RateLimit-Limit`) and `w` the window in seconds.",
                Value::from("\"read_user\";q=1200;w=60"),
            ),
        ),
        (
            "RateLimit",
            header(
                string(),
                "What is left of the budget named as in `RateLimit-Policy`: `r` the requests left \
                 in the current window (`RateLimit-Remaining`) and `t` the seconds until a \
                 request's slot frees (`RateLimit-Reset`).",
                Value::from("\"read_user\";r=1187;t=42"),
            ),
        ),
        (
            "Retry-After",
            header(
                integer(),
                "Seconds to wait before retrying.",
                Value::from(30),
            ),
        ),
        (
            "WWW-Authenticate",
            header(
                string(),
                "`Bearer`: the bearer token is missing, invalid, expired or revoked.",
                Value::from("Bearer"),
            ),
        ),
    ]
}

/// The `Problem` schema: exactly what [`ApiError`] serialises (RFC 9457 plus `code`,
/// `request_id`, `trace_id` and `errors`).
fn problem_schema() -> Schema {
    let codes: Vec<&str> = ProblemCode::ALL.iter().map(|code| code.as_str()).collect();
    let string = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    };
    ObjectBuilder::new()
        .description(Some(
            "An RFC 9457 problem (`application/problem+json`). `code` is stable and means the \
             same on every endpoint; `type`, `title` and `status` follow from it.",
        ))
        .property(
            "type",
            string("A URI reference (relative to the API's origin) naming and explaining the problem: `/problems/<code in kebab case>`.")
                .format(Some(SchemaFormat::Custom("uri-reference".to_owned())))
                .examples(["/problems/validation-failed"]),
        )
        .required("type")
        .property(
            "title",
            string("A short summary of the problem type; the same for every occurrence of `code`.")
                .examples(["Validation failed"]),
        )
        .required("title")
        .property(
            "status",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("The HTTP status code."))
                .minimum(Some(400))
                .maximum(Some(599))
                .examples([422]),
        )
        .required("status")
        .property(
            "detail",
            string("What went wrong this time, for a person to read.").examples(["2 fields are invalid"]),
        )
        .required("detail")
        .property(
            "code",
            string("The stable machine-readable code.")
                .enum_values(Some(codes))
                .examples(["VALIDATION_FAILED"]),
        )
        .required("code")
        .property(
            "request_id",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::String,
                    Type::Null,
                ]))
                .description(Some(
                    "The request's id (also the `X-Request-Id` response header); quote it when \
                     reporting an error.",
                ))
                .examples([SAMPLE_REQUEST_ID]),
        )
        .required("request_id")
        .property(
            "trace_id",
            string(
                "The W3C trace id the request ran under: the caller's `traceparent` trace, or the \
                 one given by the server's tracing when export is on. Absent otherwise.",
            )
            .pattern(Some("^[0-9a-f]{32}$"))
            .examples(["4bf92f3577b34da6a3ce929d0e0e4736"]),
        )
        .property(
            "errors",
            ArrayBuilder::new()
                .items(Ref::from_schema_name("FieldError"))
                .description(Some(
                    "Each offending field (VALIDATION_FAILED lists them all; INSUFFICIENT_STOCK \
                     names each short line). Absent when empty.",
                )),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .build()
        .into()
}

/// One offending field of a problem.
fn field_error_schema() -> Schema {
    ObjectBuilder::new()
        .description(Some("One offending field."))
        .property(
            "field",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "The field as the caller spelt it: `email`, `items[2].quantity`, `limit`, \
                     `Idempotency-Key`.",
                ))
                .examples(["email"]),
        )
        .required("field")
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "A stable machine-readable reason, such as `required`, `too_short`, \
                     `invalid_email`, `unknown_field`, `insufficient_stock`.",
                ))
                .examples(["invalid_email"]),
        )
        .required("code")
        .property(
            "message",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("A sentence a person can read."))
                .examples(["must be a valid email address"]),
        )
        .required("message")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .build()
        .into()
}

/// The generic page schemas (`Page_Product`) get their item schema inlined; where it is exactly a
/// named schema (`Product`), refer to that instead.
fn refer_to_item_schemas(schemas: &mut BTreeMap<String, RefOr<Schema>>) {
    let named: BTreeMap<String, Value> = schemas
        .iter()
        .filter_map(|(name, schema)| Some((name.clone(), serde_json::to_value(schema).ok()?)))
        .collect();
    for (name, schema) in schemas.iter_mut() {
        let Some(item) = name.strip_prefix("Page_") else {
            continue;
        };
        let (Some(item_schema), Ok(mut list)) = (named.get(item), serde_json::to_value(&*schema))
        else {
            continue;
        };
        let Some(items) = list.pointer_mut("/properties/items/items") else {
            continue;
        };
        if items != item_schema {
            continue;
        }
        *items = serde_json::json!({ "$ref": format!("#/components/schemas/{item}") });
        if let Ok(rewritten) = serde_json::from_value::<RefOr<Schema>>(list) {
            *schema = rewritten;
        }
    }
}

/// The table of codes appended to the document's description.
fn codes_table() -> String {
    let mut table = String::from(
        "\n\n## Problem codes\n\n| code | status | title | type |\n|---|---|---|---|\n",
    );
    for code in ProblemCode::ALL {
        let (status, name, title) = code.describe();
        table.push_str(&format!(
            "| `{name}` | {} | {title} | `{}` |\n",
            status.as_u16(),
            code.type_uri()
        ));
    }
    table
}
