//! Segmentation metrics (filled by the data/metrics issue).
