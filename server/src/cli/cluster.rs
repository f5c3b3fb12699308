//! `mussikon cluster status|join|remove|set-addr|transfer-leader|step-down`: the admin endpoints of a running cluster node
//! (`/v1/cluster/…`, see docs/cluster.md) from the command line. Any node may be asked; a
//! membership change is forwarded to the leader. Prints the cluster's status as JSON.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// The long `--help` text of `mussikon cluster`.
pub const CLUSTER_HELP: &str = "Look at and change a running cluster through any of its nodes.\n\n\
    mussikon cluster status --node 127.0.0.1:8080\n\
    mussikon cluster join --node 127.0.0.1:8080 --id 4 --addr 10.0.0.4:7000   (learner, catch up, promote)\n\
    mussikon cluster remove --node 127.0.0.1:8080 --id 4\n\
    mussikon cluster set-addr --node 127.0.0.1:8080 --id 2 --addr 10.0.0.2:7000   (move a member's peer address)\n\
    mussikon cluster transfer-leader --node 127.0.0.1:8080 --to 2   (--to omitted: the best-placed voter)\n\
    mussikon cluster step-down --node 127.0.0.1:8080   (that node hands leadership over if it leads)\n\n\
    --node is a node's API address; --addr is a peer address (the node's --peer-listen \
    address, or its --listen address when it has none).\n\n\
    With authentication on, pass an admin token with --token or MUSSIKON_TOKEN.";

/// `mussikon cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Any node of the cluster, as HOST:PORT (its API address, not its peer address).
    #[arg(
        long,
        global = true,
        env = "MUSSIKON_NODE",
        default_value = "127.0.0.1:8080"
    )]
    pub node: String,

    /// Admin bearer token (needed when the server checks tokens).
    #[arg(long, global = true, env = "MUSSIKON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub action: ClusterAction,
}

/// The cluster actions.
#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// Leader, term, and each member's role, matched index and lag.
    Status,
    /// Add a node: as learner, wait until it has caught up, then promote it to voter.
    Join {
        /// The new node's id (never one used before in this cluster).
        #[arg(long)]
        id: u64,
        /// Its peer address, HOST:PORT: its --peer-listen address, or its --listen address
        /// when it serves the peer RPCs there.
        #[arg(long)]
        addr: String,
        /// Keep it a learner (a read replica that does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
    /// Change a member's peer address (where the others send it peer RPCs), e.g. to its
    /// --peer-listen address once it runs with one. The node must already answer there.
    SetAddr {
        /// The member's id.
        #[arg(long)]
        id: u64,
        /// Its new peer address, HOST:PORT.
        #[arg(long)]
        addr: String,
    },
    /// Hand leadership over to a voter (writes wait meanwhile; none fails).
    TransferLeader {
        /// The voter to lead next; omitted: the voter holding the most of the log.
        #[arg(long)]
        to: Option<u64>,
    },
    /// If the node asked (--node) leads, hand leadership over; otherwise do nothing. For a
    /// node about to stop.
    StepDown,
}

/// Runs `mussikon cluster`.
pub fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(call(args))
}

async fn call(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()
        .context("could not build an HTTP client")?;
    let base = format!("http://{}", args.node);
    let req = match &args.action {
        ClusterAction::Status => client.get(format!("{base}/v1/cluster/status")),
        ClusterAction::Join { id, addr, learner } => client
            .post(format!("{base}/v1/cluster/members"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"node_id": id, "addr": addr, "voter": !learner}).to_string()),
        ClusterAction::Remove { id } => client.delete(format!("{base}/v1/cluster/members/{id}")),
        ClusterAction::SetAddr { id, addr } => client
            .put(format!("{base}/v1/cluster/members/{id}"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "addr": addr }).to_string()),
        ClusterAction::TransferLeader { to } => client
            .post(format!("{base}/v1/cluster/leader"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "node_id": to }).to_string()),
        ClusterAction::StepDown => client.post(format!("{base}/v1/cluster/step-down")),
    };
    let req = match &args.token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let resp = req.send().await.with_context(|| {
        format!(
            "could not reach the node at {}; is `mussikon serve --node-id …` running there?",
            args.node
        )
    })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{text}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("the node answered {status}: {text}");
        Ok(ExitCode::FAILURE)
    }
}
