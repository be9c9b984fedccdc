//! `--shard k/n`: which part of a sorted image list one invocation of a per-image stage
//! (`wsss cam`, `wsss refine`, `wsss segment`, `cargo xtask reproduce --shard`) takes.

/// Shard `index` of `count` (`--shard k/n`, 0-based k < n): image i of the sorted list
/// belongs to shard `i mod n`. `0/1` is the whole list.
///
/// ```
/// use wsss::shard::Shard;
/// let shard: Shard = "1/2".parse().unwrap();
/// let names: Vec<String> = ["c", "a", "b"].iter().map(|s| s.to_string()).collect();
/// assert_eq!(shard.select(&names), ["b"]);
/// assert!("2/2".parse::<Shard>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// k, in `0..count`.
    pub index: usize,
    /// n ≥ 1.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("--shard expects k/n with 0 <= k < n (e.g. 0/4), got `{s}`");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// This shard's names: the sorted, deduplicated `names`, every n-th from the k-th.
    pub fn select(&self, names: &[String]) -> Vec<String> {
        let mut sorted = names.to_vec();
        sorted.sort();
        sorted.dedup();
        sorted
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index)
            .map(|(_, n)| n)
            .collect()
    }
}
