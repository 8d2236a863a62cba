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
    TooManyObjects { limit: usize },
    /// The mount's deadline passed while reading.
    Deadline,
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

    let mut positions = Positions::default();
    // Expanded size (nodes, text bytes) of every finished anchored node.
    let mut anchors: HashMap<usize, (usize, usize)> = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let (mut nodes, mut text_bytes, mut documents, mut events) = (0usize, 0usize, 0usize, 0usize);

    let too_deep = || {
        ScanError::Limit(format!(
            "its lists and mappings nest more than {} levels deep (the depth limit): flatten them",
            limits.max_depth
        ))
    };
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| match e.kind() {
            // The scanner runs ahead of the events: its own guard may stop a deep nest first.
            ErrorKind::RecursionLimitExceeded => too_deep(),
            _ => {
                ScanError::Syntax { message: e.info(), line: e.marker().line(), column: e.marker().col() + 1 }
            }
        })?;
        events += 1;
        if events % 4096 == 0 && limits.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ScanError::Deadline);
        }
        let line = span.start.line();
        let (added_nodes, added_text, opens, anchor) = match &event {
            Event::DocumentStart(..) => {
                documents += 1;
                continue;
            }
            Event::Scalar(value, _, anchor, _) => (1, value.len(), false, *anchor),
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => (1, 0, true, *anchor),
            Event::Alias(id) => {
                let (n, t) = anchors.get(id).copied().unwrap_or((1, 0));
                (n, t, false, 0)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = stack.pop()
                    && frame.anchor != 0
                {
                    anchors
                        .insert(frame.anchor, (nodes - frame.nodes_before, text_bytes - frame.text_before));
                }
                continue;
            }
            _ => continue,
        };

        // A node: count it (with everything an alias stands for) and place it.
        nodes = nodes.saturating_add(added_nodes);
        text_bytes = text_bytes.saturating_add(added_text);
        if nodes > limits.max_nodes {
            return Err(ScanError::Limit(format!(
                "it has more than {} YAML nodes, the limit (an alias counts as every node it \
                 repeats): write the objects out instead of repeating anchors, or split the class",
                limits.max_nodes
            )));
        }
        if text_bytes > limits.max_text {
            return Err(ScanError::Limit(format!(
                "its text is more than {} bytes, the limit (an alias counts as all the text it \
                 repeats): write the objects out instead of repeating anchors, or split the class",
                limits.max_text
            )));
        }
        let path = place(&mut stack, &mut positions, root, documents, line, &event);
        if stack.len() == 1
            && matches!(stack[0].kind, FrameKind::Sequence { next } if next > limits.max_objects)
        {
            return Err(ScanError::TooManyObjects { limit: limits.max_objects });
        }
        if opens {
            if stack.len() >= limits.max_depth {
                return Err(too_deep());
            }
            let kind = match event {
                Event::SequenceStart(..) => FrameKind::Sequence { next: 0 },
                _ => FrameKind::Mapping { key: None },
            };
            stack.push(Frame { anchor, nodes_before: nodes - 1, text_before: text_bytes, path, kind });
        } else if anchor != 0 {
            anchors.insert(anchor, (1, added_text));
        }
    }
    Ok(positions)
}

/// Works out the path of a node from its parent, recording key and value lines; returns the
/// node's own path (empty when too deep to record).
fn place(
    stack: &mut [Frame],
    positions: &mut Positions,
    root: &str,
    documents: usize,
    line: usize,
    event: &Event<'_>,
) -> String {
    let depth = stack.len();
    let Some(parent) = stack.last_mut() else {
        return if documents <= 1 { root.to_owned() } else { format!("{root}#{}", documents - 1) };
    };
    let record = depth < RECORDED_DEPTH && !parent.path.is_empty();
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
                // A `|` or `>` block starts at its first non-blank line; its text keeps one
                // line feed for each blank line before that.
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
            ("- {}\n".repeat(11), "objects"),
            (fan_out, "nodes"),
            (text_fan_out, "text"),
            (format!("- {}{}", "[".repeat(9), "]".repeat(9)), "nest"),
            (format!("- {}x", "- ".repeat(9)), "nest"),
            ("x".repeat(limits().max_bytes + 1), "bytes"),
        ];
        for (text, want) in cases {
            let message = match refused(&text) {
                ScanError::Limit(m) => m,
                ScanError::TooManyObjects { limit } => format!("objects {limit}"),
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
