//! Device selection from a string: `cpu`, `cuda` or `cuda:N`.

use candle_core::Device;

use crate::error::{Nn3dError, Result};

/// Parses and opens a device. `cuda:N` fails with a clear error when the crate was built
/// without the `cuda` feature or the GPU is unavailable.
pub fn parse_device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    let err = |reason: String| Nn3dError::Device {
        spec: spec.to_string(),
        reason,
    };
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = if s == "cuda" || s == "gpu" {
        0
    } else if let Some(n) = s.strip_prefix("cuda:").or_else(|| s.strip_prefix("gpu:")) {
        n.parse::<usize>()
            .map_err(|_| err(format!("{n:?} is not a device number")))?
    } else {
        return Err(err("expected cpu, cuda or cuda:N".into()));
    };
    if !cfg!(feature = "cuda") {
        return Err(err(
            "this build has no CUDA support (enable the `cuda` feature)".into(),
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_garbage() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device(" CPU ").unwrap().is_cpu());
        for bad in ["", "tpu", "cuda:x", "cuda:-1", "cuda:"] {
            assert!(
                matches!(parse_device(bad), Err(Nn3dError::Device { .. })),
                "{bad}"
            );
        }
        if !cfg!(feature = "cuda") {
            assert!(matches!(
                parse_device("cuda:0"),
                Err(Nn3dError::Device { .. })
            ));
        }
    }
}
