//! Pipes: a 64 KiB ring buffer between a read end and a write end. Readers block while
//! it is empty and writers remain (EOF once none remain); writers block while it is full
//! and readers remain (EPIPE once none remain; no SIGPIPE). Writes of at most
//! `PIPE_BUF` bytes are atomic.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use mm::sync::Mutex;

use super::Event;
use super::file::{File, O_NONBLOCK, O_RDONLY, O_WRONLY};
use super::node::*;
use crate::errno::Errno;

/// Capacity of a pipe.
pub const PIPE_SIZE: usize = 64 * 1024;
/// Writes up to this size are not interleaved with other writers' data.
pub const PIPE_BUF: usize = 4096;

struct State {
    buf: VecDeque<u8>,
    readers: usize,
    writers: usize,
}

/// The shared part of a pipe.
pub struct Pipe {
    state: Mutex<State>,
    /// Data arrived, space freed, or an end closed.
    event: Event,
    ino: u64,
}

static NEXT_INO: AtomicU64 = AtomicU64::new(1);
static PIPE_DEV: spin::Once<u64> = spin::Once::new();

/// The node of a pipe (what `fstat` sees).
struct PipeNode {
    pipe: Arc<Pipe>,
}

impl Node for PipeNode {
    fn kind(&self) -> FileKind {
        FileKind::Fifo
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let t = (crate::time::now_ns() / 1_000_000_000) as i64;
        Ok(Stat {
            dev: *PIPE_DEV.call_once(super::mount::anon_dev),
            ino: self.pipe.ino,
            mode: S_IFIFO | 0o600,
            nlink: 1,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }

    fn size(&self) -> u64 {
        0
    }
}

/// One end of a pipe (its per-open state).
struct End {
    pipe: Arc<Pipe>,
    write: bool,
}

impl Drop for End {
    fn drop(&mut self) {
        {
            let mut st = self.pipe.state.lock();
            if self.write {
                st.writers -= 1;
            } else {
                st.readers -= 1;
            }
        }
        self.pipe.event.notify();
    }
}

impl Pipe {
    fn read(&self, buf: &mut ReadBuf, nonblock: bool) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let seen = self.event.snapshot();
            {
                let mut st = self.state.lock();
                if !st.buf.is_empty() {
                    let n = buf.fill(|piece| {
                        let n = piece.len().min(st.buf.len());
                        for (d, s) in piece[..n].iter_mut().zip(st.buf.drain(..n)) {
                            *d = s;
                        }
                        Ok(n)
                    })?;
                    drop(st);
                    self.event.notify();
                    return Ok(n);
                }
                if st.writers == 0 {
                    return Ok(0);
                }
            }
            if nonblock {
                return Err(Errno::EAGAIN);
            }
            self.event.wait(seen)?;
        }
    }

    fn write(&self, buf: &mut WriteBuf, nonblock: bool) -> Result<usize, Errno> {
        let total = buf.len();
        let mut done = 0usize;
        while done < total {
            let seen = self.event.snapshot();
            {
                let mut st = self.state.lock();
                if st.readers == 0 {
                    return if done > 0 {
                        Ok(done)
                    } else {
                        Err(Errno::EPIPE)
                    };
                }
                let space = PIPE_SIZE - st.buf.len();
                let left = total - done;
                // Small writes go in whole or wait.
                let fits = if left <= PIPE_BUF {
                    space >= left
                } else {
                    space > 0
                };
                if fits {
                    let want = left.min(space);
                    let mut put = 0usize;
                    let r = buf.drain(|piece| {
                        let n = piece.len().min(want - put);
                        st.buf.extend(&piece[..n]);
                        put += n;
                        Ok(n)
                    });
                    let n = match r {
                        Ok(n) => n,
                        Err(e) if done == 0 => return Err(e),
                        Err(_) => return Ok(done),
                    };
                    drop(st);
                    self.event.notify();
                    buf.advance(n);
                    done += n;
                    if n < want {
                        // A bad user address stopped the copy.
                        return if done > 0 {
                            Ok(done)
                        } else {
                            Err(Errno::EFAULT)
                        };
                    }
                    continue;
                }
            }
            if nonblock {
                return if done > 0 {
                    Ok(done)
                } else {
                    Err(Errno::EAGAIN)
                };
            }
            if let Err(e) = self.event.wait(seen) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
        }
        Ok(done)
    }

    /// Bytes waiting to be read.
    pub fn available(&self) -> usize {
        self.state.lock().buf.len()
    }
}

impl FileOps for End {
    fn read(&self, _pos: u64, buf: &mut ReadBuf, nonblock: bool) -> Result<usize, Errno> {
        if self.write {
            return Err(Errno::EBADF);
        }
        self.pipe.read(buf, nonblock)
    }

    fn write(&self, _pos: u64, buf: &mut WriteBuf, nonblock: bool) -> Result<usize, Errno> {
        if !self.write {
            return Err(Errno::EBADF);
        }
        self.pipe.write(buf, nonblock)
    }

    fn stream(&self) -> bool {
        true
    }

    fn size(&self) -> u64 {
        0
    }

    fn ioctl(&self, cmd: u32, arg: u64) -> Result<u64, Errno> {
        const FIONREAD: u32 = 0x541B;
        if cmd == FIONREAD {
            let n = self.pipe.available() as i32;
            crate::uaccess::copy_to_user(arg, &n.to_ne_bytes())?;
            return Ok(0);
        }
        Err(Errno::ENOTTY)
    }
}

/// A new pipe: (read end, write end). `flags` may hold `O_NONBLOCK`.
pub fn new_pipe(flags: u32) -> (Arc<File>, Arc<File>) {
    let pipe = Arc::new(Pipe {
        state: Mutex::new(State {
            buf: VecDeque::new(),
            readers: 1,
            writers: 1,
        }),
        event: Event::new(),
        ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
    });
    let node: NodeRef = Arc::new(PipeNode { pipe: pipe.clone() });
    let status = flags & O_NONBLOCK;
    let r = File::new(
        node.clone(),
        None,
        Box::new(End {
            pipe: pipe.clone(),
            write: false,
        }),
        O_RDONLY | status,
    );
    let w = File::new(
        node,
        None,
        Box::new(End { pipe, write: true }),
        O_WRONLY | status,
    );
    (r, w)
}
