//! libFuzzer entry point; the check and its properties are in `src/ndjson_import.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mussikon_fuzz::ndjson_import::check(data));
