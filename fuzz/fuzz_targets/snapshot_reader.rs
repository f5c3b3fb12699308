//! libFuzzer entry point; the check and its properties are in `src/snapshot.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mussikon_fuzz::snapshot::check(data));
