//! Names from outside (databases, tables) as they may be shown to a person: one helper for all
//! human output.
//!
//! A database name can hold any character but NUL: newlines that break a table or a log line in
//! two, escape sequences that recolour or retitle the terminal, bidirectional overrides that make
//! text read differently from what it is. [`name`] shows control characters, and the invisible
//! formatting characters that reorder text, as escapes (`\n`, `\t`, `\u{1b}`, ...), and doubles
//! a backslash so that what is shown maps back to one name. JSON output needs none of this (JSON
//! escapes control characters itself) and carries names exactly.

use std::fmt::Write;

/// `raw` with control characters, bidirectional controls and backslashes escaped.
pub fn name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text made of lines (a tool's error output): newlines and tabs kept, every other control
/// character and bidirectional control escaped as in [`name`] (backslashes left alone: this is
/// prose, not a name to map back).
pub fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// C0 and C1 controls (ESC, CSI, DEL, ...) and the Unicode formatting characters that reorder
/// or hide text (bidirectional embeddings, overrides and isolates, zero-width marks).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_shown_as_they_are() {
        assert_eq!(name("shop"), "shop");
        assert_eq!(name("Ünïcode 名前 ✓"), "Ünïcode 名前 ✓");
        assert_eq!(name("dbname=x 'q'"), "dbname=x 'q'");
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(name("a\nb"), "a\\nb");
        assert_eq!(name("tab\there\r"), "tab\\there\\r");
        assert_eq!(name("\x1b]0;owned\x07red"), "\\u{1b}]0;owned\\u{7}red");
        assert_eq!(name("c1\u{9b}31m"), "c1\\u{9b}31m");
        assert_eq!(name("del\u{7f}"), "del\\u{7f}");
        assert_eq!(name("rtl\u{202e}gnp.exe"), "rtl\\u{202e}gnp.exe");
        assert!(
            name("\u{0}\u{1}\u{1f}\u{85}")
                .chars()
                .all(|c| !c.is_control())
        );
    }

    #[test]
    fn backslashes_are_doubled_so_names_stay_distinct() {
        assert_eq!(name("a\\nb"), "a\\\\nb");
        assert_ne!(name("a\\nb"), name("a\nb"));
    }

    #[test]
    fn text_keeps_its_lines_but_not_escape_sequences() {
        assert_eq!(
            text("pg_dump: error: \"x\x1b[2J\"\n\tdetail\\"),
            "pg_dump: error: \"x\\u{1b}[2J\"\n\tdetail\\"
        );
    }
}
