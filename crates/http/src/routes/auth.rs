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

async fn register(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
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

async fn login(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = state.auth.login(&body.email, &body.password).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(TokensView::from(tokens)))
}

async fn refresh(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = state.auth.refresh(&body.refresh_token).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(TokensView::from(tokens)))
}

async fn logout(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    state.auth.logout(&principal).await?;
    Ok(HttpResponse::NoContent().finish())
}
