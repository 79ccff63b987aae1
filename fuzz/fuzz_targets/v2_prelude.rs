//! Parses arbitrary bytes as the start of a v2 file: preamble, header TLVs, header signature and
//! both recipient slots, then picks the active slot. Must never panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgseal_core::v2;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    if let Ok(prelude) = v2::read_prelude(&mut r) {
        let _ = prelude.active_slot();
        // Touch the parsed parts so nothing is optimised away.
        let _ = prelude.header.slot_size as usize + prelude.header_signature.len();
        let _ = prelude.slots_offset;
    }
});
