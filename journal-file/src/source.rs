//! Positioned reads of one journal file into owned buffers.
//!
//! Journal files are written in place by journald and may be truncated,
//! replaced or rewritten while they are read, so this reader never maps
//! them: a mapping faults the process (SIGBUS) when the file shrinks under
//! it. Every read goes through `pread` into a buffer this module owns,
//! checked against the file size first. A few large windows keep the number
//! of system calls low, since an entry and the data objects it references
//! usually sit close together.

use crate::error::Bad;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes read per window refill: a few hundred entries of a typical
/// journal, so system calls stay rare while the windows stay small (every
/// open file keeps its own).
pub const WINDOW: usize = 256 << 10;
/// The smallest window accepted (a few objects).
const OBJECT_MIN_WINDOW: usize = 4 << 10;
/// Windows kept; the oldest one is refilled first.
const WINDOWS: usize = 4;
/// How far before a missed offset a window starts, at most...
const BACK_READ: u64 = 64 << 10;
/// ...in steps of this, so that windows start page-aligned.
const BACK_ALIGN: u64 = 4096;

struct Window {
    start: u64,
    buf: Vec<u8>,
}

pub(crate) struct Source {
    file: File,
    size: u64,
    windows: Vec<Window>,
    victim: usize,
    /// Bytes a window reads at least.
    window: usize,
}

impl Source {
    pub(crate) fn new(file: File, window: usize) -> io::Result<Source> {
        let size = file.metadata()?.len();
        Ok(Source {
            file,
            size,
            windows: Vec::with_capacity(WINDOWS),
            victim: 0,
            window: window.max(OBJECT_MIN_WINDOW),
        })
    }

    /// Gives the windows' memory back; the next read refills one.
    pub(crate) fn release(&mut self) {
        self.windows = Vec::new();
        self.victim = 0;
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Whether the file has been removed from its directory (it stays
    /// readable through the open descriptor).
    pub(crate) fn is_deleted(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().is_ok_and(|m| m.nlink() == 0)
    }

    /// Re-reads the file size and forgets buffered bytes, which a writer may
    /// have changed since (entry array slots fill in, headers move on).
    pub(crate) fn refresh(&mut self) -> io::Result<u64> {
        self.size = self.file.metadata()?.len();
        self.windows.clear();
        self.victim = 0;
        Ok(self.size)
    }

    /// Reads exactly `buf.len()` bytes at `offset` into `buf`, bypassing the
    /// windows.
    pub(crate) fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Bad> {
        self.check(offset, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => return Err(Bad::corrupt(offset, "file ends inside an object")),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Bad::Io(e)),
            }
        }
        Ok(())
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), Bad> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Bad::corrupt(
                offset,
                "object extends beyond the end of the file",
            )),
        }
    }

    /// `len` bytes at `offset`, from a window when possible.
    pub(crate) fn get(&mut self, offset: u64, len: usize) -> Result<&[u8], Bad> {
        self.check(offset, len)?;
        let hit = self
            .windows
            .iter()
            .position(|w| offset >= w.start && offset + len as u64 <= w.start + w.buf.len() as u64);
        let idx = match hit {
            Some(i) => i,
            None => self.fill(offset, len)?,
        };
        let w = &self.windows[idx];
        let from = (offset - w.start) as usize;
        Ok(&w.buf[from..from + len])
    }

    fn fill(&mut self, offset: u64, len: usize) -> Result<usize, Bad> {
        // An entry's new data objects lie just before it: start the window
        // a little earlier so that reading them does not refill it.
        let start = offset.saturating_sub(BACK_READ) / BACK_ALIGN * BACK_ALIGN;
        let lead = offset - start;
        // `check` has bounded offset + len by the file size.
        let want = (self.size - start).min(self.window.max(len) as u64 + lead) as usize;
        let len = len + lead as usize;
        let offset = start;
        let idx = if self.windows.len() < WINDOWS {
            self.windows.push(Window {
                start: offset,
                buf: Vec::new(),
            });
            self.windows.len() - 1
        } else {
            let i = self.victim;
            self.victim = (self.victim + 1) % WINDOWS;
            i
        };
        let mut buf = std::mem::take(&mut self.windows[idx].buf);
        // Every byte up to `want` is overwritten by the read below, so a
        // reused buffer is not zeroed again.
        if buf.len() < want {
            buf.resize(want, 0);
        } else {
            buf.truncate(want);
        }
        let mut done = 0;
        while done < want {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    buf.clear();
                    self.windows[idx] = Window { start: 0, buf };
                    return Err(Bad::Io(e));
                }
            }
        }
        buf.truncate(done);
        self.windows[idx] = Window { start: offset, buf };
        if done < len {
            return Err(Bad::corrupt(offset, "file ends inside an object"));
        }
        Ok(idx)
    }
}
