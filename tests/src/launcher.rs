//! A small stand-in for systemd's socket activation: it holds listening sockets for as long as
//! it lives and starts `webhook-router serve` processes on them, one after another, so that the
//! kernel queues the connections that arrive while one process hands over to the next.
//!
//! The sockets reach the child as systemd passes them: the ingress socket at fd 3 and the admin
//! socket at fd 4, `LISTEN_FDS` their count and `LISTEN_PID` the child's pid. `command-fds` maps
//! them onto those numbers in the forked child (our sockets stay close-on-exec, so no other
//! process a test starts meanwhile inherits them), and a `sh` in between sets `LISTEN_PID` to its
//! own pid before it `exec`s the router, which keeps that pid.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;

use command_fds::{CommandFdExt, FdMapping};
use socket2::{Domain, Socket, Type};

use crate::RouterProcess;

/// The listen backlog: connections the kernel completes and queues while no process accepts.
/// (systemd's default, `Backlog=`, is the kernel's `somaxconn`: 4096 on current kernels.)
pub const BACKLOG: i32 = 1024;

/// Listening sockets on ephemeral loopback ports, held across router processes.
#[derive(Debug)]
pub struct SocketHolder {
    ingress: TcpListener,
    admin: TcpListener,
}

impl SocketHolder {
    /// Binds and listens on `127.0.0.1:0` for the ingress and for the admin listener.
    pub fn bind() -> SocketHolder {
        SocketHolder {
            ingress: listening_socket(),
            admin: listening_socket(),
        }
    }

    /// The ingress socket's address.
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress.local_addr().expect("ingress address")
    }

    /// The admin socket's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("admin address")
    }

    /// Runs `binary serve --config config` on the held sockets (fd 3 ingress, fd 4 admin) and
    /// waits until it listens.
    pub fn start(&self, binary: &Path, config: &Path) -> RouterProcess {
        RouterProcess::spawn(serve_command(
            binary,
            config,
            vec![duplicate(&self.ingress), duplicate(&self.admin)],
        ))
    }
}

/// The command that runs `binary serve --config config` with `sockets` passed as socket
/// activation passes them: at fd 3, 4, … with `LISTEN_FDS` and `LISTEN_PID` set.
pub fn serve_command(binary: &Path, config: &Path, sockets: Vec<OwnedFd>) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("export LISTEN_PID=$$; exec \"$0\" serve --config \"$1\"")
        .arg(binary)
        .arg(config)
        .env("LISTEN_FDS", sockets.len().to_string());
    let mappings = (3..)
        .zip(sockets)
        .map(|(child_fd, parent_fd)| FdMapping {
            parent_fd,
            child_fd,
        })
        .collect();
    command
        .fd_mappings(mappings)
        .expect("distinct child descriptors");
    command
}

/// A TCP socket listening on an ephemeral loopback port with a [`BACKLOG`].
pub fn listening_socket() -> TcpListener {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&addr.into()).expect("bind");
    socket.listen(BACKLOG).expect("listen");
    socket.into()
}

/// A close-on-exec duplicate of `listener`, for one child (dropped with its `Command`).
fn duplicate(listener: &TcpListener) -> OwnedFd {
    listener.try_clone().expect("duplicate the socket").into()
}
