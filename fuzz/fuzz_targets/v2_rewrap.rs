//! Rewrap target: a rewrap interrupted at any byte, on a file whose slots the input has edited.
//!
//! At first use it makes an RSA-2048 signer and three pairs of server keys (old, new): RSA to
//! RSA, hybrid to hybrid (RSA-2048 + ML-KEM-768, FORMAT.md §6a) and RSA to hybrid (the upgrade),
//! and seals one fixed plaintext to each old key. Each input picks a pair, edits the two recipient slots of a copy (XOR bytes,
//! copy one slot over the other, zero a slot — the states torn or repeated rewraps leave), then,
//! if the old key opens the edited file, plans a rewrap to the new key (`Prelude::plan_rewrap`,
//! or only the wipe a finished rewrap still owes, `Prelude::plan_wipe`), applies its writes up to
//! a crash point the input picks (a byte inside one of the writes), and checks:
//!
//! * after a crash at any byte, the file still opens — with the old key or the new one — to the
//!   same plaintext, and nothing outside the two slots changed;
//! * once every write is made, the new key opens it, the old key does not, and no slot still
//!   names the old key (FORMAT.md §6: a superseded slot is wiped);
//! * running the rewrap again after the crash finishes the job the same way;
//! * a file whose signed header says hybrid is never rewrapped to an RSA-only key.
//!
//! A violation panics: a rewrap that could lose a file, or leave the rotated-out key able to
//! open it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgseal_core::keys::{Identity, KeyBits};
use pgseal_core::v2::{self, Compression, Metadata, Rewrap, SealParams, SignerCheck};
use pgseal_core::{PrivateKey, PublicKey};

struct Fixture {
    signers: Vec<PublicKey>,
    plaintext: Vec<u8>,
    cases: [Case; 3],
}

/// One rotation: a file sealed to `old`, to be rewrapped to `new`.
struct Case {
    old: PrivateKey,
    new: PrivateKey,
    file: Vec<u8>,
    slots: std::ops::Range<usize>,
    slot_size: usize,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let signer = PrivateKey::generate(KeyBits::Rsa2048).expect("signer key");
        let plaintext: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let rsa = || PrivateKey::generate(KeyBits::Rsa2048).expect("RSA server key");
        let hybrid = || PrivateKey::generate_hybrid(KeyBits::Rsa2048).expect("hybrid server key");
        let case = |old, new| Case::new(&signer, &plaintext, old, new);
        Fixture {
            cases: [case(rsa(), rsa()), case(hybrid(), hybrid()), case(rsa(), hybrid())],
            signers: vec![signer.public().clone()],
            plaintext,
        }
    })
}

impl Case {
    fn new(signer: &PrivateKey, plaintext: &[u8], old: PrivateKey, new: PrivateKey) -> Self {
        let recipients = [old.public().clone()];
        let mut params = SealParams::new(signer, &recipients);
        params.compression = Compression::None;
        params.chunk_size = 1024;
        params.metadata = Metadata {
            created_at_ms: 1_700_000_000_000,
            ..Metadata::default()
        };
        let mut file = Vec::new();
        v2::seal(plaintext, &mut file, &params).expect("seal");
        let prelude = v2::read_prelude(&mut &file[..]).expect("prelude");
        assert_eq!(prelude.header.hybrid, old.pq().is_some());
        let slot_size = prelude.header.slot_size as usize;
        let start = prelude.slots_offset as usize;
        Case {
            old,
            new,
            slots: start..start + 2 * slot_size,
            slot_size,
            file,
        }
    }
}

/// Whether `key` alone opens `file` to the fixture's plaintext.
fn opens(f: &Fixture, file: &[u8], key: &PrivateKey) -> bool {
    let mut input = file;
    let Ok(prelude) = v2::read_prelude(&mut input) else {
        return false;
    };
    let mut out = Vec::new();
    let opened = prelude.decrypt(
        input,
        &mut out,
        &[key as &dyn Identity],
        SignerCheck::Require(&f.signers),
    );
    opened.is_ok() && {
        assert_eq!(out, f.plaintext, "a file opened to the wrong plaintext");
        true
    }
}

/// The rewrap the CLI would make of `file`: the wipe owed if the active slot already names the
/// new key, else a rewrap from the old key to the new one.
fn plan(c: &Case, file: &[u8]) -> Option<Rewrap> {
    let prelude = v2::read_prelude(&mut &file[..]).ok()?;
    let (_, slot) = prelude.active_slot().ok()?;
    if slot.recipients() == [c.new.fingerprint()] {
        return prelude.plan_wipe().expect("a wipe needs no key");
    }
    prelude
        .plan_rewrap(&[&c.old as &dyn Identity], std::slice::from_ref(c.new.public()), &[])
        .ok()
}

/// `file` with `plan`'s writes made up to `crash` bytes into them (all of them: `None`).
fn apply(file: &[u8], plan: &Rewrap, crash: Option<usize>) -> Vec<u8> {
    let mut out = file.to_vec();
    let mut budget = crash.unwrap_or(usize::MAX);
    for write in &plan.writes {
        let at = write.offset as usize;
        let n = write.bytes.len().min(budget);
        out[at..at + n].copy_from_slice(&write.bytes[..n]);
        budget -= n;
        if budget == 0 {
            break;
        }
    }
    out
}

fn check_done(f: &Fixture, c: &Case, file: &[u8], what: &str) {
    assert!(opens(f, file, &c.new), "{what}: the new key does not open the file");
    assert!(!opens(f, file, &c.old), "{what}: the old key still opens the file");
    let prelude = v2::read_prelude(&mut &file[..]).expect("a rewrapped file parses");
    for slot in &prelude.slots {
        assert!(
            !slot.mentions(&c.old.fingerprint()),
            "{what}: a slot still names the old key"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    let c = &f.cases[usize::from(which) % f.cases.len()];
    let Some((&crash_hi, rest)) = data.split_first() else {
        return;
    };
    let Some((&crash_lo, edits)) = rest.split_first() else {
        return;
    };
    let mut file = c.file.clone();
    let s = c.slot_size;
    let a = c.slots.start;
    // Edits, four bytes each: op, a position (two bytes, within the slots), a value.
    for e in edits.chunks_exact(4) {
        let pos = u16::from_be_bytes([e[1], e[2]]) as usize % (2 * s);
        match e[0] % 4 {
            0 => file[a + pos] ^= e[3] | 1,
            1 => {
                let (from, to) = if e[3] & 1 == 0 { (a, a + s) } else { (a + s, a) };
                let copy = file[from..from + s].to_vec();
                file[to..to + s].copy_from_slice(&copy);
            }
            2 => {
                let at = if e[3] & 1 == 0 { a } else { a + s };
                file[at..at + s].fill(0);
            }
            _ => {
                // A whole rewrap to the new key (as an earlier pgseal run would have made).
                if let Some(p) = plan(c, &file) {
                    file = apply(&file, &p, None);
                }
            }
        }
    }
    if !opens(f, &file, &c.old) && !opens(f, &file, &c.new) {
        return; // the edits broke the file; nothing to rewrap
    }
    if let Ok(prelude) = v2::read_prelude(&mut &file[..])
        && prelude.header.hybrid
    {
        // Case 0's keys are RSA-only.
        let rsa_only = std::slice::from_ref(f.cases[0].new.public());
        let keys = [&c.old as &dyn Identity, &c.new];
        assert!(
            prelude.plan_rewrap(&keys, rsa_only, &[]).is_err(),
            "a hybrid file was planned to be rewrapped to an RSA-only key"
        );
    }
    let Some(p) = plan(c, &file) else {
        return;
    };
    let total: usize = p.writes.iter().map(|w| w.bytes.len()).sum();
    let crash = usize::from(u16::from_be_bytes([crash_hi, crash_lo])) % (total + 1);

    let torn = apply(&file, &p, Some(crash));
    assert!(
        (0..torn.len()).all(|i| torn[i] == file[i] || c.slots.contains(&i)),
        "a rewrap changed bytes outside the slots"
    );
    assert!(
        opens(f, &torn, &c.old) || opens(f, &torn, &c.new),
        "a crash {crash} bytes into the rewrap left a file no key opens"
    );
    // The next run finishes the job.
    let again = match plan(c, &torn) {
        Some(p) => apply(&torn, &p, None),
        None => torn.clone(),
    };
    if crash == total {
        check_done(f, c, &torn, "a complete rewrap");
    }
    check_done(f, c, &again, "a rewrap run again after a crash");
});
