//! The DNS stub (`[dns] listen`, or sockets passed by systemd socket activation): the names of
//! the installed snapshot for programs that never load an NSS module (static Go, musl, c-ares).
//!
//! It reads the snapshot the module maps, with the module's trust rules (owner root, this
//! account or the state directory's owner, neither file nor directory writable by group or
//! others, no symlink), into memory of its own (a file truncated in place costs nothing: the
//! copy is whole), looking at the file at most every [`RECHECK`] as the module does, so it
//! follows every publish or install, by this daemon or by `ec2cached install`. The answers come
//! from [`nss_ec2_dns::respond`].
//!
//! It runs on its own threads, not on the poller's runtime: a long sweep never delays an answer.
//! [`UDP_THREADS`] thread per UDP socket, taking queries [`BATCH`] at a time, each client a share
//! of a batch when several wait and more than it answers ([`SHARE`]: a flood from one client
//! does not starve the others);
//! TCP connections one thread each, at most [`MAX_TCP`] at once and [`MAX_TCP_PER_SOURCE`] per
//! client address; when all are taken, the connection idle longest is closed for a new one
//! (RFC 7766 6.2.3). A connection is closed after [`TCP_IDLE`] without a query and after
//! [`TCP_LIFETIME`] in all. Queries come only from loopback and `[dns] allow`; UDP queries from
//! the ports of services that answer anything (echo, daytime, chargen, time, and 0) are dropped.

use crate::config::dns::{allowed, Net};
use crate::config::Config;
use nss_ec2_dns::{respond, Index, Transport, Zone};
use nss_ec2_snapshot::Snapshot;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the stub looks whether a new snapshot was installed (the module's interval).
pub const RECHECK: Duration = Duration::from_millis(100);
/// Threads answering each UDP socket: one, taking [`BATCH`] queries a system call (two
/// threads on one socket cost more CPU a query than one: they wake each other).
pub const UDP_THREADS: usize = 1;
/// TCP connections served at once; when all are taken, the one idle longest is closed.
pub const MAX_TCP: usize = 64;
/// TCP connections one client address may hold at once.
pub const MAX_TCP_PER_SOURCE: usize = 8;
/// The longest a TCP connection is kept, however busy.
pub const TCP_LIFETIME: Duration = Duration::from_secs(120);
/// UDP source ports never answered: echo, daytime, chargen, time (each answers anything, so a
/// spoofed query would start a loop) and 0 (BIND drops the same).
const DROPPED_PORTS: [u16; 5] = [0, 7, 13, 19, 37];
/// A TCP connection without a new query for this long is closed (RFC 7766 suggests some
/// seconds).
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// A query must arrive whole this soon after its first byte: a client trickling bytes does not
/// hold a connection slot for long.
pub const TCP_MESSAGE: Duration = Duration::from_secs(3);
/// Largest snapshot read (offsets are 32 bit), as in the module.
const MAX_LEN: u64 = u32::MAX as u64;
/// The daemon's state directory: its owner is trusted like root, as by the module.
const STATE_DIR: &str = "/var/lib/ec2cached";

/// The stub's sockets.
#[derive(Debug, Default)]
pub struct Sockets {
    /// Datagram sockets.
    pub udp: Vec<UdpSocket>,
    /// Listening stream sockets.
    pub tcp: Vec<TcpListener>,
    /// True when systemd passed them.
    pub activated: bool,
}

impl Sockets {
    /// The addresses served, for the log.
    pub fn describe(&self) -> String {
        let mut v: Vec<String> = Vec::new();
        for s in &self.udp {
            v.extend(s.local_addr().ok().map(|a| format!("udp {a}")));
        }
        for s in &self.tcp {
            v.extend(s.local_addr().ok().map(|a| format!("tcp {a}")));
        }
        v.join(", ")
    }
}

/// The stub's sockets: those systemd passed (`ec2cached-dns.socket`), else those of
/// `[dns] listen` (UDP and TCP each), else none (no stub).
pub fn sockets(cfg: &Config) -> Result<Option<Sockets>, String> {
    let fds: Vec<RawFd> = sd_notify::listen_fds()
        .map_err(|e| format!("sockets from systemd: {e}"))?
        .collect();
    if !fds.is_empty() {
        let mut s = Sockets {
            activated: true,
            ..Sockets::default()
        };
        for fd in fds {
            // SAFETY: systemd passed this descriptor to this process (LISTEN_PID is ours,
            // checked by listen_fds) and nothing else in the process owns or closes it.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            use nix::sys::socket::{getsockopt, sockopt, SockType};
            let bad = |what: String| {
                format!("descriptor {fd} passed by systemd is not a UDP socket or a listening TCP socket: {what}")
            };
            // local_addr() fails for anything but an IPv4 or IPv6 socket (AF_UNIX, ...).
            match getsockopt(&owned.as_fd(), sockopt::SockType) {
                Ok(SockType::Datagram) => {
                    let u = UdpSocket::from(owned);
                    let at = u.local_addr().map_err(|e| bad(e.to_string()))?;
                    unspecified(at)?;
                    s.udp.push(u);
                }
                Ok(SockType::Stream) => {
                    if getsockopt(&owned.as_fd(), sockopt::AcceptConn) != Ok(true) {
                        return Err(bad("not listening".into()));
                    }
                    let l = TcpListener::from(owned);
                    let at = l.local_addr().map_err(|e| bad(e.to_string()))?;
                    unspecified(at)?;
                    s.tcp.push(l);
                }
                other => return Err(bad(format!("{other:?}"))),
            }
        }
        return Ok(Some(s));
    }
    if cfg.dns_listen.is_empty() {
        if !cfg.dns_allow.is_empty() {
            tracing::warn!(
                "dns: [dns] allow without listen, and no sockets from systemd: no stub (enable \
                 ec2cached-dns.socket, or list addresses in [dns] listen)"
            );
        }
        return Ok(None);
    }
    let mut s = Sockets::default();
    for addr in &cfg.dns_listen {
        let hint = |e: std::io::Error| {
            let more = if addr.port() < 1024 && e.kind() == std::io::ErrorKind::PermissionDenied {
                " (a port below 1024 needs a capability: use the packaged ec2cached-dns.socket)"
            } else {
                ""
            };
            format!("[dns] listen: cannot listen on {addr}: {e}{more}")
        };
        s.udp.push(UdpSocket::bind(addr).map_err(hint)?);
        s.tcp.push(TcpListener::bind(addr).map_err(hint)?);
    }
    Ok(Some(s))
}

/// A socket systemd passed bound to an unspecified address would answer a query sent to one
/// address from another, which clients drop: refused, as in `[dns] listen`.
fn unspecified(at: std::net::SocketAddr) -> Result<(), String> {
    if at.ip().to_canonical().is_unspecified() {
        return Err(format!(
            "the socket systemd passed listens on {at}, an unspecified address: replies would \
             leave from another address than the one asked; list each address in \
             ec2cached-dns.socket (ListenDatagram=, ListenStream=)"
        ));
    }
    Ok(())
}

/// What identifies one installed file: a new one has another inode or mtime; a `chmod` or
/// `chown` changes its mode or owner, and so whether it is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ident {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
    mode: u32,
    uid: u32,
}

impl Ident {
    fn of(m: &std::fs::Metadata) -> Ident {
        Ident {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
            mode: m.mode(),
            uid: m.uid(),
        }
    }
}

/// A snapshot that parses, read into memory of the stub's own, with its DNS index.
struct Loaded {
    bytes: Vec<u8>,
    index: Index,
}

/// Accounts whose files the stub trusts, as the module does: root, the account running it, and
/// the owner of the daemon's state directory (when that is not writable by group or others).
fn trusted(uid: u32) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return true;
    }
    std::fs::metadata(STATE_DIR)
        .is_ok_and(|d| d.uid() == uid && d.permissions().mode() & 0o022 == 0)
}

/// Why a file was not loaded: `Keep` (out of memory or descriptors: says nothing of the file,
/// the loaded one stays) or `None` (gone, untrusted, unreadable: no snapshot, SERVFAIL).
enum NotLoaded {
    Keep,
    None,
}

/// Opens and checks the snapshot as the module does: its directory is opened and checked
/// through its descriptor, the file opened relative to it without following a symlink (and
/// without blocking on a FIFO), then checked through its own descriptor, and read whole.
fn load(path: &Path) -> Result<(Ident, Option<Loaded>), NotLoaded> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| match e.raw_os_error() {
        // Says nothing about the file (memory, descriptors, a signal, a busy kernel): keep the
        // loaded one, as the module does.
        Some(
            libc::ENOMEM | libc::EMFILE | libc::ENFILE | libc::EINTR | libc::EAGAIN | libc::ENOBUFS,
        ) => NotLoaded::Keep,
        _ => NotLoaded::None,
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(NotLoaded::None);
    };
    if !path.is_absolute() {
        return Err(NotLoaded::None);
    }
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .map_err(io)?;
    let dm = d.metadata().map_err(io)?;
    if !dm.is_dir() || dm.permissions().mode() & 0o022 != 0 || !trusted(dm.uid()) {
        return Err(NotLoaded::None);
    }
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::openat(
        &d,
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let f = std::fs::File::from(fd);
    let meta = f.metadata().map_err(io)?;
    let ident = Ident::of(&meta);
    if !meta.is_file()
        || meta.permissions().mode() & 0o022 != 0
        || !trusted(meta.uid())
        || meta.len() == 0
        || meta.len() > MAX_LEN
    {
        return Ok((ident, None));
    }
    // Read whole into memory of our own: a file truncated or rewritten in place afterwards
    // changes nothing here (a mapping would die of SIGBUS at the next query).
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(meta.len() as usize)
        .map_err(|_| NotLoaded::Keep)?;
    if f.take(meta.len()).read_to_end(&mut bytes).is_err() || bytes.len() as u64 != meta.len() {
        return Ok((ident, None));
    }
    let index = match Snapshot::parse(&bytes) {
        Ok(s) => Index::build(&s),
        Err(_) => return Ok((ident, None)),
    };
    Ok((ident, Some(Loaded { bytes, index })))
}

struct State {
    ident: Option<Ident>,
    loaded: Option<Arc<Loaded>>,
}

/// A thread's own handle on the loaded snapshot: it takes the lock only when the loader has
/// changed it since (one atomic read per batch of queries otherwise).
#[derive(Default)]
struct Held {
    generation: u64,
    loaded: Option<Arc<Loaded>>,
}

/// The installed snapshot as the stub sees it. A loader thread looks at the file every
/// [`RECHECK`] ([`Current::refresh`]); queries only take the loaded one, never wait for a load.
pub struct Current {
    path: PathBuf,
    domain: String,
    state: Mutex<State>,
    /// Counts the changes of `state.loaded` (from 1), for [`Held`].
    generation: AtomicU64,
}

impl Current {
    /// Nothing loaded yet: [`Current::refresh`] loads.
    pub fn new(cfg: &Config) -> Current {
        Current {
            path: cfg.snapshot.clone(),
            domain: cfg.rules.domain.clone(),
            state: Mutex::new(State {
                ident: None,
                loaded: None,
            }),
            generation: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks at the file once (one `lstat`); reads and indexes it when it is another one,
    /// without holding the lock the queries take. Not a regular file (gone, a symlink, a FIFO),
    /// untrusted or unreadable: none (SERVFAIL), as the module answers UNAVAIL.
    pub fn refresh(&self) {
        let known = self.lock().ident;
        let update = match std::fs::symlink_metadata(&self.path) {
            Ok(m) if Some(Ident::of(&m)) == known => return,
            Ok(m) if !m.is_file() => (Some(Ident::of(&m)), None),
            Ok(_) => match load(&self.path) {
                Ok((ident, loaded)) => (Some(ident), loaded.map(Arc::new)),
                // Out of memory or descriptors says nothing about the file: keep what we have.
                Err(NotLoaded::Keep) => return,
                Err(NotLoaded::None) => (None, None),
            },
            Err(_) => (None, None),
        };
        let mut st = self.lock();
        (st.ident, st.loaded) = update;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The loaded snapshot, through `held`: the lock is taken only when it changed.
    fn get<'h>(&self, held: &'h mut Held) -> Option<&'h Loaded> {
        let now = self.generation.load(Ordering::Acquire);
        if held.generation != now {
            // Read under the lock: a refresh after it bumps the generation again.
            let st = self.lock();
            held.loaded = st.loaded.clone();
            held.generation = self.generation.load(Ordering::Acquire);
        }
        held.loaded.as_deref()
    }

    /// The answer to one query (see [`nss_ec2_dns::respond`]).
    pub fn answer(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let mut held = Held::default();
        let loaded = self.get(&mut held);
        self.answer_from(&self.serving(loaded), query, transport)
    }

    /// What queries are answered from, read once for a batch of them: a snapshot past its
    /// `max_age` serves as none (SERVFAIL), as the module answers UNAVAIL.
    fn serving<'l>(&self, loaded: Option<&'l Loaded>) -> Option<(Snapshot<'l>, &'l Index)> {
        let l = loaded?;
        let s = Snapshot::parse(&l.bytes).ok()?;
        (!s.header().expired_at(crate::leaf::clock::now())).then_some((s, &l.index))
    }

    fn answer_from(
        &self,
        serving: &Option<(Snapshot<'_>, &Index)>,
        query: &[u8],
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let zone = Zone {
            domain: &self.domain,
            served: serving.as_ref().map(|(s, i)| (s, *i)),
        };
        // A bug must not take the stub down: the query goes unanswered, the thread lives on.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            respond(&zone, query, transport)
        })) {
            Ok(r) => r,
            Err(_) => {
                tracing::error!("dns: a query made the stub panic; it was not answered");
                None
            }
        }
    }
}

/// Starts the stub's threads on `sockets`; they run until the process exits.
pub fn start(cfg: &Config, sockets: Sockets) -> Result<(), String> {
    let current = Arc::new(Current::new(cfg));
    let allow: Arc<[Net]> = cfg.dns_allow.clone().into();
    // Loaded before the first query; then every RECHECK, on a thread of its own.
    current.refresh();
    tracing::info!(
        activated = sockets.activated,
        "dns: answering for {} on {}",
        cfg.rules.domain,
        sockets.describe()
    );
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map(drop)
            .map_err(|e| format!("dns: cannot start a thread: {e}"))
    };
    for sock in sockets.udp {
        // Blocking mode (a passed socket may come non-blocking).
        sock.set_nonblocking(false)
            .map_err(|e| format!("dns: {e}"))?;
        for _ in 0..UDP_THREADS {
            let s = sock.try_clone().map_err(|e| format!("dns: {e}"))?;
            let (c, a) = (current.clone(), allow.clone());
            spawn("dns-udp", Box::new(move || serve_udp(&s, &c, &a)))?;
        }
    }
    let c = current.clone();
    spawn(
        "dns-loader",
        Box::new(move || loop {
            std::thread::sleep(RECHECK);
            c.refresh();
        }),
    )?;
    let conns = Arc::new(Mutex::new(Conns::default()));
    for l in sockets.tcp {
        let (c, a, k) = (current.clone(), allow.clone(), conns.clone());
        l.set_nonblocking(false).map_err(|e| format!("dns: {e}"))?;
        spawn("dns-tcp", Box::new(move || serve_tcp(&l, &c, &a, &k)))?;
    }
    Ok(())
}

/// Queries received, and answers sent, with one system call each (under load most calls carry
/// several: the cost of a query is mostly the kernel's).
const BATCH: usize = 32;
/// The largest UDP query answered: a longer datagram arrives cut short and is dropped (a query
/// is one question and an OPT record; EDNS padding makes it at most some hundred bytes).
const QUERY_MAX: usize = 4096;
/// When a full [`BATCH`] was waiting (more queries than the thread answers) from more than one
/// client (address and port), each gets at most this many of it answered; the rest of a
/// flooder's queries are dropped before any work, so the thread's time goes to the others too.
/// One client alone is never cut (dnsperf, a forwarder with one query port), and a resolver asks
/// from a new port each query.
const SHARE: usize = BATCH / 2;

fn serve_udp(sock: &UdpSocket, current: &Current, allow: &[Net]) {
    use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; QUERY_MAX]; BATCH];
    let mut into = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut out = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    let mut answers: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut to: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    let mut shares: Vec<(std::net::SocketAddr, usize)> = Vec::with_capacity(BATCH);
    let mut held = Held::default();
    let mut warned = false;
    loop {
        got.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            // Waits for one datagram, then takes those already queued behind it.
            match recvmmsg(
                fd,
                &mut into,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(rs) => got.extend(rs.map(|r| {
                    let whole = !r.flags.contains(MsgFlags::MSG_TRUNC);
                    (if whole { r.bytes } else { 0 }, r.address)
                })),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    if !warned {
                        tracing::warn!("dns: udp receive: {e}");
                        warned = true;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let serving = current.serving(current.get(&mut held));
        answers.clear();
        to.clear();
        shares.clear();
        // Never answer a port whose service answers anything: a spoofed query from it would
        // start an endless exchange; nor anyone outside loopback and `[dns] allow`; nor a
        // datagram cut short.
        let answerable = |&(n, addr): &(usize, Option<SockaddrStorage>)| {
            addr.as_ref().and_then(socket_addr).filter(|peer| {
                n > 0 && !DROPPED_PORTS.contains(&peer.port()) && allowed(allow, peer.ip())
            })
        };
        // Shares only when a full batch holds queries of more than one client.
        let mut peers = got.iter().filter_map(answerable);
        let first = peers.next();
        let crowded = got.len() == BATCH && peers.any(|p| Some(p) != first);
        for (buf, entry) in bufs.iter().zip(&got) {
            let Some(peer) = answerable(entry) else {
                continue;
            };
            let (n, addr) = *entry;
            if crowded {
                match shares.iter_mut().find(|(p, _)| *p == peer) {
                    Some((_, k)) if *k >= SHARE => continue,
                    Some((_, k)) => *k += 1,
                    None => shares.push((peer, 1)),
                }
            }
            if let Some(resp) = current.answer_from(&serving, &buf[..n], Transport::Udp) {
                answers.push(resp);
                to.push(addr);
            }
        }
        // A datagram that cannot be sent (the client's buffer full, no route) is dropped, as
        // one sendto would drop it; the rest are sent.
        let mut sent = 0;
        while sent < answers.len() {
            let iovs: Vec<[IoSlice<'_>; 1]> =
                answers[sent..].iter().map(|a| [IoSlice::new(a)]).collect();
            let n = match sendmmsg(fd, &mut out, &iovs, &to[sent..], [], MsgFlags::empty()) {
                Ok(rs) => rs.count().max(1),
                // Nothing sent: the same again.
                Err(nix::errno::Errno::EINTR) => 0,
                // The first could not be sent: it is dropped, the rest go on.
                Err(_) => 1,
            };
            sent += n.min(answers.len() - sent);
        }
    }
}

/// A datagram's source as a socket address (IPv4 or IPv6; nothing else is served).
fn socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<std::net::SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(std::net::SocketAddrV4::from(*v4).into());
    }
    a.as_sockaddr_in6()
        .map(|v6| std::net::SocketAddrV6::from(*v6).into())
}

/// The open TCP connections: their client, a handle to close them, and since when each has
/// been waiting on its client (for a query, or for the rest of one: `None` while one is
/// answered).
#[derive(Default)]
struct Conns {
    next: u64,
    open: HashMap<u64, Conn>,
}

struct Conn {
    peer: IpAddr,
    stream: TcpStream,
    waiting_since: Option<Instant>,
}

impl Conns {
    /// Closes the connection of `of` (a client, or anyone) that has waited longest on its
    /// client: idle, or trickling a query. `false` when every one is busy answering.
    fn evict(&mut self, of: Option<IpAddr>) -> bool {
        let oldest = self
            .open
            .iter()
            .filter(|(_, c)| of.is_none_or(|p| c.peer == p))
            .filter_map(|(id, c)| c.waiting_since.map(|t| (t, *id)))
            .min();
        match oldest.and_then(|(_, id)| self.open.remove(&id)) {
            Some(c) => {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
                true
            }
            None => false,
        }
    }

    /// Makes room for a connection from `peer`: a client holds at most [`MAX_TCP_PER_SOURCE`]
    /// (its own connection that has waited longest is closed for a new one: every local process
    /// shares 127.0.0.1, so one must not shut the others out), and when all [`MAX_TCP`] are
    /// taken, the one that has waited longest on its client, idle or trickling a query, is
    /// closed (RFC 7766 6.2.3). `false` only when every connection is busy answering.
    fn admit(&mut self, peer: IpAddr) -> bool {
        if self.open.values().filter(|c| c.peer == peer).count() >= MAX_TCP_PER_SOURCE
            && !self.evict(Some(peer))
        {
            return false;
        }
        self.open.len() < MAX_TCP || self.evict(None)
    }
}

/// The connections' table, also after a thread panicked holding it.
fn lock(c: &Mutex<Conns>) -> std::sync::MutexGuard<'_, Conns> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection's entry in the table, removed when its thread ends, whichever way.
struct Slot<'a> {
    conns: &'a Mutex<Conns>,
    id: u64,
}

impl Slot<'_> {
    fn waiting(&self, since: Option<Instant>) {
        if let Some(c) = lock(self.conns).open.get_mut(&self.id) {
            c.waiting_since = since;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        lock(self.conns).open.remove(&self.id);
    }
}

fn serve_tcp(
    listener: &TcpListener,
    current: &Arc<Current>,
    allow: &Arc<[Net]>,
    conns: &Arc<Mutex<Conns>>,
) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(_) => {
                // Out of descriptors, a connection reset before accept: try again shortly.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        if !allowed(allow, ip) {
            continue;
        }
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let id = {
            let mut k = lock(conns);
            if !k.admit(ip) {
                continue;
            }
            k.next += 1;
            let id = k.next;
            k.open.insert(
                id,
                Conn {
                    peer: ip,
                    stream: handle,
                    waiting_since: Some(Instant::now()),
                },
            );
            id
        };
        let (c, k) = (current.clone(), conns.clone());
        let spawned = std::thread::Builder::new()
            .name("dns-tcp-conn".into())
            .spawn(move || {
                let slot = Slot { conns: &k, id };
                let _ = serve_connection(stream, &c, |since| slot.waiting(since));
            });
        if spawned.is_err() {
            lock(conns).open.remove(&id);
        }
    }
}

/// Fills `buf` from `s` before `deadline`; an error when the peer closes or the time is up.
fn read_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf[at..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Queries in a row on one connection (RFC 7766), each a 2-byte length and a message: the first
/// byte within [`TCP_IDLE`], the rest within [`TCP_MESSAGE`], and nothing, answers included,
/// after [`TCP_LIFETIME`]. `waiting` is told when the connection waits on its client (`Some`:
/// evictable) and when it is answering (`None`).
fn serve_connection(
    mut s: TcpStream,
    current: &Current,
    waiting: impl Fn(Option<Instant>),
) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let end = Instant::now() + TCP_LIFETIME;
    let mut msg = vec![0u8; 65_535];
    loop {
        let mut len = [0u8; 2];
        waiting(Some(Instant::now()));
        read_by(&mut s, &mut len[..1], (Instant::now() + TCP_IDLE).min(end))?;
        let deadline = (Instant::now() + TCP_MESSAGE).min(end);
        read_by(&mut s, &mut len[1..], deadline)?;
        let len = usize::from(u16::from_be_bytes(len));
        read_by(&mut s, &mut msg[..len], deadline)?;
        waiting(None);
        match current.answer(&msg[..len], Transport::Tcp) {
            Some(resp) => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(());
                }
                s.set_write_timeout(Some(TCP_MESSAGE.min(left)))?;
                let mut out = Vec::with_capacity(resp.len() + 2);
                out.extend((resp.len() as u16).to_be_bytes());
                out.extend(resp);
                s.write_all(&out)?;
            }
            // Nothing to say to a non-query: close, the client is confused or hostile.
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nss_ec2_dns::hickory_proto::op::{Message, Query, ResponseCode};
    use nss_ec2_dns::hickory_proto::rr::{Name, RData, RecordType};
    use nss_ec2_snapshot::format::tiny;

    fn ask(c: &Current) -> (ResponseCode, Vec<String>) {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("i-1.ec2.").unwrap(),
            RecordType::A,
        ));
        let wire = c.answer(&q.to_vec().unwrap(), Transport::Udp).unwrap();
        let (_, rcode, addrs) = read_answer(&wire);
        (rcode, addrs)
    }

    /// An answer's ID, RCODE and A records.
    fn read_answer(wire: &[u8]) -> (u16, ResponseCode, Vec<String>) {
        let r = Message::from_vec(wire).unwrap();
        let addrs = r
            .answers
            .iter()
            .filter_map(|a| match &a.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        (r.metadata.id, r.metadata.response_code, addrs)
    }

    fn current(dir: &Path) -> Current {
        let text = format!("snapshot = {:?}", dir.join("hosts.snap"));
        Current::new(&Config::parse(Path::new("/etc/x.toml"), &text).unwrap())
    }

    #[test]
    fn follows_every_install_and_serves_none_when_gone_or_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("hosts.snap");
        let c = current(dir.path());
        c.refresh();
        assert_eq!(ask(&c), (ResponseCode::ServFail, vec![]), "no file yet");
        let now = crate::leaf::clock::now();
        crate::leaf::files::write_atomic(&snap, &tiny("ec2", now, 1)).unwrap();
        c.refresh();
        assert_eq!(ask(&c), (ResponseCode::NoError, vec!["10.0.0.1".into()]));
        crate::leaf::files::write_atomic(&snap, &tiny("ec2", now + 1, 2)).unwrap();
        assert_eq!(
            ask(&c).1,
            vec!["10.0.0.1".to_string()],
            "until the loader looks"
        );
        c.refresh();
        assert_eq!(ask(&c), (ResponseCode::NoError, vec!["10.0.0.2".into()]));
        crate::leaf::files::write_atomic(&snap, b"not a snapshot").unwrap();
        c.refresh();
        assert_eq!(ask(&c).0, ResponseCode::ServFail, "corrupt");
        std::fs::remove_file(&snap).unwrap();
        c.refresh();
        assert_eq!(ask(&c).0, ResponseCode::ServFail, "removed");
        // A FIFO or a symlink in its place: none, and no thread blocks on it.
        nix::unistd::mkfifo(&snap, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        c.refresh();
        assert_eq!(ask(&c).0, ResponseCode::ServFail, "fifo");
        std::fs::remove_file(&snap).unwrap();
        let real = dir.path().join("real.snap");
        crate::leaf::files::write_atomic(&real, &tiny("ec2", now + 2, 3)).unwrap();
        std::os::unix::fs::symlink(&real, &snap).unwrap();
        c.refresh();
        assert_eq!(ask(&c).0, ResponseCode::ServFail, "symlink");
    }

    /// Issue 23, item 5: a file truncated in place killed the daemon (SIGBUS through its
    /// mapping); a file group or others may write, or in such a directory, was served. Now the
    /// stub reads its own copy (a truncation costs at most an answer) and trusts what the
    /// module trusts.
    #[test]
    fn a_truncated_or_untrusted_file_costs_an_answer_never_the_process() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("hosts.snap");
        let now = crate::leaf::clock::now();
        crate::leaf::files::write_atomic(&snap, &tiny("ec2", now, 1)).unwrap();
        let c = current(dir.path());
        c.refresh();
        assert_eq!(ask(&c), (ResponseCode::NoError, vec!["10.0.0.1".into()]));
        // Truncated in place (not replaced): the copy answers until the loader looks.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&snap)
            .unwrap()
            .set_len(100)
            .unwrap();
        assert_eq!(ask(&c), (ResponseCode::NoError, vec!["10.0.0.1".into()]));
        c.refresh();
        assert_eq!(ask(&c).0, ResponseCode::ServFail, "truncated: none");
        crate::leaf::files::write_atomic(&snap, &tiny("ec2", now + 1, 2)).unwrap();
        c.refresh();
        assert_eq!(ask(&c).0, ResponseCode::NoError);
        std::fs::set_permissions(&snap, std::fs::Permissions::from_mode(0o666)).unwrap();
        c.refresh();
        assert_eq!(ask(&c).0, ResponseCode::ServFail, "writable by others");
        std::fs::set_permissions(&snap, std::fs::Permissions::from_mode(0o644)).unwrap();
        c.refresh();
        assert_eq!(ask(&c).0, ResponseCode::NoError);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        // Same file, same identity: the loader only looks again at a new file.
        crate::leaf::files::write_atomic(&snap, &tiny("ec2", now + 2, 3)).unwrap();
        c.refresh();
        assert_eq!(
            ask(&c).0,
            ResponseCode::ServFail,
            "a directory others may write"
        );
    }

    /// Issue 23, item 4: a client holds at most MAX_TCP_PER_SOURCE connections (its own that
    /// has waited longest makes room for its new one: every local process shares 127.0.0.1);
    /// when all MAX_TCP are taken, the one that has waited longest on its client (idle, or
    /// trickling a query) is closed for a newcomer; when all are busy answering, nobody is.
    #[test]
    fn tcp_slots_go_to_the_longest_waiting_first_and_to_no_client_beyond_its_share() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let mut conns = Conns::default();
        let mut clients = HashMap::new();
        let t0 = Instant::now();
        let add = |conns: &mut Conns,
                   clients: &mut HashMap<u64, TcpStream>,
                   id: u64,
                   peer: IpAddr,
                   since: Option<Instant>| {
            let client = TcpStream::connect(at).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let (server, _) = listener.accept().unwrap();
            clients.insert(id, client);
            conns.open.insert(
                id,
                Conn {
                    peer,
                    stream: server,
                    waiting_since: since,
                },
            );
        };
        let peer_of = |k: usize| {
            IpAddr::V4(std::net::Ipv4Addr::new(
                10,
                0,
                0,
                (k / MAX_TCP_PER_SOURCE) as u8,
            ))
        };
        for k in 0..MAX_TCP {
            assert!(conns.admit(peer_of(k)), "{k}");
            let since = Some(t0 + Duration::from_millis(k as u64));
            add(&mut conns, &mut clients, k as u64, peer_of(k), since);
        }
        let closed = |clients: &mut HashMap<u64, TcpStream>, id: u64| {
            let mut b = [0u8; 1];
            std::io::Read::read(clients.get_mut(&id).unwrap(), &mut b).unwrap() == 0
        };
        // A client at its share: its own connection that waited longest (0) makes room.
        assert!(conns.admit(peer_of(0)));
        assert!(!conns.open.contains_key(&0) && closed(&mut clients, 0));
        let later = Some(t0 + Duration::from_secs(1));
        add(&mut conns, &mut clients, 100, peer_of(0), later);
        // All taken: a newcomer gets the slot of the one that waited longest of all (1).
        assert_eq!(conns.open.len(), MAX_TCP);
        assert!(conns.admit("192.0.2.1".parse().unwrap()));
        assert!(!conns.open.contains_key(&1) && closed(&mut clients, 1));
        add(
            &mut conns,
            &mut clients,
            101,
            "192.0.2.1".parse().unwrap(),
            None,
        );
        // All busy answering: nobody is closed, the newcomer is not served.
        for c in conns.open.values_mut() {
            c.waiting_since = None;
        }
        assert!(!conns.admit("192.0.2.2".parse().unwrap()));
        assert!(!conns.admit(peer_of(10)));
        assert_eq!(conns.open.len(), MAX_TCP);
    }

    #[test]
    fn a_snapshot_past_its_max_age_serves_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = tiny("ec2", 1_000_000, 1);
        // max_age (header offset 36) = 60 s, then the header checksum again.
        bytes[36..40].copy_from_slice(&60u32.to_le_bytes());
        nss_ec2_snapshot::format::seal_header(&mut bytes);
        assert_eq!(Snapshot::parse(&bytes).unwrap().header().max_age_secs, 60);
        crate::leaf::files::write_atomic(&dir.path().join("hosts.snap"), &bytes).unwrap();
        let c = current(dir.path());
        c.refresh();
        assert_eq!(ask(&c).0, ResponseCode::ServFail);
    }

    /// The stub as the daemon runs it, on sockets of port 0 in this process: a query over UDP
    /// and over TCP (length-prefixed, two pipelined on one connection) answered from the
    /// installed snapshot, and a new install picked up by the loader thread.
    /// A config whose snapshot (in a temporary directory, kept alive by the first value) is
    /// [`tiny`]'s: `i-1.ec2` is 10.0.0.1.
    fn served_tiny() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("hosts.snap");
        let now = crate::leaf::clock::now();
        crate::leaf::files::write_atomic(&snap, &tiny("ec2", now, 1)).unwrap();
        let cfg = Config::parse(Path::new("/etc/x.toml"), &format!("snapshot = {snap:?}")).unwrap();
        (dir, cfg)
    }

    /// `i-1.ec2 A` with this ID, on the wire.
    fn query(id: u16) -> Vec<u8> {
        let mut q = Message::query();
        q.metadata.id = id;
        q.add_query(Query::query(
            Name::from_ascii("i-1.ec2.").unwrap(),
            RecordType::A,
        ));
        q.to_vec().unwrap()
    }

    /// Issue 23 item 1, with one thread: when more queries wait than it answers, a client gets
    /// a share of each batch and the rest of its queries are dropped: a flood queued ahead of
    /// other clients' queries does not keep them waiting or fill the socket's buffer.
    #[test]
    fn a_flooding_client_gets_a_share_and_the_others_their_answers() {
        let (_dir, cfg) = served_tiny();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = udp.local_addr().unwrap();
        let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
        let others: Vec<UdpSocket> = (0..4)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        // Queued before the stub reads: 120 from one client, one of each other client's among them.
        for k in 0..120u16 {
            flood.send_to(&query(k), at).unwrap();
            if k % 30 == 15 {
                let o = &others[usize::from(k / 30)];
                o.send_to(&query(1000 + k), at).unwrap();
            }
        }
        start(
            &cfg,
            Sockets {
                udp: vec![udp],
                ..Default::default()
            },
        )
        .unwrap();
        // Everything a socket gets: the first within `wait`, the rest already there.
        let answers = |s: &UdpSocket, wait: Duration| {
            s.set_read_timeout(Some(wait)).unwrap();
            let mut buf = [0u8; 512];
            let mut ids = Vec::new();
            while let Ok(n) = s.recv(&mut buf) {
                ids.push(read_answer(&buf[..n]).0);
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
            }
            ids
        };
        for (k, o) in others.iter().enumerate() {
            assert_eq!(
                answers(o, Duration::from_secs(5)),
                vec![1015 + 30 * k as u16]
            );
        }
        let flooded = answers(&flood, Duration::from_millis(500)).len();
        assert!(
            (SHARE..120).contains(&flooded),
            "the flooding client got {flooded} of its 120 answered"
        );
    }

    #[test]
    fn the_running_stub_answers_over_udp_and_tcp_on_port_0() {
        use std::io::{Read, Write};
        let (_dir, cfg) = served_tiny();
        let (snap, now) = (cfg.snapshot.clone(), crate::leaf::clock::now());
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let (udp_at, tcp_at) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let sockets = Sockets {
            udp: vec![udp],
            tcp: vec![tcp],
            activated: false,
        };
        start(&cfg, sockets).unwrap();

        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let udp_ask = |id: u16| {
            client.send_to(&query(id), udp_at).unwrap();
            let mut buf = [0u8; 512];
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, udp_at);
            read_answer(&buf[..n])
        };
        assert_eq!(
            udp_ask(7),
            (7, ResponseCode::NoError, vec!["10.0.0.1".to_string()])
        );

        let mut conn = TcpStream::connect(tcp_at).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut two = Vec::new();
        for id in [8u16, 9] {
            let q = query(id);
            two.extend_from_slice(&(q.len() as u16).to_be_bytes());
            two.extend_from_slice(&q);
        }
        conn.write_all(&two).unwrap();
        for id in [8u16, 9] {
            let mut len = [0u8; 2];
            conn.read_exact(&mut len).unwrap();
            let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
            conn.read_exact(&mut msg).unwrap();
            assert_eq!(
                read_answer(&msg),
                (id, ResponseCode::NoError, vec!["10.0.0.1".to_string()])
            );
        }

        // A new generation is served once the loader thread has seen it (every RECHECK).
        crate::leaf::files::write_atomic(&snap, &tiny("ec2", now + 1, 2)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = udp_ask(10);
        while last.2 != ["10.0.0.2"] && Instant::now() < deadline {
            std::thread::sleep(RECHECK);
            last = udp_ask(10);
        }
        assert_eq!(
            last,
            (10, ResponseCode::NoError, vec!["10.0.0.2".to_string()])
        );
    }
}
