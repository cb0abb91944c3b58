//! `/v1/users`: the caller's profile, and the admin's list and lookup.

use actix_web::{HttpRequest, HttpResponse, web};
use strata_domain::UserId;
use strata_services::ProfileChanges;

use strata_services::UserError;

use self::dto::{SessionView, UpdateMeRequest, UserView};
use crate::dto::{PageQuery, PageView};
use crate::etag;
use crate::extract::{ApiJson, Authenticated, path_uuid};
use crate::problem::ApiError;
use crate::routing::{Problems, Routes, Schemas, object_mut, operation};
use crate::state::AppState;

pub mod dto;
pub(crate) mod examples;

/// The users' routes and documentation.
pub(crate) fn routes() -> Routes {
    Routes::new("/v1")
        .tag(
            "users",
            "The caller's profile, and the admin's user list and lookup.",
        )
        .scope("/users", |routes| {
            routes
                .route(operation!(me, || Problems::of(
                    [UserError::NotFound.into()]
                )))
                .route(operation!(update_me, || {
                    Problems::of([UserError::NotFound.into()]).body::<UpdateMeRequest>()
                }))
                .route(operation!(sessions))
                .route(operation!(end_session, || {
                    Problems::of([UserError::SessionNotFound.into()])
                }))
                .route(operation!(list, || Problems::of([
                    UserError::Forbidden.into()
                ])))
                .route(operation!(get, || {
                    Problems::of([UserError::Forbidden.into(), UserError::NotFound.into()])
                }))
        })
        .rule(a_profile_change_names_what_changes)
}

/// Which fields a profile update needs together, which the schema attributes cannot state.
fn a_profile_change_names_what_changes(schemas: &mut Schemas) {
    if let Some(update_me) = object_mut(schemas.get_mut("UpdateMeRequest")) {
        // One keyword: utoipa keeps extra keywords in a hash map, whose order would change
        // from one build of the document to the next if it held two.
        update_me
            .extensions
            .get_or_insert_with(Default::default)
            .insert(
                "allOf".to_owned(),
                serde_json::json!([
                    {"anyOf": [{"required": ["display_name"]}, {"required": ["password"]}]},
                    {"dependentRequired": {"password": ["current_password"]}},
                ]),
            );
    }
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
    params(crate::etag::IfNoneMatch),
    responses(
        (status = 200, description = "The profile.", body = UserView,
            headers(
                ("ETag" = String, description = "Strong validator of the representation."),
                ("Cache-Control" = String, description = "`private, no-cache`."),
            ),
            example = examples::user),
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
            example = examples::user),
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
            example = examples::user_page),
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
        crate::etag::IfNoneMatch,
    ),
    responses(
        (status = 200, description = "The user.", body = UserView,
            headers(
                ("ETag" = String, description = "Strong validator of the representation."),
                ("Cache-Control" = String, description = "`private, no-cache`."),
            ),
            example = examples::user),
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

/// List your sessions.
///
/// The caller's live sessions (each a sign-in and the refreshes that followed it), most recently
/// active first; `current` marks the one this access token belongs to. At most the 100 most
/// recently active are listed.
#[utoipa::path(
    get,
    path = "/v1/users/me/sessions",
    tag = "users",
    operation_id = "listMySessions",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of sessions.", body = PageView<SessionView>,
            headers(("Cache-Control" = String, description = "`no-store`.")),
            example = examples::session_page),
    ),
)]
async fn sessions(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .users
        .sessions(&principal, query.cursor.as_deref(), query.limit.as_deref())
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(PageView::<SessionView>::from(page)))
}

/// End a session.
///
/// Signs one of the caller's sessions out everywhere: its refresh token stops working and every
/// access token it was given is refused at once, on every instance. Ending the current session
/// signs this client out. An id that is not one of the caller's live sessions is 404.
#[utoipa::path(
    delete,
    path = "/v1/users/me/sessions/{id}",
    tag = "users",
    operation_id = "endMySession",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The session's id, from the list.")),
    responses(
        (status = 204, description = "Ended."),
    ),
)]
async fn end_session(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&id, "session", None)?;
    state.users.end_session(&principal, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
