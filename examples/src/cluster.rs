//! `cluster`: a small distributed program instrumented with rql's client library.
//!
//! The branches of a bank, one thread and one rql node each, move money to each other over
//! channels (standing in for the network). Each branch records `bank.balance`, `bank.sent` and
//! `bank.received` with a `Recorder`, which ships them to a log server (`rql serve`). Messages
//! carry the sender's HLC (`on_send`) and the receiver merges it (`on_receive`), so every cut
//! rql evaluates is consistent: money is never received before it was sent, i.e. on every cut
//! `SUM(bank.sent) - SUM(bank.received)` — the money in transit — is at least 0, although the
//! branches' physical clocks disagree (`--skew-ms`).
//!
//! ```sh
//! rql serve --data /tmp/rql-bank &
//! cargo run -p rql-examples --bin cluster -- --server http://127.0.0.1:7400 --branches 4
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Parser;
use log_server::client::{Hlc, HlcClock, Recorder, RecorderConfig, RecorderError, RecorderStats};
use log_server::hlc::system_time_ms;

#[derive(Parser, Debug)]
#[command(about = "A bank whose branches move money over channels, recorded for rql")]
struct Args {
    /// The log server.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7400")]
    server: String,
    /// Bearer token of the server (`rql serve --token`).
    #[arg(long, env = "RQL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Number of branches (threads, rql nodes).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(2..=1000))]
    branches: u16,
    /// Transfers each branch starts.
    #[arg(long, default_value_t = 100)]
    transfers: u32,
    /// Each branch's opening balance.
    #[arg(long, default_value_t = 1000)]
    balance: i64,
    /// Pause between a branch's transfers, in milliseconds.
    #[arg(long, default_value_t = 2)]
    pace_ms: u64,
    /// Branch k's physical clock runs k times this many milliseconds behind (at most 400 ms
    /// in all, under the clock's 500 ms maximum drift): the HLC keeps the order right anyway.
    #[arg(long, default_value_t = 40)]
    skew_ms: u64,
    /// Node ids are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "branch")]
    prefix: String,
    /// Seed of the random transfers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A message between branches: the money, and the sender's HLC at the send.
struct Transfer {
    amount: i64,
    stamp: u64,
}

/// What the branches share besides the channels.
struct Shared {
    /// Transfers sent and not yet received.
    in_flight: AtomicUsize,
    /// Branches still starting transfers.
    sending: AtomicUsize,
    /// A branch failed: everyone stops.
    abort: AtomicBool,
}

struct Report {
    node: String,
    balance: i64,
    sent: i64,
    received: i64,
    stats: RecorderStats,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let branches = usize::from(args.branches);
    let shared = Arc::new(Shared {
        in_flight: AtomicUsize::new(0),
        sending: AtomicUsize::new(branches),
        abort: AtomicBool::new(false),
    });
    let (senders, receivers): (Vec<Sender<Transfer>>, Vec<Receiver<Transfer>>) =
        (0..branches).map(|_| mpsc::channel()).unzip();
    let args = Arc::new(args);
    let threads: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(index, inbox)| {
            let (args, senders, shared) = (Arc::clone(&args), senders.clone(), Arc::clone(&shared));
            thread::spawn(move || {
                let result = branch(index, &args, &inbox, &senders, &shared);
                if result.is_err() {
                    shared.abort.store(true, Ordering::SeqCst);
                }
                result
            })
        })
        .collect();
    drop(senders);

    let mut ok = true;
    let mut total = 0;
    for (index, thread) in threads.into_iter().enumerate() {
        match thread.join() {
            Ok(Ok(report)) => {
                let s = &report.stats;
                println!(
                    "{}: balance {}, sent {}, received {}; {} records shipped, {} failed, {} \
                     dropped, {} abandoned{}",
                    report.node,
                    report.balance,
                    report.sent,
                    report.received,
                    s.shipped,
                    s.failed,
                    s.dropped,
                    s.abandoned,
                    s.last_error
                        .as_ref()
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                );
                ok &= s.failed == 0 && s.dropped == 0 && s.abandoned == 0;
                total += report.balance;
            }
            Ok(Err(e)) => {
                eprintln!("error: branch {index}: {e}");
                ok = false;
            }
            Err(_) => {
                eprintln!("error: branch {index} panicked");
                ok = false;
            }
        }
    }
    println!(
        "total balance {total} (opened with {})",
        args.balance * i64::from(args.branches)
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One branch: opens its account, starts its transfers while taking in the ones that arrive,
/// then keeps taking them in until no branch sends any more and nothing is in flight.
fn branch(
    index: usize,
    args: &Args,
    inbox: &Receiver<Transfer>,
    peers: &[Sender<Transfer>],
    shared: &Shared,
) -> Result<Report, RecorderError> {
    let node = format!("{}-{index}", args.prefix);
    let mut config = RecorderConfig::new(node.as_str(), args.server.as_str());
    config.token = args.token.clone();
    // A physical clock behind the real one, as if this machine's clock were off.
    let skew = (index as u64 * args.skew_ms).min(400);
    config.clock = HlcClock::new(move || system_time_ms().saturating_sub(skew));
    let recorder = Recorder::start(config)?;
    let mut account = Account {
        recorder: &recorder,
        balance: args.balance,
        sent: 0,
        received: 0,
    };
    recorder.set("bank.balance", account.balance)?;
    recorder.set("bank.sent", 0)?;
    recorder.set("bank.received", 0)?;
    recorder.commit()?;

    let started = start_transfers(index, args, &mut account, inbox, peers, shared);
    shared.sending.fetch_sub(1, Ordering::SeqCst);
    started?;
    while !shared.abort.load(Ordering::SeqCst)
        && (shared.sending.load(Ordering::SeqCst) > 0
            || shared.in_flight.load(Ordering::SeqCst) > 0)
    {
        match inbox.recv_timeout(Duration::from_millis(10)) {
            Ok(transfer) => account.take_in(&transfer, shared)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let (balance, sent, received) = (account.balance, account.sent, account.received);
    // Ships what is still buffered before the thread ends.
    let stats = recorder.shutdown();
    Ok(Report {
        node,
        balance,
        sent,
        received,
        stats,
    })
}

/// The branch's own transfers, taking in what arrives meanwhile.
fn start_transfers(
    index: usize,
    args: &Args,
    account: &mut Account<'_>,
    inbox: &Receiver<Transfer>,
    peers: &[Sender<Transfer>],
    shared: &Shared,
) -> Result<(), RecorderError> {
    let seed = args.seed.wrapping_mul(1000).wrapping_add(index as u64);
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..args.transfers {
        while let Ok(transfer) = inbox.try_recv() {
            account.take_in(&transfer, shared)?;
        }
        if shared.abort.load(Ordering::SeqCst) {
            break;
        }
        if account.balance > 0 {
            let to = (index + rng.usize(1..peers.len())) % peers.len();
            let amount = rng.i64(1..=account.balance.min(100));
            account.pay_out(amount, &peers[to], shared)?;
        }
        thread::sleep(Duration::from_millis(args.pace_ms));
    }
    Ok(())
}

struct Account<'a> {
    recorder: &'a Recorder,
    balance: i64,
    sent: i64,
    received: i64,
}

impl Account<'_> {
    fn pay_out(
        &mut self,
        amount: i64,
        to: &Sender<Transfer>,
        shared: &Shared,
    ) -> Result<(), RecorderError> {
        self.balance -= amount;
        self.sent += amount;
        self.recorder.set("bank.balance", self.balance)?;
        self.recorder.set("bank.sent", self.sent)?;
        // Commits the debit and stamps the message with that record's HLC.
        let stamp = self.recorder.on_send()?;
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if to
            .send(Transfer {
                amount,
                stamp: stamp.packed(),
            })
            .is_err()
        {
            // The receiving branch is gone (it failed); the whole run is aborting.
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn take_in(&mut self, transfer: &Transfer, shared: &Shared) -> Result<(), RecorderError> {
        // Merging the sender's clock orders this credit after the debit that caused it. A
        // stamp too far in the future is refused by the clock; the money still arrives.
        if let Err(e) = self.recorder.on_receive(Hlc::from_packed(transfer.stamp)) {
            eprintln!("warning: {}: {e}", self.recorder.node());
        }
        self.balance += transfer.amount;
        self.received += transfer.amount;
        self.recorder.set("bank.balance", self.balance)?;
        self.recorder.set("bank.received", self.received)?;
        let committed = self.recorder.commit();
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        committed.map(|_| ())
    }
}
