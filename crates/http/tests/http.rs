//! The HTTP adapter's integration tests, in one binary (ADR 0026): the OpenAPI document and the
//! routes it describes (`openapi`), and the middleware on a real actix server (`edge`).

#[path = "http/edge.rs"]
mod edge;
#[path = "http/openapi.rs"]
mod openapi;
