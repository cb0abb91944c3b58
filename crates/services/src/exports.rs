//! Admin exports: every user or every order, as a stream of rows read in keyset batches.
//!
//! An export is opened by [`ExportService::users`] or [`ExportService::orders`]: the caller must
//! be an admin, the parameters are validated (every invalid one listed), and the first batch is
//! read before anything is answered, so that a database that is down is a 503, not a 200 with a
//! truncated body. The rest is an [`ExportRows`] stream that asks the repository for the next
//! batch only when it is polled past the rows it holds: its consumer sets the pace (the HTTP layer
//! polls only as fast as the client reads), at most one batch is in memory, and dropping the stream
//! stops the export — each batch takes and returns its own pooled connection, so nothing is held
//! between batches or after a drop.
//!
//! Batches are separate statements, not one snapshot: a row inserted or changed while an export
//! runs may or may not be in it, but no row is exported twice (the keyset only moves forward).

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use strata_domain::{FieldError, ValidationErrors};
use strata_ports::{
    Clock, ExportKey, ExportRange, ExportRepository, OrderExportRow, PortError, UserExportRow,
};

use crate::auth::Principal;
use crate::failure::Failure;

/// Rows per repository call when none is configured.
pub const DEFAULT_BATCH_SIZE: usize = 2000;

/// What a caller of [`ExportService`] must handle when opening an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Some parameters are invalid; every one is listed.
    #[error("invalid input")]
    Validation(#[from] ValidationErrors),
    /// The caller is not an admin.
    #[error("forbidden")]
    Forbidden,
    /// Infrastructure failure (reading the first batch).
    #[error(transparent)]
    Failure(#[from] Failure),
}

impl From<PortError> for ExportError {
    fn from(error: PortError) -> Self {
        ExportError::Failure(error.into())
    }
}

/// How an export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// One JSON object per line (the default).
    Ndjson,
    /// RFC 4180 CSV with a header line.
    Csv,
}

impl ExportFormat {
    /// Every format, the default first.
    pub const ALL: [ExportFormat; 2] = [ExportFormat::Ndjson, ExportFormat::Csv];

    /// The name used in `?format=` and as the file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Csv => "csv",
        }
    }

    /// The `format` parameter: absent means ndjson; anything but `ndjson` or `csv` is invalid.
    ///
    /// ```
    /// use strata_services::exports::ExportFormat;
    ///
    /// assert_eq!(ExportFormat::parse(None), Ok(ExportFormat::Ndjson));
    /// assert_eq!(ExportFormat::parse(Some("csv")), Ok(ExportFormat::Csv));
    /// assert_eq!(ExportFormat::parse(Some("xlsx")).unwrap_err().field, "format");
    /// ```
    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        match raw {
            None => Ok(ExportFormat::Ndjson),
            Some(raw) => Self::ALL
                .into_iter()
                .find(|format| format.as_str() == raw)
                .ok_or_else(|| {
                    FieldError::new("format", "invalid_choice", "must be ndjson or csv")
                }),
        }
    }
}

/// The raw query parameters of an export, as the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportParams {
    /// `ndjson` (default) or `csv`.
    pub format: Option<String>,
    /// RFC 3339: only rows created at or after this instant.
    pub from: Option<String>,
    /// RFC 3339: only rows created before this instant; later than `from`.
    pub to: Option<String>,
}

impl ExportParams {
    /// The format and range, or every invalid parameter.
    ///
    /// ```
    /// use strata_services::exports::ExportParams;
    ///
    /// let params = ExportParams {
    ///     format: Some("csv".into()),
    ///     from: Some("2026-11-02T00:00:00Z".into()),
    ///     to: Some("2026-11-01T00:00:00Z".into()),
    /// };
    /// assert_eq!(params.validate().unwrap_err().0[0].field, "to");
    /// ```
    pub fn validate(&self) -> Result<(ExportFormat, ExportRange), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let format = errors.check("format", ExportFormat::parse(self.format.as_deref()));
        let from = errors.check("from", timestamp("from", self.from.as_deref()));
        let to = errors.check("to", timestamp("to", self.to.as_deref()));
        if let (Some(Some(from)), Some(Some(to))) = (from, to)
            && from >= to
        {
            errors.push(FieldError::new(
                "to",
                "out_of_range",
                "must be later than from",
            ));
        }
        let (Some(format), Some(from), Some(to)) = (format, from, to) else {
            return Err(errors);
        };
        errors.into_result()?;
        Ok((format, ExportRange { from, to }))
    }
}

/// An optional RFC 3339 instant.
fn timestamp(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, FieldError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| {
                FieldError::new(
                    field,
                    "invalid_timestamp",
                    "must be an RFC 3339 timestamp such as 2026-11-01T00:00:00Z (encode + as %2B)",
                )
            })
    })
    .transpose()
}

/// The rows of an open export, in order. An `Err` item is an infrastructure failure mid-export
/// (the export is then incomplete); the stream ends after it.
pub type ExportRows<T> = BoxStream<'static, Result<T, Failure>>;

/// An export, opened: what to write and the rows to write.
pub struct Export<T> {
    /// How to write the rows.
    pub format: ExportFormat,
    /// When the export was opened (its file is named after the day).
    pub opened_at: DateTime<Utc>,
    /// The rows, read lazily in batches.
    pub rows: ExportRows<T>,
}

impl<T> std::fmt::Debug for Export<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("format", &self.format)
            .field("opened_at", &self.opened_at)
            .finish_non_exhaustive()
    }
}

/// The export use cases.
pub struct ExportService {
    exports: Arc<dyn ExportRepository>,
    clock: Arc<dyn Clock>,
    batch_size: usize,
}

impl ExportService {
    /// Wires the service; each repository call asks for `batch_size` rows (at least 1).
    pub fn new(
        exports: Arc<dyn ExportRepository>,
        clock: Arc<dyn Clock>,
        batch_size: usize,
    ) -> Self {
        Self {
            exports,
            clock,
            batch_size: batch_size.max(1),
        }
    }

    /// Every user in the range, oldest first (admin only).
    pub async fn users(
        &self,
        principal: &Principal,
        params: &ExportParams,
    ) -> Result<Export<UserExportRow>, ExportError> {
        let (format, range) = self.authorize(principal, params)?;
        let exports = self.exports.clone();
        let fetch = move |after, limit| {
            let exports = exports.clone();
            async move { exports.users_after(after, range, limit).await }
        };
        self.open(format, fetch, UserExportRow::key).await
    }

    /// Every order in the range, oldest first (admin only).
    pub async fn orders(
        &self,
        principal: &Principal,
        params: &ExportParams,
    ) -> Result<Export<OrderExportRow>, ExportError> {
        let (format, range) = self.authorize(principal, params)?;
        let exports = self.exports.clone();
        let fetch = move |after, limit| {
            let exports = exports.clone();
            async move { exports.orders_after(after, range, limit).await }
        };
        self.open(format, fetch, OrderExportRow::key).await
    }

    fn authorize(
        &self,
        principal: &Principal,
        params: &ExportParams,
    ) -> Result<(ExportFormat, ExportRange), ExportError> {
        if !principal.is_admin() {
            return Err(ExportError::Forbidden);
        }
        Ok(params.validate()?)
    }

    /// Reads the first batch now and returns a stream of it and the batches after it.
    async fn open<T, F, Fut>(
        &self,
        format: ExportFormat,
        fetch: F,
        key: fn(&T) -> ExportKey,
    ) -> Result<Export<T>, ExportError>
    where
        T: Send + 'static,
        F: Fn(Option<ExportKey>, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<T>, PortError>> + Send + 'static,
    {
        let opened_at = self.clock.now();
        let limit = self.batch_size;
        let first = fetch(None, limit).await?;
        let after_first = next_key(&first, limit, key);
        let rest = stream::try_unfold(after_first, move |after: Option<ExportKey>| {
            // Only called when the consumer wants a row past the last batch.
            let batch = after.map(|after| fetch(Some(after), limit));
            async move {
                let Some(batch) = batch else {
                    return Ok::<_, Failure>(None);
                };
                let rows = batch.await.map_err(Failure::from)?;
                let after = next_key(&rows, limit, key);
                Ok(Some((rows, after)))
            }
        });
        let rows = stream::once(async move { Ok::<_, Failure>(first) })
            .chain(rest)
            .map_ok(|rows| stream::iter(rows.into_iter().map(Ok)))
            .try_flatten()
            .boxed();
        Ok(Export {
            format,
            opened_at,
            rows,
        })
    }
}

/// Where the next batch starts, or `None` when `rows` was the last batch (a short one: an
/// adapter returns fewer than `limit` rows only when no more follow).
fn next_key<T>(rows: &[T], limit: usize, key: fn(&T) -> ExportKey) -> Option<ExportKey> {
    if rows.len() < limit {
        return None;
    }
    rows.last().map(key)
}

#[cfg(test)]
mod tests;
