//! `/v1/admin/exports`: every user or order as ndjson or CSV, streamed with backpressure.
//!
//! The handler only opens the export (admin check, validation, first batch) and answers the head;
//! the body is an [`ExportBody`] stream that actix polls for the next chunk only when its write
//! buffer has room, that is as fast as the client reads. Each poll encodes the rows the export
//! holds into one chunk of about [`CHUNK_BYTES`], and asks for the next batch only past them. So
//! memory stays flat whatever the row count, a slow client slows the export rather than filling
//! the server's memory, and a client that goes away drops the stream, which stops the export (no
//! further query; no connection is held between batches).
//!
//! The request timeout (the deadline in `edge::guard`) bounds the handler — opening the export — and not the
//! body: an export may stream for as long as the client keeps reading. Compression (gzip or br
//! by `Accept-Encoding`) applies to the stream as to any body.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use strata_services::Failure;
use strata_services::exports::{Export, ExportFormat, ExportRows};

use self::dto::{ExportQuery, OrderExportView, UserExportView};
use strata_services::ExportError;
use strata_services::exports::ExportParams;

use crate::extract::Authenticated;
use crate::problem::{ApiError, ProblemCode};
use crate::request_id;
use crate::routing::{Problems, Routes, operation};
use crate::state::AppState;

pub mod dto;

/// Encoded bytes gathered before a chunk is handed to actix: about its write buffer's size.
pub const CHUNK_BYTES: usize = 32 * 1024;
/// `Content-Type` of a CSV export.
pub const CSV: &str = "text/csv; charset=utf-8";
/// `Content-Type` of an ndjson export.
pub const NDJSON: &str = "application/x-ndjson";

/// The exports' routes and documentation.
pub(crate) fn routes() -> Routes {
    Routes::new("/v1")
        .tag(
            "exports",
            "The admin's bulk exports of users and orders: ndjson or CSV, streamed in constant memory.",
        )
        .scope("/admin/exports", |routes| {
            routes
                .route(operation!(users, problems))
                .route(operation!(orders, problems))
        })
}

/// What an export can answer: a caller who is no admin, a range that ends before it starts, an
/// unknown format.
fn problems() -> Problems {
    Problems::of([ExportError::Forbidden.into(), export_range_invalid()]).query_invalid(
        ApiError::validation(strata_domain::ValidationErrors(
            ExportFormat::parse(Some("xlsx"))
                .err()
                .into_iter()
                .collect(),
        )),
    )
}

/// An export range that ends before it starts, as the export use case refuses it.
fn export_range_invalid() -> ApiError {
    let params = ExportParams {
        format: None,
        from: Some("2026-12-01T00:00:00Z".to_owned()),
        to: Some("2026-11-01T00:00:00Z".to_owned()),
    };
    match params.validate() {
        Err(errors) => ExportError::Validation(errors).into(),
        Ok(_) => ApiError::new(ProblemCode::ValidationFailed, "to must be later than from"),
    }
}

/// Export users (admin).
///
/// Every user (never a password hash), oldest first (`created_at`, then `id`), optionally only
/// those created in `[from, to)`. `format=ndjson` (default) writes one JSON object per line;
/// `format=csv` writes RFC 4180 CSV (header line, CRLF line ends, fields holding a comma, quote,
/// CR or LF quoted, quotes doubled). The body is streamed as the client reads it (compressed by
/// `Accept-Encoding`), in constant memory; it is not cut at the request timeout. A body that ends
/// early (the connection closes without the final chunk) is incomplete: retry the export.
#[utoipa::path(
    get,
    path = "/v1/admin/exports/users",
    tag = "exports",
    operation_id = "exportUsers",
    security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The users, streamed: one `UserExportRecord` per line (ndjson) or per row (CSV).",
            content(
                (UserExportView = "application/x-ndjson",
                    example = json!({"id": "0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f01", "email": "ada@example.com", "display_name": "Ada", "role": "customer", "created_at": "2026-11-02T09:15:00.000000Z", "updated_at": "2026-11-02T09:15:00.000000Z"})),
                (String = "text/csv; charset=utf-8",
                    example = json!("id,email,display_name,role,created_at,updated_at\r\n0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f01,ada@example.com,\"Ada, Countess of Lovelace\",customer,2026-11-02T09:15:00.000000Z,2026-11-02T09:15:00.000000Z\r\n")),
            ),
            headers(
                ("Content-Disposition" = String, description = "`attachment; filename=\"users-<UTC date>.ndjson\"` (`.csv` for CSV)."),
                ("Cache-Control" = String, description = "`no-store`."),
            )),
    ),
)]
async fn users(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let export = state
        .exports
        .users(&principal, &query.into_inner().into())
        .await?;
    let slot = state.edge.export_slot()?;
    Ok(respond(
        slot,
        "users",
        export,
        UserExportView::COLUMNS,
        UserExportView::from,
    ))
}

/// Export orders (admin).
///
/// Every order, oldest first (`created_at`, then `id`), optionally only those created in
/// `[from, to)`: one flat record per order, its lines counted in `item_count` (read them with
/// `GET /v1/orders/{id}`). Formats, streaming and compression as for the user export.
#[utoipa::path(
    get,
    path = "/v1/admin/exports/orders",
    tag = "exports",
    operation_id = "exportOrders",
    security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The orders, streamed: one `OrderExportRecord` per line (ndjson) or per row (CSV).",
            content(
                (OrderExportView = "application/x-ndjson",
                    example = json!({"id": "0193a5c0-2a4b-7e5f-8a6b-7c8d9e0f1a2b", "user_id": "0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f01", "status": "placed", "currency": "USD", "total_minor": 9998, "item_count": 1, "created_at": "2026-11-21T12:00:00.000000Z", "updated_at": "2026-11-21T12:00:00.000000Z"})),
                (String = "text/csv; charset=utf-8",
                    example = json!("id,user_id,status,currency,total_minor,item_count,created_at,updated_at\r\n0193a5c0-2a4b-7e5f-8a6b-7c8d9e0f1a2b,0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f01,placed,USD,9998,1,2026-11-21T12:00:00.000000Z,2026-11-21T12:00:00.000000Z\r\n")),
            ),
            headers(
                ("Content-Disposition" = String, description = "`attachment; filename=\"orders-<UTC date>.ndjson\"` (`.csv` for CSV)."),
                ("Cache-Control" = String, description = "`no-store`."),
            )),
    ),
)]
async fn orders(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let export = state
        .exports
        .orders(&principal, &query.into_inner().into())
        .await?;
    let slot = state.edge.export_slot()?;
    Ok(respond(
        slot,
        "orders",
        export,
        OrderExportView::COLUMNS,
        OrderExportView::from,
    ))
}

/// The 200 head and the streamed body of an open export.
fn respond<T, V>(
    slot: tokio::sync::OwnedSemaphorePermit,
    name: &'static str,
    export: Export<T>,
    columns: &'static [&'static str],
    view: fn(T) -> V,
) -> HttpResponse
where
    T: 'static,
    V: Serialize + 'static,
{
    let format = export.format;
    let filename = format!(
        "{name}-{}.{}",
        export.opened_at.format("%Y-%m-%d"),
        format.as_str()
    );
    let content_type = match format {
        ExportFormat::Ndjson => NDJSON,
        ExportFormat::Csv => CSV,
    };
    let body = ExportBody::new(name, format, columns, export.rows, view);
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        // The slot is held for as long as the body streams, and freed when it is dropped
        // (finished, failed, or the client went away).
        .streaming(futures_util::StreamExt::map(body, move |chunk| {
            let _held = &slot;
            chunk
        }))
}

/// Why a streamed export ended early; the client sees the connection close before the final
/// chunk. The cause is logged, never sent.
#[derive(Debug)]
pub struct ExportAborted;

impl std::fmt::Display for ExportAborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the export ended early; see the server log")
    }
}

impl std::error::Error for ExportAborted {}

/// Rows encoded as one format into a buffer.
enum Encoder {
    Ndjson(Vec<u8>),
    Csv(Box<csv::Writer<CsvSink>>),
}

/// Where the CSV writer writes: a buffer the encoder can empty while the writer keeps it.
struct CsvSink(RefCell<Vec<u8>>);

impl io::Write for CsvSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.get_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A chunk's buffer: room for a chunk and the row that overflows it.
fn chunk_buffer() -> Vec<u8> {
    Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4)
}

impl Encoder {
    /// An encoder whose buffer starts with the header line, for CSV.
    fn new(format: ExportFormat, columns: &[&str]) -> Self {
        let mut buffer = chunk_buffer();
        match format {
            ExportFormat::Ndjson => Encoder::Ndjson(buffer),
            ExportFormat::Csv => {
                // Column names are plain identifiers: nothing to quote.
                buffer.extend_from_slice(columns.join(",").as_bytes());
                buffer.extend_from_slice(b"\r\n");
                Encoder::Csv(Box::new(
                    csv::WriterBuilder::new()
                        .has_headers(false)
                        .terminator(csv::Terminator::CRLF)
                        .quote_style(csv::QuoteStyle::Necessary)
                        .from_writer(CsvSink(RefCell::new(buffer))),
                ))
            }
        }
    }

    /// Appends one record.
    fn push(&mut self, record: &impl Serialize) -> anyhow::Result<()> {
        match self {
            Encoder::Ndjson(buffer) => {
                serde_json::to_writer(&mut *buffer, record)?;
                buffer.push(b'\n');
            }
            Encoder::Csv(writer) => {
                writer.serialize(record)?;
                // Into the sink at once, so that its length is the whole encoded size.
                writer.flush()?;
            }
        }
        Ok(())
    }

    /// Bytes encoded and not yet taken.
    fn len(&self) -> usize {
        match self {
            Encoder::Ndjson(buffer) => buffer.len(),
            Encoder::Csv(writer) => writer.get_ref().0.borrow().len(),
        }
    }

    /// The encoded bytes, leaving an empty buffer in their place.
    fn take(&mut self) -> Bytes {
        Bytes::from(match self {
            Encoder::Ndjson(buffer) => std::mem::replace(buffer, chunk_buffer()),
            Encoder::Csv(writer) => writer.get_ref().0.replace(chunk_buffer()),
        })
    }
}

/// The body of an export: pulls rows only when actix asks for a chunk (see the module docs).
pub struct ExportBody<T, V> {
    name: &'static str,
    rows: ExportRows<T>,
    view: fn(T) -> V,
    encoder: Encoder,
    finished: bool,
    request_id: Option<String>,
    started: Instant,
    row_count: u64,
    byte_count: u64,
}

type Chunk = Poll<Option<Result<Bytes, ExportAborted>>>;

impl<T, V> ExportBody<T, V> {
    fn new(
        name: &'static str,
        format: ExportFormat,
        columns: &'static [&'static str],
        rows: ExportRows<T>,
        view: fn(T) -> V,
    ) -> Self {
        Self {
            name,
            rows,
            view,
            encoder: Encoder::new(format, columns),
            finished: false,
            request_id: request_id::current(),
            started: Instant::now(),
            row_count: 0,
            byte_count: 0,
        }
    }

    /// Hands what is encoded to actix as one chunk.
    fn flush(&mut self) -> Chunk {
        let chunk = self.encoder.take();
        self.byte_count += chunk.len() as u64;
        Poll::Ready(Some(Ok(chunk)))
    }

    /// Ends the body with an error: the connection closes without the final chunk, which tells
    /// the client the export is incomplete.
    fn abort(&mut self, cause: &str, unexpected: bool) -> Chunk {
        self.finished = true;
        self.encoder.take();
        let (export, request_id, rows) = (self.name, self.request_id.as_deref(), self.row_count);
        if unexpected {
            tracing::error!(export, request_id, rows, cause, "export failed mid-stream");
        } else {
            tracing::warn!(
                export,
                request_id,
                rows,
                cause,
                "export failed mid-stream: dependency unavailable"
            );
        }
        Poll::Ready(Some(Err(ExportAborted)))
    }

    fn log_complete(&self) {
        tracing::info!(
            export = self.name,
            request_id = self.request_id.as_deref(),
            rows = self.row_count,
            bytes = self.byte_count + self.encoder.len() as u64,
            seconds = self.started.elapsed().as_secs_f64(),
            "export complete"
        );
    }
}

impl<T, V: Serialize> Stream for ExportBody<T, V> {
    type Item = Result<Bytes, ExportAborted>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Chunk {
        let this = self.get_mut();
        while !this.finished {
            if this.encoder.len() >= CHUNK_BYTES {
                return this.flush();
            }
            match this.rows.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(row))) => {
                    if let Err(error) = this.encoder.push(&(this.view)(row)) {
                        return this.abort(&format!("encoding a row: {error:#}"), true);
                    }
                    this.row_count += 1;
                }
                Poll::Ready(Some(Err(failure))) => {
                    let unexpected = matches!(failure, Failure::Unexpected(_));
                    return this.abort(&format!("{failure:#}"), unexpected);
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    this.log_complete();
                }
                // The next batch is being read: send what is encoded meanwhile.
                Poll::Pending if this.encoder.len() > 0 => return this.flush(),
                Poll::Pending => return Poll::Pending,
            }
        }
        if this.encoder.len() > 0 {
            this.flush()
        } else {
            Poll::Ready(None)
        }
    }
}

impl<T, V> Drop for ExportBody<T, V> {
    fn drop(&mut self) {
        if !self.finished {
            tracing::info!(
                export = self.name,
                request_id = self.request_id.as_deref(),
                rows = self.row_count,
                bytes = self.byte_count,
                seconds = self.started.elapsed().as_secs_f64(),
                "export stopped before its end: the client went away"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use futures_util::stream;
    use strata_domain::{Currency, OrderId, OrderStatus, Role, UserId};
    use strata_ports::{OrderExportRow, UserExportRow};
    use uuid::Uuid;

    use super::*;

    fn user(display_name: &str) -> UserExportRow {
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        UserExportRow {
            id: UserId(Uuid::nil()),
            email: "ada@example.com".to_owned(),
            display_name: display_name.to_owned(),
            role: Role::Admin,
            created_at: at,
            updated_at: at,
        }
    }

    fn order() -> OrderExportRow {
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        OrderExportRow {
            id: OrderId(Uuid::nil()),
            user_id: UserId(Uuid::max()),
            status: OrderStatus::Fulfilled,
            currency: Currency::parse("EUR").unwrap(),
            total_minor: 1234,
            item_count: 3,
            created_at: at,
            updated_at: at,
        }
    }

    fn body(
        format: ExportFormat,
        rows: Vec<Result<UserExportRow, Failure>>,
    ) -> ExportBody<UserExportRow, UserExportView> {
        ExportBody::new(
            "users",
            format,
            UserExportView::COLUMNS,
            stream::iter(rows).boxed(),
            UserExportView::from,
        )
    }

    /// Every chunk of a body, until its end or its first error.
    async fn chunks<T, V: Serialize>(mut body: ExportBody<T, V>) -> (Vec<Bytes>, bool) {
        let mut chunks = Vec::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => chunks.push(chunk),
                Err(ExportAborted) => return (chunks, true),
            }
        }
        (chunks, false)
    }

    fn joined(chunks: &[Bytes]) -> String {
        String::from_utf8(chunks.concat()).unwrap()
    }

    /// The header line serde writes for a record: the field names in declaration order.
    fn serde_header(record: &impl Serialize) -> String {
        let mut writer = csv::WriterBuilder::new()
            .has_headers(true)
            .from_writer(Vec::new());
        writer.serialize(record).unwrap();
        let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        text.lines().next().unwrap().to_owned()
    }

    #[test]
    fn the_csv_headers_are_the_fields_in_order() {
        assert_eq!(
            serde_header(&UserExportView::from(user("Ada"))),
            UserExportView::COLUMNS.join(",")
        );
        assert_eq!(
            serde_header(&OrderExportView::from(order())),
            OrderExportView::COLUMNS.join(",")
        );
    }

    #[tokio::test]
    async fn csv_quotes_commas_quotes_and_line_breaks_and_doubles_quotes() {
        let names = [
            "plain",
            "a, \"b\"\nc",
            "carriage\rreturn",
            "say \"hi\"",
            " padded ",
        ];
        let rows = names.iter().map(|name| Ok(user(name))).collect();
        let (chunks, aborted) = chunks(body(ExportFormat::Csv, rows)).await;
        assert!(!aborted);
        let text = joined(&chunks);
        let id = Uuid::nil();
        let at = "2026-11-21T12:00:00.000000Z";
        assert_eq!(
            text,
            format!(
                "id,email,display_name,role,created_at,updated_at\r\n\
                 {id},ada@example.com,plain,admin,{at},{at}\r\n\
                 {id},ada@example.com,\"a, \"\"b\"\"\nc\",admin,{at},{at}\r\n\
                 {id},ada@example.com,\"carriage\rreturn\",admin,{at},{at}\r\n\
                 {id},ada@example.com,\"say \"\"hi\"\"\",admin,{at},{at}\r\n\
                 {id},ada@example.com, padded ,admin,{at},{at}\r\n"
            )
        );
        let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let parsed: Vec<String> = reader
            .records()
            .map(|record| record.unwrap()[2].to_owned())
            .collect();
        assert_eq!(parsed, names, "every name round-trips through a CSV parser");
    }

    #[tokio::test]
    async fn ndjson_is_one_object_per_line_with_the_view_s_fields() {
        let rows = vec![Ok(user("a, \"b\"\nc")), Ok(user("Ada"))];
        let (chunks, _) = chunks(body(ExportFormat::Ndjson, rows)).await;
        let text = joined(&chunks);
        assert!(text.ends_with('\n'));
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["display_name"], "a, \"b\"\nc");
        assert_eq!(lines[0]["role"], "admin");
        assert_eq!(lines[0]["created_at"], "2026-11-21T12:00:00.000000Z");
        let keys: Vec<&str> = lines[1]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut columns = UserExportView::COLUMNS.to_vec();
        columns.sort_unstable();
        assert_eq!(keys, columns);
    }

    #[tokio::test]
    async fn an_order_record_is_flat_with_its_currency_as_a_code() {
        let body = ExportBody::new(
            "orders",
            ExportFormat::Csv,
            OrderExportView::COLUMNS,
            stream::iter([Ok(order())]).boxed(),
            OrderExportView::from,
        );
        let (chunks, _) = chunks(body).await;
        let text = joined(&chunks);
        let row = text.lines().nth(1).unwrap();
        assert_eq!(
            row,
            format!(
                "{},{},fulfilled,EUR,1234,3,2026-11-21T12:00:00.000000Z,2026-11-21T12:00:00.000000Z",
                Uuid::nil(),
                Uuid::max()
            )
        );
    }

    #[tokio::test]
    async fn an_empty_export_is_a_header_in_csv_and_nothing_in_ndjson() {
        let (csv_chunks, _) = chunks(body(ExportFormat::Csv, Vec::new())).await;
        assert_eq!(
            joined(&csv_chunks),
            "id,email,display_name,role,created_at,updated_at\r\n"
        );
        let (ndjson_chunks, _) = chunks(body(ExportFormat::Ndjson, Vec::new())).await;
        assert!(ndjson_chunks.is_empty());
    }

    #[tokio::test]
    async fn rows_are_gathered_into_chunks_of_about_the_chunk_size() {
        let rows: Vec<_> = (0..2000).map(|_| Ok(user("Ada Lovelace"))).collect();
        let (chunks, _) = chunks(body(ExportFormat::Ndjson, rows)).await;
        let line = joined(&chunks).lines().next().unwrap().len() + 1;
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        let (last, full) = chunks.split_last().unwrap();
        for chunk in full {
            assert!(chunk.len() >= CHUNK_BYTES && chunk.len() < CHUNK_BYTES + line);
        }
        assert!(!last.is_empty() && last.len() < CHUNK_BYTES + line);
        assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), 2000 * line);
    }

    #[tokio::test]
    async fn what_is_encoded_is_sent_while_the_next_batch_is_read() {
        // Two rows, then a batch that is not ready for two polls, then the end.
        let mut polls = 0;
        let slow_batch = stream::poll_fn(move |_| {
            polls += 1;
            if polls > 2 {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        });
        let rows = stream::iter([Ok(user("Ada")), Ok(user("Grace"))])
            .chain(slow_batch)
            .boxed();
        let mut body = ExportBody::new(
            "users",
            ExportFormat::Ndjson,
            UserExportView::COLUMNS,
            rows,
            UserExportView::from,
        );
        let waker = futures_util::task::noop_waker_ref();
        let mut cx = Context::from_waker(waker);
        let Poll::Ready(Some(Ok(first))) = Pin::new(&mut body).poll_next(&mut cx) else {
            panic!("the encoded rows are sent without waiting for the batch");
        };
        assert_eq!(first.iter().filter(|b| **b == b'\n').count(), 2);
        assert!(Pin::new(&mut body).poll_next(&mut cx).is_pending());
        assert!(matches!(
            Pin::new(&mut body).poll_next(&mut cx),
            Poll::Ready(None)
        ));
    }

    #[tokio::test]
    async fn a_failure_mid_export_ends_the_body_with_an_error_after_the_rows_before_it() {
        let rows = vec![
            Ok(user("Ada")),
            Err(Failure::Unavailable(anyhow::anyhow!("database down"))),
            Ok(user("never sent")),
        ];
        let mut body = body(ExportFormat::Ndjson, rows);
        let mut sent = Vec::new();
        let mut failed = false;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => sent.push(chunk),
                Err(ExportAborted) => failed = true,
            }
        }
        assert!(failed);
        assert!(!joined(&sent).contains("never sent"));
    }
}
