//! Rewrapping: signatures stay valid, the new key opens the file, and a write torn at any byte
//! (what a kill during a rewrap can leave) still leaves a file that opens.

mod common;

use common::{data, keys, seal};
use pgseal_core::keys::{Identity, KeyBits};
use pgseal_core::v2::{self, SignerCheck};
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
    let mut cursor = std::io::Cursor::new(file.to_vec());
    plan.apply(&mut cursor).unwrap();
    (cursor.into_inner(), plan)
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
    // Only the inactive slot changed.
    let prelude = v2::read_prelude(&mut &after[..]).unwrap();
    let changed: Vec<usize> = (0..file.len()).filter(|i| file[*i] != after[*i]).collect();
    assert!(
        changed
            .iter()
            .all(|i| (*i as u64) >= plan.offset
                && (*i as u64) < plan.offset + plan.slot.len() as u64)
    );
    assert_eq!(prelude.active_slot().unwrap().0, 1);
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

#[test]
fn a_write_torn_at_any_byte_leaves_a_file_that_opens() {
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
    // A kill during the single slot write leaves some prefix of it on disk (over zeros).
    for torn in (0..=plan.slot.len())
        .step_by(61)
        .chain([1, plan.slot.len() - 1, plan.slot.len()])
    {
        let mut f = file.clone();
        let at = plan.offset as usize;
        f[at..at + torn].copy_from_slice(&plan.slot[..torn]);
        let old = open_with(&f, &k.server);
        let new = open_with(&f, &new_server);
        if torn == plan.slot.len() {
            assert_eq!(new.unwrap(), plain, "complete write");
        } else {
            assert_eq!(
                old.unwrap(),
                plain,
                "torn at {torn}: the old key must still open the file"
            );
        }
    }
}
