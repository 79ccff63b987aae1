//! `pgseal inspect`: what a file's header claims. Nothing here is verified — `verify` does that.

use pgseal_core::legacy::symmetric;
use pgseal_core::time::{rfc3339_millis, rfc3339_secs};
use pgseal_core::v2::{self, Prelude, SlotState, Stanza};
use pgseal_ops::inspect::{Inspection, inspect};
use serde_json::{Value, json};

use super::print_json;
use crate::cli::InspectArgs;
use crate::context::Context;
use crate::failure::CliResult;

pub fn run(args: InspectArgs, ctx: &mut Context) -> CliResult {
    let found = inspect(&pgseal_ops::repo::reach(ctx), &args.input)?;
    let len = found.file_bytes;
    let facts: Value = match &found.what {
        Inspection::V2(prelude) => v2_facts(prelude, &found.name, len),
        Inspection::LegacyHybrid(h) => json!({
            "format": "legacy-hybrid",
            "version": h.version,
            "encrypted": true,
            "creator": { "user_id": h.user_id },
            "created_at": rfc3339_secs(h.created_unix),
            "created_unix": h.created_unix,
            "wrapped_key_bytes": h.wrapped_key.len(),
            "signature_bytes": h.signature.len(),
            "header_bytes": h.encoded_len(),
            "ciphertext_bytes": len.map(|n| n.saturating_sub(h.encoded_len() + 16)),
            "file_bytes": len,
            "recipients": Value::Null,
            "header_covered_by_signature": false,
        }),
        Inspection::LegacySymmetric => json!({
            "format": "legacy-symmetric",
            "version": 1,
            "encrypted": true,
            "creator": Value::Null,
            "header_bytes": symmetric::HEADER_LEN,
            "ciphertext_bytes": len.map(|n| n.saturating_sub(symmetric::MIN_FILE_LEN as u64)),
            "file_bytes": len,
            "header_covered_by_signature": false,
        }),
        Inspection::PlainDump => json!({
            "format": "plain-pg_dump",
            "encrypted": false,
            "file_bytes": len,
        }),
    };
    if args.json.on {
        let mut facts = facts;
        facts["file"] = json!(found.name);
        print_json(&facts);
    } else {
        print_human(&found.name, &facts);
    }
    Ok(())
}

fn v2_facts(prelude: &Prelude, name: &str, file_bytes: Option<u64>) -> Value {
    let h = &prelude.header;
    let m = &h.metadata;
    let slot_json = |s: &SlotState| match s {
        SlotState::Empty => json!({ "state": "empty" }),
        SlotState::Valid(slot) => json!({
            "state": "valid",
            "generation": slot.generation,
            "recipients": slot.recipients().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "stanzas": slot.stanzas.iter().map(stanza_json).collect::<Vec<_>>(),
        }),
        SlotState::Damaged(damage) => json!({ "state": "damaged", "reason": damage.reason }),
    };
    let active = prelude.active_slot();
    let active_error = active.as_ref().err().map(ToString::to_string);
    let active = active.ok();
    // Post-quantum: promised by the signed header, or only given by a rewrap (an upgraded
    // RSA-only file: its active slot is hybrid, its header cannot say so).
    let post_quantum = match (&active, h.hybrid) {
        (_, true) => "signed",
        (Some((_, slot)), false)
            if !slot.stanzas.is_empty()
                && slot
                    .stanzas
                    .iter()
                    .all(|s| matches!(s, Stanza::Hybrid { .. } | Stanza::Unknown { .. })) =>
        {
            "upgraded"
        }
        _ => "no",
    };
    let mut slots = [slot_json(&prelude.slots[0]), slot_json(&prelude.slots[1])];
    for (i, slot) in slots.iter_mut().enumerate() {
        slot["active"] = json!(active.as_ref().is_some_and(|(a, _)| *a == i));
    }
    let superseded = prelude
        .superseded_slot()
        .and_then(|(index, state)| super::superseded_slot_note(index, state, name));
    let header_bytes = prelude.slots_offset + 2 * h.slot_size as u64;
    json!({
        "format": "v2",
        "version": v2::VERSION,
        "encrypted": true,
        "creator": {
            "user_id": m.creator_user_id,
            "username": m.creator_username,
            "fingerprint": h.signer.to_string(),
        },
        "created_at": rfc3339_millis(m.created_at_ms),
        "created_unix": m.created_at_ms / 1000,
        "tool": m.tool,
        "source": {
            "database": m.source_database,
            "host": m.source_host,
            "dump_format": m.dump_format,
            "name": m.content_name,
        },
        "compression": h.compression.name(),
        "chunk_size": h.chunk_size,
        "recipients": active.as_ref().map(|(_, s)| s.recipients().iter().map(ToString::to_string).collect::<Vec<_>>()),
        "recipient_stanzas": active.as_ref().map(|(_, s)| s.stanzas.iter().map(stanza_json).collect::<Vec<_>>()),
        "hybrid_recipients": h.hybrid,
        "post_quantum": post_quantum,
        "active_slot_error": active_error,
        "slots": slots,
        "superseded_slot": superseded.map(|(_, j)| j),
        "header_bytes": header_bytes,
        "signature_bytes": h.signature_len,
        "ciphertext_bytes": file_bytes.map(|n| n.saturating_sub(header_bytes + h.signature_len as u64)),
        "file_bytes": file_bytes,
        "header_covered_by_signature": true,
        "unknown_fields": h.unknown.iter().map(|(t, _)| format!("0x{t:04x}")).collect::<Vec<_>>(),
    })
}

/// One wrapping of the file key: its kind and the key (or keys) it names.
fn stanza_json(stanza: &Stanza) -> Value {
    match stanza {
        Stanza::RsaOaep { recipient, .. } => {
            json!({ "kind": "rsa-oaep", "fingerprint": recipient.to_string() })
        }
        Stanza::Hybrid {
            recipient,
            pq_recipient,
            ..
        } => json!({
            "kind": "hybrid",
            "fingerprint": recipient.to_string(),
            "pq_fingerprint": pq_recipient.to_string(),
        }),
        Stanza::Unknown { kind, .. } => json!({ "kind": format!("0x{kind:04x}") }),
    }
}

fn print_human(name: &str, facts: &Value) {
    let s = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    outln!("file:        {name}");
    outln!("format:      {}", s(&facts["format"]));
    if facts["encrypted"] == json!(false) {
        outln!("encrypted:   no — this is not a sealed backup");
        return;
    }
    outln!("version:     {}", s(&facts["version"]));
    let c = &facts["creator"];
    if !c.is_null() {
        outln!(
            "creator:     user id {}, name {}, key {}",
            s(&c["user_id"]),
            s(&c["username"]),
            s(&c["fingerprint"])
        );
    }
    if !facts["created_at"].is_null() {
        outln!("created:     {}", s(&facts["created_at"]));
    }
    if let Some(tool) = facts.get("tool") {
        outln!("tool:        {}", s(tool));
        let src = &facts["source"];
        outln!(
            "source:      database {}, host {}, dump format {}, name {}",
            s(&src["database"]),
            s(&src["host"]),
            s(&src["dump_format"]),
            s(&src["name"])
        );
        outln!(
            "compression: {} (chunks of {} bytes)",
            s(&facts["compression"]),
            s(&facts["chunk_size"])
        );
    }
    match facts["recipient_stanzas"].as_array() {
        Some(list) => {
            outln!("recipients:");
            for r in list {
                match r["kind"].as_str() {
                    Some("hybrid") => outln!(
                        "  {} + ML-KEM-768 {} (hybrid)",
                        s(&r["fingerprint"]),
                        s(&r["pq_fingerprint"])
                    ),
                    Some("rsa-oaep") => outln!("  {}", s(&r["fingerprint"])),
                    _ => outln!(
                        "  a stanza of kind {} (unknown to this pgseal)",
                        s(&r["kind"])
                    ),
                }
            }
            match facts["post_quantum"].as_str() {
                Some("signed") => outln!(
                    "post-quantum: yes — the signed header allows only hybrid RSA + ML-KEM-768 \
                     wrappings"
                ),
                Some("upgraded") => outln!(
                    "post-quantum: the active slot is hybrid (rewrapped); the header predates it"
                ),
                _ => {}
            }
        }
        None if facts["format"] == json!("legacy-hybrid") => {
            outln!("recipients:  not recorded (legacy files name no key)")
        }
        None => {}
    }
    if let Some(problem) = facts["active_slot_error"].as_str() {
        outln!("no usable slot: {problem}");
    }
    if let Some(slots) = facts["slots"].as_array() {
        let describe = |(letter, slot): (&str, &Value)| {
            let state = s(&slot["state"]);
            match (slot["active"].as_bool(), slot["generation"].as_u64()) {
                (Some(true), Some(g)) => format!("{letter} active (generation {g})"),
                (_, Some(g)) => format!("{letter} {state} (generation {g})"),
                _ => format!("{letter} {state}"),
            }
        };
        let parts: Vec<String> = ["A", "B"].into_iter().zip(slots).map(describe).collect();
        outln!("slots:       {}", parts.join(", "));
    }
    if let Some(note) = facts["superseded_slot"]["message"].as_str() {
        let kind = if facts["superseded_slot"]["state"] == json!("valid") {
            "warning"
        } else {
            "note"
        };
        outln!("{kind}:{:width$}{note}", "", width = 12 - kind.len() - 1);
    }
    outln!(
        "sizes:       header {} bytes, ciphertext {} bytes, file {} bytes",
        s(&facts["header_bytes"]),
        s(&facts["ciphertext_bytes"]),
        s(&facts["file_bytes"])
    );
    if facts["header_covered_by_signature"] == json!(false) {
        outln!(
            "note:        this format does not authenticate its header; these values are unproven"
        );
    } else {
        outln!("note:        unverified; `pgseal verify` checks the signatures");
    }
}
