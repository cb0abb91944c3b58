//! The admin dashboard's figures and the windows they cover.
//!
//! Sales are counted in three windows ending now, each made of whole UTC days plus today so far:
//! **today** (since 00:00 UTC), the **last 7 days** (today and the 6 days before it) and the **last
//! 30 days** (today and the 29 days before it). So a window's figures are the sum of the same days
//! of a sales report. Only orders that were not cancelled count, and revenue is kept per currency.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::product::{ProductId, ProductName, Sku, Stock};

/// Where the dashboard's windows start, and the instant they all end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesWindows {
    /// 00:00 UTC today.
    pub today: DateTime<Utc>,
    /// 00:00 UTC six days before today.
    pub last_7_days: DateTime<Utc>,
    /// 00:00 UTC twenty-nine days before today.
    pub last_30_days: DateTime<Utc>,
    /// The end of every window (excluded): now.
    pub until: DateTime<Utc>,
}

impl SalesWindows {
    /// The windows ending at `now`.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use strata_domain::SalesWindows;
    ///
    /// let now = Utc.with_ymd_and_hms(2026, 11, 21, 15, 30, 0).unwrap();
    /// let windows = SalesWindows::ending_at(now);
    /// assert_eq!(windows.today, Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap());
    /// assert_eq!(windows.last_7_days, Utc.with_ymd_and_hms(2026, 11, 15, 0, 0, 0).unwrap());
    /// assert_eq!(windows.last_30_days, Utc.with_ymd_and_hms(2026, 10, 23, 0, 0, 0).unwrap());
    /// assert_eq!(windows.until, now);
    /// ```
    pub fn ending_at(now: DateTime<Utc>) -> Self {
        let today = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(now, |midnight| midnight.and_utc());
        Self {
            today,
            last_7_days: today - Duration::days(6),
            last_30_days: today - Duration::days(29),
            until: now,
        }
    }
}

/// Orders in one window: how many, and their revenue per currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSales {
    /// Orders created in the window and not cancelled.
    pub orders: u64,
    /// Their revenue, one amount per currency (by code); empty when there were none.
    pub revenue: Vec<Money>,
}

/// The sales of each window of a [`SalesWindows`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesByWindow {
    /// Since 00:00 UTC today.
    pub today: WindowSales,
    /// Today and the 6 days before.
    pub last_7_days: WindowSales,
    /// Today and the 29 days before.
    pub last_30_days: WindowSales,
}

/// An active product's stock level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// The product.
    pub product_id: ProductId,
    /// Its SKU.
    pub sku: Sku,
    /// Its name.
    pub name: ProductName,
    /// Units on hand.
    pub stock: Stock,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn windows_start_at_utc_midnights_whatever_the_time_of_day() {
        for (h, m, s) in [(0, 0, 0), (0, 0, 1), (23, 59, 59)] {
            let now = Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).unwrap();
            let windows = SalesWindows::ending_at(now);
            assert_eq!(
                windows.today,
                Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
            );
            // Across the end of February.
            assert_eq!(
                windows.last_7_days,
                Utc.with_ymd_and_hms(2026, 2, 23, 0, 0, 0).unwrap()
            );
            assert_eq!(
                windows.last_30_days,
                Utc.with_ymd_and_hms(2026, 1, 31, 0, 0, 0).unwrap()
            );
            assert_eq!(windows.until, now);
        }
    }
}
