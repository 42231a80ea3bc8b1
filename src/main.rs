//! The `switchboard` binary: parse the configuration, start logging, bind, and run until a
//! signal asks to stop.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use clap::Parser;
use switchboard::config::{Cli, Command, Config, LogFormat};
use switchboard::telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    let telemetry = match Telemetry::init(
        config.log_format,
        config.otlp_endpoint.as_ref(),
        &config.node_id,
    ) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
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
    wait_for_workers(&runtime);
    let code = runtime.block_on(serve(config));
    // The runtime's tasks (and the spans they hold) end first; then the spans still
    // queued for export are flushed.
    drop(runtime);
    telemetry.shutdown();
    code
}

/// Waits (a second at most) until every async worker has started and parked once, so the
/// threads named `sb-worker` are the ones that run them. tokio queues each worker's start as
/// a task of its blocking pool, which any of the pool's threads may take first: a blocking
/// call `serve` makes before the last worker's thread is up could otherwise take that
/// thread, and the worker would run on one named for the pool (seen in the benchmark's CPU
/// split by thread, half of the workers' time under the blocking pool).
fn wait_for_workers(runtime: &tokio::runtime::Runtime) {
    let metrics = runtime.metrics();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while (0..metrics.num_workers()).any(|worker| metrics.worker_park_count(worker) == 0)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
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
    let format = config.log_format;
    let listener = match TcpListener::bind(&config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            fail(
                format,
                &format!("cannot listen on {}: {error}", config.listen),
            );
            return ExitCode::FAILURE;
        }
    };
    if config.admin_token.generated {
        print_generated_token(format, config.admin_token.secret.expose());
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let notifier = switchboard::readiness::Notifier::from_env();
    match switchboard::run_notifying(config, listener, shutdown, &notifier).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            fail(format, &error.to_string());
            ExitCode::FAILURE
        }
    }
}

/// Reports why the service stops: `error: …` on stderr, or a log line in JSON mode, where
/// a log shipper reads every line as JSON.
fn fail(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("error: {message}"),
        LogFormat::Json => tracing::error!("{message}"),
    }
}

/// The generated admin token, shown once on stdout (never in the log): plain text, or in
/// JSON mode one JSON object like the log lines, so every line of output parses.
fn print_generated_token(format: LogFormat, token: &str) {
    let message = "No admin token configured; generated one for this run (shown once)";
    match format {
        LogFormat::Text => println!("{message}: {token}"),
        LogFormat::Json => println!(
            "{}",
            serde_json::json!({
                "timestamp": switchboard::clock::rfc3339(switchboard::clock::now_ms()),
                "level": "INFO",
                "fields": { "message": message, "admin_token": token },
            })
        ),
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
