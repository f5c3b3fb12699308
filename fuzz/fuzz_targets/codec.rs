//! libFuzzer entry point; the check and its properties are in `src/codec.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mussikon_fuzz::codec::check(data));
