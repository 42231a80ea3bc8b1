//! The `switchboard` binary: parse the configuration, start logging, bind, and run until a
//! signal asks to stop.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use switchboard::config::{Cli, Command, Config};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: the hot path allocates many small short-lived
/// buffers, and profiles showed glibc spending ~10 % of the server threads in malloc/free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match Cli::parse().command {
        Command::Serve(args) => *args,
        client => return switchboard::cli::run(client),
    };
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let workers = config.worker_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    builder.worker_threads(workers);
    builder.thread_name_fn(thread_namer(workers));
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

/// Names the runtime's threads by role, so `top -H`, `perf` and /proc tell the async
/// workers (`sb-worker`) from tokio's blocking pool (`sb-blocking`: the SQLite reads, DNS),
/// which tokio names alike. The workers are the first threads the runtime starts: it starts
/// them all as it is built, before anything can use the blocking pool.
fn thread_namer(workers: usize) -> impl Fn() -> String + Send + Sync + 'static {
    let started = std::sync::atomic::AtomicUsize::new(0);
    move || {
        let n = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match n < workers {
            true => "sb-worker".to_owned(),
            false => "sb-blocking".to_owned(),
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let listener = match TcpListener::bind(&config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {}: {error}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    if config.admin_token.generated {
        println!(
            "No admin token configured; generated one for this run (shown once): {}",
            config.admin_token.secret.expose()
        );
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let notifier = switchboard::readiness::Notifier::from_env();
    match switchboard::run_notifying(config, listener, shutdown, &notifier).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

/// Logs to stderr; `RUST_LOG` overrides the default `info` level.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
