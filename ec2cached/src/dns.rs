//! The DNS stub (`[dns] listen`, or sockets passed by systemd socket activation): the names of
//! the installed snapshot for programs that never load an NSS module (static Go, musl, c-ares).
//!
//! It maps the snapshot the module maps and reads it through the same reader
//! (`nss_ec2_snapshot::Snapshot`), looking at the file at most every [`RECHECK`] as the module
//! does, so it follows every publish or install, by this daemon or by `ec2cached install`, with
//! the same bounds checks. The answers come from [`nss_ec2_dns::respond`].
//!
//! It runs on its own threads, not on the poller's runtime: a long sweep never delays an answer.
//! One thread per UDP socket; TCP connections one thread each, at most [`MAX_TCP`] at once, each
//! closed after [`TCP_IDLE`] without a query.

use crate::config::Config;
use nss_ec2_dns::{respond, Index, Transport, Zone};
use nss_ec2_snapshot::Snapshot;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the stub looks whether a new snapshot was installed (the module's interval).
pub const RECHECK: Duration = Duration::from_millis(100);
/// TCP connections served at once; more are closed at once.
pub const MAX_TCP: usize = 64;
/// A TCP connection without a new query for this long is closed (RFC 7766 suggests some
/// seconds).
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// A query must arrive whole this soon after its first byte: a client trickling bytes does not
/// hold a connection slot for long.
pub const TCP_MESSAGE: Duration = Duration::from_secs(3);
/// Largest snapshot mapped (offsets are 32 bit), as in the module.
const MAX_LEN: u64 = u32::MAX as u64;

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
                    u.local_addr().map_err(|e| bad(e.to_string()))?;
                    s.udp.push(u);
                }
                Ok(SockType::Stream) => {
                    if getsockopt(&owned.as_fd(), sockopt::AcceptConn) != Ok(true) {
                        return Err(bad("not listening".into()));
                    }
                    let l = TcpListener::from(owned);
                    l.local_addr().map_err(|e| bad(e.to_string()))?;
                    s.tcp.push(l);
                }
                other => return Err(bad(format!("{other:?}"))),
            }
        }
        return Ok(Some(s));
    }
    if cfg.dns_listen.is_empty() {
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

/// A snapshot file mapped read-only and shared, as the module maps it.
struct Mapping {
    ptr: std::ptr::NonNull<std::ffi::c_void>,
    len: usize,
}

// SAFETY: the mapping is read-only and never written through; the pointer is only read.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared reads of immutable memory.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn bytes(&self) -> &[u8] {
        // SAFETY: ptr/len come from a successful mmap of len bytes, unmapped only in Drop, so
        // the slice is valid for as long as &self. The file is replaced by rename, never written
        // in place, so the mapped bytes do not change.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr() as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and are unmapped exactly once; no slice
        // of it outlives &self.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, self.len) };
    }
}

/// What identifies one installed file: a new one has another inode or mtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ident {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Ident {
    fn of(m: &std::fs::Metadata) -> Ident {
        Ident {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

/// A mapped snapshot that parses, with its DNS index.
struct Loaded {
    map: Mapping,
    index: Index,
}

fn load(path: &Path) -> Result<(Ident, Option<Loaded>), std::io::Error> {
    use std::os::unix::fs::OpenOptionsExt;
    // Never a symlink (as the module), never block on a FIFO put in its place.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    let ident = Ident::of(&meta);
    if !meta.is_file() || meta.len() > MAX_LEN {
        return Ok((ident, None));
    }
    let Some(len) = NonZeroUsize::new(meta.len() as usize) else {
        return Ok((ident, None));
    };
    use nix::sys::mman::{mmap, MapFlags, ProtFlags};
    // SAFETY: a fresh read-only shared mapping of a regular file we opened, not aliased by any
    // Rust reference; it is unmapped when the Mapping is dropped.
    let ptr = unsafe { mmap(None, len, ProtFlags::PROT_READ, MapFlags::MAP_SHARED, &f, 0) }
        .map_err(std::io::Error::from)?;
    let map = Mapping {
        ptr,
        len: len.get(),
    };
    let index = match Snapshot::parse(map.bytes()) {
        Ok(s) => Index::build(&s),
        Err(_) => return Ok((ident, None)),
    };
    Ok((ident, Some(Loaded { map, index })))
}

struct State {
    ident: Option<Ident>,
    loaded: Option<Arc<Loaded>>,
}

/// The installed snapshot as the stub sees it. A loader thread looks at the file every
/// [`RECHECK`] ([`Current::refresh`]); queries only take the loaded one, never wait for a load.
pub struct Current {
    path: PathBuf,
    domain: String,
    state: Mutex<State>,
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks at the file once (one `lstat`); maps and indexes it when it is another one, without
    /// holding the lock the queries take. Not a regular file (gone, a symlink, a FIFO): none.
    pub fn refresh(&self) {
        let known = self.lock().ident;
        let update = match std::fs::symlink_metadata(&self.path) {
            Ok(m) if Some(Ident::of(&m)) == known => return,
            Ok(m) if !m.is_file() => (Some(Ident::of(&m)), None),
            Ok(_) => match load(&self.path) {
                Ok((ident, loaded)) => (Some(ident), loaded.map(Arc::new)),
                // Out of memory or descriptors says nothing about the file: keep what we have.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return,
                Err(_) => (None, None),
            },
            Err(_) => (None, None),
        };
        let mut st = self.lock();
        (st.ident, st.loaded) = update;
    }

    fn get(&self) -> Option<Arc<Loaded>> {
        self.lock().loaded.clone()
    }

    /// The answer to one query (see [`nss_ec2_dns::respond`]); a snapshot past its `max_age`
    /// serves as none (SERVFAIL), as the module answers UNAVAIL.
    pub fn answer(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let loaded = self.get();
        let snap = loaded.as_ref().and_then(|l| {
            let s = Snapshot::parse(l.map.bytes()).ok()?;
            (!s.header().expired_at(crate::leaf::clock::now())).then_some(s)
        });
        let zone = Zone {
            domain: &self.domain,
            served: snap
                .as_ref()
                .zip(loaded.as_ref())
                .map(|(s, l)| (s, &l.index)),
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
        let c = current.clone();
        // Blocking mode (a passed socket may come non-blocking).
        sock.set_nonblocking(false)
            .map_err(|e| format!("dns: {e}"))?;
        spawn("dns-udp", Box::new(move || serve_udp(&sock, &c)))?;
    }
    let c = current.clone();
    spawn(
        "dns-loader",
        Box::new(move || loop {
            std::thread::sleep(RECHECK);
            c.refresh();
        }),
    )?;
    let active = Arc::new(AtomicUsize::new(0));
    for l in sockets.tcp {
        let c = current.clone();
        let a = active.clone();
        l.set_nonblocking(false).map_err(|e| format!("dns: {e}"))?;
        spawn("dns-tcp", Box::new(move || serve_tcp(&l, &c, &a)))?;
    }
    Ok(())
}

fn serve_udp(sock: &UdpSocket, current: &Current) {
    let mut buf = vec![0u8; 65_535];
    let mut warned = false;
    loop {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if !warned {
                    tracing::warn!("dns: udp receive: {e}");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // Port 0 cannot be answered; reflecting to it is a known abuse pattern.
        if peer.port() == 0 {
            continue;
        }
        if let Some(resp) = current.answer(&buf[..n], Transport::Udp) {
            let _ = sock.send_to(&resp, peer);
        }
    }
}

fn serve_tcp(listener: &TcpListener, current: &Arc<Current>, active: &Arc<AtomicUsize>) {
    loop {
        let (stream, _) = match listener.accept() {
            Ok(x) => x,
            Err(_) => {
                // Out of descriptors, a connection reset before accept: try again shortly.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_TCP {
            active.fetch_sub(1, Ordering::SeqCst);
            drop(stream);
            continue;
        }
        let (c, a) = (current.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("dns-tcp-conn".into())
            .spawn(move || {
                let _ = serve_connection(stream, &c);
                a.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
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
/// byte within [`TCP_IDLE`], the rest within [`TCP_MESSAGE`].
fn serve_connection(mut s: TcpStream, current: &Current) -> std::io::Result<()> {
    s.set_write_timeout(Some(TCP_MESSAGE))?;
    s.set_nodelay(true)?;
    let mut msg = vec![0u8; 65_535];
    loop {
        let mut len = [0u8; 2];
        read_by(&mut s, &mut len[..1], Instant::now() + TCP_IDLE)?;
        let deadline = Instant::now() + TCP_MESSAGE;
        read_by(&mut s, &mut len[1..], deadline)?;
        let len = usize::from(u16::from_be_bytes(len));
        read_by(&mut s, &mut msg[..len], deadline)?;
        match current.answer(&msg[..len], Transport::Tcp) {
            Some(resp) => {
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
    #[test]
    fn the_running_stub_answers_over_udp_and_tcp_on_port_0() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("hosts.snap");
        let now = crate::leaf::clock::now();
        crate::leaf::files::write_atomic(&snap, &tiny("ec2", now, 1)).unwrap();
        let cfg = Config::parse(Path::new("/etc/x.toml"), &format!("snapshot = {snap:?}")).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let (udp_at, tcp_at) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let sockets = Sockets {
            udp: vec![udp],
            tcp: vec![tcp],
            activated: false,
        };
        start(&cfg, sockets).unwrap();

        let query = |id: u16| {
            let mut q = Message::query();
            q.metadata.id = id;
            q.add_query(Query::query(
                Name::from_ascii("i-1.ec2.").unwrap(),
                RecordType::A,
            ));
            q.to_vec().unwrap()
        };
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
