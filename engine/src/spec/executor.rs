//! The `executor:` settings of a pipeline file: which executor runs a node (`local`, the
//! default, or `slurm`) and the Slurm settings (partition, account, qos, time limit, extra
//! sbatch flags, how memory and GPUs are asked for, how many jobs may be queued at once).
//!
//! ```yaml
//! executor:
//!   default: slurm          # or local; `flow run --executor` overrides it
//!   slurm: {partition: gpu, account: lab, qos: normal, time: "02:00:00",
//!           sbatch: ["--constraint=a100"], memory: mem, gpus: gres, max_queued: 200}
//! nodes:
//!   report: {stage: ..., executor: local}   # a node's own choice wins over both
//! ```
//!
//! The executor is not part of a node's key: a result computed by a Slurm job serves a local
//! run and the other way round.

use std::str::FromStr;

use serde_json::Value;

/// Where a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    /// A worker thread (and child processes) of the `flow run` process.
    Local,
    /// A Slurm batch job running `flow exec-node`.
    Slurm,
}

impl FromStr for ExecutorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(ExecutorKind::Local),
            "slurm" => Ok(ExecutorKind::Slurm),
            other => Err(format!("unknown executor `{other}` (known: local, slurm)")),
        }
    }
}

impl std::fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        })
    }
}

/// How a node's `resources.memory` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryFlag {
    /// `--mem=<memory>` (per node).
    #[default]
    Mem,
    /// `--mem-per-cpu=<memory / cpu>` (sites that schedule memory per CPU).
    MemPerCpu,
}

/// How a node's `resources.gpu` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuFlag {
    /// `--gres=gpu:N`.
    #[default]
    Gres,
    /// `--gpus=N`.
    Gpus,
}

/// Jobs one run keeps submitted at once unless `max_queued` says otherwise.
pub const DEFAULT_MAX_QUEUED: usize = 100;

/// The `executor.slurm` block.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSettings {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Default time limit (Slurm's format, e.g. `30`, `2:00:00`, `1-12:00:00`); a node's
    /// `resources.time` wins.
    pub time: Option<String>,
    /// Extra sbatch arguments, appended last (so they can override flow's).
    pub sbatch: Vec<String>,
    pub memory: MemoryFlag,
    pub gpus: GpuFlag,
    /// Most jobs of this run submitted and not finished at once.
    pub max_queued: usize,
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            partition: None,
            account: None,
            qos: None,
            time: None,
            sbatch: Vec::new(),
            memory: MemoryFlag::default(),
            gpus: GpuFlag::default(),
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }
}

/// The pipeline's `executor:` key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutorSpec {
    /// The pipeline's default executor (`None`: local unless `--executor` says otherwise).
    pub default: Option<ExecutorKind>,
    pub slurm: SlurmSettings,
}

/// An error at a path inside the `executor:` value.
pub type FieldError = (Vec<String>, String);

fn err(path: &[&str], msg: impl Into<String>) -> FieldError {
    (path.iter().map(|s| s.to_string()).collect(), msg.into())
}

/// Parses the top-level `executor:` value: an executor name, or a mapping with `default`
/// and `slurm`.
pub fn parse_executor(v: &Value) -> Result<ExecutorSpec, FieldError> {
    let mut spec = ExecutorSpec::default();
    match v {
        Value::String(s) => {
            spec.default = Some(s.parse().map_err(|e: String| err(&[], e))?);
        }
        Value::Object(m) => {
            for (k, val) in m {
                match k.as_str() {
                    "default" => {
                        let s = val
                            .as_str()
                            .ok_or_else(|| err(&["default"], "`default` must be local or slurm"))?;
                        spec.default = Some(s.parse().map_err(|e: String| err(&["default"], e))?);
                    }
                    "slurm" => {
                        spec.slurm = parse_slurm(val).map_err(|(mut p, e)| {
                            p.insert(0, "slurm".into());
                            (p, e)
                        })?
                    }
                    other => {
                        return Err(err(
                            &[other],
                            format!("unknown executor setting `{other}` (allowed: default, slurm)"),
                        ))
                    }
                }
            }
        }
        _ => {
            return Err(err(
                &[],
                "`executor` must be `local`, `slurm`, or a mapping with `default` and `slurm`",
            ))
        }
    }
    Ok(spec)
}

fn parse_slurm(v: &Value) -> Result<SlurmSettings, FieldError> {
    let m = v
        .as_object()
        .ok_or_else(|| err(&[], "`slurm` must be a mapping of settings"))?;
    let mut s = SlurmSettings::default();
    let text = |k: &str, val: &Value| -> Result<String, FieldError> {
        match val {
            Value::String(t) if !t.trim().is_empty() && !t.contains(char::is_whitespace) => {
                Ok(t.clone())
            }
            _ => Err(err(&[k], format!("`{k}` must be a non-empty word"))),
        }
    };
    for (k, val) in m {
        match k.as_str() {
            "partition" => s.partition = Some(text(k, val)?),
            "account" => s.account = Some(text(k, val)?),
            "qos" => s.qos = Some(text(k, val)?),
            "time" => {
                let t = time_text(val).map_err(|e| err(&[k], e))?;
                s.time = Some(t);
            }
            "sbatch" => {
                let list = val.as_array().ok_or_else(|| {
                    err(&[k], "`sbatch` must be a list of arguments, e.g. [\"--constraint=a100\"]")
                })?;
                for a in list {
                    match a.as_str() {
                        Some(a) if a.starts_with('-') => s.sbatch.push(a.to_string()),
                        _ => {
                            return Err(err(
                                &[k],
                                format!("sbatch argument {a} must be a string starting with `-` (write `--flag=value` as one item)"),
                            ))
                        }
                    }
                }
            }
            "memory" => {
                s.memory = match val.as_str() {
                    Some("mem") => MemoryFlag::Mem,
                    Some("mem-per-cpu") => MemoryFlag::MemPerCpu,
                    _ => return Err(err(&[k], "`memory` must be `mem` or `mem-per-cpu`")),
                }
            }
            "gpus" => {
                s.gpus = match val.as_str() {
                    Some("gres") => GpuFlag::Gres,
                    Some("gpus") => GpuFlag::Gpus,
                    _ => return Err(err(&[k], "`gpus` must be `gres` (--gres=gpu:N) or `gpus` (--gpus=N)")),
                }
            }
            "max_queued" => {
                s.max_queued = val
                    .as_u64()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| err(&[k], "`max_queued` must be an integer >= 1"))?
                    as usize
            }
            other => {
                return Err(err(
                    &[other],
                    format!("unknown Slurm setting `{other}` (allowed: partition, account, qos, time, sbatch, memory, gpus, max_queued)"),
                ))
            }
        }
    }
    Ok(s)
}

/// A time limit in one of Slurm's formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`
/// (or `UNLIMITED`). A number is minutes.
pub fn time_text(v: &Value) -> Result<String, String> {
    let s = match v {
        Value::Number(n) if n.as_u64().is_some() => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(format!("time limit must be like \"2:00:00\", not {other}")),
    };
    let bad = || {
        format!("time limit `{s}`: use Slurm's format, minutes (`30`), `H:MM:SS` (`2:00:00`) or `D-HH:MM:SS` (`1-12:00:00`)")
    };
    if s == "UNLIMITED" || s == "INFINITE" {
        return Ok(s);
    }
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, s.as_str()),
    };
    let digits = |x: &str| !x.is_empty() && x.len() <= 6 && x.bytes().all(|b| b.is_ascii_digit());
    if days.is_some_and(|d| !digits(d)) {
        return Err(bad());
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let max_parts = 3;
    if parts.len() > max_parts || !parts.iter().all(|p| digits(p)) {
        return Err(bad());
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn executor_names_and_blocks_parse() {
        assert_eq!(
            parse_executor(&json!("slurm")).unwrap().default,
            Some(ExecutorKind::Slurm)
        );
        let s = parse_executor(&json!({"default": "local", "slurm": {"partition": "gpu",
            "time": 90, "sbatch": ["--constraint=a100"], "memory": "mem-per-cpu",
            "gpus": "gpus", "max_queued": 3}}))
        .unwrap();
        assert_eq!(s.default, Some(ExecutorKind::Local));
        assert_eq!(s.slurm.partition.as_deref(), Some("gpu"));
        assert_eq!(s.slurm.time.as_deref(), Some("90"));
        assert_eq!(s.slurm.memory, MemoryFlag::MemPerCpu);
        assert_eq!(s.slurm.gpus, GpuFlag::Gpus);
        assert_eq!(s.slurm.max_queued, 3);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let e = parse_executor(&json!("pbs")).unwrap_err();
        assert!(e.1.contains("unknown executor `pbs`"), "{e:?}");
        let e = parse_executor(&json!({"slurm": {"partiton": "x"}})).unwrap_err();
        assert_eq!(e.0, ["slurm", "partiton"]);
        let e = parse_executor(&json!({"slurm": {"time": "2 hours"}})).unwrap_err();
        assert_eq!(e.0, ["slurm", "time"]);
        assert!(e.1.contains("Slurm's format"));
        let e = parse_executor(&json!({"slurm": {"sbatch": "--exclusive"}})).unwrap_err();
        assert_eq!(e.0, ["slurm", "sbatch"]);
        let e = parse_executor(&json!({"slurm": {"memory": "lots"}})).unwrap_err();
        assert!(e.1.contains("mem-per-cpu"));
    }

    #[test]
    fn slurm_time_formats() {
        for ok in [
            "30",
            "30:00",
            "2:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:00",
            "UNLIMITED",
        ] {
            assert_eq!(time_text(&json!(ok)).unwrap(), ok);
        }
        for bad in ["", "2h", "1:2:3:4", "-1", "a-1", "1-", "1:"] {
            assert!(time_text(&json!(bad)).is_err(), "{bad}");
        }
    }
}
