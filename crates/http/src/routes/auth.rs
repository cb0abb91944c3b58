//! `/v1/auth`: register, login, refresh, logout.

use actix_web::{HttpResponse, web};
use strata_services::RegisterInput;

use crate::dto::{LoginRequest, RefreshRequest, RegisterRequest, RegisteredView, TokensView};
use crate::extract::{ApiJson, Authenticated};
use crate::problem::ApiError;
use crate::state::AppState;

/// Mounts the routes under the enclosing scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/auth")
            .service(web::resource("/register").route(web::post().to(register)))
            .service(web::resource("/login").route(web::post().to(login)))
            .service(web::resource("/refresh").route(web::post().to(refresh)))
            .service(web::resource("/logout").route(web::post().to(logout))),
    );
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
            example = crate::openapi::examples::registration),
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
            example = crate::openapi::examples::tokens),
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
            example = crate::openapi::examples::tokens),
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
