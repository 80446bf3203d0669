//! The CLI's matcher rules, with a small regular-expression engine (no `regex` dependency).
//!
//! Supported regex subset: literals, `.`, `^`, `$`, `|`, groups `( )` / `(?: )`, classes
//! `[abc]`, `[a-z]`, `[^…]`, escapes `\d \w \s \D \W \S` and escaped punctuation, quantifiers
//! `* + ? {n} {n,} {n,m}` (a trailing lazy `?` is accepted; it does not change whether a
//! pattern matches). Anything else (look-around, back-references, `\b`, flags) is unsupported:
//! such a pattern matches nothing here. So does a subject over 1024 characters, and a match that
//! needs more than 100 000 backtracking steps.

use std::cell::Cell;

/// Whether `pattern` matches `subject` under the CLI's rules: `""` and `"*"` match everything; a
/// pattern made only of letters, digits, `_` and `|` is an exact name or `|`-separated list of
/// names; anything else is an unanchored, case-sensitive regular expression.
pub(crate) fn matches(pattern: &str, subject: &str) -> bool {
    if pattern.is_empty() || pattern == "*" {
        return true;
    }
    if pattern
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|')
    {
        return pattern.split('|').any(|name| name == subject);
    }
    match Parser::new(pattern).parse() {
        Some(regex) => regex.is_match(subject),
        None => false,
    }
}

/// Whether `pattern` is a plain name list, or a regex in the supported subset.
pub(crate) fn is_supported(pattern: &str) -> bool {
    pattern.is_empty()
        || pattern == "*"
        || pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|')
        || Parser::new(pattern).parse().is_some()
}

#[derive(Debug)]
enum ClassItem {
    Char(char),
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

impl ClassItem {
    fn contains(&self, c: char) -> bool {
        match *self {
            ClassItem::Char(x) => c == x,
            ClassItem::Range(lo, hi) => lo <= c && c <= hi,
            ClassItem::Digit(yes) => c.is_ascii_digit() == yes,
            ClassItem::Word(yes) => (c.is_ascii_alphanumeric() || c == '_') == yes,
            ClassItem::Space(yes) => c.is_whitespace() == yes,
        }
    }
}

#[derive(Debug)]
enum Node {
    Char(char),
    Any,
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
    Start,
    End,
    Group(Vec<Vec<Node>>),
    Repeat {
        node: Box<Node>,
        min: usize,
        max: Option<usize>,
    },
}

#[derive(Debug)]
struct Regex {
    alternatives: Vec<Vec<Node>>,
}

/// Subjects longer than this never match a regex (tool names are far shorter); it bounds the
/// recursion depth.
const MAX_SUBJECT_CHARS: usize = 1024;
/// Backtracking steps before giving up (no match), so a pathological pattern cannot hang.
const MAX_STEPS: u32 = 100_000;

impl Regex {
    fn is_match(&self, subject: &str) -> bool {
        let chars: Vec<char> = subject.chars().collect();
        if chars.len() > MAX_SUBJECT_CHARS {
            return false;
        }
        let run = Run {
            s: &chars,
            steps: Cell::new(MAX_STEPS),
        };
        (0..=chars.len()).any(|start| {
            self.alternatives
                .iter()
                .any(|alt| run.seq(alt, start, &|_| true))
        })
    }
}

/// One match attempt: the subject and the remaining step budget.
struct Run<'a> {
    s: &'a [char],
    steps: Cell<u32>,
}

impl Run<'_> {
    /// Matches `nodes` at `pos`, then calls `k` with the end position (continuation style, so
    /// alternation and quantifiers backtrack).
    fn seq(&self, nodes: &[Node], pos: usize, k: &dyn Fn(usize) -> bool) -> bool {
        let Some((first, rest)) = nodes.split_first() else {
            return k(pos);
        };
        self.one(first, pos, &|end| self.seq(rest, end, k))
    }

    fn one(&self, node: &Node, pos: usize, k: &dyn Fn(usize) -> bool) -> bool {
        let steps = self.steps.get();
        if steps == 0 {
            return false;
        }
        self.steps.set(steps - 1);
        let s = self.s;
        match node {
            Node::Start => pos == 0 && k(pos),
            Node::End => pos == s.len() && k(pos),
            Node::Group(alternatives) => alternatives.iter().any(|alt| self.seq(alt, pos, k)),
            Node::Repeat { node, min, max } => self.repeat(node, *min, *max, 0, pos, k),
            Node::Char(c) => s.get(pos) == Some(c) && k(pos + 1),
            Node::Any => s.get(pos).is_some_and(|&c| c != '\n') && k(pos + 1),
            Node::Class { negated, items } => {
                s.get(pos)
                    .is_some_and(|&c| items.iter().any(|item| item.contains(c)) != *negated)
                    && k(pos + 1)
            }
        }
    }

    /// Greedy repetition: try one more `node`, else stop once `min` is reached.
    fn repeat(
        &self,
        node: &Node,
        min: usize,
        max: Option<usize>,
        count: usize,
        pos: usize,
        k: &dyn Fn(usize) -> bool,
    ) -> bool {
        if max.is_none_or(|max| count < max) {
            let more = self.one(node, pos, &|end| {
                if end == pos {
                    // An empty iteration: counting more of them changes nothing.
                    count + 1 >= min && k(end)
                } else {
                    self.repeat(node, min, max, count + 1, end, k)
                }
            });
            if more {
                return true;
            }
        }
        count >= min && k(pos)
    }
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl<'a> Parser<'a> {
    fn new(pattern: &'a str) -> Self {
        Parser {
            chars: pattern.chars().peekable(),
        }
    }

    fn parse(mut self) -> Option<Regex> {
        let alternatives = self.alternatives()?;
        if self.chars.next().is_some() {
            return None; // an unbalanced `)`
        }
        Some(Regex { alternatives })
    }

    fn alternatives(&mut self) -> Option<Vec<Vec<Node>>> {
        let mut alternatives = vec![self.sequence()?];
        while self.chars.next_if_eq(&'|').is_some() {
            alternatives.push(self.sequence()?);
        }
        Some(alternatives)
    }

    fn sequence(&mut self) -> Option<Vec<Node>> {
        let mut nodes = Vec::new();
        while let Some(&c) = self.chars.peek() {
            if c == '|' || c == ')' {
                break;
            }
            self.chars.next();
            let atom = match c {
                '^' => Node::Start,
                '$' => Node::End,
                '.' => Node::Any,
                '(' => {
                    if self.chars.next_if_eq(&'?').is_some() {
                        self.chars.next_if_eq(&':')?;
                    }
                    let group = Node::Group(self.alternatives()?);
                    self.chars.next_if_eq(&')')?;
                    group
                }
                '[' => self.class()?,
                '\\' => match self.escape()? {
                    ClassItem::Char(c) => Node::Char(c),
                    item => Node::Class {
                        negated: false,
                        items: vec![item],
                    },
                },
                '*' | '+' | '?' | '{' | ']' | '}' => return None,
                c => Node::Char(c),
            };
            nodes.push(self.quantified(atom)?);
        }
        Some(nodes)
    }

    fn quantified(&mut self, atom: Node) -> Option<Node> {
        let (min, max) = match self.chars.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                self.chars.next();
                let (min, max) = self.braces()?;
                return self.finish_quantifier(atom, min, max);
            }
            _ => return Some(atom),
        };
        self.chars.next();
        self.finish_quantifier(atom, min, max)
    }

    fn finish_quantifier(&mut self, atom: Node, min: usize, max: Option<usize>) -> Option<Node> {
        if matches!(atom, Node::Start | Node::End | Node::Repeat { .. }) {
            return None;
        }
        if max.is_some_and(|max| max < min) {
            return None;
        }
        self.chars.next_if_eq(&'?'); // lazy: same match/no-match answer
        Some(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
        })
    }

    /// `{n}`, `{n,}`, `{n,m}` after the `{`.
    fn braces(&mut self) -> Option<(usize, Option<usize>)> {
        let min = self.number()?;
        let max = if self.chars.next_if_eq(&',').is_some() {
            if self.chars.peek() == Some(&'}') {
                None
            } else {
                Some(self.number()?)
            }
        } else {
            Some(min)
        };
        self.chars.next_if_eq(&'}')?;
        Some((min, max))
    }

    fn number(&mut self) -> Option<usize> {
        let mut digits = String::new();
        while let Some(d) = self.chars.next_if(char::is_ascii_digit) {
            digits.push(d);
        }
        digits.parse().ok()
    }

    /// After a `\`: a predefined class or an escaped punctuation character.
    fn escape(&mut self) -> Option<ClassItem> {
        let c = self.chars.next()?;
        Some(match c {
            'd' => ClassItem::Digit(true),
            'D' => ClassItem::Digit(false),
            'w' => ClassItem::Word(true),
            'W' => ClassItem::Word(false),
            's' => ClassItem::Space(true),
            'S' => ClassItem::Space(false),
            't' => ClassItem::Char('\t'),
            'n' => ClassItem::Char('\n'),
            c if c.is_ascii_punctuation() => ClassItem::Char(c),
            _ => return None, // \b, \1, \u…, …: unsupported
        })
    }

    /// After a `[`: up to and including the `]`.
    fn class(&mut self) -> Option<Node> {
        let negated = self.chars.next_if_eq(&'^').is_some();
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = self.chars.next()?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let item = if c == '\\' {
                self.escape()?
            } else {
                ClassItem::Char(c)
            };
            let item = match item {
                ClassItem::Char(lo)
                    if self.chars.peek() == Some(&'-')
                        && self.chars.clone().nth(1).is_some_and(|next| next != ']') =>
                {
                    self.chars.next();
                    let hi = match self.chars.next()? {
                        '\\' => match self.escape()? {
                            ClassItem::Char(hi) => hi,
                            _ => return None,
                        },
                        hi => hi,
                    };
                    if hi < lo {
                        return None;
                    }
                    ClassItem::Range(lo, hi)
                }
                item => item,
            };
            items.push(item);
        }
        Some(Node::Class { negated, items })
    }
}

#[cfg(test)]
mod tests {
    use super::{is_supported, matches};

    #[test]
    fn cli_rules() {
        for all in ["", "*"] {
            assert!(matches(all, "Bash"));
            assert!(matches(all, ""));
        }
        assert!(matches("Bash", "Bash"));
        assert!(!matches("Bash", "BashOutput"), "plain names are exact");
        assert!(!matches("bash", "Bash"), "case-sensitive");
        assert!(matches("Write|Edit", "Edit"));
        assert!(!matches("Write|Edit", "MultiEdit"));
        assert!(matches("mcp__memory__.*", "mcp__memory__create"));
        assert!(matches("mcp__memory__.*", "x_mcp__memory__"), "unanchored");
        assert!(!matches("mcp__memory__.*", "mcp__github__x"));
        assert!(matches("^Notebook", "NotebookEdit"));
        assert!(!matches("^Notebook", "MyNotebook"));
        assert!(matches("Edit$", "MultiEdit"));
        assert!(!matches("^Edit$", "MultiEdit"));
        assert!(matches("^(Write|Edit)$", "Edit"));
        assert!(!matches("^(Write|Edit)$", "Edits"));
        assert!(matches("^(?:Write|Edit)$", "Write"));
        assert!(matches("mcp__.*__delete_.+", "mcp__fs__delete_file"));
        assert!(!matches("mcp__.*__delete_.+", "mcp__fs__delete_"));
        assert!(matches("mcp__my-server__tool", "mcp__my-server__tool"));
        assert!(matches("^[A-Z][a-z]+$", "Bash"));
        assert!(!matches("^[A-Z][a-z]+$", "WebFetch"));
        assert!(matches("^[^m]", "Read"));
        assert!(!matches("^[^m]", "mcp__x"));
        assert!(matches(r"^tool\d{2,3}$", "tool42"));
        assert!(!matches(r"^tool\d{2,3}$", "tool4"));
        assert!(!matches(r"^tool\d{2,3}$", "tool4242"));
        assert!(matches(r"a\.b", "a.b"));
        assert!(!matches(r"a\.b", "axb"));
        assert!(matches("^Web(Fetch)?$", "Web"));
        assert!(matches("^Web(Fetch)?$", "WebFetch"));
        assert!(
            matches("^(a*)*$", "aaaa"),
            "nested empty-capable repeats terminate"
        );
        assert!(matches("^(a|)+b$", "aab"));
        assert!(matches(".*?", "x"), "lazy quantifier accepted");
        assert!(
            matches("^[a-]+$", "a-a"),
            "a trailing `-` in a class is literal"
        );
    }

    #[test]
    fn unsupported_patterns_match_nothing() {
        for pattern in [
            r"\bBash", "(?=Bash)", r"(a)\1", "(Bash", "Bash)", "[Bash", "a{2,1}",
        ] {
            assert!(!is_supported(pattern), "{pattern}");
            assert!(!matches(pattern, "Bash"), "{pattern}");
        }
        assert!(is_supported("mcp__.*"));
        assert!(is_supported("Bash|Read"));
    }
}
