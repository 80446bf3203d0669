//! The fast path of [`Message::validate`](super::Message::validate): one pass over a frame that
//! checks it is a well-formed JSON object and finds its top-level `type`, without building
//! anything.
//!
//! It only ever **accepts** what the serde pass it stands in for (`serde_json::from_slice` into
//! the one-field `Header`) accepts, with the same `type`. Whenever it is unsure (malformed input,
//! a top-level key with escapes or non-ASCII bytes, a `type` that is not a plain string or `null`,
//! a repeated `type`, very deep nesting) it says so, and the caller runs the serde pass, which
//! decides and words the error. So validation behaves exactly as before; only the common case is
//! faster: most of a frame is string contents, and the ends of strings are found with `memchr`'s
//! vector search (16 or 32 bytes per step) instead of byte by byte, with no visitor calls per
//! token.
//!
//! Like that serde pass, it does not check UTF-8 inside strings it skips (keys and values below
//! the top level, and top-level values other than `type`).

/// What the skim found: the frame is a valid JSON object whose `type` is `Some(text)`, or
/// absent/`null` (`None`).
pub(crate) type TypeField<'a> = Option<&'a str>;

/// `Some(type)` when `frame` is certainly accepted by the serde `Header` pass; `None` when the
/// serde pass must decide.
pub(crate) fn object_type(frame: &[u8]) -> Option<TypeField<'_>> {
    if has_control(frame) {
        return skim(frame, &Swar);
    }
    #[cfg(target_arch = "x86_64")]
    match finder() {
        Finder::Avx2(f) => skim(frame, &Near(f)),
        Finder::Sse2(f) => skim(frame, &Near(f)),
        Finder::Portable => skim(frame, &Near(&Memchr2)),
    }
    #[cfg(not(target_arch = "x86_64"))]
    skim(frame, &Near(&Memchr2))
}

/// The vector search for `"` and `\\` this CPU has, set up once.
#[cfg(target_arch = "x86_64")]
enum Finder {
    Avx2(memchr::arch::x86_64::avx2::memchr::Two),
    Sse2(memchr::arch::x86_64::sse2::memchr::Two),
    Portable,
}

#[cfg(target_arch = "x86_64")]
fn finder() -> &'static Finder {
    use memchr::arch::x86_64::{avx2, sse2};
    static FINDER: std::sync::OnceLock<Finder> = std::sync::OnceLock::new();
    FINDER.get_or_init(|| {
        if let Some(f) = avx2::memchr::Two::new(b'"', b'\\') {
            Finder::Avx2(f)
        } else if let Some(f) = sse2::memchr::Two::new(b'"', b'\\') {
            Finder::Sse2(f)
        } else {
            Finder::Portable
        }
    })
}

/// Finds where a run of plain string bytes ends.
trait Scan {
    /// The position of the first `"` or `\\` at or after `i` (and, for frames with control
    /// characters, of the first byte below 0x20), or `b.len()`.
    fn next(&self, b: &[u8], i: usize) -> usize;
}

/// For frames with control characters: eight bytes at a time, safe scalar code.
#[derive(Clone, Copy)]
struct Swar;

impl Scan for Swar {
    #[inline(always)]
    fn next(&self, b: &[u8], mut i: usize) -> usize {
        while let Some(chunk) = b.get(i..i + 8) {
            let m = specials(word(chunk));
            if m != 0 {
                return i + (m.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
        while i < b.len() && !is_special(b[i]) {
            i += 1;
        }
        i
    }
}

/// For frames without control characters: the first 16 bytes eight at a time, inline (most
/// strings of a frame are short keys and ids), then a vector search (`F`) for the rest.
struct Near<'f, F>(&'f F);

impl<F: Far> Scan for Near<'_, F> {
    #[inline(always)]
    fn next(&self, b: &[u8], mut i: usize) -> usize {
        for _ in 0..2 {
            let Some(chunk) = b.get(i..i + 8) else {
                while i < b.len() && b[i] != b'"' && b[i] != b'\\' {
                    i += 1;
                }
                return i;
            };
            let m = quote_or_backslash(word(chunk));
            if m != 0 {
                return i + (m.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
        far(self.0, b, i)
    }
}

/// The rest of a long string: kept out of line, so the short case needs no spills.
#[inline(never)]
fn far<F: Far>(f: &F, b: &[u8], i: usize) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    f.find(rest).map_or(b.len(), |k| i + k)
}

/// A search for the first `"` or `\\`.
trait Far {
    fn find(&self, hay: &[u8]) -> Option<usize>;
}

/// `memchr2` with its run-time dispatch.
struct Memchr2;

impl Far for Memchr2 {
    #[inline(always)]
    fn find(&self, hay: &[u8]) -> Option<usize> {
        memchr::memchr2(b'"', b'\\', hay)
    }
}

#[cfg(target_arch = "x86_64")]
impl Far for memchr::arch::x86_64::avx2::memchr::Two {
    #[inline(always)]
    fn find(&self, hay: &[u8]) -> Option<usize> {
        memchr::arch::x86_64::avx2::memchr::Two::find(self, hay)
    }
}

#[cfg(target_arch = "x86_64")]
impl Far for memchr::arch::x86_64::sse2::memchr::Two {
    #[inline(always)]
    fn find(&self, hay: &[u8]) -> Option<usize> {
        memchr::arch::x86_64::sse2::memchr::Two::find(self, hay)
    }
}

/// Eight bytes as a little-endian word.
#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(chunk);
    u64::from_le_bytes(w)
}

/// [`object_type`] with a given string scanner ([`Swar`] is always correct, only slower).
fn skim<'a, S: Scan>(b: &'a [u8], scan: &S) -> Option<TypeField<'a>> {
    let mut i = ws(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    i = ws(b, i + 1);
    let mut ty: Option<TypeField<'a>> = None;
    if *b.get(i)? == b'}' {
        i += 1;
    } else {
        loop {
            if *b.get(i)? != b'"' {
                return None;
            }
            let (end, plain) = string(b, i + 1, scan)?;
            let key = &b[i + 1..end - 1];
            if !plain || !key.is_ascii() {
                // serde unescapes and UTF-8-checks top-level keys: one of these could be `type`.
                return None;
            }
            i = colon(b, end)?;
            if key == b"type" {
                if ty.is_some() {
                    return None; // duplicate field: serde's error
                }
                let (end, value) = type_value(b, i, scan)?;
                ty = Some(value);
                i = end;
            } else {
                i = value(b, i, scan)?;
            }
            i = ws(b, i);
            match *b.get(i)? {
                b',' => i = ws(b, i + 1),
                b'}' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    if ws(b, i) != b.len() {
        return None;
    }
    Some(ty.flatten())
}

/// Nesting deeper than this is left to serde (which allows any depth when skipping).
const MAX_DEPTH: u32 = 96;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A bit at the high end of every byte of `v` that is `"`, `\\` or a control character (< 0x20).
/// Only the lowest flagged byte is exact (borrows can flag bytes above it), which is the only
/// one used.
#[inline(always)]
fn specials(v: u64) -> u64 {
    let q = v ^ (LO * u64::from(b'"'));
    let bs = v ^ (LO * u64::from(b'\\'));
    let quote = q.wrapping_sub(LO) & !q;
    let backslash = bs.wrapping_sub(LO) & !bs;
    let control = v.wrapping_sub(LO * 0x20) & !v;
    (quote | backslash | control) & HI
}

/// Like [`specials`], for `"` and `\\` only.
#[inline(always)]
fn quote_or_backslash(v: u64) -> u64 {
    let q = v ^ (LO * u64::from(b'"'));
    let bs = v ^ (LO * u64::from(b'\\'));
    ((q.wrapping_sub(LO) & !q) | (bs.wrapping_sub(LO) & !bs)) & HI
}

#[inline(always)]
fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// Whether any byte is below 0x20 (a control character: whitespace outside strings, an error
/// inside them). Compact frames have none, and then the end of a string is the next `"` or
/// `\\`. Kept free of early exits so that the compiler vectorises it (a running minimum).
fn has_control(b: &[u8]) -> bool {
    let mut min = [u8::MAX; 32];
    let mut chunks = b.chunks_exact(32);
    for chunk in &mut chunks {
        for (m, &c) in min.iter_mut().zip(chunk) {
            *m = (*m).min(c);
        }
    }
    min.iter().chain(chunks.remainder()).any(|&c| c < 0x20)
}

/// Past any JSON whitespace at `i` (compact frames have none: one comparison).
#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c > b' ' || !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// `:` (with any whitespace around it) at `i`; the position of the value after it.
#[inline(always)]
fn colon(b: &[u8], i: usize) -> Option<usize> {
    let i = if b.get(i) == Some(&b':') {
        i + 1
    } else {
        let i = ws(b, i);
        if *b.get(i)? != b':' {
            return None;
        }
        i + 1
    };
    Some(ws(b, i))
}

/// The rest of a string whose contents start at `i`: the position after its closing quote, and
/// whether it had no escapes.
#[inline(always)]
fn string<S: Scan>(b: &[u8], mut i: usize, scan: &S) -> Option<(usize, bool)> {
    let mut plain = true;
    loop {
        i = scan.next(b, i);
        match *b.get(i)? {
            b'"' => return Some((i + 1, plain)),
            b'\\' => {
                plain = false;
                match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                }
            }
            _ => return None, // a control character
        }
    }
}

/// The top-level `type` at `i`: a string without escapes, or `null`; anything else is left to
/// serde.
fn type_value<'a, S: Scan>(b: &'a [u8], i: usize, scan: &S) -> Option<(usize, TypeField<'a>)> {
    match *b.get(i)? {
        b'"' => {
            let (end, plain) = string(b, i + 1, scan)?;
            if !plain {
                return None;
            }
            let text = &b[i + 1..end - 1];
            // serde borrows it as `str`: it must be UTF-8. The usual names need no check.
            let name = match known_type(text) {
                Some(name) => name,
                None => std::str::from_utf8(text).ok()?,
            };
            Some((end, Some(name)))
        }
        b'n' => Some((literal(b, i, b"null")?, None)),
        _ => None,
    }
}

#[inline(always)]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (b.get(i..i + word.len())? == word).then_some(i + word.len())
}

#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// A number at `i`, by the JSON grammar; the position after it.
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match *b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(b, i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(b, i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

/// A key at `i` (its opening quote) and the colon after it; the position of its value.
#[inline(always)]
fn key<S: Scan>(b: &[u8], i: usize, scan: &S) -> Option<usize> {
    if *b.get(i)? != b'"' {
        return None;
    }
    let (end, _) = string(b, i + 1, scan)?;
    colon(b, end)
}

/// Any value at `i` (whitespace before it already skipped); the position after it. Iterative:
/// the open containers are a bit stack (1 = object).
fn value<S: Scan>(b: &[u8], mut i: usize, scan: &S) -> Option<usize> {
    let mut objects: u128 = 0;
    let mut depth: u32 = 0;
    loop {
        // One value at `i`.
        match *b.get(i)? {
            b'"' => i = string(b, i + 1, scan)?.0,
            open @ (b'{' | b'[') => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                i = ws(b, i + 1);
                let object = open == b'{';
                if *b.get(i)? == if object { b'}' } else { b']' } {
                    i += 1; // empty: a complete value
                } else {
                    objects = (objects << 1) | u128::from(object);
                    depth += 1;
                    if object {
                        i = key(b, i, scan)?;
                    }
                    continue;
                }
            }
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            _ => i = number(b, i)?,
        }
        // After a complete value: the next member or element, or close containers.
        loop {
            if depth == 0 {
                return Some(i);
            }
            i = ws(b, i);
            let object = objects & 1 == 1;
            match *b.get(i)? {
                b',' => {
                    i = ws(b, i + 1);
                    if object {
                        i = key(b, i, scan)?;
                    }
                    break;
                }
                b'}' if object => {}
                b']' if !object => {}
                _ => return None,
            }
            i += 1;
            objects >>= 1;
            depth -= 1;
        }
    }
}

/// The frame types the CLI writes, as static strings (no UTF-8 check needed).
fn known_type(text: &[u8]) -> Option<&'static str> {
    const KNOWN: [&str; 12] = [
        "assistant",
        "user",
        "result",
        "system",
        "stream_event",
        "control_request",
        "control_response",
        "control_cancel_request",
        "rate_limit_event",
        "keep_alive",
        "conversation_reset",
        "tool_progress",
    ];
    KNOWN.into_iter().find(|k| k.as_bytes() == text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// What the serde pass says: `Some(type)` when it accepts.
    fn serde_says(frame: &[u8]) -> Option<Option<String>> {
        #[derive(serde::Deserialize)]
        struct Header<'a> {
            #[serde(rename = "type", borrow, default)]
            type_: Option<std::borrow::Cow<'a, str>>,
        }
        serde_json::from_slice::<Header<'_>>(frame)
            .ok()
            .map(|h| h.type_.map(|t| t.into_owned()))
    }

    /// The skim never accepts what serde rejects, and agrees on the type when it accepts.
    fn check(frame: &[u8]) {
        // Every string scanner (the SWAR one is otherwise used only with control characters).
        let all = object_type(frame);
        assert_eq!(skim(frame, &Swar), all);
        if !has_control(frame) {
            assert_eq!(skim(frame, &Near(&Memchr2)), all);
            #[cfg(target_arch = "x86_64")]
            {
                use memchr::arch::x86_64::{avx2, sse2};
                if let Some(f) = avx2::memchr::Two::new(b'"', b'\\') {
                    assert_eq!(skim(frame, &Near(&f)), all);
                }
                if let Some(f) = sse2::memchr::Two::new(b'"', b'\\') {
                    assert_eq!(skim(frame, &Near(&f)), all);
                }
            }
        }
        if let Some(ty) = object_type(frame) {
            assert_eq!(
                serde_says(frame),
                Some(ty.map(str::to_owned)),
                "skim accepted {:?}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn accepts_ordinary_frames() {
        for (frame, ty) in [
            (&br#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi \"x\" \u00e9"}],"n":-1.5e+3,"z":0,"t":true,"f":false,"u":null}}"#[..], Some("assistant")),
            (b"{}", None),
            (b" {\n\t\"type\" : null , \"a\" : [ ] , \"b\":{ } }\r\n", None),
            (br#"{"a":"\u00e9 caf\u00e9 \ud83d\ude00","type":"result"}"#, Some("result")),
            ("{\"type\":\"system\",\"text\":\"non-ASCII: café ✓ 😀\"}".as_bytes(), Some("system")),
            (br#"{"x":[1,2,[3,{"y":[]}]],"type":"x_y"}"#, Some("x_y")),
        ] {
            assert_eq!(object_type(frame), Some(ty), "{}", String::from_utf8_lossy(frame));
            check(frame);
        }
    }

    #[test]
    fn leaves_doubtful_frames_to_serde() {
        for frame in [
            &b""[..],
            b"  ",
            b"[]",
            b"\"x\"",
            b"{",
            b"{\"type\":\"assistant\", this is not json",
            b"{\"type\":\"a\"}x",
            b"{\"type\":\"a\",}",
            b"{\"type\":\"a\",\"type\":\"b\"}",
            b"{\"typ\\u0065\":\"a\"}",
            b"{\"type\":\"a\\u0062\"}",
            b"{\"type\":1}",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":-}",
            b"{\"a\":1e}",
            b"{\"a\":tru}",
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\u12g4\"}",
            b"{\"a\" 1}",
            b"{\"a\":1 \"b\":2}",
            b"{a:1}",
            b"{\"type\":\"\xff\"}",
            b"{\"\xc3\xa9\":1}",
        ] {
            assert_eq!(
                object_type(frame),
                None,
                "{}",
                String::from_utf8_lossy(frame)
            );
            check(frame);
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(object_type(deep.as_bytes()), None);
        assert!(serde_says(deep.as_bytes()).is_some());
    }

    #[test]
    fn agrees_with_serde_on_the_fixtures_and_their_prefixes() {
        let fixtures = [
            include_str!("../../tests/fixtures/transcripts/control_misc.jsonl"),
            include_str!("../../tests/fixtures/transcripts/full.jsonl"),
            include_str!("../../tests/fixtures/transcripts/partial_messages.jsonl"),
        ];
        let mut accepted = 0;
        for line in fixtures.iter().flat_map(|f| f.lines()) {
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            for raw in [record["raw"].as_str(), Some(line)].into_iter().flatten() {
                let raw = raw.as_bytes();
                check(raw);
                if object_type(raw).is_some() {
                    accepted += 1;
                }
                assert_eq!(object_type(raw).is_some(), serde_says(raw).is_some());
                for cut in (0..raw.len()).step_by(7) {
                    check(&raw[..cut]);
                }
            }
        }
        assert!(accepted > 50, "only {accepted} frames accepted");
    }

    proptest::proptest! {
        #[test]
        fn never_accepts_what_serde_rejects(s in "[ \\t{}\\[\\]:,\"\\\\a-eunlrst0-9.+\\-Ey\u{e9}\u{1}]{0,40}") {
            check(s.as_bytes());
            let framed = format!("{{\"type\":\"t\",\"v\":{s}}}");
            check(framed.as_bytes());
            let quoted = format!("{{\"type\":\"t\",\"v\":\"{s}\"}}");
            check(quoted.as_bytes());
        }

        #[test]
        fn accepts_serialized_values(v in arb_json()) {
            let frame = serde_json::json!({"type": "x", "v": v}).to_string();
            proptest::prop_assert_eq!(object_type(frame.as_bytes()), Some(Some("x")));
            let pretty = serde_json::to_string_pretty(&serde_json::json!({"v": v})).unwrap();
            proptest::prop_assert_eq!(object_type(pretty.as_bytes()), Some(None));
        }
    }

    /// One-byte mutations (replace, insert, delete) of a realistic frame, with bytes that matter
    /// to the grammar: the skim must never accept what serde rejects.
    #[test]
    fn mutations_of_a_frame_never_fool_it() {
        const FRAME: &[u8] = br#"{"type":"assistant","message":{"id":"m_1","content":[{"type":"text","text":"a\"b\u00e9"}],"stop_reason":null,"usage":{"input_tokens":10,"x":-1.5e3,"ok":true,"no":false}},"parent_tool_use_id":null,"uuid":"u"}"#;
        const BYTES: &[u8] = b"{}[]:,\"\\ \t\n0123456789.eE+-tfnulsrx\x01\x7f\xc3\xff/bu";
        let mut buf = Vec::with_capacity(FRAME.len() + 1);
        for pos in 0..=FRAME.len() {
            for &byte in BYTES {
                for op in 0..3 {
                    buf.clear();
                    buf.extend_from_slice(FRAME);
                    match op {
                        0 if pos < FRAME.len() => buf[pos] = byte,
                        1 => buf.insert(pos, byte),
                        2 if pos < FRAME.len() => {
                            buf.remove(pos);
                        }
                        _ => continue,
                    }
                    check(&buf);
                }
            }
        }
        assert_eq!(object_type(FRAME), Some(Some("assistant")));
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
