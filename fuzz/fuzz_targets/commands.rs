//! libFuzzer entry point; the check and its properties are in `src/commands.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|ops: Vec<mussikon_fuzz::commands::Op>| {
    mussikon_fuzz::commands::check(&ops)
});
