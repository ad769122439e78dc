//! `${...}` substitution and `foreach` expansion.
//!
//! Expressions: `${params.NAME}` (pipeline params, dotted paths allowed), `${VAR}` and
//! `${VAR+N}` / `${VAR-N}` (loop variables of `foreach`). `${inputs.*}`, `${outputs.*}` and
//! `${args.*}` are left in place for stages that template at run time (the `command` stage).
//! `$${` writes a literal `${`. A string that is exactly one expression takes the value's type
//! (a list stays a list, a number a number); otherwise the value is spliced in as text.

use std::collections::BTreeMap;

use serde_json::Value;

/// Prefixes resolved later, by the stage at run time.
const DEFERRED: [&str; 3] = ["inputs.", "outputs.", "args."];

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

fn is_deferred(expr: &str) -> bool {
    DEFERRED.iter().any(|p| expr.trim().starts_with(p))
}

/// Renders a value as template text.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Substitutes every expression in `s`.
pub fn render_str(s: &str, scope: &Scope) -> Result<Value, String> {
    // Whole-string expression keeps its type.
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        if !inner.contains("${") && !inner.contains('}') && !is_deferred(inner) {
            return scope.lookup(inner);
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in {s:?}"))?;
            let expr = &after[..end];
            if is_deferred(expr) {
                out.push_str("${");
                out.push_str(expr);
                out.push('}');
            } else {
                out.push_str(&as_text(&scope.lookup(expr)?));
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
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
