//! Fuzzes every SAML inbound entry point (HTTP-Redirect query, HTTP-POST value, XML parser, inflater,
//! both signature verifiers) with arbitrary bytes. The body lives in the core crate so the unit test
//! `saml::inbound::tests::mutated_inputs_never_panic` replays the same code on stable Rust.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The TEST ONLY certificate committed with the core crate's tests.
const SP_CERT: &[u8] = include_bytes!("../../crates/latchkey-core/tests/data/saml-test-cert.der");

fuzz_target!(|data: &[u8]| {
    latchkey_core::saml::inbound::fuzz_entry(data, SP_CERT);
});
