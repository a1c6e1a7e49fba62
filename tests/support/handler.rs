//! Starts the real `signup-bridge` binary the way the Functions host does: a free port in
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, `GET /` polled every 25 ms until any response, then
//! invocations to `/{FunctionName}` and forwarded requests to `/api/...`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub const BINARY: &str = env!("CARGO_BIN_EXE_signup-bridge");

/// Settings the handler must not inherit from the developer's shell.
const SCRUBBED: &[&str] = &[
    "ENTRA_TENANT_ID",
    "EXTENSION_APP_ID",
    "EXTENSION_JWKS_URLS",
    "EXTENSION_AUDIENCES",
    "EXTENSION_SKIP_TOKEN_VALIDATION",
    "SIGNUP_RULES_PATH",
    "WEBSITE_INSTANCE_ID",
    "FUNCTIONS_CUSTOMHANDLER_PORT",
];

pub struct RunningHandler {
    child: Child,
    pub base_url: String,
    pub started_in: Duration,
    logs: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(env: &[(&str, &str)], logs: &tempfile::TempDir) -> Command {
    let mut command = Command::new(BINARY);
    command.arg("serve");
    for name in SCRUBBED {
        command.env_remove(name);
    }
    command.env("RUST_LOG", "info");
    // The fakes live on loopback: never send their traffic through a developer's proxy.
    command
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for (name, value) in env {
        command.env(name, value);
    }
    let stdout = std::fs::File::create(logs.path().join("stdout.log")).unwrap();
    let stderr = std::fs::File::create(logs.path().join("stderr.log")).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true);
    command
}

impl RunningHandler {
    /// Starts the handler with these settings and waits for the readiness probe to answer.
    pub async fn start(env: &[(&str, &str)]) -> RunningHandler {
        RunningHandler::start_probing_every(env, Duration::from_millis(25)).await
    }

    /// As [`RunningHandler::start`], with another readiness probe interval (benchmarks use
    /// 1 ms to measure start-up finer than the host's 25 ms).
    pub async fn start_probing_every(env: &[(&str, &str)], probe_interval: Duration) -> RunningHandler {
        let logs = tempfile::tempdir().unwrap();
        let port = free_port();
        let port_text = port.to_string();
        let mut all_env = env.to_vec();
        all_env.push(("FUNCTIONS_CUSTOMHANDLER_PORT", &port_text));
        let started = Instant::now();
        let mut child = command(&all_env, &logs).spawn().expect("the binary starts");
        let base_url = format!("http://127.0.0.1:{port}");
        let probe = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        loop {
            if let Ok(response) = probe.get(format!("{base_url}/")).send().await {
                assert!(response.status().is_success(), "GET / answered {}", response.status());
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let stderr = std::fs::read_to_string(logs.path().join("stderr.log")).unwrap_or_default();
                panic!("the handler exited with {status} before it was ready:\n{stderr}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the handler was not ready within 30 s"
            );
            tokio::time::sleep(probe_interval).await;
        }
        RunningHandler {
            child,
            base_url,
            started_in: started.elapsed(),
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn log_dir(&self) -> PathBuf {
        self.logs.path().to_path_buf()
    }
}

/// Runs `serve` with settings that must stop start-up; returns the exit code and stderr.
pub async fn start_expecting_failure(env: &[(&str, &str)]) -> (i32, String) {
    let logs = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut all_env = env.to_vec();
    all_env.push(("FUNCTIONS_CUSTOMHANDLER_PORT", &port));
    let mut child = command(&all_env, &logs).spawn().expect("the binary starts");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("start-up with bad settings must stop, not serve")
        .unwrap();
    let stderr = std::fs::read_to_string(logs.path().join("stderr.log")).unwrap_or_default();
    (status.code().unwrap_or(-1), stderr)
}

/// An HTTP client for the handler and the fakes: loopback only, so never through a proxy.
pub fn loopback_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Keeps a process's log for the leak scan that `./scripts/test` runs after the suite
/// (no secret and no email may appear in any log line of the whole run).
pub fn keep_log(name: &str, text: &str) {
    if let Some(dir) = std::env::var_os("SIGNUP_TEST_LOG_DIR") {
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let _ = std::fs::write(file, text);
    }
}

impl Drop for RunningHandler {
    fn drop(&mut self) {
        keep_log("handler-stdout", &self.stdout());
        keep_log("handler-stderr", &self.stderr());
    }
}
