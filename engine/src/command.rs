//! The built-in `command` stage: runs an external program as a node.
//!
//! `cmd` is an argument vector (no shell) unless `shell: true`, in which case it is one
//! string run by `sh -c`. `${inputs.NAME}`, `${outputs.NAME}` and `${args.NAME}` are
//! substituted at run time; a list input written alone as an argument expands to one
//! argument per path. Declared `outputs` are paths relative to the node's output directory
//! (the working directory of the program); absolute paths and `..` are rejected.

use std::path::{Component, Path};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::params::{ParamType, ParamsSchema};
use crate::spec::template::{pieces, render_runtime, runtime_ref, runtime_refs, Piece};
use crate::stage::{InputDecl, OutputDecl, Params, Stage, StageContext, StageError};

/// See the module docs.
pub struct CommandStage;

fn outputs_map(params: &Params) -> Result<Vec<(String, String)>, String> {
    let m = params
        .get("outputs")
        .and_then(|v| v.as_object())
        .ok_or("`outputs` must map output names to relative paths")?;
    let mut out = Vec::new();
    for (name, v) in m {
        let p = v
            .as_str()
            .ok_or_else(|| format!("output `{name}`: path must be a string"))?;
        check_relative(p).map_err(|e| format!("output `{name}`: {e}"))?;
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "output name `{name}` must be letters, digits, `_` or `-`"
            ));
        }
        out.push((name.clone(), p.to_string()));
    }
    // Two outputs on one path, or one inside another's directory, would be stored twice
    // (or moved away from under each other): reject them.
    let norm = |p: &str| -> Vec<String> {
        Path::new(p.trim_end_matches('/'))
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    for (i, (a, pa)) in out.iter().enumerate() {
        for (b, pb) in &out[i + 1..] {
            let (x, y) = (norm(pa), norm(pb));
            if x.starts_with(&y) || y.starts_with(&x) {
                return Err(format!(
                    "outputs `{a}` (`{pa}`) and `{b}` (`{pb}`) overlap: give each output its own path, none inside another"
                ));
            }
        }
    }
    Ok(out)
}

fn check_relative(p: &str) -> Result<(), String> {
    let path = Path::new(p.trim_end_matches('/'));
    if p.trim().is_empty() {
        return Err("empty path".into());
    }
    if path.is_absolute() {
        return Err(format!(
            "`{p}` is absolute; outputs are paths inside the node's output directory"
        ));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "`{p}` contains `..`; outputs cannot escape the node's output directory"
        ));
    }
    Ok(())
}

fn cmd_strings(params: &Params) -> Result<Vec<String>, String> {
    let shell = params
        .get("shell")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    match (params.get("cmd"), shell) {
        (Some(Value::String(s)), true) => Ok(vec![s.clone()]),
        (Some(Value::String(_)), false) => Err("`cmd` is a string: write it as a list of arguments, or set `shell: true` to run it with sh -c".into()),
        (Some(Value::Array(items)), false) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(format!("`cmd` arguments must be strings, got {other}")),
            })
            .collect(),
        (Some(Value::Array(_)), true) => Err("with `shell: true`, `cmd` must be one string".into()),
        _ => Err("`cmd` must be a non-empty list of arguments (or a string with `shell: true`)".into()),
    }
}

fn render_arg(
    arg: &str,
    ctx: &StageContext,
    args: &serde_json::Map<String, Value>,
) -> Result<Vec<String>, StageError> {
    // A lone list input expands to several arguments.
    if let Ok([Piece::Expr(e)]) = pieces(arg).as_deref() {
        if let Some(("inputs", name)) = runtime_ref(e) {
            let paths = ctx.inputs_of(name);
            if paths.len() != 1 {
                return Ok(paths.iter().map(|p| p.display().to_string()).collect());
            }
        }
    }
    let text = render_runtime(
        arg,
        |scope, name| {
            Ok(match scope {
                "inputs" => ctx
                    .inputs_of(name)
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                "outputs" => ctx.output(name)?.display().to_string(),
                _ => match args.get(name) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => return Err(StageError::msg(format!("unknown `${{args.{name}}}`"))),
                },
            })
        },
        StageError::msg,
    )?;
    Ok(vec![text])
}

/// The command stage's kind: its nodes run a program of their own, not code in flow.
pub const KIND: &str = "command";

impl Stage for CommandStage {
    fn kind(&self) -> &'static str {
        KIND
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Runs an external program. `cmd` is an argument vector (no shell unless `shell: true`); \
         `${inputs.NAME}`, `${outputs.NAME}` and `${args.NAME}` are substituted. Declared outputs \
         (relative paths; a trailing `/` declares a directory) are stored in the cache; a missing \
         one fails the node. The program runs in the node's output directory."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .required(
                "cmd",
                ParamType::Any,
                "argument vector (list), or a shell script string with `shell: true`",
            )
            .optional(
                "outputs",
                ParamType::Map,
                json!({}),
                "output name -> relative path (`dir/` for a directory)",
            )
            .optional(
                "shell",
                ParamType::Bool,
                json!(false),
                "run `cmd` with `sh -c`",
            )
            .optional(
                "env",
                ParamType::Map,
                json!({}),
                "extra environment variables",
            )
            .optional(
                "args",
                ParamType::Map,
                json!({}),
                "values for `${args.NAME}`",
            )
            .optional(
                "version",
                ParamType::Int,
                json!(1),
                "bump to force a re-run when the program's behaviour changed",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        None
    }
    fn outputs(&self, params: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(outputs_map(params)?
            .into_iter()
            .map(|(name, p)| match p.strip_suffix('/') {
                Some(dir) => OutputDecl {
                    name,
                    kind: flow_cache::ArtifactKind::Dir,
                    filename: dir.to_string(),
                },
                None => OutputDecl {
                    name,
                    kind: flow_cache::ArtifactKind::File,
                    filename: p,
                },
            })
            .collect())
    }
    fn check(&self, params: &Params, input_names: &[&str]) -> Result<(), String> {
        let cmd = cmd_strings(params)?;
        let outputs = outputs_map(params)?;
        let args = params
            .get("args")
            .and_then(|v| v.as_object())
            .cloned()
            .unwrap_or_default();
        if let Some(env) = params.get("env").and_then(|v| v.as_object()) {
            for (k, v) in env {
                if !v.is_string() && !v.is_number() && !v.is_boolean() {
                    return Err(format!("env `{k}` must be a scalar"));
                }
            }
        }
        for arg in &cmd {
            for (scope, name) in runtime_refs(arg)? {
                let ok = match scope {
                    "inputs" => input_names.contains(&name),
                    "outputs" => outputs.iter().any(|(n, _)| *n == name),
                    _ => args.contains_key(name),
                };
                if !ok {
                    return Err(format!(
                        "`cmd` uses `${{{scope}.{name}}}` but the node declares no such {scope}"
                    ));
                }
            }
        }
        Ok(())
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let cmd = cmd_strings(&ctx.params).map_err(StageError::msg)?;
        let shell = ctx.params["shell"].as_bool().unwrap_or(false);
        let args = ctx.params["args"].as_object().cloned().unwrap_or_default();
        let mut argv = Vec::new();
        for a in &cmd {
            argv.extend(render_arg(a, ctx, &args)?);
        }
        let (program, rest) = if shell {
            ("sh".to_string(), vec!["-c".to_string(), argv.join(" ")])
        } else {
            match argv.split_first() {
                Some((p, rest)) if !p.is_empty() => (p.clone(), rest.to_vec()),
                _ => {
                    return Err(StageError::msg(
                        "`cmd` names no program after substitution (an empty list input or \
                         an empty first argument): put the program first in `cmd`",
                    ))
                }
            }
        };
        let workdir = ctx.scratch_dir.join("out");
        for p in ctx.outputs.values() {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StageError::wrap(format!("cannot create {}", parent.display()), e)
                })?;
            }
        }
        for o in self.outputs(&ctx.params).map_err(StageError::msg)? {
            if o.kind == flow_cache::ArtifactKind::Dir {
                let p = ctx.output(&o.name)?.to_path_buf();
                std::fs::create_dir_all(&p)
                    .map_err(|e| StageError::wrap(format!("cannot create {}", p.display()), e))?;
            }
        }
        let mut command = Command::new(&program);
        command
            .args(&rest)
            .current_dir(&workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.envs(ctx.env());
        if let Some(env) = ctx.params["env"].as_object() {
            for (k, v) in env {
                command.env(
                    k,
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string()),
                );
            }
        }
        ctx.log(&format!("$ {} {}", program, rest.join(" ")));
        crate::child::isolate(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| StageError::wrap(format!("cannot start `{program}`"), e))?;
        crate::child::watch(&child);
        // The GPU memory of a node is its program's (and descendants'), not flow's.
        ctx.usage.set_process(Some(child.id()));
        let status =
            crate::child::run_to_end(&mut child, || ctx.is_cancelled(), |line| ctx.log(line))
                .map_err(|e| StageError::wrap("cannot wait for the command", e))?;
        ctx.usage.set_process(None);
        let Some((status, used)) = status else {
            return Err(StageError::Cancelled);
        };
        ctx.usage.add_process(
            used.cpu_us,
            used.maxrss_kb,
            used.read_bytes,
            used.written_bytes,
        );
        if status.success() {
            return Ok(());
        }
        match status.code() {
            Some(code) if ctx.transient_exit_codes.contains(&code) => Err(StageError::transient(
                format!("`{program}` exited with code {code} (declared transient)"),
            )),
            Some(code) => Err(StageError::msg(format!(
                "`{program}` exited with code {code}"
            ))),
            None => Err(StageError::msg(format!(
                "`{program}` was killed by a signal"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Params {
        CommandStage
            .params()
            .validate(v.as_object().unwrap())
            .unwrap()
    }

    #[test]
    fn outputs_cannot_escape() {
        let p = params(json!({"cmd": ["true"], "outputs": {"o": "../x"}}));
        assert!(CommandStage.outputs(&p).unwrap_err().contains("`..`"));
        let p = params(json!({"cmd": ["true"], "outputs": {"o": "/etc/x"}}));
        assert!(CommandStage.outputs(&p).unwrap_err().contains("absolute"));
        for (a, b) in [("x.txt", "./x.txt"), ("d/", "d/inner.txt"), ("d", "d/")] {
            let p = params(json!({"cmd": ["true"], "outputs": {"a": a, "b": b}}));
            let e = CommandStage.outputs(&p).unwrap_err();
            assert!(e.contains("overlap"), "{a} {b}: {e}");
        }
        let p = params(json!({"cmd": ["true"], "outputs": {"a": "d/", "b": "d2/x"}}));
        assert!(
            CommandStage.outputs(&p).is_ok(),
            "a shared name prefix is not an overlap"
        );
        let p = params(json!({"cmd": ["true"], "outputs": {"o": "sub/x.csv", "d": "dir/"}}));
        let o = CommandStage.outputs(&p).unwrap();
        assert_eq!(
            o.iter().find(|o| o.name == "d").unwrap().kind,
            flow_cache::ArtifactKind::Dir
        );
    }

    #[test]
    fn templates_are_checked() {
        let p = params(
            json!({"cmd": ["cat", "${inputs.x}", "${outputs.o}", "${args.k}"], "outputs": {"o": "o.txt"}, "args": {"k": 1}}),
        );
        assert!(CommandStage.check(&p, &["x"]).is_ok());
        assert!(CommandStage
            .check(&p, &["y"])
            .unwrap_err()
            .contains("${inputs.x}"));
        let p = params(json!({"cmd": "echo hi"}));
        assert!(CommandStage
            .check(&p, &[])
            .unwrap_err()
            .contains("shell: true"));
    }
}
