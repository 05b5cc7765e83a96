//! An nginx relay for the benchmarks: the peer a team could put in front of its services
//! instead of the router. nginx `proxy_pass`es every request to one upstream, with upstream
//! keep-alive, from its own temporary prefix (config, pid file, error log, temp paths) on a
//! free loopback port; dropping it stops nginx and removes the prefix.
//!
//! The binary is Debian's `nginx` (`tests/bench.sh` installs it when missing); none of the
//! package's own configuration or service is used.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running nginx relaying to one upstream.
#[derive(Debug)]
pub struct NginxRelay {
    child: Child,
    addr: SocketAddr,
    prefix: PathBuf,
}

/// The nginx binary, if installed (Debian puts it in /usr/sbin, not on every PATH).
pub fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nginx"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|candidate| candidate.is_file())
}

impl NginxRelay {
    /// Starts nginx (one worker per CPU, as `worker_processes auto`) relaying every request to
    /// `upstream`, and waits until it accepts connections.
    pub fn start(binary: &Path, upstream: SocketAddr) -> Result<NginxRelay> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let prefix = std::env::temp_dir().join(format!(
            "webhook-router-nginx-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&prefix);
        std::fs::create_dir_all(&prefix)
            .with_context(|| format!("cannot create {}", prefix.display()))?;
        let p = prefix.display();
        // Bodies up to 1 MiB stay in memory, so no worker writes a temp file; the keep-alive
        // limits are raised so that neither wrk's connections nor the upstream ones are closed
        // every 1000 requests (nginx's default).
        let config = format!(
            r#"daemon off;
worker_processes auto;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    client_body_buffer_size 1m;
    client_max_body_size 2m;
    keepalive_requests 10000000;
    upstream destination {{
        server {upstream};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://destination;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
        );
        let config_path = prefix.join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let mut relay = NginxRelay {
            child,
            addr,
            prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = relay.child.try_wait()? {
                let log =
                    std::fs::read_to_string(relay.prefix.join("error.log")).unwrap_or_default();
                bail!("nginx exited ({status}) before listening: {log}");
            }
            if Instant::now() >= deadline {
                bail!("nginx did not listen on {addr} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(relay)
    }

    /// The relay's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// CPU time nginx's master and worker processes have used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        let master = self.child.id();
        let mut total = crate::process_stats::cpu_time_of(master)?;
        for worker in crate::process_stats::children_of(master) {
            total += crate::process_stats::cpu_time_of(worker).unwrap_or_default();
        }
        Some(total)
    }
}

impl Drop for NginxRelay {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers before it exits (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}
