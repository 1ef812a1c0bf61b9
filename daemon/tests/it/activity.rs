//! The activity sampler against real sockets and ptys on this host: loopback
//! TCP clients that talk, idle, or make one short request, and ptys that are
//! written to, read from, or left alone.
//!
//! Every TCP test listens on its own ephemeral port and samples only that
//! port, so tests running in parallel (and whatever else runs on the host)
//! cannot disturb each other. Terminal tests check their own pty by name.

use std::fs::{File, FileTimes, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::thread;
use std::time::{Duration, SystemTime};

use nix::fcntl::OFlag;
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use soong_daemon::activity::{
    ActivitySample, ActivitySampler, ActivitySource, PortFilter, SamplerConfig, active_terminals,
};

const WINDOW: Duration = Duration::from_secs(2);

fn tcp_sampler(ports: &[u16]) -> ActivitySampler {
    ActivitySampler::new(SamplerConfig {
        ports: ports.to_vec(),
        terminals: false,
        window: WINDOW,
    })
    .unwrap()
}

fn sample(sampler: &mut ActivitySampler) -> ActivitySample {
    sampler.sample(SystemTime::now()).unwrap()
}

fn listen(addr: SocketAddr) -> (TcpListener, u16) {
    let listener = TcpListener::bind(addr).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn loopback_v4() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

/// A connected pair: (client, server side).
fn connect(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// One request and response over an open connection.
fn round_trip(client: &mut TcpStream, server: &mut TcpStream) {
    let mut buf = [0u8; 64];
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let n = server.read(&mut buf).unwrap();
    assert!(n > 0);
    server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
    let n = client.read(&mut buf).unwrap();
    assert!(n > 0);
}

#[allow(clippy::unnecessary_wraps)] // compared against `ActivitySample::activity`
fn connection(port: u16) -> Option<ActivitySource> {
    Some(ActivitySource::Connection { port })
}

#[test]
fn client_that_keeps_talking_is_activity_every_sample() {
    let (listener, port) = listen(loopback_v4());
    let (mut client, mut server) = connect(&listener);
    let mut sampler = tcp_sampler(&[port]);
    for _ in 0..5 {
        round_trip(&mut client, &mut server);
        let sample = sample(&mut sampler);
        assert_eq!(sample.activity, connection(port));
        assert_eq!(sample.active_connections, 1);
    }
}

#[test]
fn idle_open_connection_is_not_activity_after_the_first_sample() {
    let (listener, port) = listen(loopback_v4());
    let mut sampler = tcp_sampler(&[port]);
    let (mut client, mut server) = connect(&listener);
    round_trip(&mut client, &mut server);
    assert_eq!(sample(&mut sampler).activity, connection(port));
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(100));
        let sample = sample(&mut sampler);
        assert_eq!(sample.activity, None);
        assert_eq!(sample.active_connections, 1);
    }
}

#[test]
fn connection_open_before_the_sampler_starts_is_not_activity_until_it_moves_data() {
    let (listener, port) = listen(loopback_v4());
    let (mut client, mut server) = connect(&listener);
    let mut sampler = tcp_sampler(&[port]);
    let first = sample(&mut sampler);
    assert_eq!(first.activity, None);
    assert_eq!(first.active_connections, 1);
    round_trip(&mut client, &mut server);
    assert_eq!(sample(&mut sampler).activity, connection(port));
}

#[test]
fn short_request_closed_by_the_client_is_caught_at_the_next_sample() {
    let (listener, port) = listen(loopback_v4());
    let mut sampler = tcp_sampler(&[port]);
    assert_eq!(sample(&mut sampler).activity, None);
    {
        let (mut client, mut server) = connect(&listener);
        round_trip(&mut client, &mut server);
        thread::sleep(Duration::from_millis(200));
        drop(client); // client first: its side is left in TIME_WAIT
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).unwrap();
    }
    let sample = sample(&mut sampler);
    assert_eq!(sample.activity, connection(port));
    assert_eq!(sample.active_connections, 0);
    // The TIME_WAIT left behind is known now: nothing new happened.
    assert_eq!(self::sample(&mut sampler).activity, None);
}

#[test]
fn short_request_closed_by_the_server_is_caught_at_the_next_sample() {
    let (listener, port) = listen(loopback_v4());
    let mut sampler = tcp_sampler(&[port]);
    {
        let (mut client, mut server) = connect(&listener);
        round_trip(&mut client, &mut server);
        thread::sleep(Duration::from_millis(200));
        server.shutdown(Shutdown::Both).unwrap();
        drop(server); // server first, like `Connection: close`
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
    }
    assert_eq!(sample(&mut sampler).activity, connection(port));
    assert_eq!(sample(&mut sampler).activity, None);
}

#[test]
fn closing_a_known_idle_connection_is_not_activity() {
    let (listener, port) = listen(loopback_v4());
    let (client, mut server) = connect(&listener);
    let mut sampler = tcp_sampler(&[port]);
    drop(client);
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).unwrap();
    drop(server);
    let sample = sample(&mut sampler);
    assert_eq!(sample.activity, None);
    assert_eq!(sample.active_connections, 0);
}

#[test]
fn ipv6_loopback_connection_is_activity() {
    let (listener, port) = listen((Ipv6Addr::LOCALHOST, 0).into());
    let mut sampler = tcp_sampler(&[port]);
    let (mut client, mut server) = connect(&listener);
    round_trip(&mut client, &mut server);
    let first = sample(&mut sampler);
    assert_eq!(first.activity, connection(port));
    assert_eq!(first.active_connections, 1);
    assert_eq!(sample(&mut sampler).activity, None);
    round_trip(&mut client, &mut server);
    assert_eq!(sample(&mut sampler).activity, connection(port));
}

#[test]
fn ipv4_client_of_a_dual_stack_listener_is_activity() {
    let (listener, port) = listen((Ipv6Addr::UNSPECIFIED, 0).into());
    let mut sampler = tcp_sampler(&[port]);
    let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    round_trip(&mut client, &mut server);
    let sample = sample(&mut sampler);
    assert_eq!(sample.activity, connection(port));
    assert_eq!(sample.active_connections, 1);
}

#[test]
fn connection_to_a_port_not_in_the_list_is_ignored() {
    let (watched, watched_port) = listen(loopback_v4());
    let (other, _) = listen(loopback_v4());
    let mut sampler = tcp_sampler(&[watched_port]);
    let (mut client, mut server) = connect(&other);
    for _ in 0..3 {
        round_trip(&mut client, &mut server);
        let sample = sample(&mut sampler);
        assert_eq!(sample.activity, None);
        assert_eq!(sample.active_connections, 0);
    }
    drop(watched);
}

#[test]
fn activity_names_which_of_several_ports_was_used() {
    let (first, first_port) = listen(loopback_v4());
    let (second, second_port) = listen(loopback_v4());
    let mut sampler = tcp_sampler(&[first_port, second_port]);
    let (_idle_client, _idle_server) = connect(&first);
    let _ = sample(&mut sampler);
    let (mut client, mut server) = connect(&second);
    round_trip(&mut client, &mut server);
    let sample = sample(&mut sampler);
    assert_eq!(sample.activity, connection(second_port));
    assert_eq!(sample.active_connections, 2);
}

#[test]
fn every_kernel_port_filter_sees_the_same_activity() {
    for filter in [
        PortFilter::Bytecode,
        PortFilter::RequestFields,
        PortFilter::Userspace,
    ] {
        let (listener, port) = listen(loopback_v4());
        let (other, _) = listen(loopback_v4());
        let config = SamplerConfig {
            ports: vec![port],
            terminals: false,
            window: WINDOW,
        };
        let mut sampler = ActivitySampler::with_port_filter(config, filter).unwrap();
        let (mut client, mut server) = connect(&listener);
        let (mut other_client, mut other_server) = connect(&other);
        round_trip(&mut client, &mut server);
        let first = sample(&mut sampler);
        assert_eq!(first.activity, connection(port), "{filter:?}");
        assert_eq!(first.active_connections, 1, "{filter:?}");
        round_trip(&mut other_client, &mut other_server);
        let second = sample(&mut sampler);
        assert_eq!(second.activity, None, "{filter:?}");
        assert_eq!(second.active_connections, 1, "{filter:?}");
        round_trip(&mut client, &mut server);
        assert_eq!(
            sample(&mut sampler).activity,
            connection(port),
            "{filter:?}"
        );
    }
}

#[test]
fn port_zero_is_refused() {
    let error = ActivitySampler::new(SamplerConfig {
        ports: vec![8000, 0],
        terminals: false,
        window: WINDOW,
    })
    .unwrap_err();
    assert_eq!(error.to_string(), "port 0 cannot be an activity port");
}

#[test]
fn activity_source_displays_as_kind_and_name() {
    assert_eq!(connection(8000).unwrap().to_string(), "connection:8000");
    let terminal = ActivitySource::Terminal {
        tty: "pts/3".into(),
    };
    assert_eq!(terminal.to_string(), "terminal:pts/3");
    assert_eq!(
        serde_json::to_string(&terminal).unwrap(),
        "\"terminal:pts/3\""
    );
}

/// A real pty pair whose timestamps were set a minute back, as if the
/// session had been open and untouched for that long.
struct AgedPty {
    master: PtyMaster,
    slave: File,
    /// `pts/N`
    name: String,
}

impl AgedPty {
    fn open() -> Self {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let path = ptsname_r(&master).unwrap();
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OFlag::O_NOCTTY.bits())
            .open(&path)
            .unwrap();
        let minute_ago = SystemTime::now() - Duration::from_secs(60);
        slave
            .set_times(
                FileTimes::new()
                    .set_accessed(minute_ago)
                    .set_modified(minute_ago),
            )
            .unwrap();
        let name = path.trim_start_matches("/dev/").to_owned();
        Self {
            master,
            slave,
            name,
        }
    }

    fn is_active(&self) -> bool {
        active_terminals(SystemTime::now(), WINDOW)
            .unwrap()
            .contains(&self.name)
    }
}

#[test]
fn untouched_pty_is_not_activity() {
    let pty = AgedPty::open();
    assert!(pty.name.starts_with("pts/"), "{}", pty.name);
    assert!(!pty.is_active());
}

#[test]
fn pty_written_to_is_terminal_activity() {
    let mut pty = AgedPty::open();
    assert!(!pty.is_active());
    // Output: a program writing to its terminal.
    pty.slave.write_all(b"epoch 3/10\r\n").unwrap();
    assert!(pty.is_active());
    // Through the sampler: our pty is active, so some terminal is reported
    // (another pty on the host may come first).
    let mut sampler = ActivitySampler::new(SamplerConfig {
        ports: vec![],
        terminals: true,
        window: WINDOW,
    })
    .unwrap();
    let sample = sampler.sample(SystemTime::now()).unwrap();
    assert!(
        matches!(sample.activity, Some(ActivitySource::Terminal { .. })),
        "{sample:?}"
    );
    assert_eq!(sample.active_connections, 0);
}

#[test]
fn pty_input_read_by_its_shell_is_terminal_activity() {
    let mut pty = AgedPty::open();
    assert!(!pty.is_active());
    // Input: the user types a line and the shell reads it.
    pty.master.write_all(b"ls\n").unwrap();
    let mut buf = [0u8; 16];
    let n = pty.slave.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ls\n");
    assert!(pty.is_active());
}

#[test]
fn pty_touched_long_ago_stops_counting_after_the_widened_window() {
    let pty = AgedPty::open();
    let eleven_seconds_ago = SystemTime::now() - Duration::from_secs(11);
    pty.slave
        .set_times(
            FileTimes::new()
                .set_accessed(eleven_seconds_ago)
                .set_modified(eleven_seconds_ago),
        )
        .unwrap();
    // Even at the end of its 8 s block plus the 2 s window, 11 s is too old.
    assert!(!pty.is_active());
    let now_ish = SystemTime::now() - Duration::from_secs(1);
    pty.slave
        .set_times(FileTimes::new().set_accessed(now_ish).set_modified(now_ish))
        .unwrap();
    assert!(pty.is_active());
}

#[test]
fn terminals_off_reports_no_terminal_even_when_one_is_busy() {
    let mut pty = AgedPty::open();
    pty.slave.write_all(b"busy\r\n").unwrap();
    assert!(pty.is_active());
    let mut sampler = ActivitySampler::new(SamplerConfig {
        ports: vec![],
        terminals: false,
        window: WINDOW,
    })
    .unwrap();
    assert_eq!(sampler.sample(SystemTime::now()).unwrap().activity, None);
}
