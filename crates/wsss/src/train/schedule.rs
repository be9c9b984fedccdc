//! Learning-rate schedules as pure functions of the step.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule over `total_steps` optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Constant rate.
    Constant,
    /// Linear warm-up from `warmup_start_factor·lr` over `warmup_steps`, then cosine decay
    /// to `min_factor·lr` at `total_steps` (WeakTr stage 1, timm's cosine scheduler).
    Cosine {
        /// Steps of linear warm-up.
        warmup_steps: usize,
        /// Factor of the base rate at step 0.
        warmup_start_factor: f64,
        /// Factor of the base rate at the end.
        min_factor: f64,
    },
    /// Polynomial decay `lr·(1 − step/total)^power` (DeepLab/Segmenter, WeakTr stage 2).
    Poly {
        /// Exponent (0.9 in the papers).
        power: f64,
    },
}

impl Schedule {
    /// The rate factor at `step` (0-based) of `total_steps`.
    ///
    /// ```
    /// use wsss::train::schedule::Schedule;
    /// let s = Schedule::Cosine { warmup_steps: 10, warmup_start_factor: 0.0, min_factor: 0.0 };
    /// assert_eq!(s.factor(0, 110), 0.0);
    /// assert_eq!(s.factor(10, 110), 1.0);
    /// assert!((s.factor(60, 110) - 0.5).abs() < 1e-12);
    /// ```
    pub fn factor(&self, step: usize, total_steps: usize) -> f64 {
        let total = total_steps.max(1) as f64;
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Cosine {
                warmup_steps,
                warmup_start_factor,
                min_factor,
            } => {
                if step < warmup_steps {
                    let t = step as f64 / warmup_steps as f64;
                    return warmup_start_factor + (1.0 - warmup_start_factor) * t;
                }
                let span = (total - warmup_steps as f64).max(1.0);
                let t = ((step - warmup_steps) as f64 / span).min(1.0);
                min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Poly { power } => (1.0 - (step as f64 / total).min(1.0)).powf(power),
        }
    }
}
