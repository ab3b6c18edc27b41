//! Parity E8: the shipped unit files (`systemd/localrpc-echo@.socket` and `.service`) work
//! under a real systemd user manager: `systemctl --user start localrpc-echo@demo.socket`, then
//! the first client starts the service, which echoes on the stream and the datagram socket.
//! One test function: the user manager is a machine-wide resource (see
//! `localrpc_testkit::user_manager`, which also serializes across test binaries).

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use localrpc_testkit::user_manager::UserManager;

const TIMEOUT: Duration = Duration::from_secs(15);

#[test]
fn e8_echo_units_under_a_user_manager() {
    let manager = match UserManager::start() {
        Ok(manager) => manager,
        Err(reason) => {
            localrpc_testkit::skip("e8_echo_units_under_a_user_manager", &reason);
            return;
        }
    };
    let bindir = manager
        .install_binary(std::path::Path::new(env!("CARGO_BIN_EXE_localrpc-echo")))
        .unwrap();
    let units = localrpc_testkit::workspace_root().join("systemd");
    let bindir = bindir.display().to_string();
    manager
        .install_units_from(
            &units,
            &["localrpc-echo@.socket", "localrpc-echo@.service"],
            &[("@BINDIR@", &bindir)],
        )
        .unwrap();
    // Test-only additions: free tcp/udp ports (the shipped example override uses port 3000 and
    // vsock), and debug lines into a file (no journal here).
    let tcp_port = free_port();
    let udp_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = manager.runtime_dir().join("echo-demo.log");
    manager
        .install_unit(
            "localrpc-echo@demo.socket.d/test.conf",
            &format!(
                "[Socket]\nListenStream=127.0.0.1:{tcp_port}\nListenDatagram=127.0.0.1:{udp_port}\n"
            ),
            &[],
        )
        .unwrap();
    manager
        .install_unit(
            "localrpc-echo@demo.service.d/test.conf",
            &format!(
                "[Service]\nExecStart=\nExecStart={bindir}/localrpc-echo --sdnotify --debug\n\
                 StandardError=append:{}\n",
                log.display()
            ),
            &[],
        )
        .unwrap();
    manager.systemctl_ok(&["daemon-reload"]).unwrap();
    manager
        .systemctl_ok(&["start", "localrpc-echo@demo.socket"])
        .unwrap();
    assert_eq!(manager.state("localrpc-echo@demo.socket"), "active");
    assert_eq!(
        manager.state("localrpc-echo@demo.service"),
        "inactive",
        "started before any client"
    );

    let stream_path = manager.runtime_dir().join("localrpc-echo/stream.demo");
    let dgram_path = manager.runtime_dir().join("localrpc-echo/datagram.demo");
    let mut stream = UnixStream::connect(&stream_path).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(b"hello\n").unwrap();
    let mut back = [0u8; 6];
    stream.read_exact(&mut back).unwrap_or_else(|e| {
        panic!(
            "no echo: {e}: {}",
            manager.status("localrpc-echo@demo.service")
        )
    });
    assert_eq!(&back, b"hello\n");
    assert!(
        manager.wait_for_state("localrpc-echo@demo.service", "active", TIMEOUT),
        "{}",
        manager.status("localrpc-echo@demo.service")
    );

    // The datagram socket: the service (running as the test user) replies to our bound socket,
    // so it must be able to reach it.
    let client_dir = localrpc_testkit::temp_dir();
    std::fs::set_permissions(client_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let client_path = client_dir.path().join("client.sock");
    let client = UnixDatagram::bind(&client_path).unwrap();
    std::fs::set_permissions(&client_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.send_to(b"datagram", &dgram_path).unwrap();
    let mut buffer = [0u8; 64];
    let n = client
        .recv(&mut buffer)
        .unwrap_or_else(|e| panic!("no datagram echo: {e}"));
    assert_eq!(&buffer[..n], b"datagram");

    // tcp and udp sockets from a drop-in.
    let mut tcp = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.write_all(b"tcp").unwrap();
    let mut back = [0u8; 3];
    tcp.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"tcp");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(TIMEOUT)).unwrap();
    udp.send_to(b"udp", ("127.0.0.1", udp_port)).unwrap();
    let n = udp.recv(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"udp");

    let debug = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        debug.contains("Bytes received = 6, File descriptor name = \"localrpc-echo@demo.socket\""),
        "debug lines name the socket unit: {debug}"
    );

    // Stopping the service keeps the sockets; the next client starts it again.
    drop((stream, tcp));
    manager
        .systemctl_ok(&["stop", "localrpc-echo@demo.service"])
        .unwrap();
    assert_eq!(manager.state("localrpc-echo@demo.socket"), "active");
    assert!(
        stream_path.exists() && dgram_path.exists(),
        "stopping the service keeps the socket files"
    );
    let mut stream = UnixStream::connect(&stream_path).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(b"again").unwrap();
    let mut back = [0u8; 5];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"again");
    manager
        .systemctl_ok(&[
            "stop",
            "localrpc-echo@demo.socket",
            "localrpc-echo@demo.service",
        ])
        .unwrap();
    assert!(
        !stream_path.exists(),
        "RemoveOnStop=yes removes the socket file with the socket unit"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
