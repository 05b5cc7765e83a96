//! A `nats-server` with JetStream for the tests: started on a free loopback port with its store
//! in a directory of its own, stopped and started again on the same port and store (to test an
//! outage), and killed when dropped. `tests/servers.sh` installs the Debian package when the
//! binary is missing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to be ready.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running (or stopped) `nats-server -js`.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    jetstream: bool,
    token: Option<String>,
}

/// Where `nats-server` is: on `PATH`, or where the Debian package puts it.
pub fn binary() -> PathBuf {
    find_binary().unwrap_or_else(|| {
        panic!(
            "nats-server is not installed: run tests/servers.sh (it installs the Debian package \
             nats-server, as root or with sudo -n), or put nats-server on PATH"
        )
    })
}

/// Where `nats-server` is, if it is installed.
pub fn find_binary() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]);
    for dir in candidates {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

impl NatsServer {
    /// Starts a server with JetStream, storing under `dir` (emptied first).
    pub fn start(dir: &Path) -> NatsServer {
        Self::start_with(dir, true, None)
    }

    /// Starts a server with JetStream off (its log under `dir`).
    pub fn start_without_jetstream(dir: &Path) -> NatsServer {
        Self::start_with(dir, false, None)
    }

    /// Starts a server with JetStream that lets in only clients with `token`.
    pub fn start_with_token(dir: &Path, token: &str) -> NatsServer {
        Self::start_with(dir, true, Some(token.to_owned()))
    }

    fn start_with(dir: &Path, jetstream: bool, token: Option<String>) -> NatsServer {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("create the NATS store directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = NatsServer {
            child: None,
            port,
            dir: dir.to_path_buf(),
            jetstream,
            token,
        };
        server.resume();
        server
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): clients see the connection drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store, and waits until it is ready.
    pub fn resume(&mut self) {
        self.stop();
        let log = self.dir.join("nats-server.log");
        let _ = std::fs::remove_file(&log);
        let mut command = Command::new(binary());
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.jetstream {
            command.arg("-js").arg("-sd").arg(self.dir.join("store"));
        }
        if let Some(token) = &self.token {
            command.arg("--auth").arg(token);
        }
        let child = command
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server is ready") {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("nats-server exited ({status}): {text}");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server was not ready in time: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
