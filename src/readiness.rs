//! Readiness for a service manager: systemd's `NOTIFY_SOCKET` protocol (`sd_notify`), so a
//! `Type=notify` unit counts Switchboard as started only once it can serve, and sees its
//! graceful stop begin.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket named by
//! `NOTIFY_SOCKET`: a path (`/run/systemd/notify`) or, on Linux, an abstract name written
//! `@name`. It is a dozen lines over std's `UnixDatagram`, so no crate. A notice that
//! cannot be sent is logged and the service goes on: readiness is advice to the manager,
//! never a reason to stop serving.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

/// The environment variable a service manager sets to the socket it listens on.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where the notices go: nowhere (no service manager asked), or one socket.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Target>,
}

/// The socket named by `NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket name (`@name` in the variable, without the `@`).
    Abstract(Vec<u8>),
    /// A value this module cannot use (e.g. systemd's `vsock:` form); told once when used.
    Unsupported(OsString),
}

impl Notifier {
    /// A notifier that tells nothing: for tests and embedders that run no service manager.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// The notifier the process environment asks for: `NOTIFY_SOCKET` if set and not
    /// empty, else disabled.
    pub fn from_env() -> Self {
        Self {
            target: std::env::var_os(NOTIFY_SOCKET).and_then(|value| Target::parse(&value)),
        }
    }

    /// `READY=1`: the listener is bound and the store is open, so requests will be served.
    pub fn ready(&self) {
        self.send("READY=1\n");
    }

    /// `STOPPING=1`: a graceful stop began; requests in flight finish within the grace.
    pub fn stopping(&self) {
        self.send("STOPPING=1\n");
    }

    /// Sends one notice; a failure is logged, never returned.
    fn send(&self, notice: &str) {
        let Some(target) = &self.target else { return };
        if let Err(error) = target.send(notice.as_bytes()) {
            tracing::warn!(
                %error,
                socket = ?target,
                notice = notice.trim_end(),
                "cannot tell the service manager (NOTIFY_SOCKET)"
            );
        }
    }
}

impl Target {
    /// Reads a `NOTIFY_SOCKET` value; an empty one means none.
    fn parse(value: &std::ffi::OsStr) -> Option<Self> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = value.as_bytes();
        match bytes.first() {
            None => None,
            Some(b'/') => Some(Self::Path(PathBuf::from(value))),
            Some(b'@') => Some(Self::Abstract(bytes[1..].to_vec())),
            Some(_) => Some(Self::Unsupported(value.to_owned())),
        }
    }

    /// One datagram from an unbound, non-blocking socket: a manager that does not read
    /// makes the send fail rather than stall a runtime thread.
    fn send(&self, datagram: &[u8]) -> io::Result<()> {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        let sent = match self {
            Self::Path(path) => socket.send_to(datagram, path)?,
            Self::Abstract(name) => socket.send_to_addr(datagram, &abstract_address(name)?)?,
            Self::Unsupported(value) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("unsupported NOTIFY_SOCKET {value:?}: expected /path or @name"),
                ))
            }
        };
        if sent != datagram.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the notice was cut short",
            ));
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names (@name) exist on Linux only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn notify_socket_values_are_paths_abstract_names_or_unsupported() {
        assert_eq!(Target::parse(OsStr::new("")), None);
        assert_eq!(
            Target::parse(OsStr::new("/run/systemd/notify")),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            Target::parse(OsStr::new("@sd-notify")),
            Some(Target::Abstract(b"sd-notify".to_vec()))
        );
        assert!(matches!(
            Target::parse(OsStr::new("vsock:2:1234")),
            Some(Target::Unsupported(_))
        ));
    }

    #[test]
    fn a_notice_reaches_a_path_socket_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        Target::Path(path).send(b"READY=1\n").unwrap();
        let mut buffer = [0; 64];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1\n");
        let missing = Target::Path(dir.path().join("absent.sock"));
        assert!(missing.send(b"READY=1\n").is_err());
        assert!(Target::Unsupported("vsock:1:2".into())
            .send(b"READY=1\n")
            .is_err());
    }
}
