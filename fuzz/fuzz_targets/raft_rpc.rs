//! libFuzzer entry point; the check and its properties are in `src/raft_rpc.rs`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mussikon_fuzz::raft_rpc::check(data));
