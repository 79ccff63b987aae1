//! Parses arbitrary bytes as the start of a v2 file: preamble, header TLVs, header signature and
//! both recipient slots (RSA-OAEP, hybrid and unknown stanzas), then picks the active slot. Must
//! never panic, whatever the input; and a file whose signed header says hybrid never gets an
//! active slot holding an RSA-only wrapping (FORMAT.md §6a, the downgrade).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgseal_core::v2::{self, SlotState, Stanza};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    if let Ok(prelude) = v2::read_prelude(&mut r) {
        if let Ok((_, slot)) = prelude.active_slot() {
            assert!(
                !(prelude.header.hybrid && slot.has_rsa_only()),
                "a hybrid file's active slot holds an RSA-only wrapping"
            );
        }
        for state in &prelude.slots {
            if let SlotState::Valid(slot) = state {
                for stanza in &slot.stanzas {
                    if let Stanza::Hybrid { wrap, .. } = stanza {
                        // Parsed to the exact sizes FORMAT.md §6a gives.
                        assert_eq!(wrap.pq_ciphertext.len(), pgseal_core::pq::CIPHERTEXT_LEN);
                    }
                    let _ = stanza.recipient();
                }
            }
        }
        // Touch the parsed parts so nothing is optimised away.
        let _ = prelude.header.slot_size as usize + prelude.header_signature.len();
        let _ = prelude.slots_offset;
    }
});
