//! `NOTIFY_SOCKET` readiness of the real binary: `READY=1` once it serves, `STOPPING=1` when
//! SIGTERM starts its graceful stop; a socket that cannot be reached is logged, not fatal.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;

use crate::cli::{start_binary, start_binary_logged};

const DEADLINE: Duration = Duration::from_secs(30);

/// The next notice the server sends, within the deadline.
async fn next_notice(socket: &UnixDatagram) -> String {
    let mut buffer = vec![0; 4096];
    let received = tokio::time::timeout(DEADLINE, socket.recv(&mut buffer))
        .await
        .expect("no notice from the server within 30 s")
        .expect("recv");
    String::from_utf8(buffer[..received].to_vec()).expect("a UTF-8 notice")
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_for_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn database_in(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("sb.db").display())
}

#[tokio::test]
async fn serve_tells_notify_socket_ready_once_it_serves_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let (mut child, base) = start_binary(&database_in(&dir), &[], |command| {
        command.env("NOTIFY_SOCKET", &path);
    });

    assert_eq!(next_notice(&socket).await, "READY=1\n");
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200, "ready means /health answers");

    sigterm(&child);
    assert_eq!(next_notice(&socket).await, "STOPPING=1\n");
    assert!(
        wait_for_exit(&mut child).success(),
        "a graceful stop exits 0"
    );
}

#[tokio::test]
async fn an_abstract_notify_socket_name_gets_the_notices_too() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("switchboard-test-{}-abstract", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let std_socket = std::os::unix::net::UnixDatagram::bind_addr(&address).unwrap();
    std_socket.set_nonblocking(true).unwrap();
    let socket = UnixDatagram::from_std(std_socket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _base) = start_binary(&database_in(&dir), &[], |command| {
        command.env("NOTIFY_SOCKET", format!("@{name}"));
    });

    assert_eq!(next_notice(&socket).await, "READY=1\n");
    sigterm(&child);
    assert_eq!(next_notice(&socket).await, "STOPPING=1\n");
    assert!(wait_for_exit(&mut child).success());
}

#[tokio::test]
async fn a_notify_socket_that_cannot_be_reached_is_logged_and_the_server_serves() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.sock");
    let (mut child, base, log) = start_binary_logged(&database_in(&dir), &[], |command| {
        command.env("NOTIFY_SOCKET", &absent);
    });

    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let deadline = Instant::now() + DEADLINE;
    while !log
        .lock()
        .unwrap()
        .contains("cannot tell the service manager")
    {
        assert!(Instant::now() < deadline, "no warning about NOTIFY_SOCKET");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigterm(&child);
    assert!(wait_for_exit(&mut child).success());
}
