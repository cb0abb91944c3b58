//! Page sizes shared by every keyset-paginated list.

use crate::validation::FieldError;

/// How many items one page holds: 1 to 100, 20 when the caller does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u16);

impl PageLimit {
    /// The largest page a caller may ask for.
    pub const MAX: u16 = 100;
    /// The page size when none is given.
    pub const DEFAULT: PageLimit = PageLimit(20);

    /// Accepts 1..=100.
    pub fn new(limit: i64) -> Result<Self, FieldError> {
        if (1..=i64::from(Self::MAX)).contains(&limit) {
            Ok(Self(limit as u16))
        } else {
            Err(FieldError::new(
                "limit",
                "out_of_range",
                format!("must be between 1 and {}", Self::MAX),
            ))
        }
    }

    /// Parses a `?limit=` query value; absent means the default.
    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        match raw {
            None => Ok(Self::DEFAULT),
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .map_err(|_| FieldError::new("limit", "invalid_integer", "must be an integer"))
                .and_then(Self::new),
        }
    }

    /// The limit as a count.
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_a_hundred_are_rejected() {
        assert!(PageLimit::new(0).is_err());
        assert!(PageLimit::new(101).is_err());
        assert!(PageLimit::new(-5).is_err());
        assert_eq!(PageLimit::new(1).map(PageLimit::get), Ok(1));
        assert_eq!(PageLimit::new(100).map(PageLimit::get), Ok(100));
        assert_eq!(PageLimit::default().get(), 20);
        assert_eq!(PageLimit::parse(None).map(PageLimit::get), Ok(20));
        assert_eq!(PageLimit::parse(Some("7")).map(PageLimit::get), Ok(7));
        assert_eq!(
            PageLimit::parse(Some("x")).map_err(|e| e.code),
            Err("invalid_integer")
        );
        assert_eq!(
            PageLimit::parse(Some("0")).map_err(|e| e.code),
            Err("out_of_range")
        );
    }
}
