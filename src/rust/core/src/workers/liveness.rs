//! Which worker processes of a job are still there. MPI cannot say: a collective operation
//! with a dead rank never completes (Open MPI 4 has no fault tolerance). So beside MPI each
//! rank keeps one TCP connection to rank 0 (a star): the kernel closes a dead process's
//! sockets, so its end of file tells rank 0 at once which rank is gone, and rank 0 passes it
//! on; a rank whose step fails says so itself. Waiting ranks check [`Liveness::failure`]
//! while they poll their collective operations, and stop with an error naming the rank.
//!
//! Lines on the wire: `HELLO <rank>` (a rank joining), `FAIL <rank> <text>`, `BYE <rank>`
//! (leaving cleanly: its end of file is then no failure; rank 0 passes it on, since a rank
//! that left joins no more collective operations, so a wait for it must end too).
use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// The first failure heard of: (rank, what happened); this rank's own too.
    failure: Option<(usize, String)>,
    /// Ranks that said BYE.
    left: Vec<bool>,
    /// The first rank heard to leave, and when.
    first_left: Option<(usize, Instant)>,
}

pub struct Liveness {
    rank: usize,
    /// Rank 0: a stream to every other rank (by rank). Others: the stream to rank 0, at 0.
    streams: Arc<Mutex<Vec<Option<TcpStream>>>>,
    state: Arc<Mutex<State>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::Worker(format!("{}: {}", what, e))
}

/// One line, without line breaks inside (a message may hold several lines).
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

impl Liveness {
    /// Rank 0's first half: a listener on any interface, whose port the ranks are told.
    pub fn listen() -> Result<TcpListener> {
        TcpListener::bind(("0.0.0.0", 0)).map_err(|e| io_error("cannot open the workers' liveness port", e))
    }

    /// Rank 0's second half: waits (until `timeout`) for every other rank's connection.
    pub fn accept(listener: TcpListener, size: usize, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        listener.set_nonblocking(true).map_err(|e| io_error("liveness port", e))?;
        let mut streams: Vec<Option<TcpStream>> = (0..size).map(|_| None).collect();
        let mut joined = 1;
        while joined < size {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).map_err(|e| io_error("liveness connection", e))?;
                    // A greeting comes at once; a stray connection must not hold up the others.
                    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| io_error("liveness connection", e))?;
                    let mut line = String::new();
                    if BufReader::new(stream.try_clone().map_err(|e| io_error("liveness connection", e))?).read_line(&mut line).is_err() {
                        continue;
                    }
                    let rank = line.strip_prefix("HELLO ").and_then(|r| r.trim().parse::<usize>().ok()).filter(|r| *r > 0 && *r < size);
                    let Some(rank) = rank else { continue };
                    if streams[rank].is_none() {
                        stream.set_read_timeout(None).map_err(|e| io_error("liveness connection", e))?;
                        streams[rank] = Some(stream);
                        joined += 1;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let missing: Vec<String> = (1..size).filter(|r| streams[*r].is_none()).map(|r| r.to_string()).collect();
                        return Err(Error::Worker(format!(
                            "worker rank{} {} did not connect to rank 0 within {} s: check that the ranks can reach each other over TCP",
                            if missing.len() == 1 { "" } else { "s" },
                            missing.join(", "),
                            timeout.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io_error("liveness port", e)),
            }
        }
        let this = Self { rank: 0, streams: Arc::new(Mutex::new(streams)), state: Arc::new(Mutex::new(State { left: vec![false; size], ..State::default() })) };
        for rank in 1..size {
            let reader = lock(&this.streams)[rank].as_ref().map(|s| s.try_clone()).transpose().map_err(|e| io_error("liveness connection", e))?;
            if let Some(reader) = reader {
                this.listen_to(rank, reader);
            }
        }
        Ok(this)
    }

    /// Any other rank: connects to rank 0 at `address` ("host:port").
    pub fn connect(address: &str, rank: usize, size: usize, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let mut stream = loop {
            // Rank 0 listens on IPv4: its name may resolve to IPv6 first, so every address is tried.
            let attempt = address.to_socket_addrs().map_err(|e| io_error(&format!("cannot resolve rank 0's address {}", address), e)).and_then(|addrs| {
                let mut last = Error::Worker(format!("rank 0's address {} resolves to nothing", address));
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                        Ok(s) => return Ok(s),
                        Err(e) => last = io_error(&format!("cannot reach rank 0 at {}", address), e),
                    }
                }
                Err(last)
            });
            match attempt {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        writeln!(stream, "HELLO {}", rank).map_err(|e| io_error("cannot greet rank 0", e))?;
        let reader = stream.try_clone().map_err(|e| io_error("liveness connection", e))?;
        let this = Self {
            rank,
            streams: Arc::new(Mutex::new(vec![Some(stream)])),
            state: Arc::new(Mutex::new(State { left: vec![false; size], ..State::default() })),
        };
        this.listen_to(0, reader);
        Ok(this)
    }

    /// Reads what `peer` sends until its end, on a thread of its own.
    fn listen_to(&self, peer: usize, stream: TcpStream) {
        let (state, streams, me) = (self.state.clone(), self.streams.clone(), self.rank);
        let _ = std::thread::Builder::new().name(format!("rustgpu liveness {}", peer)).spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let mut words = line.splitn(3, ' ');
                let (kind, rank, text) = (words.next().unwrap_or(""), words.next().and_then(|r| r.parse::<usize>().ok()), words.next().unwrap_or(""));
                match (kind, rank) {
                    ("BYE", Some(r)) => {
                        {
                            let mut st = lock(&state);
                            if let Some(l) = st.left.get_mut(r) {
                                *l = true;
                            }
                            st.first_left.get_or_insert((r, Instant::now()));
                        }
                        if me == 0 {
                            relay(&streams, r, &format!("BYE {}\n", r));
                        }
                    }
                    ("FAIL", Some(r)) => record(&state, &streams, me, r, text),
                    _ => {}
                }
            }
            let left = lock(&state).left.get(peer).copied().unwrap_or(true);
            if !left {
                record(&state, &streams, me, peer, "its process ended (killed, crashed or quit)");
            }
        });
    }

    /// The first failure of another rank heard of, if any.
    #[cfg(test)]
    pub fn failure(&self) -> Option<(usize, String)> {
        lock(&self.state).failure.clone()
    }

    /// A handle that reads [`Self::failure`] later, from anywhere.
    pub fn watch(&self) -> FailureWatch {
        FailureWatch(self.state.clone())
    }

    /// Records that this rank failed (its step, or its R code, stopped with `text`), so that
    /// it starts no more collective operations, and tells the others. The first failure
    /// known here stays the one reported.
    pub fn report(&self, text: &str) {
        {
            let mut st = lock(&self.state);
            if st.failure.is_some() {
                return;
            }
            st.failure = Some((self.rank, one_line(text)));
        }
        let line = format!("FAIL {} {}\n", self.rank, one_line(text));
        for s in lock(&self.streams).iter_mut().flatten() {
            let _ = s.write_all(line.as_bytes());
        }
    }

    /// Tells the others that this rank leaves cleanly.
    pub fn leave(&self) {
        let line = format!("BYE {}\n", self.rank);
        for s in lock(&self.streams).iter_mut().flatten() {
            let _ = s.write_all(line.as_bytes());
        }
    }
}

/// Reads a job's first failure (see [`Liveness::watch`]).
#[derive(Clone)]
pub struct FailureWatch(Arc<Mutex<State>>);

impl FailureWatch {
    pub fn failure(&self) -> Option<(usize, String)> {
        lock(&self.0).failure.clone()
    }

    /// The first rank heard to leave the job, and when.
    pub fn first_left(&self) -> Option<(usize, Instant)> {
        lock(&self.0).first_left
    }
}

impl Drop for Liveness {
    /// Closes the connections (the readers hold copies of the sockets, which would keep them
    /// open): the others see this rank's end, as when its process ends.
    fn drop(&mut self) {
        for s in lock(&self.streams).iter().flatten() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Keeps the first failure; rank 0 passes it on to every other rank.
fn record(state: &Mutex<State>, streams: &Mutex<Vec<Option<TcpStream>>>, me: usize, rank: usize, text: &str) {
    {
        let mut st = lock(state);
        if st.failure.is_some() {
            return;
        }
        st.failure = Some((rank, text.to_string()));
    }
    if me == 0 {
        relay(streams, rank, &format!("FAIL {} {}\n", rank, one_line(text)));
    }
}

/// Rank 0 passes a line about `rank` on to every other rank.
fn relay(streams: &Mutex<Vec<Option<TcpStream>>>, rank: usize, line: &str) {
    for (r, s) in lock(streams).iter_mut().enumerate() {
        if let (true, Some(s)) = (r != rank, s.as_mut()) {
            let _ = s.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three ranks in one process: rank 0 and two others, connected over localhost.
    fn job() -> (Liveness, Liveness, Liveness) {
        let listener = Liveness::listen().unwrap();
        let address = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let root = std::thread::spawn(move || Liveness::accept(listener, 3, Duration::from_secs(10)).unwrap());
        let one = Liveness::connect(&address, 1, 3, Duration::from_secs(10)).unwrap();
        let two = Liveness::connect(&address, 2, 3, Duration::from_secs(10)).unwrap();
        (root.join().unwrap(), one, two)
    }

    fn wait_for(l: &Liveness) -> (usize, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(f) = l.failure() {
                return f;
            }
            assert!(Instant::now() < deadline, "no failure heard of");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_rank_that_goes_away_is_named_to_every_other() {
        let (root, one, two) = job();
        drop(two);
        assert_eq!(wait_for(&root).0, 2);
        let (rank, text) = wait_for(&one);
        assert_eq!(rank, 2);
        assert!(text.contains("process ended"), "{}", text);
    }

    #[test]
    fn a_reported_failure_carries_its_message_and_leaving_is_no_failure() {
        let (root, one, two) = job();
        two.leave();
        std::thread::sleep(Duration::from_millis(50));
        drop(two);
        one.report("fit() failed:\nout of memory");
        assert_eq!(wait_for(&root), (1, "fit() failed: out of memory".to_string()));
        std::thread::sleep(Duration::from_millis(50));
        // Rank 2 left cleanly before: rank 0 heard of rank 1's failure, not of rank 2's.
        assert_eq!(root.failure().unwrap().0, 1);
    }

    #[test]
    fn a_rank_leaving_is_passed_on_and_a_rank_failing_records_its_own_failure() {
        let (root, one, two) = job();
        two.leave();
        let deadline = Instant::now() + Duration::from_secs(10);
        while one.watch().first_left().is_none() {
            assert!(Instant::now() < deadline, "rank 1 never heard that rank 2 left");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(one.watch().first_left().map(|(r, _)| r), Some(2));
        assert!(root.failure().is_none() && one.failure().is_none(), "leaving is no failure");
        one.report("out of memory");
        assert_eq!(one.failure(), Some((1, "out of memory".to_string())), "a failing rank starts nothing more");
    }

    #[test]
    fn rank_zero_going_away_is_heard_by_the_others() {
        let (root, one, _two) = job();
        drop(root);
        assert_eq!(wait_for(&one).0, 0);
    }
}
