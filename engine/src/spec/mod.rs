//! The pipeline file: parsing, `--set` overrides, template expansion.
//!
//! Output is a flat list of [`NodeSpec`] with every `${params.*}` and loop variable resolved
//! and every position remembered; checking against the stage registry happens in
//! [`crate::validate`].

mod executor;
mod span;
pub mod template;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_yaml::Value as Yaml;

pub use executor::{
    parse_executor, time_text, ExecutorKind, ExecutorSpec, GpuFlag, MemoryFlag, SlurmSettings,
    DEFAULT_MAX_QUEUED,
};
pub use span::{Span, SpanIndex};
pub use template::{render_str, Scope};

/// A problem in a pipeline file, with where it is and (when known) which node.
#[derive(Debug, Clone)]
pub struct SpecError {
    pub span: Span,
    pub node: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.span)?;
        if let Some(n) = &self.node {
            write!(f, "node `{n}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

/// One input reference: another node's named output, or a path outside the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum InputRef {
    Node { node: String, output: String },
    Path(PathBuf),
}

/// A named input: a single reference or a list of them.
#[derive(Debug, Clone, PartialEq)]
pub enum InputSpec {
    One(InputRef),
    Many(Vec<InputRef>),
}

impl InputSpec {
    pub fn refs(&self) -> Vec<&InputRef> {
        match self {
            InputSpec::One(r) => vec![r],
            InputSpec::Many(v) => v.iter().collect(),
        }
    }
}

/// What a node asks of the machine while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub cpu: usize,
    pub gpu: usize,
    pub memory_mb: Option<u64>,
    /// Time limit in Slurm's format (`resources.time`); the Slurm executor passes it as
    /// `--time`. The local executor does not limit time.
    pub time: Option<String>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu: 1,
            gpu: 0,
            memory_mb: None,
            time: None,
        }
    }
}

/// Retries for declared transient failures only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retry {
    /// Extra attempts after the first one.
    pub attempts: u32,
    /// Exit codes of a `command` node that count as transient.
    pub exit_codes: Vec<i32>,
    pub delay_ms: u64,
}

/// A node after expansion: everything resolved except run-time templates.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: String,
    pub stage: String,
    pub params: serde_json::Map<String, Value>,
    pub inputs: BTreeMap<String, InputSpec>,
    pub resources: Resources,
    pub retry: Retry,
    /// `publish: true|link|copy|symlink` (None: only a sink is published, as links).
    pub publish: Option<crate::publish::PublishMode>,
    /// The node's own `executor:` (wins over `--executor` and the pipeline's default).
    pub executor: Option<ExecutorKind>,
    /// Where the node is declared (its key in `nodes:`).
    pub span: Span,
    /// The id as written (differs from `id` for `foreach` nodes).
    pub template_id: String,
}

/// A parsed, expanded pipeline.
#[derive(Debug)]
pub struct Pipeline {
    pub name: String,
    pub file: PathBuf,
    pub params: serde_json::Map<String, Value>,
    pub nodes: Vec<NodeSpec>,
    /// The nodes a run is for (`targets:`); a run covers these and what they read, and skips
    /// the rest as not needed. Empty: every node.
    pub targets: Vec<String>,
    pub spans: SpanIndex,
    /// The top-level `executor:` settings.
    pub executor: ExecutorSpec,
}

impl Pipeline {
    pub fn node(&self, id: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

const TOP_KEYS: [&str; 6] = [
    "name",
    "description",
    "params",
    "targets",
    "executor",
    "nodes",
];
const NODE_KEYS: [&str; 10] = [
    "stage",
    "executor",
    "params",
    "inputs",
    "resources",
    "retry",
    "foreach",
    "publish",
    "description",
    "doc",
];

struct Ctx<'a> {
    spans: &'a SpanIndex,
    errors: Vec<SpecError>,
}

impl Ctx<'_> {
    fn err(
        &mut self,
        path: &[&str],
        node: Option<&str>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.errors.push(SpecError {
            span: self.spans.value(path),
            node: node.map(String::from),
            message: message.into(),
            help,
        });
    }
    fn err_key(
        &mut self,
        path: &[&str],
        node: Option<&str>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.errors.push(SpecError {
            span: self.spans.key(path),
            node: node.map(String::from),
            message: message.into(),
            help,
        });
    }
}

fn yaml_str(v: &Yaml) -> Option<&str> {
    v.as_str()
}

/// Sets `path` (`a.b.c`) inside `map`, creating the maps on the way; a value in the way is
/// replaced by a map.
fn set_nested(map: &mut serde_json::Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let slot = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            if !slot.is_object() {
                *slot = Value::Object(Default::default());
            }
            set_nested(slot.as_object_mut().expect("made a map"), rest, v);
        }
    }
}

/// Parses a `--set key=value` value as a YAML scalar (so numbers and booleans keep their type).
pub fn parse_override(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`--set {s}`: expected KEY=VALUE"))?;
    let k = k.trim().trim_start_matches("params.").to_string();
    if k.is_empty() {
        return Err(format!("`--set {s}`: empty key"));
    }
    // YAML typing for numbers, booleans, lists and `{...}` maps; anything else is the raw text
    // (so `?`, `#x` or `a: b` stay strings instead of becoming YAML structure).
    let raw = || Value::String(v.to_string());
    let t = v.trim();
    let val = match serde_yaml::from_str::<Yaml>(v) {
        Ok(y @ (Yaml::Number(_) | Yaml::Bool(_))) => {
            template::render(&y, &Scope::default()).unwrap_or_else(|_| raw())
        }
        Ok(y @ Yaml::Sequence(_)) if t.starts_with('[') => {
            template::render(&y, &Scope::default()).unwrap_or_else(|_| raw())
        }
        Ok(y @ Yaml::Mapping(_)) if t.starts_with('{') => {
            template::render(&y, &Scope::default()).unwrap_or_else(|_| raw())
        }
        Ok(Yaml::Null) if t == "null" || t == "~" => Value::Null,
        _ => raw(),
    };
    Ok((k, val))
}

/// Reads and expands a pipeline file.
pub fn load(file: &Path, overrides: &[(String, Value)]) -> Result<Pipeline, Vec<SpecError>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        vec![SpecError {
            span: Span {
                file: file.to_path_buf(),
                line: 0,
                col: 0,
            },
            node: None,
            message: format!("cannot read pipeline file: {e}"),
            help: Some("check the path".into()),
        }]
    })?;
    parse(file, &text, overrides)
}

/// Parses and expands pipeline text (`file` is used for positions only).
pub fn parse(
    file: &Path,
    text: &str,
    overrides: &[(String, Value)],
) -> Result<Pipeline, Vec<SpecError>> {
    let spans = SpanIndex::build(file, text);
    if let Some(span) = &spans.too_deep {
        return Err(vec![SpecError {
            span: span.clone(),
            node: None,
            message: format!(
                "the file nests mappings and lists deeper than MAX_YAML_DEPTH ({})",
                span::MAX_YAML_DEPTH
            ),
            help: Some(
                "a pipeline needs a few levels of nesting; check the file is the one meant".into(),
            ),
        }]);
    }
    if !spans.duplicates.is_empty() {
        return Err(spans
            .duplicates
            .iter()
            .map(|(path, span)| {
                let node = (path.len() >= 2 && path[0] == "nodes").then(|| path[1].clone());
                let what = if path.len() == 2 && path[0] == "nodes" {
                    "duplicate node id"
                } else {
                    "duplicate key"
                };
                SpecError {
                    span: span.clone(),
                    node,
                    message: format!("{what} `{}`", path.last().cloned().unwrap_or_default()),
                    help: Some("each key may appear once in a mapping".into()),
                }
            })
            .collect());
    }
    let doc: Yaml = serde_yaml::from_str(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        vec![SpecError {
            span: Span {
                file: file.to_path_buf(),
                line,
                col,
            },
            node: None,
            message: format!("invalid YAML: {e}"),
            help: None,
        }]
    })?;
    let mut cx = Ctx {
        spans: &spans,
        errors: Vec::new(),
    };
    let Some(top) = doc.as_mapping() else {
        cx.err(
            &[],
            None,
            "a pipeline must be a mapping with `name` and `nodes`",
            None,
        );
        return Err(cx.errors);
    };
    for k in top.keys() {
        let k = yaml_str(k).unwrap_or("?");
        if !TOP_KEYS.contains(&k) {
            cx.err_key(
                &[k],
                None,
                format!("unknown top-level key `{k}`"),
                Some(format!("allowed: {}", TOP_KEYS.join(", "))),
            );
        }
    }
    let name = match top.get("name").and_then(yaml_str) {
        Some(n)
            if !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            n.to_string()
        }
        Some(n) => {
            cx.err(
                &["name"],
                None,
                format!("pipeline name `{n}` must be letters, digits, `_` or `-`"),
                None,
            );
            String::new()
        }
        None => {
            cx.err(
                &[],
                None,
                "missing `name`",
                Some("add `name: my-pipeline` at the top".into()),
            );
            String::new()
        }
    };

    // Pipeline params: rendered with no scope (they cannot reference each other), then overridden.
    let mut params = serde_json::Map::new();
    if let Some(p) = top.get("params") {
        match template::render(p, &Scope::default()) {
            Ok(Value::Object(m)) => params = m,
            Ok(Value::Null) => {}
            Ok(_) => cx.err(&["params"], None, "`params` must be a mapping", None),
            Err((path, e)) => {
                let mut full = vec!["params"];
                full.extend(path.iter().map(|s| s.as_str()));
                cx.err(
                    &full,
                    None,
                    e,
                    Some("pipeline params cannot reference templates".into()),
                );
            }
        }
    }
    for (k, v) in overrides {
        if params.contains_key(k) {
            params.insert(k.clone(), v.clone());
            continue;
        }
        // `--set plan.overall.lr=0.001`: one entry inside a map param.
        let (head, rest) = k.split_once('.').unwrap_or((k.as_str(), ""));
        match params.get_mut(head) {
            Some(Value::Object(map)) if !rest.is_empty() => set_nested(map, rest, v.clone()),
            Some(_) if !rest.is_empty() => cx.err(
                &["params", head],
                None,
                format!("`--set {k}=...`: param `{head}` is not a map"),
                Some(format!("set the whole param: `--set {head}=...`")),
            ),
            _ => {
                let known: Vec<&String> = params.keys().collect();
                cx.err(
                    &["params"],
                    None,
                    format!("`--set {k}=...`: the pipeline has no param `{head}`"),
                    Some(format!("declared params: {known:?}")),
                );
            }
        }
    }

    let mut executor = ExecutorSpec::default();
    if let Some(e) = top.get("executor") {
        match template::render(e, &Scope::default()) {
            Ok(v) => match parse_executor(&v) {
                Ok(spec) => executor = spec,
                Err((path, e)) => {
                    let mut full = vec!["executor"];
                    full.extend(path.iter().map(|s| s.as_str()));
                    cx.err(
                        &full,
                        None,
                        e,
                        Some("see docs/slurm.md for the executor settings".into()),
                    );
                }
            },
            Err((_, e)) => cx.err(&["executor"], None, e, None),
        }
    }

    let mut nodes = Vec::new();
    match top.get("nodes").map(|n| n.as_mapping()) {
        Some(Some(m)) => {
            for (k, v) in m {
                let Some(tid) = yaml_str(k) else {
                    cx.err(&["nodes"], None, "node ids must be strings", None);
                    continue;
                };
                expand_node(&mut cx, &params, tid, v, &mut nodes);
            }
        }
        Some(None) => cx.err(
            &["nodes"],
            None,
            "`nodes` must be a mapping of node id to node",
            None,
        ),
        None => cx.err(&[], None, "missing `nodes`", None),
    }

    // Duplicate ids (possible after foreach expansion).
    let mut seen: HashSet<&str> = HashSet::new();
    let mut dups = Vec::new();
    for n in &nodes {
        if !seen.insert(&n.id) {
            dups.push((n.id.clone(), n.template_id.clone()));
        }
    }
    for (id, tid) in dups {
        cx.err_key(
            &["nodes", &tid],
            Some(&id),
            format!("duplicate node id `{id}`"),
            Some("with foreach, put every loop variable in the id, e.g. `train_f${fold}`".into()),
        );
    }
    let targets = parse_targets(&mut cx, top.get("targets"), &nodes);
    if cx.errors.is_empty() {
        Ok(Pipeline {
            name,
            file: file.to_path_buf(),
            params,
            nodes,
            targets,
            spans,
            executor,
        })
    } else {
        Err(cx.errors)
    }
}

/// `targets:`, a list of node ids (after `foreach` expansion); each must name a node.
fn parse_targets(cx: &mut Ctx, v: Option<&Yaml>, nodes: &[NodeSpec]) -> Vec<String> {
    let Some(v) = v else {
        return Vec::new();
    };
    let Some(list) = v.as_sequence() else {
        cx.err(
            &["targets"],
            None,
            "`targets` must be a list of node ids",
            Some("e.g. `targets: [report]`".into()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in list {
        match yaml_str(t) {
            Some(id) if nodes.iter().any(|n| n.id == id) => out.push(id.to_string()),
            Some(id) => {
                let known: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
                let near = known
                    .iter()
                    .filter(|k| k.contains(id) || id.contains(*k))
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>();
                cx.err(
                    &["targets"],
                    None,
                    format!("target `{id}` is not a node of this pipeline"),
                    Some(if near.is_empty() {
                        "name a node id as `flow graph` lists it".into()
                    } else {
                        format!("did you mean one of {near:?}?")
                    }),
                );
            }
            None => cx.err(
                &["targets"],
                None,
                "`targets` must be a list of node ids (strings)",
                None,
            ),
        }
    }
    out
}

fn expand_node(
    cx: &mut Ctx,
    params: &serde_json::Map<String, Value>,
    tid: &str,
    v: &Yaml,
    out: &mut Vec<NodeSpec>,
) {
    let base = ["nodes", tid];
    let Some(m) = v.as_mapping() else {
        cx.err(
            &base,
            Some(tid),
            "a node must be a mapping with at least `stage`",
            None,
        );
        return;
    };
    for k in m.keys() {
        let k = yaml_str(k).unwrap_or("?");
        if !NODE_KEYS.contains(&k) {
            cx.err_key(
                &["nodes", tid, k],
                Some(tid),
                format!("unknown node key `{k}`"),
                Some(format!("allowed: {}", NODE_KEYS.join(", "))),
            );
        }
    }
    let outer = Scope {
        params: params.clone(),
        vars: BTreeMap::new(),
    };
    let combos = match m.get("foreach") {
        None => vec![BTreeMap::new()],
        Some(f) => match foreach_vars(f, &outer) {
            Ok(vars) => template::combinations(&vars),
            Err(e) => {
                cx.err(
                    &["nodes", tid, "foreach"],
                    Some(tid),
                    e,
                    Some("write e.g. `foreach: {fold: [0, 1, 2]}` or `{fold: \"0..5\"}`".into()),
                );
                return;
            }
        },
    };
    for vars in combos {
        let scope = Scope {
            params: params.clone(),
            vars,
        };
        let id = match render_str(tid, &scope) {
            Ok(Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(e) => {
                cx.err_key(&base, Some(tid), e, None);
                continue;
            }
        };
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            cx.err_key(
                &base,
                Some(&id),
                format!("node id `{id}` must be letters, digits, `_` or `-`"),
                None,
            );
            continue;
        }
        if let Some(node) = build_node(cx, &scope, tid, &id, m) {
            out.push(node);
        }
    }
}

fn foreach_vars(f: &Yaml, scope: &Scope) -> Result<Vec<(String, Vec<Value>)>, String> {
    let m = f
        .as_mapping()
        .ok_or("`foreach` must map variable names to lists")?;
    let mut vars = Vec::new();
    for (k, v) in m {
        let name = yaml_str(k)
            .ok_or("foreach variable names must be strings")?
            .to_string();
        let rendered = template::render(v, scope).map_err(|(_, e)| e)?;
        vars.push((name, template::loop_values(&rendered)?));
    }
    template::check_combinations(&vars)?;
    Ok(vars)
}

fn build_node(
    cx: &mut Ctx,
    scope: &Scope,
    tid: &str,
    id: &str,
    m: &serde_yaml::Mapping,
) -> Option<NodeSpec> {
    let before = cx.errors.len();
    let render_field = |cx: &mut Ctx, field: &str| -> Option<Value> {
        let v = m.get(field)?;
        match template::render(v, scope) {
            Ok(v) => Some(v),
            Err((path, e)) => {
                let mut full = vec!["nodes", tid, field];
                full.extend(path.iter().map(|s| s.as_str()));
                cx.err(&full, Some(id), e, None);
                None
            }
        }
    };
    let stage = match render_field(cx, "stage") {
        Some(Value::String(s)) => s,
        Some(_) => {
            cx.err(
                &["nodes", tid, "stage"],
                Some(id),
                "`stage` must be a string",
                None,
            );
            String::new()
        }
        None => {
            cx.err_key(
                &["nodes", tid],
                Some(id),
                "missing `stage`",
                Some("run `flow stages` to list the stage kinds".into()),
            );
            String::new()
        }
    };
    let params = match render_field(cx, "params") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(_) => {
            cx.err(
                &["nodes", tid, "params"],
                Some(id),
                "`params` must be a mapping",
                None,
            );
            serde_json::Map::new()
        }
    };
    let mut inputs = BTreeMap::new();
    if let Some(raw) = m.get("inputs") {
        match raw.as_mapping() {
            Some(im) => {
                for (k, v) in im {
                    let Some(name) = yaml_str(k) else { continue };
                    let path = ["nodes", tid, "inputs", name];
                    match parse_input(v, scope) {
                        Ok(spec) => {
                            inputs.insert(name.to_string(), spec);
                        }
                        Err(e) => cx.err(&path, Some(id), e, Some("an input is `node.output`, a path containing `/` (e.g. `./data.csv`), a list of those, or `{foreach: {...}, each: ...}`".into())),
                    }
                }
            }
            None if raw.is_null() => {}
            None => cx.err(
                &["nodes", tid, "inputs"],
                Some(id),
                "`inputs` must be a mapping of input name to reference",
                None,
            ),
        }
    }
    let resources = match render_field(cx, "resources") {
        None => Resources::default(),
        Some(v) => parse_resources(&v).unwrap_or_else(|e| {
            cx.err(
                &["nodes", tid, "resources"],
                Some(id),
                e,
                Some("e.g. `resources: {cpu: 2, gpu: 1, memory: 8G}`".into()),
            );
            Resources::default()
        }),
    };
    let retry = match render_field(cx, "retry") {
        None => Retry::default(),
        Some(v) => parse_retry(&v).unwrap_or_else(|e| {
            cx.err(
                &["nodes", tid, "retry"],
                Some(id),
                e,
                Some("e.g. `retry: {attempts: 2, exit_codes: [75], delay_ms: 500}`".into()),
            );
            Retry::default()
        }),
    };
    let publish = match render_field(cx, "publish") {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(crate::publish::PublishMode::default()),
        Some(Value::String(s)) => match s.parse() {
            Ok(mode) => Some(mode),
            Err(e) => {
                cx.err(&["nodes", tid, "publish"], Some(id), e, None);
                None
            }
        },
        Some(_) => {
            cx.err(
                &["nodes", tid, "publish"],
                Some(id),
                "`publish` must be true, false, link, copy or symlink",
                None,
            );
            None
        }
    };
    let executor = match render_field(cx, "executor") {
        None => None,
        Some(Value::String(s)) => match s.parse::<ExecutorKind>() {
            Ok(k) => Some(k),
            Err(e) => {
                cx.err(
                    &["nodes", tid, "executor"],
                    Some(id),
                    e,
                    Some("a node's `executor` is `local` or `slurm`; Slurm settings go in the pipeline's `executor.slurm` block".into()),
                );
                None
            }
        },
        Some(_) => {
            cx.err(
                &["nodes", tid, "executor"],
                Some(id),
                "`executor` must be `local` or `slurm`",
                None,
            );
            None
        }
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(NodeSpec {
        id: id.to_string(),
        stage,
        params,
        inputs,
        resources,
        retry,
        publish,
        executor,
        span: cx.spans.key(&["nodes", tid]),
        template_id: tid.to_string(),
    })
}

/// `node.output` or a path (anything with a `/`, or starting with `.` or `~`).
pub fn parse_ref(s: &str) -> Result<InputRef, String> {
    if s.contains('/') || s.starts_with('.') || s.starts_with('~') {
        let expanded = match s.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(rest))
                .unwrap_or_else(|| PathBuf::from(s)),
            None => PathBuf::from(s),
        };
        return Ok(InputRef::Path(expanded));
    }
    match s.split_once('.') {
        Some((node, output)) if !node.is_empty() && !output.is_empty() => Ok(InputRef::Node {
            node: node.into(),
            output: output.into(),
        }),
        _ => Err(format!("`{s}` is neither `node.output` nor a path")),
    }
}

fn parse_input(v: &Yaml, scope: &Scope) -> Result<InputSpec, String> {
    let text = |v: &Value| -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("input reference must be a string, not {other}")),
        }
    };
    if let Some(m) = v.as_mapping() {
        let f = m
            .get("foreach")
            .ok_or("an input mapping needs `foreach` and `each`")?;
        let each = m
            .get("each")
            .ok_or("an input mapping needs `foreach` and `each`")?;
        let vars = foreach_vars(f, scope)?;
        let mut refs = Vec::new();
        for combo in template::combinations(&vars) {
            let mut s = scope.clone();
            s.vars.extend(combo);
            let r = template::render(each, &s).map_err(|(_, e)| e)?;
            refs.push(parse_ref(&text(&r)?)?);
        }
        return Ok(InputSpec::Many(refs));
    }
    let r = template::render(v, scope).map_err(|(_, e)| e)?;
    match r {
        Value::Array(items) => Ok(InputSpec::Many(
            items
                .iter()
                .map(|i| text(i).and_then(|s| parse_ref(&s)))
                .collect::<Result<_, _>>()?,
        )),
        other => Ok(InputSpec::One(parse_ref(&text(&other)?)?)),
    }
}

/// Memory like `512M`, `8G`, `1.5G` or a plain number of MiB.
pub fn parse_memory(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("memory `{n}` must be a whole number of MiB")),
        Value::String(s) => {
            let s = s.trim();
            let (num, mult) = match s.chars().last() {
                Some('G' | 'g') => (&s[..s.len() - 1], 1024.0),
                Some('M' | 'm') => (&s[..s.len() - 1], 1.0),
                Some('T' | 't') => (&s[..s.len() - 1], 1024.0 * 1024.0),
                _ => (s, 1.0),
            };
            let x: f64 = num
                .trim()
                .parse()
                .map_err(|_| format!("memory `{s}`: expected e.g. 512M or 8G"))?;
            Ok((x * mult).round() as u64)
        }
        other => Err(format!("memory must be like 8G, not {other}")),
    }
}

fn parse_resources(v: &Value) -> Result<Resources, String> {
    let m = v.as_object().ok_or("`resources` must be a mapping")?;
    let mut r = Resources::default();
    for (k, val) in m {
        match k.as_str() {
            "cpu" => {
                r.cpu = val
                    .as_u64()
                    .filter(|&c| c >= 1)
                    .ok_or("`cpu` must be an integer >= 1")? as usize
            }
            "gpu" => r.gpu = val.as_u64().ok_or("`gpu` must be an integer >= 0")? as usize,
            "memory" => r.memory_mb = Some(parse_memory(val)?),
            "time" => r.time = Some(time_text(val)?),
            other => {
                return Err(format!(
                    "unknown resource `{other}` (allowed: cpu, gpu, memory, time)"
                ))
            }
        }
    }
    Ok(r)
}

fn parse_retry(v: &Value) -> Result<Retry, String> {
    let m = v.as_object().ok_or("`retry` must be a mapping")?;
    let mut r = Retry::default();
    for (k, val) in m {
        match k.as_str() {
            "attempts" => r.attempts = val.as_u64().ok_or("`attempts` must be an integer")? as u32,
            "delay_ms" => r.delay_ms = val.as_u64().ok_or("`delay_ms` must be an integer")?,
            "exit_codes" => {
                r.exit_codes = val
                    .as_array()
                    .ok_or("`exit_codes` must be a list of integers")?
                    .iter()
                    .map(|c| {
                        c.as_i64()
                            .map(|c| c as i32)
                            .ok_or("`exit_codes` must be a list of integers")
                    })
                    .collect::<Result<_, _>>()?
            }
            other => {
                return Err(format!(
                    "unknown retry field `{other}` (allowed: attempts, exit_codes, delay_ms)"
                ))
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
