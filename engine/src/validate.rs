//! Checks an expanded pipeline against the stage registry and builds the DAG.
//!
//! Every problem is collected (not just the first) and names `file:line:column` and the node:
//! unknown stage, unknown or mistyped param, unknown input, a reference to a missing node or
//! output, a missing external path, and cycles (printed as the cycle's path).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::params::ParamsSchema;
use crate::registry::Registry;
use crate::spec::{InputRef, InputSpec, NodeSpec, Pipeline, SpecError};
use crate::stage::{OutputDecl, Params, Stage};

/// A node that passed validation.
pub struct Node {
    pub spec: NodeSpec,
    pub stage: Arc<dyn Stage>,
    pub schema: ParamsSchema,
    pub params: Params,
    pub outputs: Vec<OutputDecl>,
    /// Indices of the nodes this one reads from (deduplicated).
    pub deps: Vec<usize>,
}

impl Node {
    pub fn id(&self) -> &str {
        &self.spec.id
    }
    pub fn output(&self, name: &str) -> Option<&OutputDecl> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// A pipeline ready to plan and run: nodes in a topological order, with the graph.
pub struct Dag {
    pub name: String,
    pub file: PathBuf,
    pub nodes: Vec<Node>,
    /// A topological order (indices into `nodes`), stable with respect to file order.
    pub order: Vec<usize>,
    pub graph: DiGraph<usize, ()>,
    /// The pipeline's `targets:` (node ids); empty: every node.
    pub targets: Vec<String>,
    /// The pipeline's `executor:` settings (default executor, Slurm settings).
    pub executor: crate::spec::ExecutorSpec,
}

impl Dag {
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.spec.id == id)
    }

    /// Nodes that (transitively) read from `i`, including `i`.
    pub fn descendants(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![i];
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            stack.extend(self.graph.neighbors(NodeIndex::new(n)).map(|x| x.index()));
        }
        (0..self.nodes.len()).filter(|&n| seen[n]).collect()
    }

    /// Nodes `i` (transitively) reads from, including `i`.
    pub fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![i];
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            stack.extend(self.nodes[n].deps.iter().copied());
        }
        (0..self.nodes.len()).filter(|&n| seen[n]).collect()
    }

    /// Nodes nothing reads from.
    pub fn sinks(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.graph.neighbors(NodeIndex::new(i)).next().is_none())
            .collect()
    }
}

fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    crate::params::closest_within(name, known, 3)
}

/// Validates `p` against `registry`. External input paths are resolved against `base_dir`.
pub fn validate(
    p: Pipeline,
    registry: &Registry,
    base_dir: &std::path::Path,
) -> Result<Dag, Vec<SpecError>> {
    let mut errors = Vec::new();
    let spans = &p.spans;
    let err = |errors: &mut Vec<SpecError>,
               n: &NodeSpec,
               path: &[&str],
               key: bool,
               message: String,
               help: Option<String>| {
        let mut full = vec!["nodes", n.template_id.as_str()];
        full.extend_from_slice(path);
        let span = if key {
            spans.key(&full)
        } else {
            spans.value(&full)
        };
        errors.push(SpecError {
            span,
            node: Some(n.id.clone()),
            message,
            help,
        });
    };

    // Pass 1: stage, params, outputs.
    let mut nodes: Vec<Option<Node>> = Vec::new();
    for n in &p.nodes {
        let Some(stage) = registry.get(&n.stage) else {
            let help = closest(&n.stage, registry.names().into_iter())
                .map(|c| format!("did you mean `{c}`? (`flow stages` lists them)"))
                .or_else(|| Some(format!("known stages: {}", registry.names().join(", "))));
            err(
                &mut errors,
                n,
                &["stage"],
                false,
                format!("unknown stage `{}`", n.stage),
                help,
            );
            nodes.push(None);
            continue;
        };
        let schema = stage.params();
        let params = match schema.validate(&n.params) {
            Ok(p) => p,
            Err(es) => {
                for (name, msg) in es {
                    let is_missing = !n.params.contains_key(&name);
                    let path: Vec<&str> = if is_missing {
                        vec!["params"]
                    } else {
                        vec!["params", name.as_str()]
                    };
                    err(
                        &mut errors,
                        n,
                        &path,
                        !is_missing,
                        msg,
                        Some(format!("`flow stages {}` lists its params", n.stage)),
                    );
                }
                nodes.push(None);
                continue;
            }
        };
        let names: Vec<&str> = n.inputs.keys().map(|s| s.as_str()).collect();
        if let Err(msg) = stage.check(&params, &names) {
            err(&mut errors, n, &["params"], true, msg, None);
        }
        if let Some(decls) = stage.inputs() {
            for (name, spec) in &n.inputs {
                match decls.iter().find(|d| d.name == name) {
                    None => {
                        let known: Vec<&str> = decls.iter().map(|d| d.name).collect();
                        err(
                            &mut errors,
                            n,
                            &["inputs", name],
                            true,
                            format!("stage `{}` has no input `{name}`", n.stage),
                            Some(format!("its inputs: {}", known.join(", "))),
                        );
                    }
                    Some(d) if !d.many && matches!(spec, InputSpec::Many(_)) => {
                        err(
                            &mut errors,
                            n,
                            &["inputs", name],
                            false,
                            format!("input `{name}` takes one reference, not a list"),
                            None,
                        );
                    }
                    _ => {}
                }
            }
            for d in decls.iter().filter(|d| d.required) {
                if !n.inputs.contains_key(d.name) {
                    err(
                        &mut errors,
                        n,
                        &[],
                        true,
                        format!("missing required input `{}`: {}", d.name, d.doc),
                        None,
                    );
                }
            }
        }
        let outputs = match stage.outputs(&params) {
            Ok(o) => o,
            Err(msg) => {
                err(&mut errors, n, &["params"], true, msg, None);
                nodes.push(None);
                continue;
            }
        };
        nodes.push(Some(Node {
            spec: n.clone(),
            stage,
            schema,
            params,
            outputs,
            deps: Vec::new(),
        }));
    }

    // Pass 2: references.
    let ids: HashMap<&str, usize> = p
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut edges = Vec::new();
    for (i, n) in p.nodes.iter().enumerate() {
        for (name, spec) in &n.inputs {
            for r in spec.refs() {
                match r {
                    InputRef::Node { node, output } => {
                        match ids.get(node.as_str()) {
                            None => {
                                let help = closest(node, ids.keys().copied())
                                .map(|c| format!("did you mean `{c}.{output}`?"))
                                .unwrap_or_else(|| format!("to read a file, write it as a path: `./{node}.{output}`"));
                                err(
                                    &mut errors,
                                    n,
                                    &["inputs", name],
                                    false,
                                    format!("input `{name}` refers to unknown node `{node}`"),
                                    Some(help),
                                );
                            }
                            Some(&j) => {
                                if let Some(Some(up)) = nodes.get(j) {
                                    if up.output(output).is_none() {
                                        let known: Vec<&str> =
                                            up.outputs.iter().map(|o| o.name.as_str()).collect();
                                        err(
                                            &mut errors,
                                            n,
                                            &["inputs", name],
                                            false,
                                            format!("node `{node}` has no output `{output}`"),
                                            Some(format!("its outputs: {}", known.join(", "))),
                                        );
                                    }
                                }
                                edges.push((j, i));
                            }
                        }
                    }
                    InputRef::Path(path) => {
                        let abs = base_dir.join(path);
                        if !abs.exists() {
                            err(&mut errors, n, &["inputs", name], false, format!("input `{name}`: path {} does not exist", abs.display()), Some("check the path (relative paths are taken from the working directory)".into()));
                        }
                    }
                }
            }
        }
    }

    // The graph and its order; a cycle is reported with its path.
    let mut graph = DiGraph::<usize, ()>::new();
    for i in 0..p.nodes.len() {
        graph.add_node(i);
    }
    for &(a, b) in &edges {
        if !graph.contains_edge(NodeIndex::new(a), NodeIndex::new(b)) {
            graph.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
        }
    }
    let order = match stable_topo(&graph) {
        Ok(o) => o,
        Err(cycle) => {
            let path: Vec<&str> = cycle.iter().map(|&i| p.nodes[i].id.as_str()).collect();
            let first = &p.nodes[cycle[0]];
            err(
                &mut errors,
                first,
                &[],
                true,
                format!("dependency cycle: {}", path.join(" -> ")),
                Some("a node cannot (transitively) read its own output".into()),
            );
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut nodes: Vec<Node> = nodes
        .into_iter()
        .map(|n| n.expect("no errors means every node validated"))
        .collect();
    for &(a, b) in &edges {
        if !nodes[b].deps.contains(&a) {
            nodes[b].deps.push(a);
        }
    }
    Ok(Dag {
        name: p.name,
        file: p.file,
        nodes,
        order,
        graph,
        targets: p.targets,
        executor: p.executor,
    })
}

/// Kahn's algorithm taking the lowest ready index first (so order follows the file), or a
/// cycle as a list of node indices whose last element points back to the first.
fn stable_topo(g: &DiGraph<usize, ()>) -> Result<Vec<usize>, Vec<usize>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = g.node_count();
    let mut indeg: Vec<usize> = (0..n)
        .map(|i| {
            g.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
                .count()
        })
        .collect();
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indeg[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for m in g.neighbors(NodeIndex::new(i)) {
            indeg[m.index()] -= 1;
            if indeg[m.index()] == 0 {
                ready.push(Reverse(m.index()));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk backwards along unresolved edges from an unresolved node until a node repeats.
    let start = (0..n)
        .find(|&i| indeg[i] > 0)
        .expect("some node is on a cycle");
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let prev = g
            .neighbors_directed(NodeIndex::new(cur), petgraph::Direction::Incoming)
            .map(|x| x.index())
            .find(|&p| indeg[p] > 0)
            .expect("an unresolved node has an unresolved predecessor");
        if let Some(pos) = path.iter().position(|&x| x == prev) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        path.push(prev);
        cur = prev;
    }
}
