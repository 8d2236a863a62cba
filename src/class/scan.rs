//! Bounds before work: YAML is first read as a stream of events under a budget (size,
//! objects, nesting depth, and nodes and text counting every alias expansion), so hostile
//! input is refused before anything is built from it. serde_yaml, which builds the tree
//! afterwards, expands aliases without bound: one anchor of K items referenced K times is
//! K² nodes from a few bytes.

use std::collections::HashMap;
use std::time::Instant;

use granit_parser::{ErrorKind, Event, Parser, ScalarStyle};

/// What one class may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most entries of the `objects` list (`--max-objects`).
    pub max_objects: usize,
    /// Most bytes of the YAML text.
    pub max_bytes: usize,
    /// Most YAML nodes, an alias counting as every node it stands for.
    pub max_nodes: usize,
    /// Most bytes of scalar text, an alias counting as all the text it stands for.
    pub max_text: usize,
    /// Deepest nesting of lists and mappings.
    pub max_depth: usize,
    /// Reading gives up once this has passed (the mount's deadline).
    pub deadline: Option<Instant>,
}

impl Default for Limits {
    /// Far above what a real class needs (500 objects with five jmesPath entries each is
    /// ~20,000 nodes and ~150 KB), and low enough to keep a mount's parsing within a few
    /// MiB and milliseconds.
    fn default() -> Self {
        Self {
            max_objects: 500,
            max_bytes: 1024 * 1024,
            max_nodes: 100_000,
            max_text: 4 * 1024 * 1024,
            max_depth: 20,
            deadline: None,
        }
    }
}

impl Limits {
    /// Limits for a whole manifest read by `check` (any number of documents and classes).
    pub fn manifest() -> Self {
        Self { max_objects: usize::MAX, max_bytes: 16 * 1024 * 1024, max_nodes: 1_000_000, ..Self::default() }
    }
}

/// Why the YAML was refused before it was read into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// Not YAML; `line` counts from 1.
    Syntax { message: String, line: usize, column: usize },
    /// Over a limit; the message names it and the fix.
    Limit(String),
    /// More entries than `--max-objects`.
    TooManyObjects(TooManyObjects),
    /// The mount's deadline passed while reading.
    Deadline,
}

/// More entries in `objects` than `--max-objects` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the SecretProviderClass has {}{count} objects; the limit is {limit} (raise --max-objects or \
     split the class)",
    if *.complete { "" } else { "at least " }
)]
pub struct TooManyObjects {
    pub count: usize,
    pub limit: usize,
    /// False when counting stopped at another limit: `count` is a lower bound.
    pub complete: bool,
}

/// Where things are in the text, for messages: lines (from 1) of keys and list items by path
/// (`objects[0]`, `objects[0].jmesPath[1].path`), and of the first text line of scalars that
/// are keys' values.
#[derive(Debug, Default)]
pub struct Positions {
    lines: HashMap<String, usize>,
    values: HashMap<String, usize>,
}

impl Positions {
    /// The line of the key or list item at `path`.
    pub fn line(&self, path: &str) -> Option<usize> {
        self.lines.get(path).copied()
    }

    /// The line of the first line of text of the scalar value of the key at `path`.
    pub fn value_line(&self, path: &str) -> Option<usize> {
        self.values.get(path).copied()
    }
}

/// Keys deeper than this are not recorded: messages name at most `objects[i].key[j].key`.
const RECORDED_DEPTH: usize = 6;
/// Longest key recorded in a path.
const RECORDED_KEY: usize = 64;

/// One open list or mapping.
struct Frame {
    anchor: usize,
    nodes_before: usize,
    text_before: usize,
    /// Path of this node (empty when not recorded).
    path: String,
    kind: FrameKind,
}

enum FrameKind {
    Sequence {
        next: usize,
    },
    /// `key` is the path of the key whose value comes next, once a key has been read.
    Mapping {
        key: Option<String>,
    },
}

/// Reads `text` as YAML events within `limits`; `root` names the top node in paths
/// (`objects`), and documents after the first are `root#1`, `root#2`, ...
pub fn scan(text: &str, limits: &Limits, root: &str) -> Result<Positions, ScanError> {
    if text.len() > limits.max_bytes {
        return Err(ScanError::Limit(format!(
            "it is {} bytes, over the limit of {} bytes: split the SecretProviderClass",
            text.len(),
            limits.max_bytes
        )));
    }
    let mut options = granit_parser::Options::default();
    options.emit_comments = false;
    // The parser's own nesting guards sit just above ours, which names the limit.
    options.flow_nesting_limit = limits.max_depth + 2;
    options.block_nesting_limit = limits.max_depth + 2;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut budget = Budget {
        limits,
        root,
        positions: Positions::default(),
        anchors: HashMap::new(),
        stack: Vec::new(),
        nodes: 0,
        text: 0,
        documents: 0,
        events: 0,
        objects: 0,
    };
    let result = loop {
        let event = match parser.next_event() {
            None => break Ok(()),
            // The scanner runs ahead of the events: its own guard may stop a deep nest first.
            Some(Err(e)) if matches!(e.kind(), ErrorKind::RecursionLimitExceeded) => {
                break Err(budget.too_deep());
            }
            Some(Err(e)) => {
                let (message, line, column) = (e.info(), e.marker().line(), e.marker().col() + 1);
                break Err(ScanError::Syntax { message, line, column });
            }
            Some(Ok(event)) => event,
        };
        if let Err(e) = budget.event(&event.0, event.1.start.line()) {
            break Err(e);
        }
    };
    // Past --max-objects, the rest is only counted (within every other limit), so that the
    // message can say how many there are.
    if budget.objects > limits.max_objects {
        let (count, limit, complete) = (budget.objects, limits.max_objects, result.is_ok());
        return Err(ScanError::TooManyObjects(TooManyObjects { count, limit, complete }));
    }
    result.map(|()| budget.positions)
}

/// What has been read so far, against the limits.
struct Budget<'a> {
    limits: &'a Limits,
    root: &'a str,
    positions: Positions,
    /// Expanded size (nodes, text bytes) of every finished anchored node.
    anchors: HashMap<usize, (usize, usize)>,
    stack: Vec<Frame>,
    nodes: usize,
    text: usize,
    documents: usize,
    events: usize,
    /// Entries of the top-level list.
    objects: usize,
}

impl Budget<'_> {
    fn too_deep(&self) -> ScanError {
        ScanError::Limit(format!(
            "its lists and mappings nest more than {} levels deep (the depth limit): flatten them",
            self.limits.max_depth
        ))
    }

    fn event(&mut self, event: &Event<'_>, line: usize) -> Result<(), ScanError> {
        self.events += 1;
        if self.events.is_multiple_of(4096) && self.limits.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ScanError::Deadline);
        }
        let (added_nodes, added_text, anchor) = match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                return Ok(());
            }
            Event::Scalar(value, _, anchor, _) => (1, value.len(), *anchor),
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => (1, 0, *anchor),
            Event::Alias(id) => {
                let (nodes, text) = self.anchors.get(id).copied().unwrap_or((1, 0));
                (nodes, text, 0)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop()
                    && frame.anchor != 0
                {
                    let size = (self.nodes - frame.nodes_before, self.text - frame.text_before);
                    self.anchors.insert(frame.anchor, size);
                }
                return Ok(());
            }
            _ => return Ok(()),
        };

        // A node: count it (with everything an alias stands for) and place it.
        self.nodes = self.nodes.saturating_add(added_nodes);
        self.text = self.text.saturating_add(added_text);
        if self.nodes > self.limits.max_nodes {
            return Err(ScanError::Limit(format!(
                "it has more than {} YAML nodes, the limit (an alias counts as every node it \
                 repeats): write the objects out instead of repeating anchors, or split the class",
                self.limits.max_nodes
            )));
        }
        if self.text > self.limits.max_text {
            return Err(ScanError::Limit(format!(
                "its text is more than {} bytes, the limit (an alias counts as all the text it \
                 repeats): write the objects out instead of repeating anchors, or split the class",
                self.limits.max_text
            )));
        }
        if self.stack.len() == 1 && matches!(self.stack[0].kind, FrameKind::Sequence { .. }) {
            self.objects += 1;
            // Counting far past the limit tells nobody anything more.
            if self.objects > self.limits.max_objects.saturating_mul(2) {
                let (count, limit) = (self.objects, self.limits.max_objects);
                return Err(ScanError::TooManyObjects(TooManyObjects { count, limit, complete: false }));
            }
        }
        let record = self.objects <= self.limits.max_objects;
        let path = self.place(line, event, record);
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if self.stack.len() >= self.limits.max_depth {
                    return Err(self.too_deep());
                }
                let kind = match event {
                    Event::SequenceStart(..) => FrameKind::Sequence { next: 0 },
                    _ => FrameKind::Mapping { key: None },
                };
                let (nodes_before, text_before) = (self.nodes - 1, self.text);
                self.stack.push(Frame { anchor, nodes_before, text_before, path, kind });
            }
            _ if anchor != 0 => {
                self.anchors.insert(anchor, (1, added_text));
            }
            _ => {}
        }
        Ok(())
    }

    /// Works out the path of a node from its parent, recording key and value lines (when
    /// `record`); returns the node's own path (empty when not recorded).
    fn place(&mut self, line: usize, event: &Event<'_>, record: bool) -> String {
        let depth = self.stack.len();
        let Some(parent) = self.stack.last_mut() else {
            return match self.documents {
                0 | 1 => self.root.to_owned(),
                n => format!("{}#{}", self.root, n - 1),
            };
        };
        let record = record && depth < RECORDED_DEPTH && !parent.path.is_empty();
        let positions = &mut self.positions;
        match &mut parent.kind {
            FrameKind::Sequence { next } => {
                *next += 1;
                if !record {
                    return String::new();
                }
                let path = format!("{}[{}]", parent.path, *next - 1);
                positions.lines.insert(path.clone(), line);
                path
            }
            FrameKind::Mapping { key: key @ None } => {
                // A key: record where it is; complex keys get no path.
                let path = match event {
                    Event::Scalar(text, ..) if record && text.len() <= RECORDED_KEY => {
                        let path = format!("{}.{text}", parent.path);
                        positions.lines.insert(path.clone(), line);
                        path
                    }
                    _ => String::new(),
                };
                *key = Some(path);
                String::new()
            }
            FrameKind::Mapping { key } => {
                let path = key.take().unwrap_or_default();
                if let Event::Scalar(text, style, ..) = event
                    && !path.is_empty()
                {
                    // A `|` or `>` block starts at its first non-blank line; its text keeps
                    // one line feed for each blank line before that.
                    let blank = match style {
                        ScalarStyle::Literal | ScalarStyle::Folded => {
                            text.bytes().take_while(|b| *b == b'\n').count()
                        }
                        _ => 0,
                    };
                    positions.values.insert(path.clone(), line.saturating_sub(blank));
                }
                path
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::class::*;

    fn limits() -> Limits {
        Limits { max_objects: 10, max_nodes: 1000, max_text: 10_000, max_depth: 8, ..Limits::default() }
    }

    fn refused(text: &str) -> ScanError {
        scan(text, &limits(), "objects").expect_err(text)
    }

    #[test]
    fn within_the_budget_positions_are_recorded() {
        let text = "- objectName: a\n  jmesPath:\n    - {path: x, objectAlias: y}\n- objectName: b\n";
        let positions = scan(text, &limits(), "objects").unwrap();
        assert_eq!(positions.line("objects[0].objectName"), Some(1));
        assert_eq!(positions.line("objects[0].jmesPath[0].path"), Some(3));
        assert_eq!(positions.line("objects[1].objectName"), Some(4));
        let manifest =
            "kind: X\nspec:\n  parameters:\n    objects: |\n\n      - a\n---\nspec: {objects: b}\n";
        let positions = scan(manifest, &limits(), "manifest").unwrap();
        assert_eq!(positions.value_line("manifest.spec.parameters.objects"), Some(5));
        assert_eq!(positions.value_line("manifest#1.spec.objects"), Some(8));
    }

    #[test]
    fn every_limit_is_enforced_while_reading() {
        let fan_out = format!("- a: &a [{}]\n  b: [{}]\n", vec!["x"; 40].join(","), vec!["*a"; 40].join(","));
        let text_fan_out = format!("- a: &a {}\n  b: [*a, *a, *a, *a]\n", "x".repeat(3000));
        let cases = [
            ("- {}\n".repeat(11), "has 11 objects; the limit is 10"),
            ("- {}\n".repeat(25), "at least 21 objects; the limit is 10"),
            (fan_out, "nodes"),
            (text_fan_out, "text"),
            (format!("- {}{}", "[".repeat(9), "]".repeat(9)), "nest"),
            (format!("- {}x", "- ".repeat(9)), "nest"),
            ("x".repeat(limits().max_bytes + 1), "bytes"),
        ];
        for (text, want) in cases {
            let message = match refused(&text) {
                ScanError::Limit(m) => m,
                ScanError::TooManyObjects(too_many) => too_many.to_string(),
                other => panic!("{other:?}"),
            };
            assert!(message.contains(want), "{text:.40}: {message}");
        }
        assert!(matches!(refused("- 'a\n"), ScanError::Syntax { line: 1, .. }));
        assert!(matches!(refused("- *nope\n"), ScanError::Syntax { .. }));
        // Eight items at the top level of a list of lists are within ten objects.
        assert!(scan(&"- [a, b, c]\n".repeat(8), &limits(), "objects").is_ok());
    }

    #[test]
    fn a_passed_deadline_stops_reading() {
        let limits = Limits { deadline: Some(Instant::now() - Duration::from_secs(1)), ..Limits::default() };
        let text = format!("a: [{}]", "x, ".repeat(5000));
        assert_eq!(scan(&text, &limits, "objects").unwrap_err(), ScanError::Deadline);
    }
}
