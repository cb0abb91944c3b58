//! Money: integer minor units and an ISO 4217 currency. There are no floats anywhere in money.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validation::FieldError;

/// The active ISO 4217 alphabetic codes (funds and precious-metal codes excluded).
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB \
BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD \
FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR \
KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR \
MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK \
SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED \
VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// Whether `code` is in [`ISO_4217`]. Every row read from the database is checked, so this is a
/// binary search over the table (three letters and a space per entry, in order), not a scan.
fn is_iso_4217(code: [u8; 3]) -> bool {
    let table = ISO_4217.as_bytes();
    let entries = table.len().div_ceil(4);
    let (mut low, mut high) = (0, entries);
    while low < high {
        let middle = low + (high - low) / 2;
        let entry = &table[middle * 4..middle * 4 + 3];
        match entry.cmp(&code[..]) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => low = middle + 1,
            std::cmp::Ordering::Greater => high = middle,
        }
    }
    false
}

/// An ISO 4217 currency code such as `USD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Every code [`Currency::parse`] accepts, in alphabetical order (for documents that list
    /// them).
    pub fn codes() -> impl Iterator<Item = &'static str> {
        ISO_4217.split(' ')
    }

    /// Accepts an active ISO 4217 code, in upper case.
    ///
    /// ```
    /// use strata_domain::Currency;
    ///
    /// assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
    /// assert_eq!(Currency::parse("eur").unwrap_err().code, "invalid_currency");
    /// assert_eq!(Currency::parse("ABC").unwrap_err().code, "invalid_currency");
    /// ```
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bytes = raw.as_bytes();
        let known = bytes.len() == 3
            && bytes.iter().all(u8::is_ascii_uppercase)
            && is_iso_4217([bytes[0], bytes[1], bytes[2]]);
        if !known {
            return Err(FieldError::new(
                "currency",
                "invalid_currency",
                "must be an ISO 4217 currency code in upper case, such as USD",
            ));
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }

    /// The three-letter code.
    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

/// An amount of money: signed minor units (cents for USD) in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The amount in the currency's minor unit.
    pub amount_minor: i64,
    /// The currency.
    pub currency: Currency,
}

impl Money {
    /// An amount in `currency`.
    pub const fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// `self + other`; `None` on a currency mismatch or overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        (self.currency == other.currency).then_some(())?;
        Some(Money::new(
            self.amount_minor.checked_add(other.amount_minor)?,
            self.currency,
        ))
    }

    /// `self × factor`; `None` on overflow.
    pub fn checked_mul(self, factor: i64) -> Option<Money> {
        Some(Money::new(
            self.amount_minor.checked_mul(factor)?,
            self.currency,
        ))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.amount_minor, self.currency)
    }
}

/// A price: money that is never negative and at most [`Price::MAX_MINOR`], so that an order of
/// the largest size can never overflow its total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Money", into = "Money")]
pub struct Price(Money);

impl Price {
    /// The highest price, in minor units (one billion major units at two decimals).
    pub const MAX_MINOR: i64 = 100_000_000_000;

    /// Validates an amount as a price.
    ///
    /// ```
    /// use strata_domain::{Currency, Price};
    ///
    /// let usd = Currency::parse("USD").unwrap();
    /// assert_eq!(Price::new(1999, usd).unwrap().money().amount_minor, 1999);
    /// assert_eq!(Price::new(-1, usd).unwrap_err().code, "out_of_range");
    /// ```
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, FieldError> {
        Ok(Self(Money::new(
            Self::check_amount(amount_minor)?,
            currency,
        )))
    }

    /// Checks the amount alone (0 to [`Price::MAX_MINOR`]), whatever the currency.
    pub fn check_amount(amount_minor: i64) -> Result<i64, FieldError> {
        if !(0..=Self::MAX_MINOR).contains(&amount_minor) {
            return Err(FieldError::new(
                "amount_minor",
                "out_of_range",
                format!("must be between 0 and {}", Self::MAX_MINOR),
            ));
        }
        Ok(amount_minor)
    }

    /// The price as money.
    pub fn money(self) -> Money {
        self.0
    }
}

impl TryFrom<Money> for Price {
    type Error = FieldError;
    fn try_from(value: Money) -> Result<Self, Self::Error> {
        Self::new(value.amount_minor, value.currency)
    }
}

impl From<Price> for Money {
    fn from(value: Price) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_currency_table_is_ordered_three_letter_codes_so_it_can_be_searched() {
        let codes: Vec<&str> = Currency::codes().collect();
        assert!(codes.len() > 150);
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
        assert!(codes.windows(2).all(|pair| pair[0] < pair[1]), "sorted");
        for code in &codes {
            assert!(Currency::parse(code).is_ok(), "{code}");
        }
        for unknown in ["AAA", "ZZZ", "USE", "XXX", "usd", "US", "USDD"] {
            assert!(Currency::parse(unknown).is_err(), "{unknown}");
        }
    }

    #[test]
    fn money_refuses_to_mix_currencies_or_overflow() {
        let usd = Currency::parse("USD").unwrap();
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(
            Money::new(1, usd).checked_add(Money::new(2, usd)),
            Some(Money::new(3, usd))
        );
        assert_eq!(Money::new(1, usd).checked_add(Money::new(2, eur)), None);
        assert_eq!(Money::new(i64::MAX, usd).checked_mul(2), None);
    }

    #[test]
    fn money_serialises_as_minor_units_and_a_code() {
        let usd = Currency::parse("USD").unwrap();
        let json = serde_json::to_string(&Money::new(1999, usd)).unwrap();
        assert_eq!(json, r#"{"amount_minor":1999,"currency":"USD"}"#);
        assert!(serde_json::from_str::<Price>(r#"{"amount_minor":-5,"currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":5,"currency":"usd"}"#).is_err());
    }
}
