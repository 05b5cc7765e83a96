//! The listening sockets: bound from the config's `listen` and `admin_listen`, or passed by the
//! process that started the router (systemd socket activation: `LISTEN_FDS` and `LISTEN_PID`).
//!
//! Passed sockets are taken by position: the first (fd 3) is the ingress listener, the second
//! (fd 4), if there is one, the admin listener; `LISTEN_FDNAMES` is not read. A listener that is
//! passed replaces its address in the config; one that is not is bound as usual. Because the
//! service manager keeps the socket open while one router process hands over to the next, the
//! kernel holds new connections in the listen backlog instead of refusing them.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Why a passed socket cannot be used, or a listener cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// More sockets were passed than the router has listeners.
    #[error(
        "LISTEN_FDS passes {0} sockets; the router takes one (the ingress listener) or two (ingress, then admin)"
    )]
    TooMany(usize),
    /// A passed descriptor is not a TCP socket that listens.
    #[error(
        "the {what} socket passed as fd {fd} cannot be used: {cause} (pass a listening TCP socket: `Accept=no`, `ListenStream=`)"
    )]
    Passed {
        /// Which listener.
        what: &'static str,
        /// Its descriptor number.
        fd: usize,
        /// What is wrong with it.
        cause: std::io::Error,
    },
    /// An address could not be bound. (The OS error is part of the message, not a separate
    /// source, so that a chain printed whole says it once.)
    #[error("cannot listen on {addr} ({what}): {cause}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        cause: std::io::Error,
    },
}

/// The first descriptor of socket activation (`SD_LISTEN_FDS_START`).
const FIRST_FD: usize = 3;

/// A listening socket passed to the router, checked and made non-blocking for tokio.
#[derive(Debug)]
pub struct PassedSocket {
    listener: std::net::TcpListener,
    fd: usize,
}

/// Listening sockets handed to the router by the process that started it; each `None` is bound
/// from the config instead.
#[derive(Debug, Default)]
pub struct PassedSockets {
    /// The ingress listener (fd 3).
    pub ingress: Option<PassedSocket>,
    /// The admin listener (fd 4).
    pub admin: Option<PassedSocket>,
}

impl PassedSockets {
    /// Takes the sockets passed by `LISTEN_FDS` (for this process: `LISTEN_PID`, when set, must
    /// be its pid), and removes those variables from the environment so that no child inherits
    /// them. None passed is not an error: the listeners are then bound from the config.
    ///
    /// Call it before starting any other thread: it changes the environment.
    pub fn from_env() -> Result<PassedSockets, SocketError> {
        let mut fds = listenfd::ListenFd::from_env();
        if fds.len() > 2 {
            return Err(SocketError::TooMany(fds.len()));
        }
        let mut take = |index: usize, what: &'static str| {
            let fd = FIRST_FD + index;
            let passed = |cause| SocketError::Passed { what, fd, cause };
            let Some(listener) = fds.take_tcp_listener(index).map_err(passed)? else {
                return Ok(None);
            };
            let listening = socket2::SockRef::from(&listener)
                .is_listener()
                .map_err(passed)?;
            if !listening {
                return Err(passed(std::io::Error::other(
                    "it does not listen (a connection, or a socket nobody called listen on)",
                )));
            }
            listener.set_nonblocking(true).map_err(passed)?;
            Ok(Some(PassedSocket { listener, fd }))
        };
        Ok(PassedSockets {
            ingress: take(0, "ingress")?,
            admin: take(1, "admin")?,
        })
    }
}

/// The listener `what`: the socket `passed`, or else one bound on `addr`. Call it within the
/// tokio runtime.
pub async fn listener(
    what: &'static str,
    addr: SocketAddr,
    passed: Option<PassedSocket>,
) -> Result<TcpListener, SocketError> {
    let Some(PassedSocket { listener, fd }) = passed else {
        return TcpListener::bind(addr)
            .await
            .map_err(|cause| SocketError::Bind { what, addr, cause });
    };
    let listener =
        TcpListener::from_std(listener).map_err(|cause| SocketError::Passed { what, fd, cause })?;
    tracing::info!(
        listener = what,
        fd,
        "listening on the socket passed by the service manager (the configured address is not bound)"
    );
    Ok(listener)
}

/// The address `listener` (bound on `addr`, or passed) listens on.
pub fn local_addr(
    what: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, SocketError> {
    listener
        .local_addr()
        .map_err(|cause| SocketError::Bind { what, addr, cause })
}
