//! The audit log: appending to its hash chain, reading it, verifying it.

use super::Store;
use crate::action::Action;
use crate::chain;
use crate::db::{Db, Row, Value, in_transaction};
use crate::error::{Result, StoreError};
use crate::hash::Hash32;
use crate::model::{AuditEntry, AuditFilter, NewAuditEntry};

const AUDIT_COLUMNS: &str = "id, action, user_id, os_user, backup_creator_id, backup_file, \
     success, signature_valid, \"timestamp\", host, ip_address, details, seq, prev_hash, \
     entry_hash, imported";

/// How many audit entries [`Store::verify_audit_chain`] reads at a time.
pub const CHAIN_PAGE: i64 = 10_000;

impl Store {
    /// Appends one audit entry to the chain; returns its `seq`.
    pub fn append_audit(&mut self, e: &NewAuditEntry) -> Result<i64> {
        self.append_audit_as(e, false)
    }

    /// Appends an entry imported from the legacy system (marked as such, chained like any other).
    pub fn append_imported_audit(&mut self, e: &NewAuditEntry) -> Result<i64> {
        self.append_audit_as(e, true)
    }

    fn append_audit_as(&mut self, e: &NewAuditEntry, imported: bool) -> Result<i64> {
        in_transaction(self.db.as_mut(), |db| append_in(db, e, imported))
    }

    /// The chain's head: the last entry's `seq` and hash (what backups anchor).
    /// [`StoreError::MalformedAuditHash`] if its stored hash is not one.
    pub fn audit_head(&mut self) -> Result<Option<(i64, Hash32)>> {
        let rows = self.db.query(
            "SELECT seq, entry_hash FROM pgseal_audit_log ORDER BY seq DESC LIMIT 1",
            &[],
        )?;
        rows.first().map(head_from_row).transpose()
    }

    /// The entry at `seq`, if the log has one.
    pub fn audit_entry(&mut self, seq: i64) -> Result<Option<AuditEntry>> {
        let rows = self.db.query(
            &format!("SELECT {AUDIT_COLUMNS} FROM pgseal_audit_log WHERE seq = $1"),
            &[seq.into()],
        )?;
        rows.first().map(audit_from_row).transpose()
    }

    /// Walks the whole chain ([`chain::verify`]); returns the number of entries, or the first
    /// place it breaks: an edited entry (hash mismatch, or a stored hash that is not one), a
    /// deleted or inserted one (seq gap, link mismatch), or entries out of order.
    ///
    /// The log is read [`CHAIN_PAGE`] entries at a time, in `(seq, id)` order, so memory stays
    /// bounded however long it is; the cost is one read and one SHA-256 per entry.
    pub fn verify_audit_chain(&mut self) -> Result<std::result::Result<i64, chain::ChainBreak>> {
        self.verify_audit_chain_in_pages(CHAIN_PAGE)
    }

    /// [`verify_audit_chain`](Self::verify_audit_chain), reading `page` entries at a time (the
    /// tests walk small chains in pages of a few entries).
    pub fn verify_audit_chain_in_pages(
        &mut self,
        page_size: i64,
    ) -> Result<std::result::Result<i64, chain::ChainBreak>> {
        let page_size = page_size.max(1);
        let db = self.db.as_mut();
        // A row that cannot be read at all (a column of the wrong type) fails the walk when it
        // reaches it; a break before it is reported first. So does a page that cannot be read.
        let mut failed = None;
        let mut page = Vec::new().into_iter();
        let mut after: Option<(i64, i64)> = None;
        let mut last_page = false;
        let links = std::iter::from_fn(|| {
            loop {
                if let Some(row) = page.next() {
                    return match link_from_row(&row) {
                        Ok(link) => {
                            after = Some((link.seq, link.id));
                            Some(link)
                        }
                        Err(e) => {
                            failed = Some(e);
                            None
                        }
                    };
                }
                if last_page {
                    return None;
                }
                let rows = match after {
                    None => db.query(
                        &format!(
                            "SELECT {AUDIT_COLUMNS} FROM pgseal_audit_log ORDER BY seq, id \
                             LIMIT $1"
                        ),
                        &[page_size.into()],
                    ),
                    Some((seq, id)) => db.query(
                        &format!(
                            "SELECT {AUDIT_COLUMNS} FROM pgseal_audit_log \
                             WHERE seq > $1 OR (seq = $1 AND id > $2) ORDER BY seq, id \
                             LIMIT $3"
                        ),
                        &[seq.into(), id.into(), page_size.into()],
                    ),
                };
                match rows {
                    Ok(rows) => {
                        last_page = (rows.len() as i64) < page_size;
                        page = rows.into_iter();
                    }
                    Err(e) => {
                        failed = Some(e);
                        return None;
                    }
                }
            }
        });
        match (chain::verify(links), failed) {
            (Err(broken), _) => Ok(Err(broken)),
            (Ok(_), Some(e)) => Err(e),
            (Ok(n), None) => Ok(Ok(n)),
        }
    }

    /// The newest `limit` entries, newest last.
    pub fn audit_entries(&mut self, limit: i64) -> Result<Vec<AuditEntry>> {
        self.audit_query(&AuditFilter {
            limit: Some(limit),
            ..AuditFilter::default()
        })
    }

    /// The entries matching `f`, oldest first (the newest `f.limit` of them).
    pub fn audit_query(&mut self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut conditions = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        let mut bind = |cond: &str, v: Value, params: &mut Vec<Value>| {
            params.push(v);
            conditions.push(cond.replace('?', &format!("${}", params.len())));
        };
        if let Some(a) = &f.action {
            bind("action = ?", a.as_str().into(), &mut params);
        }
        if let Some(u) = f.user_id {
            bind("user_id = ?", u.into(), &mut params);
        }
        if let Some(t) = f.since {
            bind("\"timestamp\" >= ?", t.into(), &mut params);
        }
        if f.failed_only {
            bind("success = ?", false.into(), &mut params);
        }
        if f.invalid_signature {
            bind("signature_valid = ?", false.into(), &mut params);
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let limit = match f.limit {
            Some(n) => {
                params.push(n.into());
                format!("LIMIT ${}", params.len())
            }
            None => String::new(),
        };
        let rows = self.db.query(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM (SELECT {AUDIT_COLUMNS} FROM pgseal_audit_log \
                 {filter} ORDER BY seq DESC {limit}) recent ORDER BY seq"
            ),
            &params,
        )?;
        rows.iter().map(audit_from_row).collect()
    }
}

/// Appends `e` to the chain inside the caller's transaction.
pub(super) fn append_in(db: &mut dyn Db, e: &NewAuditEntry, imported: bool) -> Result<i64> {
    db.lock_audit_chain()?;
    let head = db.query(
        "SELECT seq, entry_hash FROM pgseal_audit_log ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    let (seq, prev) = match head.first() {
        Some(r) => {
            let (seq, hash) = head_from_row(r)?;
            (seq + 1, hash)
        }
        None => (1, chain::GENESIS),
    };
    let hash = chain::entry_hash(seq, &prev, imported, e);
    db.execute(
        "INSERT INTO pgseal_audit_log (action, user_id, os_user, backup_creator_id, \
         backup_file, success, signature_valid, \"timestamp\", host, ip_address, details, \
         seq, prev_hash, entry_hash, imported) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            e.action.as_str().into(),
            e.user_id.into(),
            e.os_user.clone().into(),
            e.backup_creator_id.into(),
            e.backup_file.clone().into(),
            e.success.into(),
            e.signature_valid.into(),
            e.timestamp.into(),
            e.host.clone().into(),
            e.ip_address.clone().into(),
            e.details.as_str().into(),
            seq.into(),
            prev.to_string().into(),
            hash.to_string().into(),
            imported.into(),
        ],
    )?;
    Ok(seq)
}

/// An entry's fields and place in the chain, its hash columns as stored.
fn link_from_row(r: &Row) -> Result<chain::Link> {
    Ok(chain::Link {
        id: r.int(0)?,
        entry: NewAuditEntry {
            action: Action::from(r.text(1)?),
            user_id: r.opt_int(2)?,
            os_user: r.opt_text(3)?,
            backup_creator_id: r.opt_int(4)?,
            backup_file: r.opt_text(5)?,
            success: r.bool(6)?,
            signature_valid: r.opt_bool(7)?,
            timestamp: r.time(8)?,
            host: r.opt_text(9)?,
            ip_address: r.opt_text(10)?,
            details: r.text(11)?,
        },
        seq: r.int(12)?,
        prev_hash: Hash32::parse(&r.text(13)?).ok(),
        entry_hash: Hash32::parse(&r.text(14)?).ok(),
        imported: r.bool(15)?,
    })
}

/// A stored entry; [`StoreError::MalformedAuditHash`] if a hash column holds no hash.
fn audit_from_row(r: &Row) -> Result<AuditEntry> {
    let link = link_from_row(r)?;
    let (Some(prev_hash), Some(entry_hash)) = (link.prev_hash, link.entry_hash) else {
        return Err(StoreError::MalformedAuditHash { seq: link.seq });
    };
    Ok(AuditEntry {
        id: link.id,
        entry: link.entry,
        seq: link.seq,
        prev_hash,
        entry_hash,
        imported: link.imported,
    })
}

/// `seq, entry_hash` of the newest entry.
fn head_from_row(r: &Row) -> Result<(i64, Hash32)> {
    let seq = r.int(0)?;
    let hash = Hash32::parse(&r.text(1)?).map_err(|_| StoreError::MalformedAuditHash { seq })?;
    Ok((seq, hash))
}
