//! The bodies of the exports: the query, and one exported user or order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use strata_domain::Currency;
use strata_ports::{OrderExportRow, UserExportRow};
use strata_services::ExportParams;
use strata_services::exports::ExportFormat;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::dto::rfc3339;
use crate::dto::schemas::{self, one_of};

/// `GET /v1/admin/exports/*` query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `ndjson` (default): one JSON object per line; `csv`: RFC 4180 with a header line.
    #[param(schema_with = export_format)]
    pub format: Option<String>,
    /// Only rows created at or after this instant (RFC 3339; encode `+` as `%2B`).
    #[param(value_type = Option<DateTime<Utc>>, nullable = false, example = "2026-11-01T00:00:00Z")]
    pub from: Option<String>,
    /// Only rows created before this instant (RFC 3339); must be later than `from`.
    #[param(value_type = Option<DateTime<Utc>>, nullable = false, example = "2026-12-01T00:00:00Z")]
    pub to: Option<String>,
}

impl From<ExportQuery> for ExportParams {
    fn from(query: ExportQuery) -> Self {
        Self {
            format: query.format,
            from: query.from,
            to: query.to,
        }
    }
}

/// One exported user: a line of the ndjson export, a row of the CSV export (columns in this
/// order). Never the password hash.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UserExportRecord)]
pub struct UserExportView {
    /// Identifier.
    pub id: Uuid,
    /// Email, as stored.
    #[schema(examples("ada@example.com"))]
    pub email: String,
    /// Public name, as stored.
    #[schema(examples("Ada"))]
    pub display_name: String,
    /// `customer` or `admin`.
    #[schema(schema_with = schemas::role)]
    pub role: &'static str,
    /// Registration time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last profile change.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl UserExportView {
    /// The CSV header: the field names, in order.
    pub const COLUMNS: &'static [&'static str] = &[
        "id",
        "email",
        "display_name",
        "role",
        "created_at",
        "updated_at",
    ];
}

impl From<UserExportRow> for UserExportView {
    fn from(row: UserExportRow) -> Self {
        Self {
            id: row.id.0,
            email: row.email,
            display_name: row.display_name,
            role: row.role.as_str(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// One exported order: a line of the ndjson export, a row of the CSV export (columns in this
/// order). Flat in both formats: the lines are summarised by `item_count` (read them with
/// `GET /v1/orders/{id}`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OrderExportRecord)]
pub struct OrderExportView {
    /// Identifier.
    pub id: Uuid,
    /// Who placed it.
    pub user_id: Uuid,
    /// `placed`, `fulfilled` or `cancelled`.
    #[schema(schema_with = schemas::order_status)]
    pub status: &'static str,
    /// ISO 4217 code of the total.
    #[serde(serialize_with = "currency_code")]
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", examples("USD"))]
    pub currency: Currency,
    /// Sum of the line totals, in minor units of `currency`.
    #[schema(minimum = 0, examples(9998))]
    pub total_minor: i64,
    /// Number of lines (distinct products) of the order.
    #[schema(minimum = 0, examples(2))]
    pub item_count: i64,
    /// Placement time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last status change.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl OrderExportView {
    /// The CSV header: the field names, in order.
    pub const COLUMNS: &'static [&'static str] = &[
        "id",
        "user_id",
        "status",
        "currency",
        "total_minor",
        "item_count",
        "created_at",
        "updated_at",
    ];
}

impl From<OrderExportRow> for OrderExportView {
    fn from(row: OrderExportRow) -> Self {
        Self {
            id: row.id.0,
            user_id: row.user_id.0,
            status: row.status.as_str(),
            currency: row.currency,
            total_minor: row.total_minor,
            item_count: row.item_count,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

fn currency_code<S: Serializer>(currency: &Currency, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(currency.as_str())
}

/// An export's format.
fn export_format() -> utoipa::openapi::schema::Object {
    let names: Vec<&'static str> = ExportFormat::ALL.iter().map(|f| f.as_str()).collect();
    let mut schema = one_of(&names, "`ndjson` (default) or `csv`.");
    schema.default = Some(Value::from(ExportFormat::Ndjson.as_str()));
    schema
}
