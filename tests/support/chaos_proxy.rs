//! A TCP proxy in front of a fake that adds latency and fails at random, from a seed: it
//! drops the connection before a request reaches the fake or after the fake answered (the
//! answer is lost), stalls until the client gives up, and, for plain-HTTP fakes, answers
//! 429 with `Retry-After`, 500 or 503 itself. Works on bytes, so TLS passes through
//! untouched (then only the connection-level faults apply). Counts what it did and the
//! most connections open at once. Runs on its own thread; dropping it stops it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The connection closes before the request is forwarded.
    DropBeforeRequest,
    /// The request is forwarded and answered; the answer is lost with the connection.
    DropAfterRequest,
    /// Nothing comes back for the stall time, then the connection closes.
    Stall,
    TooManyRequests,
    InternalServerError,
    ServiceUnavailable,
}

const HTTP_FAULTS: [Fault; 3] = [
    Fault::TooManyRequests,
    Fault::InternalServerError,
    Fault::ServiceUnavailable,
];
const CONNECTION_FAULTS: [Fault; 3] = [Fault::DropBeforeRequest, Fault::DropAfterRequest, Fault::Stall];

#[derive(Debug, Clone)]
pub struct Plan {
    /// Added before each request is forwarded, uniformly between the two.
    pub latency: Option<(Duration, Duration)>,
    /// Chance that a request meets a fault, 0 to 1.
    pub fault_rate: f64,
    /// The fake speaks plain HTTP, so the proxy can answer with an HTTP error itself.
    pub http_faults: bool,
    pub stall: Duration,
    pub seed: u64,
}

impl Plan {
    pub fn latency(min: Duration, max: Duration, seed: u64) -> Plan {
        Plan {
            latency: Some((min, max)),
            fault_rate: 0.0,
            http_faults: false,
            stall: Duration::ZERO,
            seed,
        }
    }

    pub fn faults(fault_rate: f64, http_faults: bool, stall: Duration, seed: u64) -> Plan {
        Plan {
            latency: None,
            fault_rate,
            http_faults,
            stall,
            seed,
        }
    }
}

struct Shared {
    plan: Mutex<(Plan, fastrand::Rng)>,
    faults: Mutex<BTreeMap<Fault, usize>>,
    requests: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
}

impl Shared {
    /// The delay and the fault (if any) for the next request.
    fn roll(&self) -> (Duration, Option<Fault>) {
        let mut guard = self.plan.lock().unwrap();
        let (plan, rng) = &mut *guard;
        let delay = plan.latency.map_or(Duration::ZERO, |(min, max)| {
            let spread = max.saturating_sub(min).as_micros() as u64;
            min + Duration::from_micros(rng.u64(0..=spread))
        });
        let fault = (plan.fault_rate > 0.0 && rng.f64() < plan.fault_rate).then(|| {
            let kinds: Vec<Fault> = CONNECTION_FAULTS
                .iter()
                .chain(if plan.http_faults { &HTTP_FAULTS[..] } else { &[] })
                .copied()
                .collect();
            kinds[rng.usize(0..kinds.len())]
        });
        if let Some(fault) = fault {
            *self.faults.lock().unwrap().entry(fault).or_default() += 1;
        }
        (delay, fault)
    }
}

pub struct ChaosProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChaosProxy {
    pub fn start(upstream: SocketAddr, plan: Plan) -> ChaosProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let rng = fastrand::Rng::with_seed(plan.seed);
        let shared = Arc::new(Shared {
            plan: Mutex::new((plan, rng)),
            faults: Mutex::new(BTreeMap::new()),
            requests: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            max_open: AtomicUsize::new(0),
        });
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let thread_shared = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            tokio::spawn(relay(client, upstream, thread_shared.clone()));
                        }
                    }
                }
            });
        });
        ChaosProxy {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The proxy's address with `upstream`'s scheme and path.
    pub fn url_for(&self, upstream: &Url) -> Url {
        let mut url = upstream.clone();
        url.set_port(Some(self.addr.port())).expect("a port can be set");
        url
    }

    pub fn set_plan(&self, plan: Plan) {
        let rng = fastrand::Rng::with_seed(plan.seed);
        *self.shared.plan.lock().unwrap() = (plan, rng);
    }

    pub fn faults(&self) -> BTreeMap<Fault, usize> {
        self.shared.faults.lock().unwrap().clone()
    }

    pub fn fault_count(&self) -> usize {
        self.faults().values().sum()
    }

    /// Client writes seen (about one per request).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The most client connections open at the same moment.
    pub fn max_open_connections(&self) -> usize {
        self.shared.max_open.load(Ordering::Relaxed)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The raw HTTP answer the proxy gives for an HTTP-level fault.
fn http_error(fault: Fault) -> Option<Vec<u8>> {
    let (status, extra_header, body) = match fault {
        Fault::TooManyRequests => (
            "429 Too Many Requests",
            "retry-after: 1\r\n",
            r#"{"error":{"type":"rate_limit_error","message":"slow down"}}"#,
        ),
        Fault::InternalServerError => (
            "500 Internal Server Error",
            "",
            r#"{"error":{"type":"api_error","message":"broken"}}"#,
        ),
        Fault::ServiceUnavailable => (
            "503 Service Unavailable",
            "",
            r#"{"error":{"type":"api_error","message":"overloaded"}}"#,
        ),
        _ => return None,
    };
    Some(
        format!(
            "HTTP/1.1 {status}\r\n{extra_header}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

async fn relay(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
    shared.max_open.fetch_max(open, Ordering::Relaxed);
    if let Ok(server) = TcpStream::connect(upstream).await {
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let lose_answer = AtomicBool::new(false);
        let client_write = tokio::sync::Mutex::new(&mut client_write);
        let requests = async {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                let read = match client_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => read,
                };
                shared.requests.fetch_add(1, Ordering::Relaxed);
                let (delay, fault) = shared.roll();
                tokio::time::sleep(delay).await;
                match fault {
                    Some(Fault::DropBeforeRequest) => return,
                    Some(Fault::Stall) => {
                        let stall = shared.plan.lock().unwrap().0.stall;
                        tokio::time::sleep(stall).await;
                        return;
                    }
                    Some(Fault::DropAfterRequest) => lose_answer.store(true, Ordering::Relaxed),
                    Some(other) => {
                        if let Some(answer) = http_error(other) {
                            let _ = client_write.lock().await.write_all(&answer).await;
                        }
                        return;
                    }
                    None => {}
                }
                if server_write.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
        };
        let answers = async {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                let read = match server_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => read,
                };
                if lose_answer.load(Ordering::Relaxed) {
                    return;
                }
                if client_write.lock().await.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
        };
        // Whichever side ends first closes both connections.
        tokio::select! {
            _ = requests => {}
            _ = answers => {}
        }
    }
    shared.open.fetch_sub(1, Ordering::Relaxed);
}
