//! The cost of one activity sample with 10,000 TCP sockets on the host
//! (DESIGN.md §5: < 2 ms; the previous implementation parsed `/proc/net/tcp`,
//! 12–60 ms), against parsing `/proc/net/tcp` and `/proc/net/tcp6` for the
//! same sockets, and across the three ways of filtering by port.
//!
//! Not a timed test: it prints numbers and never fails on them.
//! `cargo bench -p soong-daemon --bench activity_sample [-- PAIRS]`
//!
//! Two scenarios, each with 5,000 loopback connections (10,000 sockets):
//! - *busy service*: all of them are to the sampled port, so every socket is
//!   decoded and diffed (the worst case);
//! - *busy host*: they are to another port, and the sampled port has 10
//!   connections (other traffic on the host must not cost much).

use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{setsockopt, sockopt};
use soong_daemon::activity::{ActivitySampler, PortFilter, SamplerConfig};

const DEFAULT_PAIRS: usize = 5_000;
const SAMPLES: usize = 300;
const PROC_SAMPLES: usize = 60;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pairs = match std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        Some(arg) => arg.parse()?,
        None => DEFAULT_PAIRS,
    };
    raise_nofile(2 * pairs + 200)?;
    println!("before: {}", tcp_sockstat()?);

    let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let busy_port = busy.local_addr()?.port();
    let quiet = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let quiet_port = quiet.local_addr()?.port();
    let started = Instant::now();
    let busy_conns = open_pairs(&busy, pairs)?;
    let quiet_conns = open_pairs(&quiet, 10)?;
    println!(
        "opened {pairs} + 10 loopback connections in {:.1?}; now: {}",
        started.elapsed(),
        tcp_sockstat()?
    );

    for (scenario, port) in [
        (
            format!(
                "busy service: {pairs} connections ({} sockets) to the sampled port",
                2 * pairs
            ),
            busy_port,
        ),
        (
            "busy host: the same sockets, 10 connections to the sampled port".to_owned(),
            quiet_port,
        ),
    ] {
        println!("\n{scenario}");
        run_scenario(port)?;
    }

    // Close with RST (linger 0) so 10,000 TIME_WAIT sockets do not linger
    // for a minute and slow down whatever runs next.
    for (client, _) in busy_conns.iter().chain(&quiet_conns) {
        setsockopt(
            client,
            sockopt::Linger,
            &nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        )?;
    }
    Ok(())
}

/// Times the old parse and each filter mode, interleaved so that load from
/// anything else on the machine is spread evenly over them.
fn run_scenario(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let filters = [
        PortFilter::Bytecode,
        PortFilter::RequestFields,
        PortFilter::Userspace,
    ];
    let config = SamplerConfig {
        ports: vec![port],
        terminals: false,
        window: Duration::from_secs(2),
    };
    let mut samplers = filters
        .iter()
        .map(|&filter| ActivitySampler::with_port_filter(config.clone(), filter))
        .collect::<Result<Vec<_>, _>>()?;
    let mut established = vec![0; filters.len()];
    let mut sampler_times = vec![Vec::with_capacity(SAMPLES); filters.len()];
    let mut proc_times = Vec::with_capacity(PROC_SAMPLES);
    let mut proc_matched = 0;
    let mut buf = String::new();
    // A few rounds of warm-up grow the tables and the kernel's buffers.
    for round in 0..SAMPLES + 5 {
        for (i, sampler) in samplers.iter_mut().enumerate() {
            let start = Instant::now();
            let sample = sampler.sample(SystemTime::now())?;
            let elapsed = start.elapsed();
            established[i] = sample.active_connections;
            if round >= 5 {
                sampler_times[i].push(elapsed);
            }
        }
        if round >= 5 && round % (SAMPLES / PROC_SAMPLES) == 0 {
            let start = Instant::now();
            proc_matched = black_box(proc_net_tcp_connections(port, &mut buf)?);
            proc_times.push(start.elapsed());
        }
    }
    let proc = stats(proc_times);
    print_row(
        &format!("/proc/net/tcp{{,6}} parse (old way)  [{proc_matched} sockets]"),
        &proc,
        None,
    );
    for ((filter, times), established) in filters.iter().zip(sampler_times).zip(established) {
        print_row(
            &format!("sock_diag, {filter:?} filter  [{established} established]"),
            &stats(times),
            Some(&proc),
        );
    }
    Ok(())
}

fn print_row(name: &str, stats: &Stats, baseline: Option<&Stats>) {
    let ratio = baseline.map_or(String::new(), |base| {
        format!(
            "  {:>5.1}x faster (p50)",
            base.p50.as_secs_f64() / stats.p50.as_secs_f64()
        )
    });
    println!(
        "  {name:<56} min {:>6.3}  p50 {:>6.3}  mean {:>6.3}  p99 {:>6.3} ms{ratio}",
        ms(stats.min),
        ms(stats.p50),
        ms(stats.mean),
        ms(stats.p99),
    );
}

/// The TCP line of `/proc/net/sockstat`: sockets in use and in TIME_WAIT.
fn tcp_sockstat() -> std::io::Result<String> {
    let text = std::fs::read_to_string("/proc/net/sockstat")?;
    Ok(text
        .lines()
        .find(|line| line.starts_with("TCP:"))
        .unwrap_or("TCP: ?")
        .to_owned())
}

fn raise_nofile(needed: usize) -> Result<(), Box<dyn std::error::Error>> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let needed = needed as u64;
    if soft < needed {
        // Root may raise the hard limit too.
        setrlimit(Resource::RLIMIT_NOFILE, needed.max(soft), needed.max(hard))?;
    }
    Ok(())
}

fn open_pairs(
    listener: &TcpListener,
    pairs: usize,
) -> std::io::Result<Vec<(TcpStream, TcpStream)>> {
    let addr = listener.local_addr()?;
    (0..pairs)
        .map(|_| {
            let client = TcpStream::connect(addr)?;
            let (server, _) = listener.accept()?;
            Ok((client, server))
        })
        .collect()
}

struct Stats {
    min: Duration,
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn stats(mut times: Vec<Duration>) -> Stats {
    times.sort_unstable();
    let total: Duration = times.iter().sum();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Stats {
        min: times[0],
        mean: total / times.len() as u32,
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// What the previous implementation did each sample: read both tables and
/// pick the lines whose local or remote port is the service port, with their
/// state and queue sizes.
fn proc_net_tcp_connections(port: u16, buf: &mut String) -> std::io::Result<usize> {
    let mut matched = 0;
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        buf.clear();
        File::open(path)?.read_to_string(buf)?;
        for line in buf.lines().skip(1) {
            let mut fields = line.split_whitespace();
            let (Some(_slot), Some(local), Some(remote), Some(state), Some(queues)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            let port_of = |addr: &str| {
                addr.rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            };
            if port_of(local) == Some(port) || port_of(remote) == Some(port) {
                let state = u8::from_str_radix(state, 16).unwrap_or(0);
                black_box((state, queues));
                matched += 1;
            }
        }
    }
    Ok(matched)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
