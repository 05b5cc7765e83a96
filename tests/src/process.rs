//! A `webhook-router serve` process, run as an operator runs it: started on a config file,
//! signalled (SIGHUP, SIGTERM, SIGKILL), its stderr read line by line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Patience for what should take milliseconds on an idle machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running `serve` process, its addresses (as `127.0.0.1:port`) and its stderr.
#[derive(Debug)]
pub struct RouterProcess {
    child: Child,
    /// The ingress address.
    pub ingress: String,
    /// The admin address.
    pub admin: String,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl RouterProcess {
    /// Runs `binary serve --config config` (with `RUST_LOG=info`) and waits until it listens.
    pub fn start(binary: &Path, config: &Path) -> RouterProcess {
        let mut command = Command::new(binary);
        command.args(["serve", "--config"]).arg(config);
        Self::spawn(command)
    }

    /// Like [`RouterProcess::start`], with `args` after the config (e.g. `--watch`).
    pub fn start_with_args(binary: &Path, config: &Path, args: &[&str]) -> RouterProcess {
        let mut command = Command::new(binary);
        command.args(["serve", "--config"]).arg(config).args(args);
        Self::spawn(command)
    }

    /// Like [`RouterProcess::start`], with `env` added to the process's environment (a
    /// `RUST_LOG` there replaces `info`).
    pub fn start_with_env(binary: &Path, config: &Path, env: &[(&str, &str)]) -> RouterProcess {
        let mut command = Command::new(binary);
        command.args(["serve", "--config"]).arg(config);
        command.envs(env.iter().copied());
        Self::spawn(command)
    }

    /// Like [`RouterProcess::start`], with the process's descriptor limit (soft and hard
    /// `RLIMIT_NOFILE`) set to `limit` by the shell that starts it.
    pub fn start_with_descriptor_limit(binary: &Path, config: &Path, limit: u64) -> RouterProcess {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "ulimit -n {limit} && exec \"$0\" serve --config \"$1\""
            ))
            .arg(binary)
            .arg(config);
        Self::spawn(command)
    }

    /// Like [`RouterProcess::start`], its stderr (the log, `RUST_LOG=info`) appended to the file
    /// `log` instead of read by the test, as an operator's service writes its log.
    pub fn start_logging_to(binary: &Path, config: &Path, log: &Path) -> RouterProcess {
        let mut command = Command::new(binary);
        command.args(["serve", "--config"]).arg(config);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        Self::spawn_with_stderr(command, Some(file))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `command` (a `serve` with its config, possibly through a shell) and waits until it
    /// listens.
    pub(crate) fn spawn(command: Command) -> RouterProcess {
        Self::spawn_with_stderr(command, None)
    }

    /// [`RouterProcess::spawn`], stderr going to `log` if given (and then never read).
    fn spawn_with_stderr(mut command: Command, log: Option<std::fs::File>) -> RouterProcess {
        let to_file = log.is_some();
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log.map_or_else(Stdio::piped, Stdio::from))
            .spawn()
            .expect("run webhook-router serve");
        let stderr = if to_file {
            mpsc::channel().1
        } else {
            lines(child.stderr.take().expect("stderr"))
        };
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let mut process = RouterProcess {
            child,
            ingress: String::new(),
            admin: String::new(),
            stderr,
            seen: Vec::new(),
        };
        if line.is_empty() {
            let status = process.child.wait().expect("wait");
            process.seen.extend(process.stderr.iter());
            panic!(
                "serve exited ({status}) before listening: {:#?}",
                process.seen
            );
        }
        // "webhook-router listening: webhooks on http://A, admin on https://B"
        let address = |label: &str| {
            let at = line
                .find(label)
                .unwrap_or_else(|| panic!("{label} in {line:?}"))
                + label.len();
            let url = line[at..].split([',', '\n']).next().expect("address");
            let address = url.split_once("://").map_or(url, |(_, address)| address);
            // A wildcard address is reached on loopback.
            address.replace("0.0.0.0:", "127.0.0.1:")
        };
        process.ingress = address("webhooks on ");
        process.admin = address("admin on ");
        process
    }

    /// Sends the signal `name` (`HUP`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for a stderr line containing `text`; returns it.
    pub fn wait_for_log(&mut self, text: &str) -> String {
        loop {
            if let Some(line) = self.seen.iter().find(|line| line.contains(text)) {
                return line.clone();
            }
            let line = self
                .stderr
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("no log line with {text:?} in {:#?}", self.seen));
            self.seen.push(line);
        }
    }

    /// Stops the router with SIGTERM; whether it exited successfully, and every stderr line.
    pub fn stop(self) -> (bool, Vec<String>) {
        let (status, log) = self.end("TERM");
        (status.success(), log)
    }

    /// Kills the router with SIGKILL; every stderr line it wrote.
    pub fn kill(self) -> Vec<String> {
        self.end("KILL").1
    }

    fn end(mut self, signal: &str) -> (ExitStatus, Vec<String>) {
        self.signal(signal);
        let status = self.child.wait().expect("wait for serve");
        self.seen.extend(self.stderr.iter());
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        // A test that failed half-way leaves no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}
