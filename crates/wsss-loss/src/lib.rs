//! Losses (placeholder, filled in below).
