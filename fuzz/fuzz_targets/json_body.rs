//! libFuzzer entry point; the check and its properties are in `src/json_body.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mussikon_fuzz::json_body::check(data));
