//! The one `${...}` template syntax: [`pieces`] splits a string, [`render_str`] resolves it
//! when the pipeline loads, and a stage that templates at run time (the `command` stage)
//! resolves what is left with [`render_runtime`].
//!
//! Load time: `${params.NAME}` (pipeline params, dotted paths allowed), `${VAR}` and
//! `${VAR+N}` / `${VAR-N}` (loop variables of `foreach`); any other name is an error.
//! Run time: `${inputs.*}`, `${outputs.*}` and `${args.*}` ([`RUNTIME_SCOPES`]) are left in
//! place at load time for the stage.
//!
//! `$${` writes a literal `${`. At load time it becomes `${`, except before a run-time scope
//! (`$${inputs.x}`), where it stays escaped for the run-time pass; the run-time pass turns
//! `$${` into `${` and copies any `${...}` that is not a run-time expression as text (load
//! time already refused unknown names, so such text came from an escape or a param's value).
//! A string that is exactly one load-time expression takes the value's type (a list stays a
//! list, a number a number); otherwise the value is spliced in as text.

use std::collections::BTreeMap;

use serde_json::Value;

/// Prefixes resolved later, by the stage at run time.
pub const RUNTIME_SCOPES: [&str; 3] = ["inputs.", "outputs.", "args."];

/// A piece of a template string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text.
    Text(&'a str),
    /// `$${`: a literal `${`.
    Escape,
    /// The inside of `${...}`, untrimmed.
    Expr(&'a str),
}

/// Splits `s` into text, escapes and expressions; an unterminated `${` is an error.
pub fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            push_text(&mut out, &rest[..pos]);
            out.push(Piece::Escape);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            push_text(&mut out, &rest[..pos]);
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in {s:?}"))?;
            out.push(Piece::Expr(&after[..end]));
            rest = &after[end + 1..];
        } else {
            push_text(&mut out, &rest[..pos + 1]);
            rest = &tail[1..];
        }
    }
    push_text(&mut out, rest);
    Ok(out)
}

fn push_text<'a>(out: &mut Vec<Piece<'a>>, text: &'a str) {
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
}

/// The run-time scope and name of an expression (`inputs.x` -> `("inputs", "x")`), if it is one.
pub fn runtime_ref(expr: &str) -> Option<(&str, &str)> {
    let expr = expr.trim();
    RUNTIME_SCOPES
        .iter()
        .find(|p| expr.starts_with(**p))
        .map(|p| (&p[..p.len() - 1], expr[p.len()..].trim()))
}

/// Every run-time reference in `s` (`${inputs.x}` -> `("inputs", "x")`).
pub fn runtime_refs(s: &str) -> Result<Vec<(&str, &str)>, String> {
    Ok(pieces(s)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Expr(e) => runtime_ref(e),
            _ => None,
        })
        .collect())
}

/// The run-time pass: `value(scope, name)` gives the text of each run-time reference;
/// `$${` becomes `${` and any other `${...}` is copied as text.
pub fn render_runtime<E>(
    s: &str,
    mut value: impl FnMut(&str, &str) -> Result<String, E>,
    unterminated: impl FnOnce(String) -> E,
) -> Result<String, E> {
    let mut out = String::with_capacity(s.len());
    for piece in pieces(s).map_err(unterminated)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Escape => out.push_str("${"),
            Piece::Expr(e) => match runtime_ref(e) {
                Some((scope, name)) => out.push_str(&value(scope, name)?),
                None => {
                    out.push_str("${");
                    out.push_str(e);
                    out.push('}');
                }
            },
        }
    }
    Ok(out)
}

/// Values visible to templates: pipeline params plus the current loop variables.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub params: serde_json::Map<String, Value>,
    pub vars: BTreeMap<String, Value>,
}

impl Scope {
    fn lookup(&self, expr: &str) -> Result<Value, String> {
        let expr = expr.trim();
        if let Some(rest) = expr.strip_prefix("params.") {
            let mut cur: Option<&Value> = None;
            for (i, part) in rest.split('.').enumerate() {
                cur = if i == 0 {
                    self.params.get(part)
                } else {
                    cur.and_then(|v| v.get(part))
                };
            }
            return cur.cloned().ok_or_else(|| {
                let known: Vec<&String> = self.params.keys().collect();
                format!(
                    "unresolved `${{{expr}}}`: no pipeline param `{rest}` (declared: {known:?})"
                )
            });
        }
        for (op, sign) in [('+', 1i64), ('-', -1i64)] {
            if let Some((var, n)) = expr.split_once(op) {
                let (var, n) = (var.trim(), n.trim());
                if let (Some(v), Ok(n)) = (self.vars.get(var), n.parse::<i64>()) {
                    let base = v
                        .as_i64()
                        .ok_or_else(|| format!("`${{{expr}}}`: `{var}` is not an integer"))?;
                    return Ok(Value::from(base + sign * n));
                }
            }
        }
        self.vars.get(expr).cloned().ok_or_else(|| {
            let known: Vec<&String> = self.vars.keys().collect();
            if known.is_empty() {
                format!("unresolved `${{{expr}}}`: not a pipeline param (write `${{params.{expr}}}`) and no foreach variable is in scope")
            } else {
                format!("unresolved `${{{expr}}}`: foreach variables in scope are {known:?}")
            }
        })
    }
}

/// Renders a value as template text.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The load-time pass: substitutes every params and loop-variable expression in `s`.
pub fn render_str(s: &str, scope: &Scope) -> Result<Value, String> {
    let parts = pieces(s)?;
    // Whole-string expression keeps its type.
    if let [Piece::Expr(e)] = parts.as_slice() {
        if runtime_ref(e).is_none() {
            return scope.lookup(e);
        }
    }
    let mut out = String::with_capacity(s.len());
    for (k, piece) in parts.iter().enumerate() {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Escape => {
                // Stays escaped where the run-time pass would read it as an expression.
                let before_runtime = matches!(parts.get(k + 1), Some(Piece::Text(t))
                    if RUNTIME_SCOPES.iter().any(|p| t.trim_start().starts_with(p)));
                out.push_str(if before_runtime { "$${" } else { "${" });
            }
            Piece::Expr(e) if runtime_ref(e).is_some() => {
                out.push_str("${");
                out.push_str(e);
                out.push('}');
            }
            Piece::Expr(e) => out.push_str(&as_text(&scope.lookup(e)?)),
        }
    }
    Ok(Value::String(out))
}

/// Converts a YAML value to JSON, substituting templates in every string.
/// Errors carry the path (relative to `v`) of the offending string.
pub fn render(v: &serde_yaml::Value, scope: &Scope) -> Result<Value, (Vec<String>, String)> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(f64::NAN))
                    .map(Value::Number)
                    .ok_or((vec![], format!("number {n} is not finite")))?
            }
        }
        Y::String(s) => render_str(s, scope).map_err(|e| (vec![], e))?,
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(render(item, scope).map_err(|(mut p, e)| {
                    p.insert(0, i.to_string());
                    (p, e)
                })?);
            }
            Value::Array(out)
        }
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, val) in m {
                let key = match k {
                    Y::String(s) => as_text(&render_str(s, scope).map_err(|e| (vec![], e))?),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let rendered = render(val, scope).map_err(|(mut p, e)| {
                    p.insert(0, key.clone());
                    (p, e)
                })?;
                out.insert(key, rendered);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => render(&t.value, scope)?,
    })
}

/// Most combinations one `foreach` may expand to (nodes of one template, or references of one
/// input mapping): a typo such as `--set shards=300000000` is an error, not gigabytes.
pub const MAX_FOREACH_COMBINATIONS: usize = 100_000;

/// The values one `foreach` variable takes: a list, or a `"A..B"` integer range (B excluded).
pub fn loop_values(v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(items) if !items.is_empty() => Ok(items.clone()),
        Value::Array(_) => Err("a foreach list must not be empty".into()),
        Value::String(s) => {
            let (a, b) = s
                .split_once("..")
                .ok_or_else(|| format!("`{s}` is neither a list nor a range `A..B`"))?;
            let (a, b): (i64, i64) = (
                a.trim()
                    .parse()
                    .map_err(|_| format!("range start `{a}` is not an integer"))?,
                b.trim()
                    .parse()
                    .map_err(|_| format!("range end `{b}` is not an integer"))?,
            );
            if b <= a {
                return Err(format!("range `{s}` is empty"));
            }
            if (b as i128 - a as i128) > MAX_FOREACH_COMBINATIONS as i128 {
                return Err(format!(
                    "range `{s}` has {} values, more than MAX_FOREACH_COMBINATIONS ({MAX_FOREACH_COMBINATIONS})",
                    b as i128 - a as i128
                ));
            }
            Ok((a..b).map(Value::from).collect())
        }
        other => Err(format!(
            "foreach values must be a list or a range `A..B`, not {other}"
        )),
    }
}

/// Fails when the loop variables would expand to more than [`MAX_FOREACH_COMBINATIONS`].
pub fn check_combinations(vars: &[(String, Vec<Value>)]) -> Result<(), String> {
    let mut n: usize = 1;
    for (_, values) in vars {
        n = n.saturating_mul(values.len());
    }
    if n > MAX_FOREACH_COMBINATIONS {
        let sizes: Vec<String> = vars
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.len()))
            .collect();
        return Err(format!(
            "foreach expands to {n} combinations ({}), more than MAX_FOREACH_COMBINATIONS ({MAX_FOREACH_COMBINATIONS})",
            sizes.join(" x ")
        ));
    }
    Ok(())
}

/// Every combination of the loop variables, in declaration order (the last varies fastest).
pub fn combinations(vars: &[(String, Vec<Value>)]) -> Vec<BTreeMap<String, Value>> {
    let mut out = vec![BTreeMap::new()];
    for (name, values) in vars {
        let mut next = Vec::with_capacity(out.len() * values.len());
        for combo in &out {
            for v in values {
                let mut c = combo.clone();
                c.insert(name.clone(), v.clone());
                next.push(c);
            }
        }
        out = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        let mut s = Scope::default();
        s.params.insert("n".into(), json!(3));
        s.params.insert("folds".into(), json!([0, 1]));
        s.params.insert("nested".into(), json!({"a": "x"}));
        s.vars.insert("round".into(), json!(2));
        s
    }

    #[test]
    fn typed_and_spliced() {
        let s = scope();
        assert_eq!(render_str("${params.n}", &s).unwrap(), json!(3));
        assert_eq!(render_str("${params.folds}", &s).unwrap(), json!([0, 1]));
        assert_eq!(
            render_str("r${round}_${params.nested.a}", &s).unwrap(),
            json!("r2_x")
        );
        assert_eq!(render_str("prev${round-1}", &s).unwrap(), json!("prev1"));
        assert_eq!(render_str("${round+1}", &s).unwrap(), json!(3));
        assert_eq!(render_str("$${literal}", &s).unwrap(), json!("${literal}"));
        assert_eq!(render_str("cost $5", &s).unwrap(), json!("cost $5"));
        assert_eq!(render_str("$", &s).unwrap(), json!("$"));
        assert_eq!(render_str("a$$b$", &s).unwrap(), json!("a$$b$"));
    }

    #[test]
    fn pieces_split_text_escapes_and_expressions() {
        assert_eq!(
            pieces("a$${b}${c}$d").unwrap(),
            vec![
                Piece::Text("a"),
                Piece::Escape,
                Piece::Text("b}"),
                Piece::Expr("c"),
                Piece::Text("$"),
                Piece::Text("d"),
            ]
        );
        assert!(pieces("x ${y").unwrap_err().contains("unterminated"));
        assert_eq!(pieces("").unwrap(), vec![]);
    }

    /// Load time then run time, as a `command` node sees its `cmd`.
    fn both_passes(s: &str) -> String {
        let loaded = render_str(s, &scope()).unwrap();
        let loaded = loaded.as_str().unwrap();
        render_runtime(
            loaded,
            |scope, name| Ok::<_, String>(format!("<{scope}:{name}>")),
            |e| e,
        )
        .unwrap()
    }

    #[test]
    fn an_escape_survives_both_passes() {
        assert_eq!(both_passes("echo $${HOME}"), "echo ${HOME}");
        assert_eq!(
            both_passes("$${inputs.x} ${inputs.x}"),
            "${inputs.x} <inputs:x>"
        );
        assert_eq!(
            both_passes("r${round} ${outputs.o} $${args.a} ${args.a}"),
            "r2 <outputs:o> ${args.a} <args:a>"
        );
        assert_eq!(both_passes("awk '{print $$1}'"), "awk '{print $$1}'");
    }

    #[test]
    fn runtime_refs_name_scope_and_name() {
        assert_eq!(
            runtime_refs("${inputs.a} $${outputs.b} ${ args.c } ${HOME}").unwrap(),
            vec![("inputs", "a"), ("args", "c")]
        );
    }

    #[test]
    fn deferred_left_alone() {
        let s = scope();
        assert_eq!(render_str("${inputs.x}", &s).unwrap(), json!("${inputs.x}"));
        assert_eq!(
            render_str("--out=${outputs.o} ${params.n}", &s).unwrap(),
            json!("--out=${outputs.o} 3")
        );
    }

    #[test]
    fn unresolved_is_an_error() {
        let s = scope();
        assert!(render_str("${params.nope}", &s)
            .unwrap_err()
            .contains("no pipeline param"));
        assert!(render_str("${fold}", &s)
            .unwrap_err()
            .contains("unresolved"));
        assert!(render_str("${params.n", &s)
            .unwrap_err()
            .contains("unterminated"));
    }

    #[test]
    fn huge_foreach_ranges_and_products_are_errors() {
        let e = loop_values(&json!("0..300000000")).unwrap_err();
        assert!(e.contains("MAX_FOREACH_COMBINATIONS"), "{e}");
        let big = loop_values(&json!("0..1000")).unwrap();
        let vars = vec![("a".to_string(), big.clone()), ("b".to_string(), big)];
        let e = check_combinations(&vars).unwrap_err();
        assert!(
            e.contains("1000000 combinations (a: 1000 x b: 1000)"),
            "{e}"
        );
        assert!(check_combinations(&vars[..1]).is_ok());
    }

    #[test]
    fn ranges_and_products() {
        assert_eq!(
            loop_values(&json!("0..3")).unwrap(),
            vec![json!(0), json!(1), json!(2)]
        );
        assert!(loop_values(&json!("3..3")).is_err());
        let c = combinations(&[
            ("a".into(), vec![json!(1), json!(2)]),
            ("b".into(), vec![json!("x"), json!("y")]),
        ]);
        assert_eq!(c.len(), 4);
        assert_eq!(c[1]["a"], json!(1));
        assert_eq!(c[1]["b"], json!("y"));
    }
}
