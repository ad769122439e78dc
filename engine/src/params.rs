//! Declared stage params: names, types, defaults and docs; validation and canonical form.

use serde_json::Value;

use crate::stage::Params;

/// The type a param must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Bool,
    Int,
    Float,
    String,
    List,
    Map,
    Any,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::Bool => "bool",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::String => "string",
            ParamType::List => "list",
            ParamType::Map => "map",
            ParamType::Any => "any",
        }
    }

    /// Checks `v` and returns its canonical form (ints as floats for float params).
    fn coerce(self, v: &Value) -> Option<Value> {
        match (self, v) {
            (ParamType::Any, v) => Some(v.clone()),
            (ParamType::Bool, Value::Bool(_)) => Some(v.clone()),
            (ParamType::Int, Value::Number(n)) if n.is_i64() || n.is_u64() => Some(v.clone()),
            (ParamType::Float, Value::Number(n)) => n
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            (ParamType::String, Value::String(_)) => Some(v.clone()),
            (ParamType::List, Value::Array(_)) => Some(v.clone()),
            (ParamType::Map, Value::Object(_)) => Some(v.clone()),
            _ => None,
        }
    }
}

/// One declared param.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    /// `None` = required.
    pub default: Option<Value>,
    pub doc: &'static str,
    /// False for params that cannot change results (thread counts, verbosity): left out of the key.
    pub in_key: bool,
}

/// The params a stage accepts.
#[derive(Debug, Clone, Default)]
pub struct ParamsSchema {
    pub params: Vec<ParamSpec>,
}

impl ParamsSchema {
    pub fn new() -> ParamsSchema {
        ParamsSchema::default()
    }
    /// A required param.
    pub fn required(mut self, name: &'static str, ty: ParamType, doc: &'static str) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            default: None,
            doc,
            in_key: true,
        });
        self
    }
    /// An optional param with its default.
    pub fn optional(
        mut self,
        name: &'static str,
        ty: ParamType,
        default: Value,
        doc: &'static str,
    ) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            default: Some(default),
            doc,
            in_key: true,
        });
        self
    }
    /// An optional param that does not affect results (excluded from the node key).
    pub fn runtime(
        mut self,
        name: &'static str,
        ty: ParamType,
        default: Value,
        doc: &'static str,
    ) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            default: Some(default),
            doc,
            in_key: false,
        });
        self
    }

    pub fn get(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Validates `given`, filling defaults. Each error is `(param name, message)`.
    pub fn validate(&self, given: &Params) -> Result<Params, Vec<(String, String)>> {
        let mut out = Params::new();
        let mut errors = Vec::new();
        for (k, v) in given {
            match self.get(k) {
                None => {
                    let hint = closest(k, self.params.iter().map(|p| p.name))
                        .map(|c| format!("; did you mean `{c}`?"))
                        .unwrap_or_else(|| {
                            let names: Vec<&str> = self.params.iter().map(|p| p.name).collect();
                            format!(
                                "; known params: {}",
                                if names.is_empty() {
                                    "none".to_string()
                                } else {
                                    names.join(", ")
                                }
                            )
                        });
                    errors.push((k.clone(), format!("unknown param `{k}`{hint}")));
                }
                Some(spec) => match spec.ty.coerce(v) {
                    Some(c) => {
                        out.insert(k.clone(), c);
                    }
                    None => errors.push((
                        k.clone(),
                        format!(
                            "param `{k}` must be {}, got {}",
                            spec.ty.name(),
                            describe(v)
                        ),
                    )),
                },
            }
        }
        for spec in &self.params {
            if !out.contains_key(spec.name) && !given.contains_key(spec.name) {
                match &spec.default {
                    Some(d) => {
                        out.insert(spec.name.to_string(), d.clone());
                    }
                    None => errors.push((
                        spec.name.to_string(),
                        format!(
                            "missing required param `{}` ({}): {}",
                            spec.name,
                            spec.ty.name(),
                            spec.doc
                        ),
                    )),
                }
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// The params that enter the node key.
    pub fn key_params(&self, params: &Params) -> Params {
        params
            .iter()
            .filter(|(k, _)| self.get(k).map(|s| s.in_key).unwrap_or(true))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

/// The known name closest to `name` by edit distance, if close enough to be a typo.
/// The known name closest to `name` by edit distance, if within `max` edits (a likely typo).
pub(crate) fn closest_within<'a>(
    name: &str,
    known: impl Iterator<Item = &'a str>,
    max: usize,
) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= max)
        .min()
        .map(|(_, k)| k)
}

fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    closest_within(name, known, 2)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ParamsSchema {
        ParamsSchema::new()
            .required("epochs", ParamType::Int, "epochs")
            .optional("lr", ParamType::Float, json!(0.01), "learning rate")
            .runtime("threads", ParamType::Int, json!(1), "threads")
    }

    fn map(v: Value) -> Params {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_and_coercion() {
        let p = schema()
            .validate(&map(json!({"epochs": 3, "lr": 1})))
            .unwrap();
        assert_eq!(p["lr"], json!(1.0));
        assert_eq!(p["threads"], json!(1));
        let k = schema().key_params(&p);
        assert!(!k.contains_key("threads"));
    }

    #[test]
    fn errors() {
        let e = schema()
            .validate(&map(json!({"epoch": 3, "lr": "x"})))
            .unwrap_err();
        let text: Vec<&str> = e.iter().map(|(_, m)| m.as_str()).collect();
        assert!(
            text.iter().any(|m| m.contains("did you mean `epochs`")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("must be float, got string")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|m| m.contains("missing required param `epochs`")),
            "{text:?}"
        );
    }
}
