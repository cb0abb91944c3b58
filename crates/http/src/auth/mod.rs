//! `/v1/auth`: register, login, refresh, logout.

use actix_web::{HttpResponse, web};
use strata_services::RegisterInput;

use strata_domain::{Email, Password, ValidationErrors};
use strata_services::AuthError;

use self::dto::{LoginRequest, RefreshRequest, RegisterRequest, RegisteredView, TokensView};
use crate::extract::{ApiJson, Authenticated};
use crate::problem::ApiError;
use crate::routing::{Problems, Routes, Schemas, object_mut, operation};
use crate::state::AppState;

pub mod dto;
mod examples;

/// The auth routes and documentation.
pub(crate) fn routes() -> Routes {
    Routes::new("/v1")
        .tag(
            "auth",
            "Registration, login, refresh-token rotation and logout.",
        )
        .scope("/auth", |routes| {
            routes
                .route(operation!(register, || {
                    Problems::of([AuthError::EmailTaken.into()])
                        .body_invalid(registration_refused())
                }))
                .route(operation!(login, || {
                    Problems::of([AuthError::InvalidCredentials.into()]).body::<LoginRequest>()
                }))
                .route(operation!(refresh, || {
                    Problems::of([
                        AuthError::Unauthenticated.into(),
                        AuthError::TokenExpired.into(),
                        AuthError::TokenRevoked.into(),
                    ])
                    .body::<RefreshRequest>()
                }))
                .route(operation!(logout))
        })
        .rule(a_login_password_has_the_services_bound)
}

/// A registration refused with the domain's own messages: an email and a password that are not.
pub(crate) fn registration_refused() -> ApiError {
    ApiError::validation(ValidationErrors(
        [Email::parse("ada@").err(), Password::parse("short").err()]
            .into_iter()
            .flatten()
            .collect(),
    ))
}

/// The longest password login hashes, which the services own.
fn a_login_password_has_the_services_bound(schemas: &mut Schemas) {
    let password = object_mut(schemas.get_mut("LoginRequest"))
        .and_then(|login| object_mut(login.properties.get_mut("password")));
    if let Some(password) = password {
        password.max_length = Some(strata_services::auth::MAX_LOGIN_PASSWORD_CHARS);
    }
}

/// Register a customer account.
///
/// Creates the user and signs them in: the answer holds the user and a first pair of tokens. The
/// email is unique whatever its letter case. Register and login also spend a per-email budget.
#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "auth",
    operation_id = "register",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered and signed in.", body = RegisteredView,
            headers(
                ("Location" = String, description = "The new user: `/v1/users/{id}`."),
                ("Cache-Control" = String, description = "`no-store`: the body holds tokens."),
            ),
            example = examples::registration),
    ),
)]
async fn register(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    state.edge.check_email(&body.email).await?;
    let (user, tokens) = state
        .auth
        .register(RegisterInput {
            email: body.email,
            password: body.password,
            display_name: body.display_name,
        })
        .await?;
    let location = format!("/v1/users/{}", user.id);
    Ok(HttpResponse::Created()
        .insert_header(("Location", location))
        .insert_header(("Cache-Control", "no-store"))
        .json(RegisteredView {
            user: user.into(),
            tokens: tokens.into(),
        }))
}

/// Log in.
///
/// Exchanges an email and password for a new pair of tokens (a new session). A wrong password and
/// an unknown email are answered alike, in the same time.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    operation_id = "login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in.", body = TokensView,
            headers(("Cache-Control" = String, description = "`no-store`: the body holds tokens.")),
            example = examples::tokens),
    ),
)]
async fn login(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    state.edge.check_email(&body.email).await?;
    let tokens = state.auth.login(&body.email, &body.password).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(TokensView::from(tokens)))
}

/// Rotate the refresh token.
///
/// Exchanges a refresh token for a new pair; the presented token is spent. Presenting a rotated
/// token again revokes its whole session (401 `TOKEN_REVOKED`).
#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "auth",
    operation_id = "refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair of tokens.", body = TokensView,
            headers(("Cache-Control" = String, description = "`no-store`: the body holds tokens.")),
            example = examples::tokens),
    ),
)]
async fn refresh(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = state.auth.refresh(&body.refresh_token).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(TokensView::from(tokens)))
}

/// Log out.
///
/// Ends the session: the access token is refused from now on (401 `TOKEN_REVOKED`) and the
/// session's refresh tokens are revoked.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    operation_id = "logout",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out."),
    ),
)]
async fn logout(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    state.auth.logout(&principal).await?;
    Ok(HttpResponse::NoContent().finish())
}
