//! The audit log's hash chain (docs/AUDIT.md): each entry's hash covers a canonical encoding of
//! all its fields and the previous entry's hash, so editing, deleting, inserting or reordering
//! any entry breaks the chain from that point on.

//!
//! [`entry_hash`] computes one entry's hash; [`verify`] walks a whole chain and names the first
//! place it breaks. Both are pure: no database, so they are tested on entries made in memory.

use pgseal_core::hash::Sha256;

use crate::hash::Hash32;
use crate::model::{AuditEntry, NewAuditEntry};

/// The `prev_hash` of the first entry: all zeros.
pub const GENESIS: Hash32 = Hash32::ZERO;

/// The hash of entry number `seq` (1-based) whose predecessor hashed to `prev_hash`.
///
/// The encoding covers `prev_hash` as its 64 lowercase hex digits and the action as its text
/// (docs/AUDIT.md), as it always has: chains written before stay valid.
pub fn entry_hash(seq: i64, prev_hash: &Hash32, imported: bool, e: &NewAuditEntry) -> Hash32 {
    let mut h = Sha256::new();
    h.update(b"pgseal audit v1\n");
    int(&mut h, Some(seq));
    text(&mut h, Some(&prev_hash.to_string()));
    int(&mut h, Some(e.timestamp.millis()));
    text(&mut h, Some(e.action.as_str()));
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
    Hash32(h.finish())
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
fn int(h: &mut Sha256, v: Option<i64>) {
    match v {
        None => h.update(&[0]),
        Some(v) => {
            h.update(&[1]);
            h.update(&v.to_be_bytes());
        }
    }
}

fn text(h: &mut Sha256, v: Option<&str>) {
    match v {
        None => h.update(&[0]),
        Some(s) => {
            h.update(&[1]);
            h.update(&(s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
}

fn flag(h: &mut Sha256, v: Option<bool>) {
    h.update(&[match v {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }]);
}

/// Where a chain stops being the chain pgseal wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The `seq` of the first bad entry (or where one is missing).
    pub seq: i64,
    /// What is wrong there, and what was done to cause it (`edited`, `deleted or renumbered`…).
    pub reason: String,
}

/// One entry of the log as stored, for [`verify`]. Its hash columns are what the row holds,
/// which need not be hashes at all: whoever edits the database can write anything there, and
/// that is a break in the chain to report, not a failure to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The row's id: the order entries were stored in.
    pub id: i64,
    /// The entry's place in the chain.
    pub seq: i64,
    /// The stored `prev_hash`; `None` if it is not 64 lowercase hex digits.
    pub prev_hash: Option<Hash32>,
    /// The stored `entry_hash`; `None` if it is not 64 lowercase hex digits.
    pub entry_hash: Option<Hash32>,
    /// Whether the entry was imported from the legacy system.
    pub imported: bool,
    /// The entry's fields.
    pub entry: NewAuditEntry,
}

impl From<AuditEntry> for Link {
    fn from(e: AuditEntry) -> Self {
        Link {
            id: e.id,
            seq: e.seq,
            prev_hash: Some(e.prev_hash),
            entry_hash: Some(e.entry_hash),
            imported: e.imported,
            entry: e.entry,
        }
    }
}

/// Walks a chain given in `seq` order (ties by `id`): the number of entries, or the first place
/// it breaks — a gap in `seq` (an entry deleted or renumbered), an entry that does not link to
/// the one before (inserted, deleted or reordered), one whose contents do not match its hash
/// (edited), or one stored before the entry it follows (reordered).
pub fn verify(links: impl IntoIterator<Item = Link>) -> Result<i64, ChainBreak> {
    let mut expected_seq = 1;
    let mut prev = GENESIS;
    let mut last_id = i64::MIN;
    for link in links {
        let broken = |reason: String| {
            Err(ChainBreak {
                seq: link.seq,
                reason,
            })
        };
        if link.seq != expected_seq {
            return broken(format!(
                "entry {expected_seq} is missing (the next entry is {}): deleted or renumbered",
                link.seq
            ));
        }
        let Some(prev_hash) = link.prev_hash.filter(|h| *h == prev) else {
            return broken(
                "does not link to the entry before it: inserted, deleted or reordered".into(),
            );
        };
        let expected = entry_hash(link.seq, &prev_hash, link.imported, &link.entry);
        let Some(hash) = link.entry_hash.filter(|h| *h == expected) else {
            return broken("its contents do not match its hash: edited".into());
        };
        if link.id < last_id {
            return broken("stored out of order: reordered".into());
        }
        last_id = link.id;
        prev = hash;
        expected_seq += 1;
    }
    Ok(expected_seq - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use pgseal_core::time::Timestamp;

    fn full() -> NewAuditEntry {
        NewAuditEntry {
            action: Action::Decrypt,
            user_id: Some(7),
            os_user: Some("root".into()),
            backup_creator_id: Some(3),
            backup_file: Some("/backups/db_20260101T000000.000Z.pgseal".into()),
            success: false,
            signature_valid: Some(false),
            timestamp: Timestamp(1_765_965_760_123),
            host: Some("db1".into()),
            ip_address: Some("192.0.2.10".into()),
            details: r#"{"error":"Signature verification failed","bytes":5}"#.into(),
        }
    }

    fn legacy() -> NewAuditEntry {
        NewAuditEntry {
            action: Action::parse("encrypt (legacy)"),
            user_id: None,
            os_user: None,
            backup_creator_id: None,
            backup_file: None,
            success: true,
            signature_valid: None,
            timestamp: Timestamp(0),
            host: None,
            ip_address: None,
            details: "{ \"b\": 1, \"a\": [2, {\"d\":null,\"c\":\"x\"}] }".into(),
        }
    }

    /// Hashes computed by the code that wrote every chain so far (hex strings in, hex out):
    /// the encoding must never change, or existing logs stop verifying.
    #[test]
    fn hashes_are_the_ones_existing_chains_hold() {
        let h1 = entry_hash(1, &GENESIS, false, &full());
        assert_eq!(
            h1.to_string(),
            "9bf7736c60bb6edf580aaeb898977ceaa516adc048d1eab8f84163e188ee9ee4"
        );
        let h2 = entry_hash(2, &h1, true, &legacy());
        assert_eq!(
            h2.to_string(),
            "435f0c082edcc3f8f0f7d43efbad7947cd54f16ac2076aafec7c0405f33413b2"
        );
    }

    #[test]
    fn details_hash_the_same_however_they_are_formatted() {
        let mut a = legacy();
        a.details = r#"{"a":[2,{"c":"x","d":null}],"b":1}"#.into();
        assert_eq!(
            entry_hash(2, &GENESIS, true, &a),
            entry_hash(2, &GENESIS, true, &legacy())
        );
        a.details = r#"{"a":[2,{"c":"y","d":null}],"b":1}"#.into();
        assert_ne!(
            entry_hash(2, &GENESIS, true, &a),
            entry_hash(2, &GENESIS, true, &legacy())
        );
    }

    /// A valid chain of `n` entries, stored in order with ids 10, 20, 30…
    fn chain(n: i64) -> Vec<Link> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let mut entry = if seq % 2 == 0 { legacy() } else { full() };
                entry.timestamp = Timestamp(seq);
                let imported = seq % 2 == 0;
                let hash = entry_hash(seq, &prev, imported, &entry);
                let link = Link {
                    id: seq * 10,
                    seq,
                    prev_hash: Some(prev),
                    entry_hash: Some(hash),
                    imported,
                    entry,
                };
                prev = hash;
                link
            })
            .collect()
    }

    fn broken(links: Vec<Link>) -> (i64, String) {
        let b = verify(links).expect_err("the chain should be broken");
        (b.seq, b.reason)
    }

    #[test]
    fn an_intact_chain_counts_its_entries() {
        assert_eq!(verify(Vec::new()), Ok(0));
        assert_eq!(verify(chain(1)), Ok(1));
        assert_eq!(verify(chain(7)), Ok(7));
        // Entries read back through the store's types walk the same.
        let entries: Vec<AuditEntry> = chain(3)
            .into_iter()
            .map(|l| AuditEntry {
                id: l.id,
                seq: l.seq,
                prev_hash: l.prev_hash.unwrap(),
                entry_hash: l.entry_hash.unwrap(),
                imported: l.imported,
                entry: l.entry,
            })
            .collect();
        assert_eq!(verify(entries.into_iter().map(Link::from)), Ok(3));
    }

    #[test]
    fn any_edited_field_is_found_at_its_entry() {
        let edits: [fn(&mut Link); 13] = [
            |l| l.entry.action = Action::Encrypt,
            |l| l.entry.user_id = None,
            |l| l.entry.os_user = Some("mallory".into()),
            |l| l.entry.backup_creator_id = Some(4),
            |l| l.entry.backup_file = None,
            |l| l.entry.success = true,
            |l| l.entry.signature_valid = Some(true),
            |l| l.entry.timestamp = Timestamp(l.entry.timestamp.millis() + 1),
            |l| l.entry.host = Some("db2".into()),
            |l| l.entry.ip_address = None,
            |l| l.entry.details = r#"{"bytes":5}"#.into(),
            |l| l.imported = true,
            |l| l.entry_hash = Some(Hash32([9; 32])),
        ];
        for edit in edits {
            let mut links = chain(5);
            edit(&mut links[2]);
            let (seq, why) = broken(links);
            assert_eq!(seq, 3);
            assert!(why.contains("edited"), "{why}");
        }
    }

    #[test]
    fn a_deleted_entry_is_a_gap_and_renumbering_breaks_the_links() {
        let mut links = chain(6);
        links.remove(3);
        let (seq, why) = broken(links.clone());
        assert_eq!(seq, 5);
        assert!(why.contains("entry 4 is missing"), "{why}");
        for l in links.iter_mut().skip(3) {
            l.seq -= 1;
        }
        let (seq, why) = broken(links);
        assert_eq!(seq, 4);
        assert!(why.contains("does not link"), "{why}");
    }

    #[test]
    fn an_inserted_or_reordered_entry_does_not_link() {
        let mut links = chain(4);
        links.swap(1, 2);
        let (a, b) = (links[1].seq, links[2].seq);
        links[1].seq = b;
        links[2].seq = a;
        assert_eq!(broken(links).0, 2);

        let mut links = chain(4);
        let mut stranger = chain(1).remove(0);
        stranger.seq = 3;
        stranger.id = 25;
        links.insert(2, stranger);
        for l in links.iter_mut().skip(3) {
            l.seq += 1;
        }
        let (seq, why) = broken(links);
        assert_eq!(seq, 3);
        assert!(why.contains("does not link"), "{why}");
    }

    #[test]
    fn entries_stored_out_of_order_are_found() {
        let mut links = chain(4);
        links[2].id = 5;
        let (seq, why) = broken(links);
        assert_eq!(seq, 3);
        assert!(why.contains("out of order"), "{why}");
    }

    #[test]
    fn a_stored_hash_that_is_no_hash_is_a_break_not_a_failure() {
        let mut links = chain(4);
        links[1].prev_hash = None;
        let (seq, why) = broken(links);
        assert_eq!(seq, 2);
        assert!(why.contains("does not link"), "{why}");

        let mut links = chain(4);
        links[3].entry_hash = None;
        let (seq, why) = broken(links);
        assert_eq!(seq, 4);
        assert!(why.contains("edited"), "{why}");
    }
}
