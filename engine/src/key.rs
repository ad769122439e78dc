//! Node keys: BLAKE3 over one explicit, canonical manifest.
//!
//! The manifest holds the cache format version, the stage kind and version, the params that
//! affect results (sorted keys, canonical numbers), the settings the stage resolves from them
//! (when it has any) and the digests of the inputs. It never
//! holds paths, mtimes, thread counts or attempt numbers, so a key moves only when the
//! result could.

use std::collections::BTreeMap;

use flow_cache::{hash_bytes, ArtifactKind, Digest};
use serde_json::{json, Value};

/// Bumped when the manifest layout changes (invalidates every cached result).
pub const FORMAT: u32 = 1;

/// An input's identity in the key.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDigest {
    pub kind: ArtifactKind,
    pub digest: Digest,
}

/// The canonical manifest of a node; `settings` only appears when the stage has some, so
/// the keys of stages without settings do not move.
pub fn manifest(
    kind: &str,
    version: u32,
    params: &serde_json::Map<String, Value>,
    settings: Option<&Value>,
    inputs: &BTreeMap<String, Vec<InputDigest>>,
    many: &BTreeMap<String, bool>,
) -> Value {
    let inputs: serde_json::Map<String, Value> = inputs
        .iter()
        .map(|(name, ds)| {
            let list: Vec<Value> = ds
                .iter()
                .map(|d| json!({"kind": d.kind, "digest": d.digest}))
                .collect();
            let v = if many.get(name).copied().unwrap_or(false) {
                Value::Array(list)
            } else {
                list.into_iter().next().unwrap_or(Value::Null)
            };
            (name.clone(), v)
        })
        .collect();
    let mut m = json!({
        "format": FORMAT,
        "stage": kind,
        "version": version,
        "params": Value::Object(params.clone()),
        "inputs": Value::Object(inputs),
    });
    if let Some(s) = settings {
        m["settings"] = s.clone();
    }
    m
}

/// Compact JSON with object keys sorted at every level, independent of map implementation.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The node key of a manifest.
pub fn key_of(manifest: &Value) -> Digest {
    hash_bytes(canonical_json(manifest).as_bytes())
}

/// Human-readable differences between an old and a new manifest (for `flow explain`).
pub fn diff(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if old["format"] != new["format"] {
        out.push(format!(
            "cache format changed ({} -> {})",
            old["format"], new["format"]
        ));
    }
    if old["stage"] != new["stage"] {
        out.push(format!(
            "stage kind changed ({} -> {})",
            old["stage"], new["stage"]
        ));
    } else if old["version"] != new["version"] {
        out.push(format!(
            "stage version changed ({} -> {})",
            old["version"], new["version"]
        ));
    }
    diff_maps(
        "param",
        &flatten(&old["params"]),
        &flatten(&new["params"]),
        &mut out,
        canonical_json,
    );
    diff_maps(
        "setting",
        &flatten(&old["settings"]),
        &flatten(&new["settings"]),
        &mut out,
        canonical_json,
    );
    diff_maps(
        "input",
        &old["inputs"],
        &new["inputs"],
        &mut out,
        describe_input,
    );
    out
}

/// The entries that differ between two versions of a JSON document (an input file), named by
/// their path: `input `plan`: `lr` changed: 0.003 -> 0.001`.
pub fn diff_documents(what: &str, old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_maps(what, &flatten(old), &flatten(new), &mut out, canonical_json);
    out
}

/// `{"a": {"b": 1}, "c": [2]}` -> `{"a.b": 1, "c": [2]}`: a setting is named by its path.
/// Empty maps vanish, so `{}` -> `{"x": 1}` reads as one entry added.
fn flatten(v: &Value) -> Value {
    fn walk(prefix: &str, v: &Value, out: &mut serde_json::Map<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    walk(
                        &if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        },
                        x,
                        out,
                    );
                }
            }
            Value::Null if prefix.is_empty() => {}
            Value::Object(_) => {}
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = serde_json::Map::new();
    walk("", v, &mut out);
    Value::Object(out)
}

fn describe_input(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(describe_input)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(m) => m
            .get("digest")
            .and_then(|d| d.as_str())
            .map(|d| d[..12.min(d.len())].to_string())
            .unwrap_or_default(),
        other => other.to_string(),
    }
}

fn diff_maps(
    what: &str,
    old: &Value,
    new: &Value,
    out: &mut Vec<String>,
    show: impl Fn(&Value) -> String,
) {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        match (o.get(k), n.get(k)) {
            (Some(a), Some(b)) if a != b => {
                out.push(format!("{what} `{k}` changed: {} -> {}", show(a), show(b)))
            }
            (Some(a), None) => out.push(format!("{what} `{k}` removed (was {})", show(a))),
            (None, Some(b)) => out.push(format!("{what} `{k}` added ({})", show(b))),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(params: Value) -> Value {
        manifest(
            "command",
            1,
            params.as_object().unwrap(),
            None,
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
    }

    #[test]
    fn settings_move_the_key_and_diff_names_their_path() {
        let p = json!({"profile": "demo"});
        let with = |s: Value| {
            manifest(
                "rsna.x",
                1,
                p.as_object().unwrap(),
                Some(&s),
                &BTreeMap::new(),
                &BTreeMap::new(),
            )
        };
        let a = with(json!({"recipe": {"lr": 0.01, "patch": [32, 32, 32]}}));
        let b = with(json!({"recipe": {"lr": 0.003, "patch": [32, 32, 32]}}));
        assert_ne!(key_of(&a), key_of(&b));
        assert_eq!(
            diff(&a, &b),
            vec!["setting `recipe.lr` changed: 0.01 -> 0.003".to_string()]
        );
        // A stage without settings keeps the manifest it always had.
        let none = manifest(
            "rsna.x",
            1,
            p.as_object().unwrap(),
            None,
            &BTreeMap::new(),
            &BTreeMap::new(),
        );
        assert!(none.get("settings").is_none());
        assert!(diff(&none, &a)
            .iter()
            .any(|l| l.contains("setting `recipe.lr` added")));
    }

    #[test]
    fn key_ignores_key_order_but_not_values() {
        let a = m(json!({"a": 1, "b": [1, 2]}));
        let b = m(json!({"b": [1, 2], "a": 1}));
        assert_eq!(key_of(&a), key_of(&b));
        assert_ne!(key_of(&a), key_of(&m(json!({"a": 2, "b": [1, 2]}))));
        assert_ne!(key_of(&a), key_of(&m(json!({"a": 1, "b": [2, 1]}))));
    }

    #[test]
    fn diff_names_what_changed() {
        let a = m(json!({"lr": 0.1, "x": 1}));
        let b = m(json!({"lr": 0.2, "y": 1}));
        let d = diff(&a, &b);
        assert!(
            d.iter()
                .any(|l| l.contains("param `lr` changed: 0.1 -> 0.2")),
            "{d:?}"
        );
        assert!(d.iter().any(|l| l.contains("param `x` removed")), "{d:?}");
        assert!(d.iter().any(|l| l.contains("param `y` added")), "{d:?}");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_json_round_trips_and_is_stable(v in arb_json()) {
            let s = canonical_json(&v);
            let back: Value = serde_json::from_str(&s).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(canonical_json(&back), s);
        }
    }
}
