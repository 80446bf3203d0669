//! A small, conservative reader of shell command lines, for permission rules and the read-only
//! policy.
//!
//! It splits a command line into simple commands at `&&`, `||`, `;`, `|`, `|&`, `&` and newlines
//! (outside quotes), collects each command's words (quotes removed) and redirections, and
//! records anything it cannot reason about: command substitution (`$(…)`, backticks), process
//! substitution (`<(…)`, `>(…)`), subshells, here-documents, unterminated quotes. It does not
//! expand anything. Callers treat the flags as "unknown" and decide conservatively.
//!
//! The contents of a substitution or subshell are read as commands of their own, so that a
//! deny rule can still see `rm` in `echo $(rm -rf x)`.

/// One word of a command, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// The word's text, with quotes and escapes removed, nothing expanded.
    pub text: String,
    /// Whether any part of the word was quoted or escaped.
    pub quoted: bool,
    /// Byte offset of the word's first character in the source.
    pub start: usize,
    /// Byte offset just past the word's last character in the source.
    pub end: usize,
}

/// A redirection: the operator (with its fd prefix, e.g. `2>`) and its target word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redirect {
    pub op: String,
    pub target: Option<Word>,
}

/// A simple command: words and redirections, with its span in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SimpleCommand {
    pub start: usize,
    pub end: usize,
    pub words: Vec<Word>,
    pub redirects: Vec<Redirect>,
}

impl SimpleCommand {
    /// The command's source text (first token to last token).
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.start..self.end).unwrap_or("").trim()
    }

    /// Whether a redirection may write a file: an output redirection to anything but
    /// `/dev/null`, `<>`, or `>&` to something that is not a file descriptor.
    pub fn writes_file(&self) -> bool {
        self.redirects.iter().any(|r| {
            let op = r.op.trim_start_matches(|c: char| c.is_ascii_digit());
            let target = r.target.as_ref().map(|w| w.text.as_str()).unwrap_or("");
            match op {
                ">" | ">>" | ">|" | "&>" | "&>>" => target != "/dev/null",
                ">&" => !is_fd_target(target) && target != "/dev/null",
                "<>" => true,
                _ => false,
            }
        })
    }
}

/// `1`, `2`, `-` (close): the target of a descriptor duplication.
pub(crate) fn is_fd_target(t: &str) -> bool {
    t == "-" || (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
}

/// A parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Script {
    pub commands: Vec<SimpleCommand>,
    /// `$(…)`, backticks, `<(…)` or `>(…)` were seen.
    pub substitution: bool,
    /// A `( … )` subshell was seen.
    pub subshell: bool,
    /// A here-document or here-string (`<<`, `<<<`) was seen.
    pub heredoc: bool,
    /// Unterminated quote or parenthesis, stray `)`, or a redirection without a target.
    pub malformed: bool,
}

impl Script {
    /// Whether the line holds only plain simple commands: no substitution, subshell,
    /// here-document, and nothing malformed.
    pub fn is_plain(&self) -> bool {
        !(self.substitution || self.subshell || self.heredoc || self.malformed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    Paren,
    Backtick,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: FrameKind,
    outer_quote: Quote,
}

#[derive(Debug, Default)]
struct CmdBuf {
    start: Option<usize>,
    end: usize,
    words: Vec<Word>,
    redirects: Vec<Redirect>,
}

struct Parser<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    quote: Quote,
    stack: Vec<Frame>,
    word: Option<Word>,
    cmd: CmdBuf,
    pending_redirect: Option<String>,
    script: Script,
}

/// Parses `src`.
pub(crate) fn parse(src: &str) -> Script {
    let mut p = Parser {
        src,
        chars: src.char_indices().collect(),
        quote: Quote::None,
        stack: Vec::new(),
        word: None,
        cmd: CmdBuf::default(),
        pending_redirect: None,
        script: Script::default(),
    };
    p.run();
    p.script
}

impl Parser<'_> {
    fn pos(&self, i: usize) -> usize {
        self.chars.get(i).map_or(self.src.len(), |&(p, _)| p)
    }

    fn ch(&self, i: usize) -> Option<char> {
        self.chars.get(i).map(|&(_, c)| c)
    }

    /// Makes sure a word is open at byte `pos`.
    fn open_word(&mut self, pos: usize) {
        if self.word.is_none() {
            self.word = Some(Word {
                text: String::new(),
                quoted: false,
                start: pos,
                end: pos,
            });
            if self.cmd.start.is_none() {
                self.cmd.start = Some(pos);
            }
        }
    }

    /// Adds `c` (found at `pos`, spanning source up to `end`) to the current word.
    fn push(&mut self, pos: usize, end: usize, c: char, quoted: bool) {
        self.open_word(pos);
        if let Some(w) = self.word.as_mut() {
            w.text.push(c);
            w.quoted |= quoted;
            w.end = end;
        }
    }

    /// Extends the current word (opening it) over source without adding text: quote marks.
    fn touch(&mut self, pos: usize, end: usize) {
        self.open_word(pos);
        if let Some(w) = self.word.as_mut() {
            w.quoted = true;
            w.end = end;
        }
    }

    fn end_word(&mut self) {
        if let Some(w) = self.word.take() {
            self.cmd.end = w.end;
            match self.pending_redirect.take() {
                Some(op) => self.cmd.redirects.push(Redirect {
                    op,
                    target: Some(w),
                }),
                None => self.cmd.words.push(w),
            }
        }
    }

    fn end_command(&mut self) {
        self.end_word();
        if let Some(op) = self.pending_redirect.take() {
            self.script.malformed = true;
            self.cmd.redirects.push(Redirect { op, target: None });
        }
        let cmd = std::mem::take(&mut self.cmd);
        if !cmd.words.is_empty() || !cmd.redirects.is_empty() {
            self.script.commands.push(SimpleCommand {
                start: cmd.start.unwrap_or(cmd.end),
                end: cmd.end,
                words: cmd.words,
                redirects: cmd.redirects,
            });
        }
    }

    fn open_frame(&mut self, kind: FrameKind) {
        self.end_command();
        self.stack.push(Frame {
            kind,
            outer_quote: self.quote,
        });
        self.quote = Quote::None;
    }

    fn close_frame(&mut self) {
        self.end_command();
        if let Some(f) = self.stack.pop() {
            self.quote = f.outer_quote;
        }
    }

    fn backtick(&mut self) {
        self.script.substitution = true;
        if self.stack.last().map(|f| f.kind) == Some(FrameKind::Backtick) {
            self.close_frame();
        } else {
            self.open_frame(FrameKind::Backtick);
        }
    }

    /// A redirection operator of `len` chars at char index `i`.
    fn redirect(&mut self, i: usize, op: &str) {
        let pos = self.pos(i);
        let mut full = op.to_owned();
        // An unquoted all-digit word right before the operator is its fd (`2>`).
        let fd = self.word.as_ref().is_some_and(|w| {
            !w.quoted
                && w.end == pos
                && !w.text.is_empty()
                && w.text.bytes().all(|b| b.is_ascii_digit())
        });
        if fd {
            if let Some(w) = self.word.take() {
                full = format!("{}{op}", w.text);
            }
        } else {
            self.end_word();
        }
        if self.pending_redirect.is_some() {
            self.script.malformed = true;
        }
        if self.cmd.start.is_none() {
            self.cmd.start = Some(pos);
        }
        self.cmd.end = self.pos(i + op.chars().count());
        self.pending_redirect = Some(full);
    }

    fn run(&mut self) {
        let n = self.chars.len();
        let mut i = 0;
        while i < n {
            let pos = self.pos(i);
            let Some(c) = self.ch(i) else { break };
            let next = self.ch(i + 1);
            let p1 = self.pos(i + 1);
            let p2 = self.pos(i + 2);
            match self.quote {
                Quote::Single => {
                    if c == '\'' {
                        self.quote = Quote::None;
                        self.touch(pos, p1);
                    } else {
                        self.push(pos, p1, c, true);
                    }
                    i += 1;
                    continue;
                }
                Quote::Double => {
                    match c {
                        '"' => {
                            self.quote = Quote::None;
                            self.touch(pos, p1);
                            i += 1;
                        }
                        '\\' => match next {
                            Some(n @ ('$' | '`' | '"' | '\\')) => {
                                self.push(pos, p2, n, true);
                                i += 2;
                            }
                            Some('\n') => {
                                self.touch(pos, p2);
                                i += 2;
                            }
                            _ => {
                                self.push(pos, p1, '\\', true);
                                i += 1;
                            }
                        },
                        '$' if next == Some('(') => {
                            self.script.substitution = true;
                            self.open_frame(FrameKind::Paren);
                            i += 2;
                        }
                        '`' => {
                            self.backtick();
                            i += 1;
                        }
                        _ => {
                            self.push(pos, p1, c, true);
                            i += 1;
                        }
                    }
                    continue;
                }
                Quote::None => {}
            }
            match c {
                ' ' | '\t' | '\r' => {
                    self.end_word();
                    i += 1;
                }
                '\n' | ';' => {
                    self.end_command();
                    i += 1;
                }
                '\\' => match next {
                    Some('\n') => {
                        // Line continuation: nothing, not even a word break.
                        i += 2;
                    }
                    Some(n) => {
                        self.push(pos, p2, n, true);
                        i += 2;
                    }
                    None => {
                        self.push(pos, p1, '\\', true);
                        i += 1;
                    }
                },
                '\'' => {
                    self.touch(pos, p1);
                    self.quote = Quote::Single;
                    i += 1;
                }
                '"' => {
                    self.touch(pos, p1);
                    self.quote = Quote::Double;
                    i += 1;
                }
                '#' if self.word.is_none() => {
                    while i < n && self.ch(i) != Some('\n') {
                        i += 1;
                    }
                }
                '$' if next == Some('(') => {
                    self.script.substitution = true;
                    self.open_frame(FrameKind::Paren);
                    i += 2;
                }
                '`' => {
                    self.backtick();
                    i += 1;
                }
                '(' => {
                    self.script.subshell = true;
                    self.open_frame(FrameKind::Paren);
                    i += 1;
                }
                ')' => {
                    if self.stack.last().map(|f| f.kind) == Some(FrameKind::Paren) {
                        self.close_frame();
                    } else {
                        self.script.malformed = true;
                        self.end_command();
                    }
                    i += 1;
                }
                '&' => match next {
                    Some('&') => {
                        self.end_command();
                        i += 2;
                    }
                    Some('>') => {
                        let op = if self.ch(i + 2) == Some('>') {
                            "&>>"
                        } else {
                            "&>"
                        };
                        self.redirect(i, op);
                        i += op.len();
                    }
                    _ => {
                        self.end_command();
                        i += 1;
                    }
                },
                '|' => {
                    self.end_command();
                    i += if matches!(next, Some('|' | '&')) {
                        2
                    } else {
                        1
                    };
                }
                '>' => match next {
                    Some('(') => {
                        self.script.substitution = true;
                        self.open_frame(FrameKind::Paren);
                        i += 2;
                    }
                    Some(n @ ('>' | '&' | '|')) => {
                        let op = format!(">{n}");
                        self.redirect(i, &op);
                        i += 2;
                    }
                    _ => {
                        self.redirect(i, ">");
                        i += 1;
                    }
                },
                '<' => match next {
                    Some('(') => {
                        self.script.substitution = true;
                        self.open_frame(FrameKind::Paren);
                        i += 2;
                    }
                    Some('<') => {
                        self.script.heredoc = true;
                        let op = match self.ch(i + 2) {
                            Some('<') => "<<<",
                            Some('-') => "<<-",
                            _ => "<<",
                        };
                        self.redirect(i, op);
                        i += op.len();
                    }
                    Some(n @ ('>' | '&')) => {
                        let op = format!("<{n}");
                        self.redirect(i, &op);
                        i += 2;
                    }
                    _ => {
                        self.redirect(i, "<");
                        i += 1;
                    }
                },
                _ => {
                    self.push(pos, p1, c, false);
                    i += 1;
                }
            }
        }
        self.end_command();
        if self.quote != Quote::None || !self.stack.is_empty() {
            self.script.malformed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        parse(src)
            .commands
            .iter()
            .map(|c| c.text(src).to_owned())
            .collect()
    }

    fn words(src: &str) -> Vec<Vec<String>> {
        parse(src)
            .commands
            .iter()
            .map(|c| c.words.iter().map(|w| w.text.clone()).collect())
            .collect()
    }

    #[test]
    fn splits_at_operators_outside_quotes() {
        assert_eq!(
            texts("git status && rm -rf x; ls | head -n1 || true & echo hi\npwd"),
            [
                "git status",
                "rm -rf x",
                "ls",
                "head -n1",
                "true",
                "echo hi",
                "pwd"
            ]
        );
        assert_eq!(texts("echo 'a && b' \"c; d\""), ["echo 'a && b' \"c; d\""]);
        assert_eq!(
            words("echo 'a && b' \"c; d\" e\\;f"),
            [["echo", "a && b", "c; d", "e;f"]]
        );
        assert!(parse("echo 'a && b'").is_plain());
    }

    #[test]
    fn substitutions_are_flagged_and_read() {
        let s = parse("echo $(rm -rf /) done");
        assert!(s.substitution && !s.is_plain());
        assert_eq!(texts("echo $(rm -rf /) done"), ["echo", "rm -rf /", "done"]);
        assert_eq!(texts("echo \"x $(rm a) y\""), ["echo \"x", "rm a", "y\""]);
        assert!(parse("echo `id`").substitution);
        assert!(parse("diff <(ls a) <(ls b)").substitution);
        assert!(parse("(cd x && rm y)").subshell);
        assert!(!parse("echo '$(not)'").substitution);
    }

    #[test]
    fn malformed_lines_are_flagged() {
        assert!(parse("echo 'unterminated").malformed);
        assert!(parse("echo $(ls").malformed);
        assert!(parse("ls )").malformed);
        assert!(parse("ls >").malformed);
        assert!(!parse("ls > out").malformed);
    }

    #[test]
    fn redirections() {
        let s = parse("ls 2>/dev/null >&2 2>&1 < in > out");
        let ops: Vec<_> = s.commands[0]
            .redirects
            .iter()
            .map(|r| (r.op.as_str(), r.target.as_ref().map(|w| w.text.as_str())))
            .collect();
        assert_eq!(
            ops,
            [
                ("2>", Some("/dev/null")),
                (">&", Some("2")),
                ("2>&", Some("1")),
                ("<", Some("in")),
                (">", Some("out"))
            ]
        );
        assert_eq!(words("ls 2>/dev/null"), [["ls"]]);
        assert!(s.commands[0].writes_file());
        assert!(!parse("ls 2>/dev/null 2>&1").commands[0].writes_file());
        assert!(parse("echo hi>x").commands[0].writes_file());
        assert!(parse("cat <<EOF\nhi\nEOF").heredoc);
        // A quoted "2" is an argument, not a descriptor.
        assert_eq!(words("echo '2'>x"), [["echo", "2"]]);
    }

    #[test]
    fn comments_and_continuations() {
        assert_eq!(words("ls # rm -rf /\npwd"), [vec!["ls"], vec!["pwd"]]);
        assert_eq!(words("echo a#b"), [["echo", "a#b"]]);
        assert_eq!(words("git \\\n status"), [["git", "status"]]);
    }
}
