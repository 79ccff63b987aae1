//! The globals script check (`pgseal_ops::globals::Script::prepare`): arbitrary bytes as a
//! verified globals script, with a fixed set of roles the target "already has". Must never
//! panic, and what it accepts must hold to its promises:
//! - every line holding a backslash is one of the psql commands pg_dump writes, alone on its
//!   line (`\restrict`, `\unrestrict`, `\encoding`, `\connect` to a database by name);
//! - the script given back is the input with whole lines left out — only `CREATE ROLE` lines
//!   of the existing roles, one per role named in `existing_roles`.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use pgseal_ops::globals::Script;

fuzz_target!(|data: &[u8]| {
    let existing: BTreeSet<String> = ["postgres", "app owner", "x\"y"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let Ok(script) = Script::prepare(data.to_vec(), &existing) else {
        return;
    };
    let input = std::str::from_utf8(data).expect("an accepted script is UTF-8");
    for line in script.sql.lines() {
        if line.contains('\\') {
            let command = line.split(' ').next().unwrap_or("");
            assert!(
                ["\\restrict", "\\unrestrict", "\\encoding", "\\connect"].contains(&command),
                "a backslash outside the allowed commands was accepted: {line:?}"
            );
        }
    }
    // Whole lines left out, in order: the output is a subsequence of the input's lines, and
    // each left-out line is a CREATE ROLE of a role the target has.
    let mut kept = script.sql.split_inclusive('\n').peekable();
    let mut left_out = 0;
    for line in input.split_inclusive('\n') {
        if kept.peek() == Some(&line) {
            kept.next();
        } else {
            assert!(line.starts_with("CREATE ROLE "), "a line other than CREATE ROLE went: {line:?}");
            left_out += 1;
        }
    }
    assert!(kept.next().is_none(), "the script given back holds lines the input did not");
    assert_eq!(left_out, script.existing_roles.len());
    for role in &script.existing_roles {
        assert!(existing.contains(role), "left out the CREATE ROLE of a role not there: {role:?}");
    }
});
