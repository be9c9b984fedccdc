//! Epoch-end measures shared by the programs: classification mAP and CAM mIoU sweeps.

use anyhow::Result;
use candle_core::Tensor;
use wsss_metrics::ThresholdSweep;

/// Average precision of one class (scikit-learn's `average_precision_score`: the sum of
/// precision at each positive's rank times the recall step); `None` without positives.
///
/// O(n log n) time for n images.
pub fn average_precision(scores: &[f32], positives: &[bool]) -> Option<f64> {
    let total = positives.iter().filter(|&&p| p).count();
    if total == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap) = (0usize, 0usize, 0f64);
    let mut i = 0;
    while i < order.len() {
        // Ties share one threshold.
        let mut j = i;
        let mut new_tp = 0;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            new_tp += positives[order[j]] as usize;
            j += 1;
        }
        seen += j - i;
        if new_tp > 0 {
            tp += new_tp;
            ap += (new_tp as f64 / total as f64) * (tp as f64 / seen as f64);
        }
        i = j;
    }
    Some(ap)
}

/// Mean AP over classes with at least one positive.
///
/// # Shapes
/// `scores`, `labels`: row-major (n, K) with labels in {0, 1}.
pub fn mean_average_precision(scores: &[f32], labels: &[f32], k: usize) -> f64 {
    let n = scores.len() / k.max(1);
    let aps: Vec<f64> = (0..k)
        .filter_map(|c| {
            let s: Vec<f32> = (0..n).map(|i| scores[i * k + c]).collect();
            let p: Vec<bool> = (0..n).map(|i| labels[i * k + c] > 0.5).collect();
            average_precision(&s, &p)
        })
        .collect();
    if aps.is_empty() {
        0.0
    } else {
        aps.iter().sum::<f64>() / aps.len() as f64
    }
}

/// Collects classification scores and labels over batches, then scores mAP.
#[derive(Debug, Default, Clone)]
pub struct MapMeter {
    scores: Vec<f32>,
    labels: Vec<f32>,
    k: usize,
}

impl MapMeter {
    /// Adds a batch of (B, K) scores (any monotone score: logits) and (B, K) labels.
    pub fn update(&mut self, scores: &Tensor, labels: &Tensor) -> Result<()> {
        let (_, k) = scores.dims2()?;
        self.k = k;
        self.scores.extend(
            scores
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
        self.labels.extend(
            labels
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
        Ok(())
    }

    /// mAP in [0, 1].
    pub fn map(&self) -> f64 {
        mean_average_precision(&self.scores, &self.labels, self.k)
    }
}

/// A CAM-quality meter on ground-truth masks: a threshold sweep with background as the
/// threshold, reporting the best threshold's mIoU and the GT-free Otsu threshold's.
pub struct CamMeter {
    sweep: ThresholdSweep,
    k: usize,
}

impl CamMeter {
    /// For `num_classes` classes including background.
    pub fn new(num_classes: usize) -> Result<Self> {
        Ok(Self {
            sweep: ThresholdSweep::new(num_classes, ThresholdSweep::default_thresholds())?,
            k: num_classes - 1,
        })
    }

    /// Adds CAMs at image resolution.
    ///
    /// # Shapes
    /// `cams` (B, K, H, W) foreground scores in [0, 1] (K = C − 1); `labels` (B, K) image
    /// labels; `masks` (B, H, W) u8 ground truth.
    pub fn update(&mut self, cams: &Tensor, labels: &Tensor, masks: &Tensor) -> Result<()> {
        let (b, k, h, w) = cams.dims4()?;
        anyhow::ensure!(k == self.k, "CAMs have {k} classes, expected {}", self.k);
        let cams = cams
            .to_dtype(candle_core::DType::F32)?
            .to_device(&candle_core::Device::Cpu)?;
        let labels = labels.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let masks = masks.to_device(&candle_core::Device::Cpu)?;
        for (i, row) in labels.iter().enumerate().take(b) {
            let present: Vec<u8> = (0..k)
                .filter(|&c| row[c] > 0.5)
                .map(|c| c as u8 + 1)
                .collect();
            let idx: Vec<u32> = present.iter().map(|&c| c as u32 - 1).collect();
            let scores: Vec<f32> = if idx.is_empty() {
                Vec::new()
            } else {
                let sel = Tensor::new(idx.as_slice(), cams.device())?;
                cams.get(i)?
                    .index_select(&sel, 0)?
                    .flatten_all()?
                    .to_vec1()?
            };
            let gt = masks.get(i)?.flatten_all()?.to_vec1::<u8>()?;
            debug_assert_eq!(gt.len(), h * w);
            self.sweep.update(&scores, &present, &gt)?;
        }
        Ok(())
    }

    /// (best-threshold mIoU, best threshold, Otsu-threshold mIoU), mIoU in [0, 1].
    pub fn scores(&self) -> (f64, f64, f64) {
        let r = self.sweep.report();
        (r.best.miou, r.best.threshold as f64, r.otsu.miou)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ap_matches_hand_computed_values() {
        // Ranks: 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = 1/2·1 + 1/2·2/3.
        let ap = average_precision(&[0.9, 0.8, 0.7], &[true, false, true]).unwrap();
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        assert_eq!(average_precision(&[0.1], &[false]), None);
        let perfect = mean_average_precision(&[0.9, 0.1, 0.2, 0.8], &[1., 0., 0., 1.], 2);
        assert!((perfect - 1.0).abs() < 1e-12);
    }
}
