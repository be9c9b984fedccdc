//! Benchmarks live in `benches/`; this library only holds shared bench helpers.
