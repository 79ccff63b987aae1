//! Rewrapping: signatures stay valid, the new key opens the file, the superseded slot is wiped so
//! the old key opens nothing, and a write torn at any byte (what a crash during a rewrap can
//! leave) still leaves a file that opens.

mod common;

use common::{data, keys, seal};
use pgseal_core::keys::{Identity, KeyBits};
use pgseal_core::v2::{self, SignerCheck, SlotState, Step};
use pgseal_core::{Fingerprint, PrivateKey};

fn open_with(file: &[u8], identity: &PrivateKey) -> pgseal_core::Result<Vec<u8>> {
    let mut input = file;
    let prelude = v2::read_prelude(&mut input)?;
    let mut out = Vec::new();
    let signers = [keys().signer.public().clone()];
    prelude.decrypt(
        input,
        &mut out,
        &[identity as &dyn Identity],
        SignerCheck::Require(&signers),
    )?;
    Ok(out)
}

fn rewrapped(
    file: &[u8],
    from: &PrivateKey,
    to: &PrivateKey,
    keep: &[Fingerprint],
) -> (Vec<u8>, v2::Rewrap) {
    let prelude = v2::read_prelude(&mut &file[..]).unwrap();
    let plan = prelude
        .plan_rewrap(
            &[from as &dyn Identity],
            std::slice::from_ref(to.public()),
            keep,
        )
        .unwrap();
    (applied(file, &plan), plan)
}

/// `file` with every write of `plan` made (a cursor needs no fsync).
fn applied(file: &[u8], plan: &v2::Rewrap) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(file.to_vec());
    plan.apply(&mut cursor, |_, _| Ok(())).unwrap();
    cursor.into_inner()
}

fn slots(file: &[u8]) -> [SlotState; 2] {
    v2::read_prelude(&mut &file[..]).unwrap().slots
}

#[test]
fn rewrap_moves_the_key_and_keeps_both_signatures() {
    let k = keys();
    let new_server = PrivateKey::generate(KeyBits::Rsa2048).unwrap();
    let plain = data(50_000);
    let file = seal(&plain, 1024);
    let (after, plan) = rewrapped(&file, &k.server, &new_server, &[]);
    assert_eq!(after.len(), file.len());
    assert_eq!(plan.generation, 2);
    assert_eq!(plan.recipients, vec![new_server.fingerprint()]);
    // Only the two slots changed: B holds the new wrapping, A was wiped.
    let prelude = v2::read_prelude(&mut &after[..]).unwrap();
    let (a, b) = (
        prelude.slots_offset as usize,
        prelude.slots_offset as usize + 2 * 4096,
    );
    assert!((0..file.len()).all(|i| file[i] == after[i] || (a..b).contains(&i)));
    assert_eq!(
        plan.writes
            .iter()
            .map(|w| (w.step, w.slot))
            .collect::<Vec<_>>(),
        [(Step::Install, 1), (Step::Wipe, 0)]
    );
    assert_eq!(prelude.active_slot().unwrap().0, 1);
    assert_eq!(prelude.slots[0], SlotState::Empty);
    assert!(prelude.superseded_slot().is_none());
    assert_eq!(open_with(&after, &new_server).unwrap(), plain);
    // Keyless verification still holds: nothing signed changed.
    common::verify(&after).unwrap();
    // The old key no longer opens it through the active slot.
    assert!(matches!(
        open_with(&after, &k.server),
        Err(pgseal_core::Error::NoMatchingIdentity(_))
    ));

    // A second rewrap goes back into slot A with generation 3.
    let third = PrivateKey::generate(KeyBits::Rsa2048).unwrap();
    let (again, plan) = rewrapped(&after, &new_server, &third, &[]);
    assert_eq!(plan.generation, 3);
    assert_eq!(
        v2::read_prelude(&mut &again[..])
            .unwrap()
            .active_slot()
            .unwrap()
            .0,
        0
    );
    assert_eq!(open_with(&again, &third).unwrap(), plain);
}

#[test]
fn recovery_keys_are_kept_when_asked() {
    let k = keys();
    let new_server = PrivateKey::generate(KeyBits::Rsa2048).unwrap();
    let plain = data(3000);
    let file = common::seal_with(
        &plain,
        1024,
        v2::Compression::Zstd,
        &[k.server.public().clone(), k.recovery.public().clone()],
    );
    let (after, plan) = rewrapped(&file, &k.server, &new_server, &[k.recovery.fingerprint()]);
    assert_eq!(
        plan.recipients,
        vec![new_server.fingerprint(), k.recovery.fingerprint()]
    );
    assert_eq!(open_with(&after, &new_server).unwrap(), plain);
    assert_eq!(open_with(&after, &k.recovery).unwrap(), plain);
}

/// Damages the active slot of `file` (64 bytes in its middle), as the reproduction did.
fn damage_active_slot(file: &mut [u8]) {
    let prelude = v2::read_prelude(&mut &file[..]).unwrap();
    let (active, _) = prelude.active_slot().unwrap();
    let at = prelude.slots_offset as usize + active * 4096 + 1000;
    file[at..at + 64].fill(0xA5);
}

#[test]
fn after_a_rewrap_the_old_key_opens_nothing_even_with_the_active_slot_damaged() {
    let k = keys();
    let new_server = PrivateKey::generate(KeyBits::Rsa2048).unwrap();
    let plain = data(20_000);
    let file = seal(&plain, 1024);
    let (mut after, _) = rewrapped(&file, &k.server, &new_server, &[]);
    for state in slots(&after) {
        assert!(!state.mentions(&k.server.fingerprint()));
    }
    damage_active_slot(&mut after);
    // Neither slot is valid now: the file is damaged, and the old key gets nothing out of it.
    let err = open_with(&after, &k.server).unwrap_err();
    assert!(matches!(err, pgseal_core::Error::Format(_)), "{err}");
}

#[test]
fn the_wipe_owed_by_an_older_rewrap_is_found_and_needs_no_key() {
    // What pgseal wrote before rewraps wiped: the install alone, both slots valid.
    let k = keys();
    let new_server = PrivateKey::generate(KeyBits::Rsa2048).unwrap();
    let plain = data(5_000);
    let file = seal(&plain, 1024);
    let plan = v2::read_prelude(&mut &file[..])
        .unwrap()
        .plan_rewrap(
            &[&k.server as &dyn Identity],
            std::slice::from_ref(new_server.public()),
            &[],
        )
        .unwrap();
    let mut old_style = plan.clone();
    old_style.writes.truncate(1);
    let mut two_valid = applied(&file, &old_style);
    let prelude = v2::read_prelude(&mut &two_valid[..]).unwrap();
    let (index, state) = prelude.superseded_slot().expect("a stale wrapping");
    assert_eq!(index, 0);
    assert!(matches!(state, SlotState::Valid(s) if s.generation == 1));
    assert!(state.mentions(&k.server.fingerprint()));
    // The old key still opens it when the active slot is damaged: the fault being fixed.
    let mut broken = two_valid.clone();
    damage_active_slot(&mut broken);
    assert_eq!(open_with(&broken, &k.server).unwrap(), plain);

    let wipe = prelude.plan_wipe().unwrap().expect("a wipe is owed");
    assert!(wipe.wipe_only());
    assert_eq!(
        (wipe.generation, wipe.recipients.clone()),
        (2, vec![new_server.fingerprint()])
    );
    two_valid = applied(&two_valid, &wipe);
    let prelude = v2::read_prelude(&mut &two_valid[..]).unwrap();
    assert_eq!(prelude.slots[0], SlotState::Empty);
    assert!(prelude.plan_wipe().unwrap().is_none());
    assert_eq!(open_with(&two_valid, &new_server).unwrap(), plain);
    damage_active_slot(&mut two_valid);
    assert!(open_with(&two_valid, &k.server).is_err());
}

#[test]
fn a_damaged_slot_still_counts_as_naming_the_keys_it_holds() {
    let k = keys();
    let mut file = seal(&data(100), 1024);
    damage_active_slot(&mut file);
    let [a, b] = slots(&file);
    assert!(matches!(a, SlotState::Damaged(_)));
    assert!(a.mentions(&k.server.fingerprint()));
    assert!(!a.mentions(&k.stranger.fingerprint()));
    assert!(!b.mentions(&k.server.fingerprint()));
}

#[test]
fn a_crash_at_any_byte_of_either_write_leaves_a_file_that_opens_and_a_rerun_finishes() {
    let k = keys();
    let new_server = PrivateKey::generate(KeyBits::Rsa2048).unwrap();
    let plain = data(10_000);
    let file = seal(&plain, 1024);
    let prelude = v2::read_prelude(&mut &file[..]).unwrap();
    let plan = prelude
        .plan_rewrap(
            &[&k.server as &dyn Identity],
            std::slice::from_ref(new_server.public()),
            &[],
        )
        .unwrap();
    let [install, wipe] = &plan.writes[..] else {
        panic!("a rewrap is an install and a wipe")
    };
    let slot_len = install.bytes.len();
    let torn_points = || {
        (0..=slot_len)
            .step_by(61)
            .chain([1, slot_len - 1, slot_len])
    };
    // A crash during the install leaves a prefix of it on disk (over the empty slot B).
    for torn in torn_points() {
        let mut f = file.clone();
        let at = install.offset as usize;
        f[at..at + torn].copy_from_slice(&install.bytes[..torn]);
        // The slot it lands on is empty (zeros): a prefix whose remaining bytes are already
        // zero (1 in 256 for the last, a checksum byte) is the complete install.
        if f[at..at + slot_len] == install.bytes[..] {
            assert_eq!(
                open_with(&f, &new_server).unwrap(),
                plain,
                "complete install"
            );
        } else {
            assert_eq!(
                open_with(&f, &k.server).unwrap(),
                plain,
                "install torn at {torn}"
            );
        }
    }
    // A crash during the wipe: the install is durable, the old slot partly zeroed.
    let installed = {
        let mut f = file.clone();
        let at = install.offset as usize;
        f[at..at + slot_len].copy_from_slice(&install.bytes);
        f
    };
    for torn in torn_points() {
        let mut f = installed.clone();
        let at = wipe.offset as usize;
        f[at..at + torn].copy_from_slice(&wipe.bytes[..torn]);
        assert_eq!(
            open_with(&f, &new_server).unwrap(),
            plain,
            "wipe torn at {torn}"
        );
        // Running the rewrap again (to the same key) owes only the wipe, and finishes it.
        let prelude = v2::read_prelude(&mut &f[..]).unwrap();
        match prelude.plan_wipe().unwrap() {
            // A prefix of the wipe can leave the slot already equal to the complete wipe
            // when the old slot's remaining bytes happen to match (1 in 256 for the last
            // byte): what owes nothing is a slot that is the empty encoding, not a length.
            None => assert_eq!(
                &f[at..at + slot_len],
                &wipe.bytes[..],
                "only a complete wipe owes nothing (torn at {torn})"
            ),
            Some(rest) => {
                let done = applied(&f, &rest);
                assert_eq!(slots(&done)[0], SlotState::Empty);
                assert_eq!(open_with(&done, &new_server).unwrap(), plain);
            }
        }
    }
}

#[test]
fn the_same_slot_written_twice_is_one_slot_but_two_different_slots_of_a_generation_are_damage() {
    // A torn wipe of a damaged copy of the active slot can make the copy whole again: the file
    // must still open (the fuzz target v2_rewrap found this).
    let k = keys();
    let plain = data(2_000);
    let file = seal(&plain, 1024);
    let prelude = v2::read_prelude(&mut &file[..]).unwrap();
    let (a, s) = (prelude.slots_offset as usize, 4096);
    let mut twice = file.clone();
    let slot_a = file[a..a + s].to_vec();
    twice[a + s..a + 2 * s].copy_from_slice(&slot_a);
    assert_eq!(open_with(&twice, &k.server).unwrap(), plain);
    // The copy is a superseded slot: a rewrap run wipes it.
    let prelude = v2::read_prelude(&mut &twice[..]).unwrap();
    assert_eq!(prelude.superseded_slot().map(|(i, _)| i), Some(1));
    // Two different slots of one generation stay damage.
    let new_server = PrivateKey::generate(KeyBits::Rsa2048).unwrap();
    let (after, _) = rewrapped(&file, &k.server, &new_server, &[]);
    let (other, _) = rewrapped(&file, &k.server, &new_server, &[]);
    let mut mixed = after.clone();
    mixed[a..a + s].copy_from_slice(&other[a + s..a + 2 * s]);
    let err = open_with(&mixed, &new_server).unwrap_err();
    assert!(
        matches!(
            err,
            pgseal_core::Error::Format(pgseal_core::error::FormatError::SameGeneration)
        ),
        "{err}"
    );
}
