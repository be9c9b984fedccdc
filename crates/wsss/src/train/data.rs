//! Batches on a worker thread, in an order and with augmentations that depend only on
//! `(seed, epoch, position)`: a resumed run sees exactly the batches the killed run would
//! have seen, whatever the thread timing.
//!
//! Each epoch's order is a ChaCha8 shuffle seeded by `(seed, epoch)`; each sample's
//! augmentation draws from a generator seeded by `(seed, epoch, sample index)`. Samples of
//! a batch are loaded in parallel (rayon) while the main thread trains on the previous
//! batch.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use candle_core::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use wsss_data::batch::{collate, Batch};
use wsss_data::transform::{augment, AugmentConfig};
use wsss_data::{Sample, VocDataset};

/// A 64-bit mix of several values (SplitMix64 finaliser), for derived seeds.
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    for &p in parts {
        let mut z = h ^ p.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}

/// The sample order of `epoch`.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[seed, epoch as u64, 0x0D3E]));
    order.shuffle(&mut rng);
    order
}

/// Training batches of one epoch, produced by a thread.
pub struct BatchStream {
    rx: Receiver<Result<Batch>>,
    handle: Option<JoinHandle<()>>,
}

impl Iterator for BatchStream {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // Dropping the receiver makes the producer's next send fail; wait for it to stop.
        let (_tx, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn spawn(
    prefetch: usize,
    batches: Vec<Vec<usize>>,
    make: impl Fn(&[usize]) -> Result<Batch> + Send + 'static,
) -> BatchStream {
    let (tx, rx) = sync_channel(prefetch.max(1));
    let handle = std::thread::spawn(move || {
        for indices in batches {
            let batch = make(&indices);
            let failed = batch.is_err();
            if tx.send(batch).is_err() || failed {
                break;
            }
        }
    });
    BatchStream {
        rx,
        handle: Some(handle),
    }
}

/// The augmented training set.
#[derive(Clone)]
pub struct TrainData {
    /// The split.
    pub dataset: Arc<VocDataset>,
    /// Augmentation.
    pub augment: AugmentConfig,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of orders and augmentations.
    pub seed: u64,
    /// Batches prepared ahead.
    pub prefetch: usize,
}

impl TrainData {
    /// Full batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.dataset.len() / self.batch_size
    }

    /// Sample `index` of the dataset, augmented as in `epoch`.
    pub fn sample(&self, epoch: usize, index: usize) -> Result<Sample> {
        let s = self
            .dataset
            .load(index)
            .with_context(|| format!("loading training sample {index}"))?;
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, epoch as u64, index as u64]));
        Ok(augment(&s, &self.augment, &mut rng))
    }

    /// Batches `start..` of `epoch` (CPU tensors).
    pub fn epoch(&self, epoch: usize, start: usize) -> BatchStream {
        let order = epoch_order(self.dataset.len(), self.seed, epoch);
        let batches: Vec<Vec<usize>> = order
            .chunks_exact(self.batch_size)
            .skip(start)
            .map(|c| c.to_vec())
            .collect();
        let this = self.clone();
        let c = self.dataset.num_classes();
        spawn(self.prefetch, batches, move |indices| {
            let samples = indices
                .par_iter()
                .map(|&i| this.sample(epoch, i))
                .collect::<Result<Vec<_>>>()?;
            Ok(collate(&samples, c, &Device::Cpu)?)
        })
    }
}

/// The evaluation set, unaugmented, in list order.
#[derive(Clone)]
pub struct EvalData {
    /// The split.
    pub dataset: Arc<VocDataset>,
    /// Images per batch (a batch never mixes sizes).
    pub batch_size: usize,
    /// At most this many images.
    pub limit: Option<usize>,
}

impl EvalData {
    /// Number of images evaluated.
    pub fn len(&self) -> usize {
        self.limit
            .map_or(self.dataset.len(), |l| l.min(self.dataset.len()))
    }

    /// Whether nothing is evaluated.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All batches, on a worker thread (CPU tensors, masks included when present).
    pub fn batches(&self) -> BatchStream {
        let n = self.len();
        let ds = self.dataset.clone();
        let bs = self.batch_size;
        let c = ds.num_classes();
        let (tx, rx) = sync_channel(2);
        let handle = std::thread::spawn(move || {
            let mut pending: Vec<Sample> = Vec::new();
            let flush = |pending: &mut Vec<Sample>| -> Option<Result<Batch>> {
                if pending.is_empty() {
                    return None;
                }
                let b = collate(pending, c, &Device::Cpu).map_err(anyhow::Error::from);
                pending.clear();
                Some(b)
            };
            let mut i = 0;
            while i < n {
                let chunk: Vec<usize> = (i..(i + bs).min(n)).collect();
                i += chunk.len();
                let loaded = chunk
                    .par_iter()
                    .map(|&j| ds.load(j).with_context(|| format!("loading sample {j}")))
                    .collect::<Result<Vec<_>>>();
                let samples = match loaded {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                for s in samples {
                    let differs = pending
                        .first()
                        .is_some_and(|p| p.image.dimensions() != s.image.dimensions());
                    if differs || pending.len() == bs {
                        if let Some(b) = flush(&mut pending) {
                            if tx.send(b).is_err() {
                                return;
                            }
                        }
                    }
                    pending.push(s);
                }
            }
            if let Some(b) = flush(&mut pending) {
                let _ = tx.send(b);
            }
        });
        BatchStream {
            rx,
            handle: Some(handle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_permutations_that_depend_on_seed_and_epoch() {
        let a = epoch_order(50, 1, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 1, 0));
        assert_ne!(a, epoch_order(50, 1, 1));
        assert_ne!(a, epoch_order(50, 2, 0));
    }
}
