//! libFuzzer entry point; the check and its properties are in `src/query_params.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mussikon_fuzz::query_params::check(data));
