//! libFuzzer entry point; the check and its properties are in `src/auth_header.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mussikon_fuzz::auth_header::check(data));
