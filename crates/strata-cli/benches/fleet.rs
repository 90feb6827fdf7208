//! The fleet simulator (issue 22): N simulated nodes in this process speak the real agent
//! protocol, through the real client (`strata_agent::client::ControlClient`), to a real
//! `strata server`: each joins with the join token, gets its node certificate from a CSR,
//! registers, heartbeats (by datagram as agents do, with an HTTP beat every 30 s and when the
//! server answers a datagram "register again", registering again when told; over HTTP only
//! with `--http-beats`), holds its blocking assignments query open (`--sync-ms` is its
//! longest wait) and reports its instances' status. Instances are simulated: a node reports
//! one running `--start-ms` after it first sees it assigned. Every node's datagrams leave
//! from one task on a thread of its own and one socket, spread over the beat period (10,000 tasks waking ten
//! times a second would cost the simulator the CPU the server needs).
//!
//! `FLEET_SERVER_LOG=path` keeps the server's log; `FLEET_LIMIT_S` bounds the wait for
//! placement (600 s).
//!
//!   cargo bench -p strata-cli --bench fleet -- [--nodes 100] [--instances 1000]
//!       [--store etcd] [--heartbeat-ms 100] [--sync-ms 10000] [--start-ms 50] [--http-beats]
//!
//! It prints what it measured and, last, one JSON object (`nodes`, `instances`, `register_s`,
//! `place_ack_s`, `failover_s` (a node's process dies), `failover_quiet_s` (a node's machine
//! goes quiet; each until the node is judged down and all instances serve elsewhere),
//! `server_cpu_pct`, `server_rss_mib`, `api_p99_ms`) so scripts
//! can compare runs. `--store etcd` needs etcd (Debian's etcd-server).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use strata_agent::beats::{Heartbeater, HTTP_EVERY};
use strata_agent::client::ControlClient;
use strata_agent::status::{Reported, StatusReporter};
use strata_core::api::{CertificateRequest, DeployRequest, DeployService, RegisterNode};
use strata_core::beat::{self, BeatKey, Kind};
use strata_core::{DesiredState, InstanceId, InstanceState, InstanceStatus, NodeName, Resources};
use strata_store::testing::EtcdServer;
use strata_testkit::ServerProcess;

#[path = "../tests/common/mod.rs"]
mod common;

/// What to simulate.
struct Args {
    nodes: usize,
    instances: usize,
    etcd: bool,
    heartbeat: Duration,
    sync: Duration,
    start: Duration,
    /// Beat over HTTP only (no datagrams), to compare.
    http_beats: bool,
}

fn args() -> Args {
    let mut args = Args {
        nodes: 100,
        instances: 1_000,
        etcd: false,
        heartbeat: Duration::from_millis(100),
        sync: Duration::from_millis(10_000),
        start: Duration::from_millis(50),
        http_beats: false,
    };
    let given: Vec<String> = std::env::args().skip(1).collect();
    let mut words = given.iter();
    while let Some(word) = words.next() {
        let mut number = || -> u64 {
            words
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{word} takes a number"))
        };
        match word.as_str() {
            "--nodes" => args.nodes = number() as usize,
            "--instances" => args.instances = number() as usize,
            "--heartbeat-ms" => args.heartbeat = Duration::from_millis(number()),
            "--sync-ms" => args.sync = Duration::from_millis(number()),
            "--start-ms" => args.start = Duration::from_millis(number()),
            "--http-beats" => args.http_beats = true,
            "--store" => {
                args.etcd = words.next().map(String::as_str) == Some("etcd");
            }
            // What cargo passes to every bench.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// "Register again" answers to the simulated nodes' datagrams, and registrations again.
static TOLD: AtomicUsize = AtomicUsize::new(0);
static REREGISTERED: AtomicUsize = AtomicUsize::new(0);

/// Calls (joins, status reports) sent again after a failure.
static RETRIED: AtomicUsize = AtomicUsize::new(0);

/// Every call's latency, in microseconds, from every simulated node.
type Latencies = Arc<Mutex<Histogram<u64>>>;

/// One simulated node: a joined, registered node whose "instances" report running.
struct SimNode {
    name: NodeName,
    client: ControlClient,
    /// Its epoch (a new one each time it registers again).
    epoch: AtomicU64,
    /// What it registers with.
    registration: RegisterNode,
    /// The key of its heartbeat datagrams.
    key: BeatKey,
    /// Wakes its HTTP beat when the server answers a datagram "register again".
    told: tokio::sync::Notify,
    /// Heartbeats and syncs only while alive; cleared to simulate its death.
    alive: Arc<AtomicBool>,
    /// Its sync loop, aborted (its blocking query's stream closed under it) when its process
    /// "dies"; left to end on its own when its machine goes quiet.
    sync: Mutex<Option<tokio::task::AbortHandle>>,
    /// Its instances whose running report the server acknowledged (and not stopped since).
    serving: AtomicUsize,
    /// Reports statuses in batches, as the agent does.
    statuses: StatusReporter,
}

/// Joins as node `name`: the join token gets its credential, the credential its certificate,
/// and it registers (with room for any number of simulated instances). Each step is tried
/// again (as an agent does) while the server is too busy to answer.
async fn join(api: &str, join_token: &str, ca: &str, name: NodeName) -> SimNode {
    let bootstrap = ControlClient::trusting(api, Some(join_token), Some(ca));
    let credential = again(&name, || bootstrap.credential(&name)).await;
    let client = ControlClient::trusting(api, Some(&credential), Some(ca));
    let (key, csr) = strata_mesh::identity::node_key_and_csr(&name).expect("a CSR");
    let request = CertificateRequest {
        csr,
        address: Some("127.0.0.1:9".into()),
    };
    let signed = again(&name, || client.certificate(&name, &request)).await;
    client
        .present_certificate(&signed.certificate, &key)
        .expect("the certificate is usable");
    let zone = format!("zone-{}", name.len() % 4);
    let registration = RegisterNode {
        name: name.clone(),
        agent_url: "https://127.0.0.1:9".into(),
        labels: [("zone".to_string(), zone)].into(),
        capacity: Resources {
            cpu_millis: 1_024_000,
            memory_bytes: 1 << 40,
        },
        drivers: vec![strata_core::spec::DriverKind::Exec],
        last_epoch: None,
        mesh_addr: Some("127.0.0.1:9".into()),
        agent_version: None,
    };
    let node = again(&name, || client.register(&registration)).await;
    SimNode {
        key: BeatKey::new(&beat::beat_key(&credential)),
        registration,
        told: tokio::sync::Notify::new(),
        name: name.clone(),
        epoch: AtomicU64::new(node.epoch),
        alive: Arc::new(AtomicBool::new(true)),
        sync: Mutex::new(None),
        serving: AtomicUsize::new(0),
        statuses: StatusReporter::start(client.clone(), name.clone()),
        client,
    }
}

/// `call`'s answer, asked again a second later while it fails (at most 10 times).
async fn again<T, F>(name: &NodeName, call: impl Fn() -> F) -> T
where
    F: std::future::Future<Output = Result<T, strata_agent::client::ClientError>>,
{
    for attempt in 1.. {
        match call().await {
            Ok(answer) => return answer,
            Err(error) if attempt < 10 => {
                if RETRIED.fetch_add(1, Ordering::SeqCst) < 3 {
                    eprintln!("{name}: join step failed (attempt {attempt}): {error}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => panic!("{name} could not join: {error}"),
        }
    }
    unreachable!("the loop returns or panics")
}

/// What a node's agent does, without running anything: holds the blocking assignments
/// query open as the agent does, reporting each new instance running `args.start` after it
/// sees it (stopped ones stopped), and beats over HTTP: every [`HTTP_EVERY`] beats (its
/// datagrams leave from [`pump`]), when told to register again, or every beat with
/// `--http-beats`. Told to register again, it does.
async fn run(node: Arc<SimNode>, args: Arc<Args>, latencies: Latencies) {
    let sync = tokio::spawn(follow_assignments(node.clone(), args.clone()));
    *node.sync.lock().unwrap() = Some(sync.abort_handle());
    let period = if args.http_beats {
        args.heartbeat
    } else {
        args.heartbeat * HTTP_EVERY as u32
    };
    // Nodes that joined together do not beat over HTTP together.
    let jitter = rand::random::<u64>() % period.as_millis().max(1) as u64;
    tokio::time::sleep(Duration::from_millis(jitter)).await;
    let mut heartbeater = Heartbeater::new(None);
    while node.alive.load(Ordering::SeqCst) {
        let beat = Instant::now();
        let epoch = node.epoch.load(Ordering::SeqCst);
        let answer = if args.http_beats {
            heartbeater
                .beat(&node.client, &node.name, epoch)
                .await
                .ok()
                .flatten()
        } else {
            node.client.heartbeat(&node.name, epoch).await.ok()
        };
        if let Some(ack) = answer {
            let micros = beat.elapsed().as_micros() as u64;
            let _ = latencies.lock().unwrap().record(micros.max(1));
            if ack.reregister && node.alive.load(Ordering::SeqCst) {
                let registration = RegisterNode {
                    last_epoch: Some(epoch),
                    ..node.registration.clone()
                };
                if let Ok(registered) = node.client.register(&registration).await {
                    node.epoch.store(registered.epoch, Ordering::SeqCst);
                    REREGISTERED.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period.saturating_sub(beat.elapsed())) => {}
            _ = node.told.notified() => {}
        }
    }
}

/// Every live node's heartbeat datagram each `period`, from one socket, a tenth of the nodes
/// every tenth of the period; the server's "register again" answers wake the node's HTTP
/// beat.
async fn pump(
    nodes: Arc<Mutex<Vec<Arc<SimNode>>>>,
    period: Duration,
    socket: tokio::net::UdpSocket,
    to: std::net::SocketAddr,
) {
    const SLICES: usize = 10;
    let mut ticker = tokio::time::interval(period / SLICES as u32);
    let mut slice = 0;
    let mut now: Vec<Arc<SimNode>> = Vec::new();
    let mut by_name: HashMap<String, Arc<SimNode>> = HashMap::new();
    let mut buffer = [0u8; beat::MAX_LEN + 1];
    loop {
        ticker.tick().await;
        if slice == 0 {
            now = nodes.lock().unwrap().clone();
            if by_name.len() != now.len() {
                by_name = now
                    .iter()
                    .map(|n| (n.name.to_string(), n.clone()))
                    .collect();
            }
        }
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        for node in now.iter().skip(slice).step_by(SLICES) {
            if !node.alive.load(Ordering::Relaxed) {
                continue;
            }
            let epoch = node.epoch.load(Ordering::Relaxed);
            let datagram = beat::encode_kind(Kind::Beat, &node.name, epoch, seq, &node.key);
            let _ = socket.send_to(&datagram, to).await;
        }
        while let Ok(len) = socket.try_recv(&mut buffer) {
            let Ok(answer) = beat::parse(&buffer[..len.min(buffer.len())]) else {
                continue;
            };
            if let Some(node) = by_name.get(answer.node) {
                if answer.kind == Kind::RegisterAgain && answer.verified_by(&node.key) {
                    TOLD.fetch_add(1, Ordering::Relaxed);
                    node.told.notify_one();
                }
            }
        }
        slice = (slice + 1) % SLICES;
    }
}

/// The agent's sync loop, simulated: a blocking query for the node's assignments, each
/// change acted on.
async fn follow_assignments(node: Arc<SimNode>, args: Arc<Args>) {
    let mut running: BTreeSet<InstanceId> = BTreeSet::new();
    let mut seen: BTreeSet<InstanceId> = BTreeSet::new();
    let mut index = None;
    while node.alive.load(Ordering::SeqCst) {
        let answer = match index {
            None => node.client.assignments(&node.name).await,
            Some(index) => {
                node.client
                    .assignments_after(&node.name, index, args.sync)
                    .await
            }
        };
        let Ok(assigned) = answer else {
            index = None;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        // As the agent does (`Assignments::merged_with`): an answer naming by id an
        // instance this node never got in full means reading everything again; one by
        // removals names what left.
        if assigned.since.is_some() {
            for id in &assigned.removed {
                seen.remove(id);
                running.remove(id);
            }
        } else if assigned.unchanged.iter().any(|id| !seen.contains(id)) {
            index = None;
            continue;
        }
        index = Some(assigned.revision);
        if !node.alive.load(Ordering::SeqCst) {
            return;
        }
        // Only what changed comes in full; what did not is acted on already.
        for assignment in assigned.assignments {
            let instance = assignment.instance;
            seen.insert(instance.id.clone());
            if instance.node_epoch != node.epoch.load(Ordering::SeqCst) {
                continue;
            }
            let state = match (instance.desired, running.contains(&instance.id)) {
                (DesiredState::Running, false) => InstanceState::Running,
                (DesiredState::Stopped, true) => InstanceState::Stopped,
                _ => continue,
            };
            if state == InstanceState::Running {
                running.insert(instance.id.clone());
            } else {
                running.remove(&instance.id);
            }
            let (node, start) = (node.clone(), args.start);
            tokio::spawn(async move {
                if state == InstanceState::Running {
                    tokio::time::sleep(start).await;
                }
                let report = status(&node, instance.id, state);
                // As the agent does, a report that fails is sent again.
                for attempt in 0..20 {
                    match node.statuses.report(report.clone()).await {
                        Reported::Stored => {
                            match state {
                                InstanceState::Running => {
                                    node.serving.fetch_add(1, Ordering::SeqCst)
                                }
                                _ => node.serving.fetch_sub(1, Ordering::SeqCst),
                            };
                            break;
                        }
                        Reported::NotWanted => break,
                        Reported::Failed(error) => {
                            if RETRIED.fetch_add(1, Ordering::SeqCst) < 3 {
                                eprintln!(
                                    "{}: report failed (attempt {attempt}): {error}",
                                    node.name
                                );
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
        }
    }
}

fn status(node: &SimNode, id: InstanceId, state: InstanceState) -> InstanceStatus {
    InstanceStatus {
        address: (state == InstanceState::Running).then(|| "127.0.0.1:9".to_string()),
        updated_at: strata_core::now_millis(),
        ..InstanceStatus::new(id, node.name.clone(), state, "simulated")
    }
}

/// Instances serving (their running report acknowledged), not on `except`.
fn serving(nodes: &[Arc<SimNode>], except: &[NodeName]) -> usize {
    nodes
        .iter()
        .filter(|n| !except.contains(&n.name))
        .map(|n| n.serving.load(Ordering::SeqCst))
        .sum()
}

/// Seconds from `start` until `count` instances serve (not on `except`), polled; `None` past
/// `limit` (then how many served, said on stdout).
async fn until_serving(
    nodes: &[Arc<SimNode>],
    count: usize,
    except: &[NodeName],
    start: Instant,
    limit: Duration,
) -> Option<f64> {
    let mut last = 0;
    while start.elapsed() < limit {
        last = serving(nodes, except);
        if last >= count {
            return Some(start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "  after {:.0} s, {last} of {count} serve ({:.1}/s)",
        limit.as_secs_f64(),
        last as f64 / limit.as_secs_f64()
    );
    None
}

/// Kills `victim` (its process, `crash`: its sync loop aborted, which closes its blocking
/// query's stream; or its machine: it just goes quiet) and returns the seconds until it is
/// judged down and all `instances` serve again on nodes not `dead` (to which it is added),
/// the later of the two.
async fn failover(
    (admin, api): (&reqwest::Client, &str),
    nodes: &[Arc<SimNode>],
    victim: Option<Arc<SimNode>>,
    crash: bool,
    dead: &mut Vec<NodeName>,
    instances: usize,
) -> Option<f64> {
    let node = victim?;
    dead.push(node.name.clone());
    let held = node.serving.load(Ordering::SeqCst);
    let killed_at = strata_core::now_millis();
    node.alive.store(false, Ordering::SeqCst);
    if crash {
        if let Some(sync) = node.sync.lock().unwrap().take() {
            sync.abort();
        }
    }
    let failed = until_serving(
        nodes,
        instances,
        dead,
        Instant::now(),
        Duration::from_secs(60),
    )
    .await;
    // When the server judged it down, from its event log (asked once, after the fact, so
    // that the asking costs the failover nothing).
    let down = judged_down_at(admin, api, &node.name)
        .await
        .map(|at| at.saturating_sub(killed_at) as f64 / 1000.0);
    println!(
        "node {} with {held} instances {}; judged down after {}; all {instances} serving elsewhere after {}",
        node.name,
        if crash {
            "died (its process)"
        } else {
            "went quiet (its machine)"
        },
        down.map_or_else(|| "(not found in the events)".to_string(), |s| format!("{s:.2} s")),
        failed.map_or_else(|| "more than 60 s".to_string(), |s| format!("{s:.2} s"))
    );
    Some(failed?.max(down?))
}

/// When (ms) the server's event log says `node` went down, if it does (its last 100,000
/// events: a node holding thousands of instances is followed by an event for each).
async fn judged_down_at(admin: &reqwest::Client, api: &str, node: &NodeName) -> Option<u64> {
    let response = admin
        .get(format!("{api}/v1/events?limit=100000"))
        .send()
        .await
        .ok()?;
    let list: strata_core::api::EventList = response.json().await.ok()?;
    list.events
        .iter()
        .filter(|e| e.kind == strata_core::EventKind::NodeDown && e.node.as_ref() == Some(node))
        .map(|e| e.at)
        .next_back()
}

/// Says which wanted instances the server does not hold running (at most five), and on
/// which node in which state, to tell a lost placement from a lost report.
async fn not_serving(admin: &reqwest::Client, api: &str, nodes: &[Arc<SimNode>]) {
    let Ok(response) = admin.get(format!("{api}/v1/instances")).send().await else {
        return;
    };
    let views: Vec<strata_core::InstanceView> = response.json().await.unwrap_or_default();
    let wanted = views
        .iter()
        .filter(|v| v.instance.desired == DesiredState::Running)
        .count();
    let waiting: Vec<_> = views
        .iter()
        .filter(|v| v.instance.desired == DesiredState::Running)
        .filter(|v| v.state() != InstanceState::Running)
        .collect();
    println!(
        "  the server holds {wanted} wanted instances, {} of them not running",
        waiting.len()
    );
    for view in waiting.iter().take(5) {
        let node = nodes.iter().find(|n| n.name == view.instance.node);
        println!(
            "  {} on {} (placed at epoch {}, node's epoch now {:?}): {:?}",
            view.instance.id,
            view.instance.node,
            view.instance.node_epoch,
            node.map(|n| n.epoch.load(Ordering::SeqCst)),
            view.status.as_ref().map(|s| (s.state, &s.message)),
        );
    }
}

/// The server's CPU time so far (user + system), from /proc, in seconds.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0 // USER_HZ
}

/// Datagrams this machine's kernel dropped because a UDP socket's receive buffer was full
/// (`RcvbufErrors` of /proc/net/snmp, every socket: nothing else here receives many).
fn udp_drops() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

fn rss_mib(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A spec of services of at most 1,000 replicas each (the spec's limit), `total` in all.
fn spec(total: usize) -> String {
    let mut text = String::new();
    let mut left = total;
    let mut i = 0;
    while left > 0 {
        let replicas = left.min(1_000);
        text.push_str(&format!(
            "[service.sim-{i}]\ncommand = [\"sim\"]\n[service.sim-{i}.scale]\nreplicas = {replicas}\n[service.sim-{i}.resources]\ncpu = \"1m\"\nmemory = \"1Mi\"\n\n"
        ));
        left -= replicas;
        i += 1;
    }
    text
}

#[tokio::main]
async fn main() {
    let args = Arc::new(args());
    let root = tempfile::tempdir().unwrap();
    let etcd = args.etcd.then(|| EtcdServer::cluster(1));
    let store = etcd.as_ref().map(|etcd| etcd.url("/fleet"));
    let server = ServerProcess::start(
        &common::strata_bin(),
        &root.path().join("server"),
        store.as_deref(),
    );
    let pid = server.pid().expect("the server runs");
    let ca = std::fs::read_to_string(server.dir.join("ca.pem")).unwrap();
    let join_token = server.token();
    let admin = server.api_client();
    let latencies: Latencies = Arc::new(Mutex::new(Histogram::new(3).unwrap()));
    println!(
        "fleet: {} nodes, {} instances, {} store; heartbeat {:?} ({}), sync {:?}, start {:?}",
        args.nodes,
        args.instances,
        if args.etcd { "etcd" } else { "redb" },
        args.heartbeat,
        if args.http_beats { "HTTP" } else { "datagrams" },
        args.sync,
        args.start
    );

    let registered: Arc<Mutex<Vec<Arc<SimNode>>>> = Arc::default();
    if !args.http_beats {
        let to = strata_client::api_socket_addr(&server.api)
            .await
            .expect("the API's datagram address");
        let (nodes, period) = (registered.clone(), args.heartbeat);
        // On a thread of its own: a real node's beats never wait behind other nodes' work,
        // so the simulated ones must not wait behind the simulator's (a million instances'
        // tasks share its runtime); the thread ends with the process.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the beats");
            runtime.block_on(async move {
                let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                pump(nodes, period, socket, to).await
            })
        });
    }
    // Registration: every node joins, 64 at a time.
    let registering = Instant::now();
    let names: Vec<NodeName> = (0..args.nodes)
        .map(|i| NodeName::new(format!("sim-{i:05}")).unwrap())
        .collect();
    let mut nodes: Vec<Arc<SimNode>> = Vec::new();
    for batch in names.chunks(64) {
        let joins = batch
            .iter()
            .map(|name| join(&server.api, &join_token, &ca, name.clone()));
        for node in futures::future::join_all(joins).await {
            let node = Arc::new(node);
            tokio::spawn(run(node.clone(), args.clone(), latencies.clone()));
            registered.lock().unwrap().push(node.clone());
            nodes.push(node);
        }
    }
    let register_s = registering.elapsed().as_secs_f64();
    println!("registered {} nodes in {register_s:.2} s", nodes.len());

    // Steady state: the idle fleet's cost to the server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    latencies.lock().unwrap().reset();
    let (cpu_before, window) = (cpu_seconds(pid), Instant::now());
    let own_before = cpu_seconds(std::process::id() as i32);
    let drops_before = udp_drops();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let server_cpu_pct = 100.0 * (cpu_seconds(pid) - cpu_before) / window.elapsed().as_secs_f64();
    let sim_cpu_pct = 100.0 * (cpu_seconds(std::process::id() as i32) - own_before)
        / window.elapsed().as_secs_f64();
    let dropped = udp_drops().saturating_sub(drops_before);
    let api_p99_ms = latencies.lock().unwrap().value_at_quantile(0.99) as f64 / 1000.0;
    let idle_rss = rss_mib(pid);
    println!(
        "idle fleet: server CPU {server_cpu_pct:.1}% of a core, RSS {idle_rss:.0} MiB, HTTP heartbeat p99 {api_p99_ms:.1} ms; simulator CPU {sim_cpu_pct:.0}%; beats dropped by the kernel (receive buffer full) {dropped} in 5 s"
    );

    // Placement: every instance placed, reported running and counted.
    let parsed = strata_core::spec::parse("fleet.toml", &spec(args.instances)).unwrap();
    let request = DeployRequest {
        services: parsed
            .services
            .into_iter()
            .map(|spec| DeployService {
                spec,
                artifact_digest: None,
            })
            .collect(),
    };
    let placing = Instant::now();
    let response = admin
        .post(format!("{}/v1/envs/fleet/deploy", server.api))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let limit = Duration::from_secs(
        std::env::var("FLEET_LIMIT_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );
    let place_ack_s = until_serving(&nodes, args.instances, &[], placing, limit).await;
    if place_ack_s.is_none() {
        not_serving(&admin, &server.api, &nodes).await;
    }
    let place_ack = placing.elapsed().as_secs_f64();
    let server_rss_mib = rss_mib(pid);
    println!(
        "placed and acknowledged {} instances in {}; server RSS {server_rss_mib:.0} MiB ({:.1} KiB per instance)",
        args.instances,
        place_ack_s.map_or_else(|| format!("more than {place_ack:.0} s"), |s| format!("{s:.2} s ({:.0}/s)", args.instances as f64 / s)),
        (server_rss_mib - idle_rss).max(0.0) * 1024.0 / args.instances.max(1) as f64
    );

    // Failover: a node with instances dies (no more heartbeats or reports), twice: its
    // process dies (its connection closes under its blocking query), then another node's
    // machine goes quiet (its connection stays open as far as the server can tell).
    let mut victims = nodes
        .iter()
        .filter(|n| n.serving.load(Ordering::SeqCst) > 0)
        .cloned();
    let mut dead: Vec<NodeName> = Vec::new();
    let api = (&admin, server.api.as_str());
    let failover_s = failover(api, &nodes, victims.next(), true, &mut dead, args.instances).await;
    let failover_quiet_s = failover(
        api,
        &nodes,
        victims.next(),
        false,
        &mut dead,
        args.instances,
    )
    .await;

    println!(
        "calls sent again after a failure (joins, status reports): {}; told to register again: {}, registered again: {}",
        RETRIED.load(Ordering::SeqCst),
        TOLD.load(Ordering::SeqCst),
        REREGISTERED.load(Ordering::SeqCst)
    );
    // A server that loses its lease under its own load re-plans everything and has its
    // writes in flight fenced off: count it.
    let leader_losses = server.log().matches("lost leadership").count();
    println!(
        "leadership lost {leader_losses} times during the run (one server: always its own load)"
    );
    let json = serde_json::json!({
        "nodes": args.nodes,
        "instances": args.instances,
        "store": if args.etcd { "etcd" } else { "redb" },
        "beats": if args.http_beats { "http" } else { "datagrams" },
        "register_s": register_s,
        "place_ack_s": place_ack_s,
        "failover_s": failover_s,
        "failover_quiet_s": failover_quiet_s,
        "server_cpu_pct": server_cpu_pct,
        "sim_cpu_pct": sim_cpu_pct,
        "idle_beats_dropped": dropped,
        "server_rss_mib": server_rss_mib,
        "api_p99_ms": api_p99_ms,
        "leader_losses": leader_losses,
    });
    println!("{json}");
    for node in &nodes {
        node.alive.store(false, Ordering::SeqCst);
    }
    // The server's log, kept where `FLEET_SERVER_LOG` says (the run's directory goes).
    if let Ok(path) = std::env::var("FLEET_SERVER_LOG") {
        let _ = std::fs::write(&path, server.log());
    }
    drop(server);
    drop(etcd);
}
