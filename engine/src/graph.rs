//! Rendering the DAG for `flow graph` (Graphviz DOT or Mermaid).

use crate::validate::Dag;

/// Output format of `flow graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

/// The DAG as text; edges are labelled with the input they feed.
pub fn render(dag: &Dag, format: GraphFormat) -> String {
    let mut out = String::new();
    let edges = edges(dag);
    match format {
        GraphFormat::Dot => {
            out.push_str(&format!(
                "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
                dag.name
            ));
            for &i in &dag.order {
                let n = &dag.nodes[i];
                out.push_str(&format!(
                    "  \"{}\" [label=\"{}\\n{}\"];\n",
                    n.id(),
                    n.id(),
                    n.stage.kind()
                ));
            }
            for (a, b, label) in edges {
                out.push_str(&format!("  \"{a}\" -> \"{b}\" [label=\"{label}\"];\n"));
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for &i in &dag.order {
                let n = &dag.nodes[i];
                out.push_str(&format!(
                    "  {}[\"{}<br/><small>{}</small>\"]\n",
                    n.id(),
                    n.id(),
                    n.stage.kind()
                ));
            }
            for (a, b, label) in edges {
                out.push_str(&format!("  {a} -->|{label}| {b}\n"));
            }
        }
    }
    out
}

fn edges(dag: &Dag) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for &i in &dag.order {
        let n = &dag.nodes[i];
        for (name, spec) in &n.spec.inputs {
            for r in spec.refs() {
                if let crate::spec::InputRef::Node { node, output } = r {
                    out.push((node.clone(), n.id().to_string(), format!("{output}→{name}")));
                }
            }
        }
    }
    out.dedup();
    out
}
