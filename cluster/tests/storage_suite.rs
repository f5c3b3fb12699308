//! openraft's storage conformance suite over the segment log and the engine state machine:
//! one test per case of `openraft::testing::Suite::test_store` (0.9.25), so a failure names
//! its case.
#![allow(clippy::result_large_err)] // openraft fixes StorageError as the error type

use mussikon_cluster::{LogStore, StateMachine, TypeConfig};
mod support;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(dir.path().join("log"))?;
        let engine = support::replica_engine(&dir.path().join("engine"));
        let sm = StateMachine::open(engine, dir.path().join("snapshots"))?;
        Ok((dir, log, sm))
    }
}

type Cases = Suite<TypeConfig, LogStore, StateMachine, Builder, tempfile::TempDir>;

/// Runs one case on a fresh store, as the suite's own `run_test` does.
fn run<F, Fu>(case: F) -> Result<(), StorageError<u64>>
where
    F: FnOnce(LogStore, StateMachine) -> Fu,
    Fu: std::future::Future<Output = Result<(), StorageError<u64>>>,
{
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (_dir, log, sm) = Builder.build().await?;
        case(log, sm).await
    })
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() -> Result<(), StorageError<u64>> {
                run(Cases::$name)
            }
        )*
    };
}

cases!(
    last_membership_in_log_initial,
    last_membership_in_log,
    last_membership_in_log_multi_step,
    get_membership_initial,
    get_membership_from_log_and_empty_sm,
    get_membership_from_empty_log_and_sm,
    get_membership_from_log_le_sm_last_applied,
    get_membership_from_log_gt_sm_last_applied_1,
    get_membership_from_log_gt_sm_last_applied_2,
    get_initial_state_without_init,
    get_initial_state_membership_from_log_and_sm,
    get_initial_state_with_state,
    get_initial_state_last_log_gt_sm,
    get_initial_state_last_log_lt_sm,
    get_initial_state_log_ids,
    get_initial_state_re_apply_committed,
    save_vote,
    get_log_entries,
    limited_get_log_entries,
    try_get_log_entry,
    initial_logs,
    get_log_state,
    get_log_id,
    last_id_in_log,
    last_applied_state,
    purge_logs_upto_0,
    purge_logs_upto_5,
    purge_logs_upto_20,
    delete_logs_since_11,
    delete_logs_since_0,
    append_to_log,
    snapshot_meta,
    apply_single,
    apply_multiple,
);

/// The one case that builds its own two stores.
#[test]
fn transfer_snapshot() -> Result<(), StorageError<u64>> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(Cases::transfer_snapshot(&Builder))
}

/// The whole suite in its own order, so a case added by a newer openraft is not missed.
#[test]
fn the_whole_openraft_suite_passes() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder)
}
