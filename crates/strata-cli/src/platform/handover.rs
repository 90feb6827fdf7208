//! An in-place upgrade of a node's agent: the new agent process, started on the same data
//! directory while the old one runs, takes the node over without a refused connection or a
//! restarted instance (as Envoy's hot restart and nginx's binary upgrade do).
//!
//! The old agent offers its listening sockets (API, ingress, the mesh's inter-node port, its
//! loopback proxy and container gateway) on `DATA_DIR/handover.sock` (0600). The new one:
//!
//! 1. connects and says `hello`; gets the sockets' names and the sockets themselves
//!    (`SCM_RIGHTS`), and sets itself up on them without accepting yet
//!    ([`strata_mesh::handover::hold`]);
//! 2. says `quiesce` right before it registers: the old agent stops heartbeating and lets go
//!    of its instances without stopping them, then answers `quiet`; the new one registers
//!    under the same epoch and re-adopts the instances (a gap in heartbeats of one request);
//! 3. once its routing table is loaded it accepts, and says `ready`: the old agent stops
//!    accepting, lets the connections it holds end after their next answer, and exits.
//!
//! The first process to offer a socket keeps it open for the life of the node, however many
//! agents it passes through.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::Failure;

/// The socket file, in the agent's data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("handover.sock")
}

/// The listening sockets this process offers a successor, by name.
static OFFERED: Mutex<Vec<(String, OwnedFd)>> = Mutex::new(Vec::new());

/// The handover socket's listener (a second descriptor of it), while it is offered: what
/// [`stop_offering`] shuts down.
static OFFERING: Mutex<Option<UnixListener>> = Mutex::new(None);

/// Offers `listener` (a copy of it) to the next agent process as `name`.
pub fn offer(name: &str, listener: &impl AsFd) -> std::io::Result<()> {
    let copy = listener.as_fd().try_clone_to_owned()?;
    OFFERED
        .lock()
        .expect("offered lock")
        .push((name.to_string(), copy));
    Ok(())
}

/// The listener named `name`: taken over from the agent process before this one, or else
/// made by `bind`; either way offered to the next one.
pub async fn listener<F>(
    takeover: &mut Option<&mut Takeover>,
    name: &str,
    bind: F,
) -> Result<tokio::net::TcpListener, Failure>
where
    F: std::future::Future<Output = Result<tokio::net::TcpListener, Failure>>,
{
    let inherited = match takeover.as_deref_mut() {
        Some(takeover) => takeover.take_tokio(name)?,
        None => None,
    };
    let listener = match inherited {
        Some(listener) => listener,
        None => bind.await?,
    };
    offer(name, &listener)?;
    Ok(listener)
}

/// The listeners a new agent process took over from the one before it.
pub struct Takeover {
    listeners: HashMap<String, std::net::TcpListener>,
    old: BufReader<UnixStream>,
}

impl Takeover {
    /// Takes over from the agent running on `data_dir`, if one is: `None` when none
    /// answers (a stale socket file is removed).
    pub fn connect(data_dir: &Path) -> Result<Option<Takeover>, Failure> {
        let path = socket_path(data_dir);
        let stream = match UnixStream::connect(&path) {
            Ok(stream) => stream,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                let _ = std::fs::remove_file(&path);
                return Ok(None);
            }
            Err(error) => {
                return Err(Failure::Failed(anyhow!(
                    "cannot reach the agent running on {} ({}): {error}",
                    data_dir.display(),
                    path.display()
                )))
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut old = BufReader::new(stream);
        old.get_mut().write_all(b"hello\n")?;
        let (names, fds) = receive_listeners(old.get_ref())?;
        if names.len() != fds.len() {
            return Err(Failure::Failed(anyhow!(
                "the running agent named {} listeners and sent {}",
                names.len(),
                fds.len()
            )));
        }
        let listeners = names
            .into_iter()
            .zip(fds)
            .map(|(name, fd)| (name, std::net::TcpListener::from(fd)))
            .collect();
        // Nothing is accepted here until this process is ready to serve.
        strata_mesh::handover::hold();
        Ok(Some(Takeover { listeners, old }))
    }

    /// The listener the old agent offered as `name`.
    pub fn take(&mut self, name: &str) -> Option<std::net::TcpListener> {
        self.listeners.remove(name)
    }

    /// The listener offered as `name`, as a tokio listener.
    pub fn take_tokio(&mut self, name: &str) -> Result<Option<tokio::net::TcpListener>, Failure> {
        match self.take(name) {
            Some(listener) => {
                listener.set_nonblocking(true)?;
                Ok(Some(tokio::net::TcpListener::from_std(listener)?))
            }
            None => Ok(None),
        }
    }

    /// Asks the old agent to stop acting for the node (heartbeats, assignments, instances):
    /// this process registers next.
    pub fn quiesce(&mut self) -> Result<(), Failure> {
        self.old.get_mut().write_all(b"quiesce\n")?;
        self.expect("quiet")
    }

    /// Tells the old agent this process serves: it stops accepting and exits.
    pub fn done(mut self) -> Result<(), Failure> {
        strata_mesh::handover::start_accepting();
        self.old.get_mut().write_all(b"ready\n")?;
        Ok(())
    }

    fn expect(&mut self, word: &str) -> Result<(), Failure> {
        let mut line = String::new();
        self.old.read_line(&mut line)?;
        if line.trim() == word {
            Ok(())
        } else {
            Err(Failure::Failed(anyhow!(
                "the running agent answered `{}` where `{word}` was expected",
                line.trim()
            )))
        }
    }
}

/// Starts this process's binary again, as it is on disk now (an upgrade replaced it), with
/// this process's arguments: the new process takes the node over (SIGHUP, `systemctl
/// reload`). Its pid.
pub fn start_successor() -> std::io::Result<u32> {
    let mut args = std::env::args_os();
    let invoked = args.next().map(PathBuf::from).unwrap_or_default();
    // A path as invoked names the file on disk now; /proc/self/exe would name the replaced
    // one ("... (deleted)").
    let program = if invoked.components().count() > 1 {
        invoked
    } else {
        let exe = std::env::current_exe()?;
        let shown = exe.to_string_lossy();
        PathBuf::from(shown.trim_end_matches(" (deleted)"))
    };
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .spawn()?;
    Ok(child.id())
}

/// What the old agent does for each step its successor asks.
pub trait Predecessor: Send + Sync + 'static {
    /// Stop acting for the node; the instances keep running.
    fn quiesce(&self);
}

impl Predecessor for strata_agent::Agent {
    fn quiesce(&self) {
        self.hand_over();
    }
}

/// Offers this process's listeners on `DATA_DIR/handover.sock` until a successor has taken
/// the node over; returns then (the caller stops accepting, drains and exits). A successor
/// that goes away before `quiesce` changes nothing; one that goes away after it leaves the
/// node to the next agent started (an error: the instances run unsupervised meanwhile).
pub async fn serve(data_dir: &Path, agent: Arc<dyn Predecessor>) -> Result<(), Failure> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|error| {
        Failure::Failed(anyhow!("cannot listen on {}: {error}", path.display()))
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    *OFFERING.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener.try_clone()?);
    // A thread of its own, not the runtime's blocking pool: the runtime does not wait for it
    // when the agent exits another way.
    let (outcome, taken) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || {
            let result = loop {
                let (stream, _) = match listener.accept() {
                    Ok(accepted) => accepted,
                    // Shut down by `stop_offering`: the listener goes with this thread.
                    Err(_) if OFFERING.lock().is_ok_and(|o| o.is_none()) => return,
                    Err(error) => {
                        tracing::warn!(%error, "handover socket accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                match hand_over(stream, agent.as_ref()) {
                    Ok(Visit::TookOver) => break Ok(()),
                    Ok(Visit::WentAway) => continue,
                    // This process asks it to let go of the socket (its node is gone).
                    Ok(Visit::Stop) => return,
                    Err(error) => break Err(error),
                }
            };
            let _ = outcome.send(result);
        })?;
    taken
        .await
        .map_err(|_| Failure::Failed(anyhow!("the handover thread ended")))?
}

/// What came of one connection to the handover socket.
enum Visit {
    /// A successor serves now.
    TookOver,
    /// It went away before this process let go of anything.
    WentAway,
    /// Someone asked it to stop offering (a `bye`).
    Stop,
}

/// Stops offering this process's listeners (its node was decommissioned): the handover
/// socket is shut down and closed (its thread ends), and with it the last thing this process
/// held in the data directory.
pub fn stop_offering(data_dir: &Path) {
    let offering = OFFERING.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(listener) = offering {
        // Wakes the thread's `accept` with an error; it sees nothing is offered, and goes.
        let _ = rustix::net::shutdown(&listener, rustix::net::Shutdown::Both);
    }
    let _ = std::fs::remove_file(socket_path(data_dir));
}

/// One connection to the handover socket: a successor's takeover, or this process's own
/// request to stop.
fn hand_over(stream: UnixStream, agent: &dyn Predecessor) -> Result<Visit, Failure> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut successor = BufReader::new(stream);
    let mut line = String::new();
    if successor.read_line(&mut line).unwrap_or(0) == 0 {
        return Ok(Visit::WentAway);
    }
    match line.trim() {
        "hello" => {}
        "bye" => return Ok(Visit::Stop),
        _ => return Ok(Visit::WentAway),
    }
    {
        let offered = OFFERED.lock().expect("offered lock");
        let names: Vec<&str> = offered.iter().map(|(name, _)| name.as_str()).collect();
        let fds: Vec<BorrowedFd<'_>> = offered.iter().map(|(_, fd)| fd.as_fd()).collect();
        send_listeners(successor.get_ref(), &names, &fds)?;
    }
    tracing::info!("a new agent process is taking this node over");
    line.clear();
    if successor.read_line(&mut line).unwrap_or(0) == 0 || line.trim() != "quiesce" {
        tracing::warn!("the new agent process went away before taking the node over");
        return Ok(Visit::WentAway);
    }
    agent.quiesce();
    successor.get_mut().write_all(b"quiet\n")?;
    line.clear();
    if successor.read_line(&mut line).unwrap_or(0) == 0 || line.trim() != "ready" {
        return Err(Failure::Failed(anyhow!(
            "the new agent process went away during the takeover; the instances keep running for the next agent to adopt"
        )));
    }
    Ok(Visit::TookOver)
}

/// The most listeners one handover carries.
const MOST_LISTENERS: usize = 16;

/// The names (a JSON line) and the sockets (`SCM_RIGHTS`) in one message.
fn send_listeners(
    stream: &UnixStream,
    names: &[&str],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Failure> {
    let mut text = serde_json::to_vec(names)?;
    text.push(b'\n');
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MOST_LISTENERS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Failure::Failed(anyhow!(
            "{} listeners are more than a handover carries ({MOST_LISTENERS})",
            fds.len()
        )));
    }
    sendmsg(
        stream,
        &[IoSlice::new(&text)],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(|errno| Failure::Failed(anyhow!("cannot hand the listeners over: {errno}")))?;
    Ok(())
}

fn receive_listeners(stream: &UnixStream) -> Result<(Vec<String>, Vec<OwnedFd>), Failure> {
    let mut buffer = vec![0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MOST_LISTENERS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut buffer)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|errno| Failure::Failed(anyhow!("cannot take the listeners over: {errno}")))?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    let text = &buffer[..received.bytes];
    let names: Vec<String> = serde_json::from_slice(text.strip_suffix(b"\n").unwrap_or(text))
        .map_err(|error| anyhow!("the running agent's handover message: {error}"))?;
    Ok((names, fds))
}
