//! Source positions for YAML nodes, so every pipeline error can name `file:line:column`.
//!
//! serde_yaml gives values without positions; this index re-parses the text with
//! yaml-rust2's event parser and records where each mapping key and each value starts,
//! addressed by its path from the document root (`["nodes", "train", "params", "lr"]`).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in a pipeline file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// Where each key and value of a YAML document starts.
#[derive(Debug, Default)]
pub struct SpanIndex {
    file: PathBuf,
    keys: HashMap<Vec<String>, (usize, usize)>,
    values: HashMap<Vec<String>, (usize, usize)>,
    /// Mapping keys written twice: (path, position of the second one).
    pub duplicates: Vec<(Vec<String>, Span)>,
    /// Where the nesting first went deeper than [`MAX_YAML_DEPTH`] (nothing below is indexed).
    pub too_deep: Option<Span>,
}

/// Deepest nesting of mappings and sequences a pipeline file may have. Real pipelines nest a
/// handful of levels; the index keeps each value's whole path, so a hostile file nested
/// thousands deep would cost memory quadratic in its depth.
pub const MAX_YAML_DEPTH: usize = 64;

enum Frame {
    Map { key: Option<String> },
    Seq { next: usize },
}

struct Builder {
    stack: Vec<Frame>,
    path: Vec<String>,
    index: SpanIndex,
}

impl Builder {
    /// Position of the value about to start, plus whether it is a key.
    fn on_value(&mut self, mark: &Marker, scalar: Option<&str>, opens: bool) {
        let pos = (mark.line(), mark.col() + 1);
        match self.stack.last_mut() {
            Some(Frame::Map { key }) if key.is_none() => {
                // A mapping key (only scalars are supported as keys).
                let k = scalar.unwrap_or("").to_string();
                let mut p = self.path.clone();
                p.push(k.clone());
                match self.index.keys.entry(p) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        let span = Span {
                            file: self.index.file.clone(),
                            line: pos.0,
                            col: pos.1,
                        };
                        self.index.duplicates.push((e.key().clone(), span));
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(pos);
                    }
                }
                *key = Some(k);
                return;
            }
            Some(Frame::Map { key }) => {
                let k = key.take().unwrap_or_default();
                self.path.push(k);
            }
            Some(Frame::Seq { next }) => {
                self.path.push(next.to_string());
                *next += 1;
            }
            None => {}
        }
        self.index.values.entry(self.path.clone()).or_insert(pos);
        if !opens && !self.stack.is_empty() {
            self.path.pop();
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.index.too_deep.is_some() {
            return;
        }
        if matches!(ev, Event::MappingStart(..) | Event::SequenceStart(..))
            && self.stack.len() >= MAX_YAML_DEPTH
        {
            self.index.too_deep = Some(self.index.make((mark.line(), mark.col() + 1)));
            return;
        }
        match ev {
            Event::Scalar(ref v, ..) => self.on_value(&mark, Some(v), false),
            Event::Alias(_) => self.on_value(&mark, None, false),
            Event::MappingStart(..) => {
                self.on_value(&mark, None, true);
                self.stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                self.on_value(&mark, None, true);
                self.stack.push(Frame::Seq { next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                if !self.stack.is_empty() {
                    self.path.pop();
                }
            }
            _ => {}
        }
    }
}

impl SpanIndex {
    /// Indexes `text`. Syntax errors are left to serde_yaml, which reports them with positions.
    pub fn build(file: &Path, text: &str) -> SpanIndex {
        let mut b = Builder {
            stack: Vec::new(),
            path: Vec::new(),
            index: SpanIndex {
                file: file.to_path_buf(),
                ..Default::default()
            },
        };
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut b, false);
        b.index
    }

    fn make(&self, pos: (usize, usize)) -> Span {
        Span {
            file: self.file.clone(),
            line: pos.0,
            col: pos.1,
        }
    }

    /// The position of a mapping key at `path`, else of its value, else of the nearest parent.
    pub fn key(&self, path: &[&str]) -> Span {
        let owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        if let Some(p) = self.keys.get(&owned) {
            return self.make(*p);
        }
        self.value(path)
    }

    /// The position of the value at `path`, falling back to the nearest known parent.
    pub fn value(&self, path: &[&str]) -> Span {
        let mut owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        loop {
            if let Some(p) = self.values.get(&owned) {
                return self.make(*p);
            }
            if owned.pop().is_none() {
                return self.make((1, 1));
            }
        }
    }

    /// The file this index describes.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\nnodes:\n  a:\n    stage: command\n    params:\n      argv: [echo, hi]\n  b:\n    inputs:\n      x: a.out\n";

    #[test]
    fn finds_keys_and_values() {
        let ix = SpanIndex::build(Path::new("p.yaml"), DOC);
        assert_eq!(ix.key(&["nodes", "a"]).line, 3);
        assert_eq!(ix.key(&["nodes", "a"]).col, 3);
        assert_eq!(ix.value(&["nodes", "a", "stage"]).line, 4);
        assert_eq!(ix.value(&["nodes", "a", "params", "argv", "1"]).line, 6);
        assert_eq!(ix.key(&["nodes", "b", "inputs", "x"]).line, 9);
        assert_eq!(ix.value(&["nodes", "b", "inputs", "x"]).col, 10);
        // unknown path falls back to the nearest parent
        assert_eq!(ix.value(&["nodes", "b", "nope"]).line, 8);
    }
}
