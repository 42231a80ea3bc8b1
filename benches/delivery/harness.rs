//! The server under test, the webhook receiver, and the ids they share.

#[allow(unused_imports)]
use super::*;

/// One Switchboard on a fresh database, with one channel whose webhook is the receiver.
pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) channel_id: String,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: tokio::task::JoinHandle<Result<(), switchboard::RunError>>,
    pub(crate) _data: tempfile::TempDir,
}

impl Server {
    pub(crate) async fn start(
        runtime: &Handle,
        client: &reqwest::Client,
        hook: &str,
        db: Db,
    ) -> BenchResult<Self> {
        let data = tempfile::tempdir()?;
        let database = match db {
            Db::Sqlite => DatabaseUrl::Sqlite(data.path().join("switchboard.db")),
            Db::Postgres => DatabaseUrl::parse(&crate::postgres::postgres_database())?,
        };
        let mut config = Config::new(database, ADMIN_TOKEN);
        config.dev = true;
        // Bound here, registered with the server runtime's reactor inside its task.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let base = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let task = runtime.spawn({
            let shutdown = shutdown.clone();
            async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                switchboard::run(config, listener, shutdown).await
            }
        });
        let mut server = Self {
            base,
            channel_id: String::new(),
            shutdown,
            task,
            _data: data,
        };
        wait_healthy(client, &server.base).await?;
        let channel = provision(client, &server.base, hook).await?;
        server.channel_id = field(&channel, "id")?;
        Ok(server)
    }

    pub(crate) fn ingest_endpoint(&self) -> BenchResult<Endpoint> {
        let url = format!("{}/admin/channels/{}/events", self.base, self.channel_id);
        let auth = format!("Bearer {ADMIN_TOKEN}");
        Endpoint::new(&url, Some(&auth), StatusCode::ACCEPTED)
    }

    pub(crate) async fn stop(self) -> BenchResult<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

/// Waits until the server at `base` answers `/health`.
pub(crate) async fn wait_healthy(client: &reqwest::Client, base: &str) -> BenchResult<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let health = client.get(format!("{base}/health")).send().await;
        if health.is_ok_and(|r| r.status() == StatusCode::OK) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("the server did not become healthy within 10 s".into())
}

/// The server's commit-duration histogram (`switchboard_store_commit_duration_seconds`):
/// each bucket's upper bound and cumulative count, `+Inf` last; empty from a build before
/// the histogram (`BENCH_SERVER_BIN` may run an older one).
pub(crate) async fn commit_durations(
    client: &reqwest::Client,
    base: &str,
) -> BenchResult<Vec<(f64, u64)>> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let prefix = "switchboard_store_commit_duration_seconds_bucket{le=\"";
    Ok(text
        .lines()
        .filter_map(|line| {
            let (bound, count) = line.strip_prefix(prefix)?.split_once("\"} ")?;
            let bound = match bound {
                "+Inf" => f64::INFINITY,
                finite => finite.parse().ok()?,
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect())
}

/// Partner → WABA → channel at the server at `base`, and the channel's webhook pointed at
/// `hook`; the channel as the API showed it.
pub(crate) async fn provision(
    client: &reqwest::Client,
    base: &str,
    hook: &str,
) -> BenchResult<Value> {
    let admin = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
    };
    let partner = created(admin("/admin/partners", json!({"name": "Bench"}))).await?;
    let partner_id = field(&partner, "id")?;
    let waba = created(admin(
        &format!("/admin/partners/{partner_id}/wabas"),
        json!({}),
    ))
    .await?;
    let waba_id = waba["waba_id"].as_i64().ok_or("no waba_id")?;
    let channel = created(admin(
        &format!("/admin/wabas/{waba_id}/channels"),
        json!({"phone_number": "+4915100000001"}),
    ))
    .await?;
    let webhook = client
        .post(format!("{base}/v1/configs/webhook"))
        .header("D360-API-KEY", field(&channel, "api_key")?)
        .json(&json!({ "url": hook }))
        .send()
        .await?;
    if webhook.status() != StatusCode::OK {
        return Err(format!("setting the webhook: {}", webhook.text().await?).into());
    }
    Ok(channel)
}

pub(crate) async fn created(request: reqwest::RequestBuilder) -> BenchResult<Value> {
    let response = request.send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if status != StatusCode::CREATED {
        return Err(format!("provisioning answered {status}: {body}").into());
    }
    Ok(body)
}

pub(crate) fn field(body: &Value, name: &str) -> BenchResult<String> {
    Ok(body[name]
        .as_str()
        .ok_or(format!("no {name} in {body}"))?
        .to_owned())
}

// ---------------------------------------------------------------- the receiver

/// What the receiver saw of the current batch of ids; shared with the load generator,
/// which stamps each id's send (or scheduled) time so the receiver can time its delivery.
pub(crate) struct Tracker {
    pub(crate) epoch: Instant,
    pub(crate) batch: Mutex<Batch>,
}

#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) base: u64,
    pub(crate) sent_at: Arc<Vec<AtomicU64>>,
    pub(crate) seen: Vec<bool>,
    pub(crate) distinct: usize,
    pub(crate) duplicates: usize,
    pub(crate) last: Option<Instant>,
    pub(crate) latencies: Vec<u64>,
    /// When each id first arrived ([`Tracker::stamp`]; 0: not yet).
    pub(crate) received_at: Vec<u64>,
}

/// How the deliveries of one batch went.
#[derive(Debug, Clone, Default)]
pub(crate) struct Delivered {
    pub(crate) distinct: usize,
    pub(crate) duplicates: usize,
    pub(crate) expected: usize,
    /// When the last distinct id arrived.
    pub(crate) last: Option<Instant>,
    /// Sent (or scheduled) → received at the receiver, µs.
    pub(crate) latency: Percentiles,
    /// Last delivery − last send (or last scheduled send); negative never happens.
    pub(crate) after_last_send: Option<Duration>,
}

impl Tracker {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            batch: Mutex::new(Batch::default()),
        }
    }

    /// Starts counting ids `base..base + n`; returns the slots for their send times.
    pub(crate) fn begin(&self, base: u64, n: usize) -> Arc<Vec<AtomicU64>> {
        let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let mut batch = self.batch.lock().expect("tracker lock");
        *batch = Batch {
            base,
            sent_at: Arc::clone(&sent_at),
            seen: vec![false; n],
            latencies: Vec::with_capacity(n),
            received_at: vec![0; n],
            ..Batch::default()
        };
        sent_at
    }

    /// Nanoseconds since the epoch, plus one so that 0 means "not stamped".
    pub(crate) fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1
    }

    pub(crate) fn record(&self, id: u64) {
        let now = Instant::now();
        let received = self.stamp(now);
        let mut batch = self.batch.lock().expect("tracker lock");
        let Some(index) = id.checked_sub(batch.base).map(|i| i as usize) else {
            return;
        };
        match batch.seen.get(index) {
            Some(false) => {}
            Some(true) => {
                batch.duplicates += 1;
                return;
            }
            None => return,
        }
        batch.seen[index] = true;
        batch.received_at[index] = received;
        batch.distinct += 1;
        batch.last = Some(now);
        let sent = batch.sent_at[index].load(Ordering::Acquire);
        if sent > 0 {
            batch.latencies.push(received.saturating_sub(sent) / 1_000);
        }
    }

    /// When each id of the batch first arrived ([`Tracker::stamp`]; 0: not yet).
    pub(crate) fn received(&self) -> Vec<u64> {
        self.batch.lock().expect("tracker lock").received_at.clone()
    }

    /// Waits until `expected` distinct ids arrived, or `drain` after now.
    pub(crate) async fn wait(
        &self,
        expected: usize,
        last_send: Instant,
        drain: Duration,
    ) -> Delivered {
        let deadline = Instant::now() + drain;
        loop {
            let done = self.batch.lock().expect("tracker lock").distinct >= expected;
            if done || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut batch = self.batch.lock().expect("tracker lock");
        Delivered {
            distinct: batch.distinct,
            duplicates: batch.duplicates,
            expected,
            last: batch.last,
            latency: Percentiles::of(&mut batch.latencies),
            after_last_send: batch.last.map(|l| l.saturating_duration_since(last_send)),
        }
    }
}

/// The tag after `wamid.` of the headline scenario's unique ids (`payloads::unique_wamid`).
pub(crate) const WAMID_TAG: &[u8] = b"HBgNU1dC";

/// The event id in a body: the first `wamid.<digits>` (the in-process scenarios' bodies) or
/// `wamid.HBgNU1dC<16 hex digits>` (the headline's); other wamids, such as the `context` of
/// a reply, are skipped.
pub(crate) fn wamid(body: &[u8]) -> Option<u64> {
    let mut rest = body;
    while let Some(at) = rest.windows(6).position(|w| w == b"wamid.") {
        rest = &rest[at + 6..];
        if let Some(tagged) = rest.strip_prefix(WAMID_TAG) {
            let hex = std::str::from_utf8(tagged.get(..16)?).ok()?;
            return u64::from_str_radix(hex, 16).ok();
        }
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 {
            return std::str::from_utf8(&rest[..digits]).ok()?.parse().ok();
        }
    }
    None
}

/// The ingest body: a WhatsApp `value` with one inbound text message.
pub(crate) fn event_body(id: u64) -> Bytes {
    Bytes::from(format!(
        concat!(
            r#"{{"contacts":[{{"profile":{{"name":"Bench"}},"wa_id":"4915100000002"}}],"#,
            r#""messages":[{{"from":"4915100000002","id":"wamid.{}","timestamp":"1700000000","#,
            r#""type":"text","text":{{"body":"hello"}}}}]}}"#
        ),
        id
    ))
}
