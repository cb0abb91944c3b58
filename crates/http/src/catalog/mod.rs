//! `/v1/products`: the public catalog and the admin's writes.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use strata_domain::{Product, ProductId};
use strata_services::{Principal, Representation};

use strata_services::CatalogError;

use self::dto::{
    CreateProductRequest, ProductListQuery, ProductView, StockAdjustRequest, UpdateProductRequest,
};
use crate::dto::PageView;
use crate::etag;
use crate::extract::{ApiJson, Authenticated, path_uuid};
use crate::problem::ApiError;
use crate::routing::{Problems, Routes, Schemas, object_mut, operation};
use crate::state::AppState;

pub mod dto;
mod examples;

/// Public reads may be stored by any cache but must be revalidated (ETag) before each use, so a
/// price or stock change is seen at once.
const PUBLIC_REVALIDATE: &str = "public, no-cache";

/// The catalog's routes and documentation.
pub(crate) fn routes() -> Routes {
    Routes::new("/v1")
        .tag(
            "products",
            "The catalog: public reads (cached, with ETags) and the admin's writes.",
        )
        .scope("/products", |routes| {
            routes
                .route(operation!(list))
                .route(operation!(create, || {
                    Problems::of([
                        CatalogError::Forbidden.into(),
                        CatalogError::SkuTaken.into(),
                    ])
                    .body::<CreateProductRequest>()
                }))
                .route(operation!(get, || Problems::of([
                    CatalogError::NotFound.into()
                ])))
                .route(operation!(update, || {
                    Problems::of([
                        CatalogError::Forbidden.into(),
                        CatalogError::NotFound.into(),
                        CatalogError::SkuTaken.into(),
                    ])
                    .body::<UpdateProductRequest>()
                }))
                .route(operation!(delete, || {
                    Problems::of([
                        CatalogError::Forbidden.into(),
                        CatalogError::NotFound.into(),
                    ])
                }))
                .route(operation!(adjust_stock, || {
                    Problems::of([
                        CatalogError::Forbidden.into(),
                        CatalogError::NotFound.into(),
                        CatalogError::InsufficientStock {
                            requested: 12,
                            available: 10,
                        }
                        .into(),
                        CatalogError::StockTooLarge.into(),
                    ])
                    .body::<StockAdjustRequest>()
                }))
        })
        .rule(stock_change_is_not_zero)
}

/// A stock change of zero changes nothing and is refused: the schema says so with `not`.
fn stock_change_is_not_zero(schemas: &mut Schemas) {
    let delta = object_mut(schemas.get_mut("StockAdjustRequest"))
        .and_then(|stock| object_mut(stock.properties.get_mut("delta")));
    if let Some(delta) = delta {
        delta
            .extensions
            .get_or_insert_with(Default::default)
            .insert("not".to_owned(), serde_json::json!({"const": 0}));
    }
}

/// The product id in the path (see [`path_uuid`]).
fn product_id(raw: &str, admin_route: Option<&Principal>) -> Result<ProductId, ApiError> {
    path_uuid(raw, "product", admin_route).map(ProductId)
}

/// Browse the catalog.
///
/// Active products by default, newest first, keyset-paginated. Filters: `q` (a case-insensitive
/// substring of the name or SKU), `active`, `min_price` / `max_price` (minor units) and
/// `currency`; sort by `created_at` or `price`, either way. A cursor is bound to the filters and
/// sort it was issued with (422 otherwise).
#[utoipa::path(
    get,
    path = "/v1/products",
    tag = "products",
    operation_id = "listProducts",
    params(ProductListQuery, crate::etag::IfNoneMatch),
    responses(
        (status = 200, description = "A page of products.", body = PageView<ProductView>,
            headers(
                ("ETag" = String, description = "Strong validator of the page."),
                ("Cache-Control" = String, description = "`public, no-cache`: revalidate before each use."),
            ),
            example = examples::product_page),
    ),
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ProductListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state.catalog.list(query.into_inner().into()).await?;
    etag::respond(
        &req,
        &PageView::<ProductView>::from(page),
        PUBLIC_REVALIDATE,
    )
}

/// Get a product.
///
/// One product, served from a cache kept fresh by every write. Deactivated products stay
/// readable (`active: false`).
#[utoipa::path(
    get,
    path = "/v1/products/{id}",
    tag = "products",
    operation_id = "getProduct",
    params(
        ("id" = uuid::Uuid, Path, description = "The product's id."),
        crate::etag::IfNoneMatch,
    ),
    responses(
        (status = 200, description = "The product.", body = ProductView,
            headers(
                ("ETag" = String, description = "Strong validator of the representation."),
                ("Cache-Control" = String, description = "`public, no-cache`: revalidate before each use."),
            ),
            example = examples::product),
    ),
)]
async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let body = state
        .catalog
        .get_as(product_id(&id, None)?, &ProductBody)
        .await?;
    Ok(body.respond(&req, PUBLIC_REVALIDATE))
}

/// A product's JSON body and its ETag, as both cache tiers keep it: a hit, in process or from
/// Redis, is answered without parsing, serialising or hashing anything but the ETag of a Redis
/// hit (ADR 0017).
struct ProductBody;

/// Starts every cached body: an entry without it was written for another version of
/// [`ProductView`] (bump it when the representation changes) and is rendered again.
const PRODUCT_BODY_TAG: &str = "product-v1|";

impl Representation<Product> for ProductBody {
    type Output = etag::Prepared;

    fn render(&self, product: &Product) -> anyhow::Result<String> {
        let mut stored = PRODUCT_BODY_TAG.as_bytes().to_vec();
        serde_json::to_writer(&mut stored, &ProductView::from(product.clone()))?;
        Ok(String::from_utf8(stored)?)
    }

    fn read(&self, stored: String) -> Option<etag::Prepared> {
        if !stored.starts_with(PRODUCT_BODY_TAG) {
            return None;
        }
        // The body is the stored string past the tag: handed on without a copy.
        etag::Prepared::from_json(web::Bytes::from(stored).slice(PRODUCT_BODY_TAG.len()..))
    }
}

/// Create a product (admin).
///
/// `sku`, `name` and `price` are required; `stock` defaults to 0 and `active` to true.
#[utoipa::path(
    post,
    path = "/v1/products",
    tag = "products",
    operation_id = "createProduct",
    security(("bearer" = [])),
    request_body = CreateProductRequest,
    responses(
        (status = 201, description = "Created.", body = ProductView,
            headers(("Location" = String, description = "The new product: `/v1/products/{id}`.")),
            example = examples::product),
    ),
)]
async fn create(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<CreateProductRequest>,
) -> Result<HttpResponse, ApiError> {
    let product = state.catalog.create(&principal, body.into()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/products/{}", product.id)))
        .json(ProductView::from(product)))
}

/// Update a product (admin).
///
/// Only the fields sent change. Stock is not patchable: adjust it with `POST
/// /v1/products/{id}/stock`.
#[utoipa::path(
    patch,
    path = "/v1/products/{id}",
    tag = "products",
    operation_id = "updateProduct",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The product's id.")),
    request_body = UpdateProductRequest,
    responses(
        (status = 200, description = "The updated product.", body = ProductView,
            example = examples::product),
    ),
)]
async fn update(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    ApiJson(body): ApiJson<UpdateProductRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = product_id(&id, Some(&principal))?;
    let product = state.catalog.update(&principal, id, body.into()).await?;
    Ok(HttpResponse::Ok().json(ProductView::from(product)))
}

/// Deactivate a product (admin).
///
/// A soft delete: the product stays readable but can no longer be ordered. Idempotent.
#[utoipa::path(
    delete,
    path = "/v1/products/{id}",
    tag = "products",
    operation_id = "deleteProduct",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The product's id.")),
    responses(
        (status = 204, description = "Deactivated."),
    ),
)]
async fn delete(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = product_id(&id, Some(&principal))?;
    state.catalog.deactivate(&principal, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Adjust a product's stock (admin).
///
/// Adds `delta` (negative to remove) atomically; 409 `INSUFFICIENT_STOCK` if the stock would go
/// below zero, in which case nothing changes.
#[utoipa::path(
    post,
    path = "/v1/products/{id}/stock",
    tag = "products",
    operation_id = "adjustStock",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The product's id.")),
    request_body = StockAdjustRequest,
    responses(
        (status = 200, description = "The product with its new stock.", body = ProductView,
            example = examples::product),
    ),
)]
async fn adjust_stock(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    ApiJson(body): ApiJson<StockAdjustRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = product_id(&id, Some(&principal))?;
    let product = state
        .catalog
        .adjust_stock(&principal, id, body.delta)
        .await?;
    Ok(HttpResponse::Ok().json(ProductView::from(product)))
}
