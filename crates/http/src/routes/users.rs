//! `/v1/users`: the caller's profile, and the admin's list and lookup.

use actix_web::{HttpRequest, HttpResponse, web};
use strata_domain::UserId;
use strata_services::ProfileChanges;

use crate::dto::{PageQuery, PageView, UpdateMeRequest, UserView};
use crate::etag;
use crate::extract::{ApiJson, Authenticated, path_uuid};
use crate::problem::ApiError;
use crate::state::AppState;

/// Mounts the routes under the enclosing scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/users")
            .service(
                web::resource("/me")
                    .route(web::get().to(me))
                    .route(web::patch().to(update_me)),
            )
            .service(web::resource("").route(web::get().to(list)))
            .service(web::resource("/{id}").route(web::get().to(get))),
    );
}

/// Your profile.
///
/// The caller's own profile, from the cache when it can; with an ETag.
#[utoipa::path(
    get,
    path = "/v1/users/me",
    tag = "users",
    operation_id = "getMe",
    security(("bearer" = [])),
    params(crate::openapi::IfNoneMatch),
    responses(
        (status = 200, description = "The profile.", body = UserView,
            headers(
                ("ETag" = String, description = "Strong validator of the representation."),
                ("Cache-Control" = String, description = "`private, no-cache`."),
            ),
            example = crate::openapi::examples::user),
        (status = 304, description = "Not modified: the `If-None-Match` validator is current.",
            headers(
                ("ETag" = String, description = "The current validator."),
                ("Cache-Control" = String, description = "`private, no-cache`."),
            )),
    ),
)]
async fn me(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = state.users.me(&principal).await?;
    etag::respond(&req, &UserView::from(user), "private, no-cache")
}

/// Update your profile.
///
/// Changes the display name and/or the password; a new password needs `current_password` (422
/// `mismatch` when wrong) and ends every other session.
#[utoipa::path(
    patch,
    path = "/v1/users/me",
    tag = "users",
    operation_id = "updateMe",
    security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "The updated profile.", body = UserView,
            example = crate::openapi::examples::user),
    ),
)]
async fn update_me(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<UpdateMeRequest>,
) -> Result<HttpResponse, ApiError> {
    let changes = ProfileChanges {
        display_name: body.display_name,
        password: body.password,
        current_password: body.current_password,
    };
    let user = state.users.update_me(&principal, changes).await?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

/// List users (admin).
///
/// Every user, oldest first, keyset-paginated.
#[utoipa::path(
    get,
    path = "/v1/users",
    tag = "users",
    operation_id = "listUsers",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of users.", body = PageView<UserView>,
            headers(("Cache-Control" = String, description = "`no-store`.")),
            example = crate::openapi::examples::user_page),
    ),
)]
async fn list(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .users
        .list(&principal, query.cursor.as_deref(), query.limit.as_deref())
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(PageView::<UserView>::from(page)))
}

/// Get a user (admin).
///
/// One user by id, with an ETag.
#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    tag = "users",
    operation_id = "getUser",
    security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The user's id."),
        crate::openapi::IfNoneMatch,
    ),
    responses(
        (status = 200, description = "The user.", body = UserView,
            headers(
                ("ETag" = String, description = "Strong validator of the representation."),
                ("Cache-Control" = String, description = "`private, no-cache`."),
            ),
            example = crate::openapi::examples::user),
        (status = 304, description = "Not modified: the `If-None-Match` validator is current.",
            headers(
                ("ETag" = String, description = "The current validator."),
                ("Cache-Control" = String, description = "`private, no-cache`."),
            )),
    ),
)]
async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = UserId(path_uuid(&id, "user", Some(&principal))?);
    let user = state.users.get(&principal, id).await?;
    etag::respond(&req, &UserView::from(user), "private, no-cache")
}
