//! Choosing a candle [`Device`] from a user-facing name.

use candle_core::{Device, Result};

/// Parses `cpu`, `cuda`, `cuda:N` or `metal` into a device.
///
/// Asking for a GPU in a build without the matching cargo feature is an error that says
/// which feature to enable.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "cpu" => Ok(Device::Cpu),
        "metal" => Device::new_metal(0),
        "cuda" => Device::new_cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => Device::new_cuda(ordinal),
            _ => candle_core::bail!(
                "unknown device `{name}`: expected `cpu`, `cuda`, `cuda:N` or `metal`"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_garbage() {
        assert!(parse_device("CPU").unwrap().is_cpu());
        let err = parse_device("tpu").unwrap_err().to_string();
        assert!(err.contains("unknown device `tpu`"), "{err}");
        assert!(parse_device("cuda:x").is_err());
    }
}
