//! Adversarial cases against Strata's edge, one table per attack surface; add a case with one line.

mod forwarded;
mod paths;
mod secrets;
mod tokens;
