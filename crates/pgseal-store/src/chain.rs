//! The audit log's hash chain (docs/AUDIT.md): each entry's hash covers a canonical encoding of
//! all its fields and the previous entry's hash, so editing, deleting, inserting or reordering
//! any entry breaks the chain from that point on.

use aws_lc_rs::digest::{Context, SHA256};

use crate::model::NewAuditEntry;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of entry number `seq` (1-based) whose predecessor hashed to `prev_hash`.
pub fn entry_hash(seq: i64, prev_hash: &str, imported: bool, e: &NewAuditEntry) -> String {
    let mut h = Context::new(&SHA256);
    h.update(b"pgseal audit v1\n");
    int(&mut h, Some(seq));
    text(&mut h, Some(prev_hash));
    int(&mut h, Some(e.timestamp.millis()));
    text(&mut h, Some(&e.action));
    int(&mut h, e.user_id);
    text(&mut h, e.os_user.as_deref());
    int(&mut h, e.backup_creator_id);
    text(&mut h, e.backup_file.as_deref());
    flag(&mut h, Some(e.success));
    flag(&mut h, e.signature_valid);
    text(&mut h, e.host.as_deref());
    text(&mut h, e.ip_address.as_deref());
    text(&mut h, Some(&canonical_json(&e.details)));
    flag(&mut h, Some(imported));
    hex(h.finish().as_ref())
}

/// `details` in one canonical form (keys sorted, no spaces): PostgreSQL's JSONB stores JSON
/// re-formatted, and the hash must not depend on the backend. Text that is not JSON is hashed
/// as it is.
fn canonical_json(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => {
            let mut out = String::with_capacity(text.len());
            write_canonical(&v, &mut out);
            out
        }
        Err(_) => text.to_owned(),
    }
}

/// Compact JSON with object keys sorted, whatever order the parser kept them in.
fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

// Every field: a presence byte, then (if present) a fixed-width value or a length and bytes.
fn int(h: &mut Context, v: Option<i64>) {
    match v {
        None => h.update(&[0]),
        Some(v) => {
            h.update(&[1]);
            h.update(&v.to_be_bytes());
        }
    }
}

fn text(h: &mut Context, v: Option<&str>) {
    match v {
        None => h.update(&[0]),
        Some(s) => {
            h.update(&[1]);
            h.update(&(s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
}

fn flag(h: &mut Context, v: Option<bool>) {
    h.update(&[match v {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }]);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a chain stops being the chain pgseal wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The `seq` of the first bad entry (or where one is missing).
    pub seq: i64,
    pub reason: String,
}
