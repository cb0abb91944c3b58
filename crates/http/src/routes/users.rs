//! `/v1/users`: the caller's profile, and the admin's list and lookup.

use actix_web::{HttpRequest, HttpResponse, web};
use strata_domain::UserId;
use strata_services::ProfileChanges;
use uuid::Uuid;

use crate::dto::{PageQuery, PageView, UpdateMeRequest, UserView};
use crate::etag;
use crate::extract::{ApiJson, Authenticated};
use crate::problem::{ApiError, ProblemCode};
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

async fn me(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = state.users.me(&principal).await?;
    etag::respond(&req, &UserView::from(user), "private, no-cache")
}

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

async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // An id that is not a UUID cannot name a user, but only an admin may learn even that.
    let id = Uuid::parse_str(&id).ok();
    let user = match id {
        Some(id) => state.users.get(&principal, UserId(id)).await?,
        None if principal.is_admin() => {
            return Err(ApiError::new(ProblemCode::NotFound, "no such user"));
        }
        None => {
            return Err(ApiError::new(
                ProblemCode::Forbidden,
                "this requires the admin role",
            ));
        }
    };
    etag::respond(&req, &UserView::from(user), "private, no-cache")
}
