//! An in-memory [`FileSystem`] that models durability, for crash tests.
//!
//! Every file has **live** bytes (what reads, maps and `len` see) and **durable** bytes (what
//! survives a crash). `sync_data` / `sync_all` copy a file's live bytes (and length) to its durable
//! bytes. Directory entries have the same split: creating, renaming and removing files and
//! creating directories change the **live namespace**; `sync_dir` of a directory copies that
//! directory's live entries to the **durable namespace**.
//!
//! [`MemFs::crash`] returns a new, independent `MemFs` holding only what a power loss would
//! leave: the durable namespace (entries whose parent directories are durable too), each file's
//! durable bytes, and optionally a torn tail of what was written since the file's last sync
//! ([`TornTail`]).
//!
//! [`MemFs::crash_after_syncs`] makes every sync after the first `k` fail with an I/O error. As
//! nothing else makes data durable, the durable image is then frozen at sync `k` while the
//! program under test goes on running: the crash-at-every-sync-point suite
//! (`tests/crash_points.rs`) runs a workload until its first error and then looks at
//! [`MemFs::crash`] of what is left.
//!
//! The model follows DESIGN.md §11: a successful sync is never undone, unsynced writes may be
//! lost or torn. It models unsynced writes as one span per file (from the lowest to the highest
//! byte written since the last sync); a torn tail keeps a prefix of that span (cut at a sector or
//! page boundary) or replaces it with garbage. Unsynced directory operations are lost, except
//! that [`MemFs::crash_keeping_dir_ops`] keeps the oldest `n` of them (a journaling file system
//! may commit an entry nobody synced).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{DirLock, FileSystem, MappedRegion, StorageFile, region_range};

/// Free space a new [`MemFs`] reports: 1 TiB.
pub const DEFAULT_FREE_SPACE: u64 = 1 << 40;

/// What survives of each file's unsynced writes in a [`MemFs::crash`] image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornTail {
    /// Nothing: only synced bytes survive.
    None,
    /// The unsynced writes below a 512-byte boundary survive, those above it are lost.
    Sector512(Cut),
    /// The unsynced writes below a 4096-byte boundary survive, those above it are lost.
    Page4096(Cut),
    /// Every unsynced byte is replaced by pseudo-random garbage (from this seed); a file that
    /// grew keeps its new length.
    Garbage(u64),
    /// Each 512-byte sector of the unsynced span survives or not independently (a fair coin
    /// from this seed): later writes may survive while earlier ones are lost (DESIGN.md §11
    /// allows it; §7.3 says strict recovery then refuses to open). A file that grew keeps its
    /// new length.
    Sectors(u64),
}

/// Where a [`TornTail::Sector512`] or [`TornTail::Page4096`] tail is cut, in each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// At a pseudo-random block boundary within (or at either end of) each file's unsynced
    /// span, chosen from this seed and the file.
    Random(u64),
    /// At this file offset, rounded down to the block size (the same offset in every file).
    At(u64),
}

/// An in-memory file system with live and durable state. Cheap to clone: clones share the
/// same files. See the module documentation.
#[derive(Clone)]
pub struct MemFs {
    shared: Arc<Mutex<State>>,
}

#[derive(Debug, Clone, Default)]
struct FileData {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// The span written (or resized) since the last successful sync: `lo..hi`.
    dirty: Option<(u64, u64)>,
}

impl FileData {
    fn touch(&mut self, lo: u64, hi: u64) {
        if lo >= hi {
            return;
        }
        self.dirty = Some(match self.dirty {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    }
}

#[derive(Debug)]
struct State {
    files: HashMap<u64, FileData>,
    next_file: u64,
    live_files: BTreeMap<PathBuf, u64>,
    durable_files: BTreeMap<PathBuf, u64>,
    /// Directories other than the root (which always exists).
    live_dirs: BTreeSet<PathBuf>,
    durable_dirs: BTreeSet<PathBuf>,
    locks: HashSet<PathBuf>,
    /// Sync calls (file or directory) so far, failed ones included.
    syncs: u64,
    /// Sync calls that succeeded.
    syncs_ok: u64,
    /// Syncs after the first `k` fail.
    crash_after: Option<u64>,
    free_space: u64,
    /// Directory operations not yet made durable by a `sync_dir`, oldest first.
    unsynced_ops: Vec<DirOp>,
}

/// A change to the namespace, kept until a `sync_dir` of its directory makes it durable.
#[derive(Debug, Clone)]
enum DirOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf, u64),
    Mkdir(PathBuf),
}

impl DirOp {
    /// True when a `sync_dir` of `dir` makes the operation durable.
    fn synced_by(&self, dir: &Path) -> bool {
        match self {
            DirOp::Link(p, _) | DirOp::Unlink(p) | DirOp::Mkdir(p) => parent_of(p) == dir,
            // Renames within one directory only (a cross-directory rename stays pending until
            // both directories were synced; good enough for a model).
            DirOp::Rename(from, to, _) => parent_of(from) == dir && parent_of(to) == dir,
        }
    }

    fn apply(&self, files: &mut BTreeMap<PathBuf, u64>, dirs: &mut BTreeSet<PathBuf>) {
        match self {
            DirOp::Link(p, id) => {
                files.insert(p.clone(), *id);
            }
            DirOp::Unlink(p) => {
                files.remove(p);
            }
            DirOp::Rename(from, to, id) => {
                files.remove(from);
                files.insert(to.clone(), *id);
            }
            DirOp::Mkdir(p) => {
                dirs.insert(p.clone());
            }
        }
    }
}

impl State {
    fn empty(free_space: u64) -> Self {
        State {
            files: HashMap::new(),
            next_file: 1,
            live_files: BTreeMap::new(),
            durable_files: BTreeMap::new(),
            live_dirs: BTreeSet::new(),
            durable_dirs: BTreeSet::new(),
            locks: HashSet::new(),
            syncs: 0,
            syncs_ok: 0,
            crash_after: None,
            free_space,
            unsynced_ops: Vec::new(),
        }
    }

    fn is_live_dir(&self, p: &Path) -> bool {
        is_root(p) || self.live_dirs.contains(p)
    }

    fn sync_point(&mut self, what: &str) -> io::Result<()> {
        self.syncs += 1;
        if let Some(k) = self.crash_after
            && self.syncs > k
        {
            return Err(io::Error::other(format!(
                "MemFs: injected failure of sync {} (crash point after sync {k}): {what}",
                self.syncs
            )));
        }
        self.syncs_ok += 1;
        Ok(())
    }

    fn file(&self, id: u64) -> io::Result<&FileData> {
        self.files
            .get(&id)
            .ok_or_else(|| io::Error::other("MemFs: stale file handle"))
    }

    fn file_mut(&mut self, id: u64) -> io::Result<&mut FileData> {
        self.files
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("MemFs: stale file handle"))
    }
}

/// `p` made absolute and free of `.` and `..`, so that `a/b`, `/a/b` and `/a/./b` name the same
/// entry. The root is `/`.
fn norm(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn is_root(p: &Path) -> bool {
    p.parent().is_none()
}

/// The directory holding the (normalized) entry `p`.
fn parent_of(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("/"))
}

fn not_found(what: &str, p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("MemFs: {what} {} does not exist", p.display()),
    )
}

/// splitmix64: a small deterministic generator for cuts and garbage.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The bytes of `fd` after a crash with `tail`; `salt` tells files apart for random choices.
fn crash_image(fd: &FileData, tail: TornTail, salt: u64) -> Vec<u8> {
    let mut out = fd.durable.clone();
    let Some((lo, hi)) = fd.dirty else {
        return out;
    };
    let durable_len = fd.durable.len() as u64;
    let live_len = fd.live.len() as u64;
    match tail {
        TornTail::None => out,
        TornTail::Sector512(cut) | TornTail::Page4096(cut) => {
            let bs = if matches!(tail, TornTail::Sector512(_)) {
                512
            } else {
                4096
            };
            let boundary = match cut {
                Cut::At(off) => off / bs * bs,
                Cut::Random(seed) => {
                    let first = lo / bs;
                    let last = hi.div_ceil(bs);
                    let choices = last - first + 1;
                    (first + mix(seed ^ mix(salt)) % choices) * bs
                }
            };
            let new_len = if live_len > durable_len {
                durable_len.max(live_len.min(boundary))
            } else {
                durable_len
            };
            out.resize(to_usize(new_len), 0);
            let end = hi.min(boundary).min(new_len).min(live_len);
            if lo < end {
                let r = to_usize(lo)..to_usize(end);
                out[r.clone()].copy_from_slice(&fd.live[r]);
            }
            out
        }
        TornTail::Sectors(seed) => {
            let new_len = durable_len.max(live_len);
            out.resize(to_usize(new_len), 0);
            let end = hi.min(new_len).min(live_len);
            let mut sector = lo / 512;
            while sector * 512 < end {
                let (a, b) = ((sector * 512).max(lo), ((sector + 1) * 512).min(end));
                if mix(seed ^ mix(salt ^ mix(sector))) & 1 == 1 {
                    out[to_usize(a)..to_usize(b)]
                        .copy_from_slice(&fd.live[to_usize(a)..to_usize(b)]);
                }
                sector += 1;
            }
            out
        }
        TornTail::Garbage(seed) => {
            let new_len = durable_len.max(live_len);
            out.resize(to_usize(new_len), 0);
            let end = hi.min(new_len);
            let mut state = mix(seed ^ mix(salt));
            for (i, b) in out[to_usize(lo.min(end))..to_usize(end)]
                .iter_mut()
                .enumerate()
            {
                if i % 8 == 0 {
                    state = mix(state);
                }
                *b = state.to_le_bytes()[i % 8];
            }
            out
        }
    }
}

impl Default for MemFs {
    fn default() -> Self {
        MemFs::new()
    }
}

impl MemFs {
    /// An empty file system (only the root directory `/` exists; relative paths live under it).
    pub fn new() -> Self {
        MemFs::from_state(State::empty(DEFAULT_FREE_SPACE))
    }

    fn from_state(state: State) -> Self {
        MemFs {
            shared: Arc::new(Mutex::new(state)),
        }
    }

    /// Sync calls (file or directory, failed ones included) so far.
    pub fn syncs(&self) -> u64 {
        self.shared.lock().syncs
    }

    /// Sync calls that succeeded so far.
    pub fn successful_syncs(&self) -> u64 {
        self.shared.lock().syncs_ok
    }

    /// Lets the first `k` syncs (counted since this `MemFs` was created, see [`MemFs::syncs`])
    /// succeed and fails every later one with an I/O error, which freezes the durable image at
    /// sync `k`. `None` switches the failures off again.
    pub fn crash_after_syncs(&self, k: Option<u64>) {
        self.shared.lock().crash_after = k;
    }

    /// Reports `bytes` of free space from now on (for every path).
    pub fn set_free_space(&self, bytes: u64) {
        self.shared.lock().free_space = bytes;
    }

    /// The live bytes of the file at `path` (what a read sees now).
    pub fn read_live(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.shared.lock();
        let p = norm(path);
        let id = *st.live_files.get(&p).ok_or_else(|| not_found("file", &p))?;
        Ok(st.file(id)?.live.clone())
    }

    /// The image a crash at this instant would leave: a new, independent `MemFs` holding the
    /// durable namespace and each file's durable bytes, plus whatever `tail` keeps of the writes
    /// made since each file's last sync. Its live and durable states are equal, it has no locks
    /// and no injected failures, its sync counter is zero and it reports the same free space.
    pub fn crash(&self, tail: TornTail) -> MemFs {
        self.crash_keeping_dir_ops(tail, 0)
    }

    /// Directory operations (creations, renames, removals, new directories) not yet made
    /// durable by a `sync_dir`.
    pub fn unsynced_dir_ops(&self) -> usize {
        self.shared.lock().unsynced_ops.len()
    }

    /// Like [`MemFs::crash`], but the oldest `n` unsynced directory operations survive too (in
    /// order, as a journaling file system commits them), as a crash may persist an entry that
    /// was never synced. A rename survives whole or not at all.
    pub fn crash_keeping_dir_ops(&self, tail: TornTail, n: usize) -> MemFs {
        let st = self.shared.lock();
        let mut durable_files = st.durable_files.clone();
        let mut durable_dirs = st.durable_dirs.clone();
        for op in st.unsynced_ops.iter().take(n) {
            op.apply(&mut durable_files, &mut durable_dirs);
        }
        // A directory survives only if every directory above it does.
        let dirs: BTreeSet<PathBuf> = durable_dirs
            .iter()
            .filter(|d| {
                d.ancestors()
                    .skip(1)
                    .all(|a| is_root(a) || durable_dirs.contains(a))
            })
            .cloned()
            .collect();
        let mut files = HashMap::new();
        let mut names = BTreeMap::new();
        for (path, id) in &durable_files {
            let parent = parent_of(path);
            if !(is_root(parent) || dirs.contains(parent)) {
                continue;
            }
            let Some(fd) = st.files.get(id) else {
                continue;
            };
            names.insert(path.clone(), *id);
            files.entry(*id).or_insert_with(|| {
                let bytes = crash_image(fd, tail, *id);
                FileData {
                    live: bytes.clone(),
                    durable: bytes,
                    dirty: None,
                }
            });
        }
        let mut next = State::empty(st.free_space);
        next.files = files;
        next.next_file = st.next_file;
        next.live_files = names.clone();
        next.durable_files = names;
        next.live_dirs = dirs.clone();
        next.durable_dirs = dirs;
        MemFs::from_state(next)
    }
}

impl fmt::Debug for MemFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("MemFs")
            .field("files", &st.live_files.len())
            .field("dirs", &st.live_dirs.len())
            .field("syncs", &st.syncs)
            .field("crash_after", &st.crash_after)
            .finish_non_exhaustive()
    }
}

struct LockGuard {
    shared: Arc<Mutex<State>>,
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.shared.lock().locks.remove(&self.path);
    }
}

struct MemFile {
    shared: Arc<Mutex<State>>,
    id: u64,
    writable: bool,
    path: PathBuf,
}

impl fmt::Debug for MemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemFile")
            .field("path", &self.path)
            .field("id", &self.id)
            .field("writable", &self.writable)
            .finish()
    }
}

struct MemMap {
    shared: Arc<Mutex<State>>,
    id: u64,
    len: u64,
    path: PathBuf,
}

impl fmt::Debug for MemMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemMap")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish()
    }
}

impl MemFs {
    fn handle(&self, id: u64, writable: bool, path: PathBuf) -> Arc<dyn StorageFile> {
        Arc::new(MemFile {
            shared: self.shared.clone(),
            id,
            writable,
            path,
        })
    }
}

impl FileSystem for MemFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let p = norm(path);
        let mut st = self.shared.lock();
        let mut missing = Vec::new();
        for a in p.ancestors().filter(|a| !is_root(a)) {
            if st.live_files.contains_key(a) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("MemFs: {} is a file", a.display()),
                ));
            }
            if !st.live_dirs.contains(a) {
                missing.push(a.to_path_buf());
            }
        }
        for d in missing.iter().rev() {
            st.unsynced_ops.push(DirOp::Mkdir(d.clone()));
        }
        st.live_dirs.extend(missing);
        Ok(())
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let p = norm(path);
        let mut st = self.shared.lock();
        if !st.is_live_dir(parent_of(&p)) {
            return Err(not_found("directory", parent_of(&p)));
        }
        if st.live_files.contains_key(&p) || st.is_live_dir(&p) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("MemFs: {} exists", p.display()),
            ));
        }
        let id = st.next_file;
        st.next_file += 1;
        st.files.insert(id, FileData::default());
        st.live_files.insert(p.clone(), id);
        st.unsynced_ops.push(DirOp::Link(p.clone(), id));
        drop(st);
        Ok(self.handle(id, true, p))
    }

    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        let p = norm(path);
        let st = self.shared.lock();
        let id = *st.live_files.get(&p).ok_or_else(|| not_found("file", &p))?;
        drop(st);
        Ok(self.handle(id, writable, p))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (norm(from), norm(to));
        let mut st = self.shared.lock();
        if !st.is_live_dir(parent_of(&to)) {
            return Err(not_found("directory", parent_of(&to)));
        }
        if st.is_live_dir(&to) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("MemFs: {} is a directory", to.display()),
            ));
        }
        let id = st
            .live_files
            .remove(&from)
            .ok_or_else(|| not_found("file", &from))?;
        st.live_files.insert(to.clone(), id);
        st.unsynced_ops.push(DirOp::Rename(from, to, id));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let p = norm(path);
        let mut st = self.shared.lock();
        st.live_files
            .remove(&p)
            .ok_or_else(|| not_found("file", &p))?;
        st.unsynced_ops.push(DirOp::Unlink(p));
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let p = norm(path);
        let st = self.shared.lock();
        if !st.is_live_dir(&p) {
            return Err(not_found("directory", &p));
        }
        let files = st.live_files.keys();
        let dirs = st.live_dirs.iter();
        Ok(files
            .chain(dirs)
            .filter(|e| parent_of(e) == p)
            .filter_map(|e| e.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let p = norm(path);
        let mut st = self.shared.lock();
        if !st.is_live_dir(&p) {
            return Err(not_found("directory", &p));
        }
        st.sync_point(&format!("sync_dir {}", p.display()))?;
        let State {
            live_files,
            durable_files,
            live_dirs,
            durable_dirs,
            unsynced_ops,
            ..
        } = &mut *st;
        unsynced_ops.retain(|op| !op.synced_by(&p));
        durable_files.retain(|e, _| parent_of(e) != p);
        durable_files.extend(
            live_files
                .iter()
                .filter(|(e, _)| parent_of(e) == p)
                .map(|(e, id)| (e.clone(), *id)),
        );
        durable_dirs.retain(|e| parent_of(e) != p);
        durable_dirs.extend(live_dirs.iter().filter(|e| parent_of(e) == p).cloned());
        Ok(())
    }

    fn free_space(&self, _path: &Path) -> io::Result<u64> {
        Ok(self.shared.lock().free_space)
    }

    fn lock_dir(&self, path: &Path) -> io::Result<DirLock> {
        let p = norm(path);
        let mut st = self.shared.lock();
        if !st.is_live_dir(&p) {
            return Err(not_found("directory", &p));
        }
        if !st.locks.insert(p.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("MemFs: {} is locked by another holder", p.display()),
            ));
        }
        drop(st);
        Ok(DirLock::new(Box::new(LockGuard {
            shared: self.shared.clone(),
            path: p,
        })))
    }
}

impl MemFile {
    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("MemFs: {} was opened read-only", self.path.display()),
            ))
        }
    }

    fn sync(&self, what: &str) -> io::Result<()> {
        let mut st = self.shared.lock();
        st.file(self.id)?;
        if let Err(e) = st.sync_point(what) {
            // Name the file as it is called now (the handle may predate a rename).
            let name = st
                .live_files
                .iter()
                .find(|(_, id)| **id == self.id)
                .map_or_else(
                    || format!("{} (unlinked)", self.path.display()),
                    |(p, _)| p.display().to_string(),
                );
            return Err(io::Error::new(e.kind(), format!("{e}: {name}")));
        }
        let fd = st.file_mut(self.id)?;
        fd.durable.clone_from(&fd.live);
        fd.dirty = None;
        Ok(())
    }
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.shared.lock().file(self.id)?.live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut st = self.shared.lock();
        let fd = st.file_mut(self.id)?;
        let old = fd.live.len() as u64;
        fd.live.resize(to_usize(len), 0);
        fd.touch(old.min(len), old.max(len));
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflow"))?;
        let mut st = self.shared.lock();
        let fd = st.file_mut(self.id)?;
        if (fd.live.len() as u64) < end {
            fd.live.resize(to_usize(end), 0);
        }
        fd.live[to_usize(offset)..to_usize(end)].copy_from_slice(buf);
        fd.touch(offset, end);
        Ok(())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let st = self.shared.lock();
        let live = &st.file(self.id)?.live;
        let range = region_range(live.len() as u64, offset, buf.len())?;
        buf.copy_from_slice(&live[range]);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync("sync_data")
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync("sync_all")
    }

    fn map_read(&self) -> io::Result<Arc<dyn MappedRegion>> {
        let len = self.len()?;
        Ok(Arc::new(MemMap {
            shared: self.shared.clone(),
            id: self.id,
            len,
            path: self.path.clone(),
        }))
    }
}

impl MappedRegion for MemMap {
    fn len(&self) -> u64 {
        self.len
    }

    fn visit(&self, offset: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let range = region_range(self.len, offset, len)?;
        let st = self.shared.lock();
        let live = &st.file(self.id)?.live;
        let range = region_range(live.len() as u64, range.start as u64, range.len())?;
        f(&live[range]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(fs: &MemFs, path: &str, bytes: &[u8]) -> Arc<dyn StorageFile> {
        let f = fs.create_new(Path::new(path)).expect("create");
        f.write_all_at(bytes, 0).expect("write");
        f
    }

    fn read(fs: &MemFs, path: &str) -> Option<Vec<u8>> {
        fs.read_live(Path::new(path)).ok()
    }

    /// `/d` exists durably.
    fn with_dir() -> MemFs {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).expect("mkdir");
        fs.sync_dir(Path::new("/")).expect("sync root");
        fs
    }

    #[test]
    fn unsynced_writes_vanish_and_synced_ones_stay() {
        let fs = with_dir();
        let f = write(&fs, "/d/a", b"hello");
        f.sync_data().expect("sync");
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        f.write_all_at(b" world", 5).expect("write");
        assert_eq!(read(&fs, "/d/a").as_deref(), Some(&b"hello world"[..]));
        let img = fs.crash(TornTail::None);
        assert_eq!(read(&img, "/d/a").as_deref(), Some(&b"hello"[..]));
        f.sync_all().expect("sync");
        let img = fs.crash(TornTail::None);
        assert_eq!(read(&img, "/d/a").as_deref(), Some(&b"hello world"[..]));
        // The image is independent of the original.
        f.write_all_at(b"J", 0).expect("write");
        assert_eq!(read(&img, "/d/a").as_deref(), Some(&b"hello world"[..]));
    }

    #[test]
    fn a_synced_file_in_an_unsynced_directory_vanishes() {
        let fs = with_dir();
        let f = write(&fs, "/d/a", b"data");
        f.sync_all().expect("sync");
        assert!(read(&fs.crash(TornTail::None), "/d/a").is_none());
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        assert_eq!(
            read(&fs.crash(TornTail::None), "/d/a").as_deref(),
            Some(&b"data"[..])
        );
        // A directory whose own entry was never synced takes its synced contents with it.
        fs.create_dir_all(Path::new("/e/f")).expect("mkdir");
        let g = write(&fs, "/e/f/g", b"x");
        g.sync_all().expect("sync");
        fs.sync_dir(Path::new("/e/f")).expect("sync");
        fs.sync_dir(Path::new("/e")).expect("sync");
        let img = fs.crash(TornTail::None);
        assert!(read(&img, "/e/f/g").is_none());
        assert!(!img.dir_exists(Path::new("/e")));
        fs.sync_dir(Path::new("/")).expect("sync");
        let img = fs.crash(TornTail::None);
        assert_eq!(read(&img, "/e/f/g").as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn rename_and_remove_without_a_directory_sync_are_undone() {
        let fs = with_dir();
        let f = write(&fs, "/d/a.tmp", b"new");
        f.sync_all().expect("sync");
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        fs.rename(Path::new("/d/a.tmp"), Path::new("/d/a"))
            .expect("rename");
        assert_eq!(read(&fs, "/d/a").as_deref(), Some(&b"new"[..]));
        let img = fs.crash(TornTail::None);
        assert!(read(&img, "/d/a").is_none());
        assert_eq!(read(&img, "/d/a.tmp").as_deref(), Some(&b"new"[..]));
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        let img = fs.crash(TornTail::None);
        assert!(read(&img, "/d/a.tmp").is_none());
        assert_eq!(read(&img, "/d/a").as_deref(), Some(&b"new"[..]));
        fs.remove_file(Path::new("/d/a")).expect("remove");
        assert!(read(&fs, "/d/a").is_none());
        assert!(read(&fs.crash(TornTail::None), "/d/a").is_some());
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        assert!(read(&fs.crash(TornTail::None), "/d/a").is_none());
        let mut names = fs
            .crash(TornTail::None)
            .list_dir(Path::new("/"))
            .expect("ls");
        names.sort();
        assert_eq!(names, vec!["d".to_string()]);
    }

    #[test]
    fn unsynced_directory_operations_can_survive_in_order() {
        let fs = with_dir();
        let f = write(&fs, "/d/a.tmp", b"x");
        f.sync_all().expect("sync");
        fs.rename(Path::new("/d/a.tmp"), Path::new("/d/a"))
            .expect("rename");
        let g = write(&fs, "/d/b", b"y");
        fs.remove_file(Path::new("/d/b")).expect("remove");
        assert_eq!(fs.unsynced_dir_ops(), 4);
        let names = |n| {
            let mut v = fs
                .crash_keeping_dir_ops(TornTail::None, n)
                .list_dir(Path::new("/d"))
                .expect("ls");
            v.sort();
            v
        };
        assert!(names(0).is_empty());
        assert_eq!(names(1), vec!["a.tmp"]);
        assert_eq!(names(2), vec!["a"], "a rename survives whole");
        assert_eq!(names(3), vec!["a", "b"]);
        assert_eq!(names(4), vec!["a"]);
        let img = fs.crash_keeping_dir_ops(TornTail::None, 3);
        assert_eq!(read(&img, "/d/a").as_deref(), Some(&b"x"[..]));
        assert_eq!(
            read(&img, "/d/b").as_deref(),
            Some(&b""[..]),
            "data was not synced"
        );
        drop(g);
        fs.sync_dir(Path::new("/d")).expect("sync");
        assert_eq!(fs.unsynced_dir_ops(), 0);
        // A new directory needs its parent synced; with the op kept it survives.
        fs.create_dir_all(Path::new("/n/m")).expect("mkdir");
        assert_eq!(fs.unsynced_dir_ops(), 2);
        assert!(!fs.crash(TornTail::None).dir_exists(Path::new("/n/m")));
        assert!(
            !fs.crash_keeping_dir_ops(TornTail::None, 1)
                .dir_exists(Path::new("/n/m"))
        );
        assert!(
            fs.crash_keeping_dir_ops(TornTail::None, 2)
                .dir_exists(Path::new("/n/m"))
        );
    }

    #[test]
    fn torn_tails_cut_at_the_right_boundary() {
        let fs = with_dir();
        let f = write(&fs, "/d/seg", &[1u8; 10_000]);
        f.sync_data().expect("sync");
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        // Unsynced: bytes 1000..9000 become 2, and the file grows to 12000 with 3s.
        f.write_all_at(&[2u8; 8000], 1000).expect("write");
        f.write_all_at(&[3u8; 2000], 10_000).expect("write");
        let expect = |cut: u64, len: usize| -> Vec<u8> {
            let mut v = vec![1u8; 10_000];
            for (i, b) in v.iter_mut().enumerate().take(9000).skip(1000) {
                if (i as u64) < cut {
                    *b = 2;
                }
            }
            v.resize(len, 3);
            v
        };
        let img = |t| read(&fs.crash(t), "/d/seg").expect("file");
        assert_eq!(img(TornTail::None), vec![1u8; 10_000]);
        assert_eq!(
            img(TornTail::Sector512(Cut::At(3000))),
            expect(2560, 10_000)
        );
        assert_eq!(img(TornTail::Page4096(Cut::At(3000))), expect(0, 10_000));
        assert_eq!(img(TornTail::Page4096(Cut::At(9000))), expect(8192, 10_000));
        assert_eq!(
            img(TornTail::Sector512(Cut::At(11_000))),
            expect(11_000, 10_752)
        );
        assert_eq!(
            img(TornTail::Page4096(Cut::At(1 << 20))),
            expect(9000, 12_000)
        );
        // Random cuts land on a block boundary and keep a prefix of the unsynced writes.
        let at = |b: u64| expect(b, b.clamp(10_000, 12_000) as usize);
        for seed in 0..64 {
            for (t, bs) in [
                (TornTail::Sector512(Cut::Random(seed)), 512),
                (TornTail::Page4096(Cut::Random(seed)), 4096),
            ] {
                let got = img(t);
                assert!(
                    (0..=12_288 / bs).any(|n| got == at(n * bs)),
                    "{t:?} is not a block-boundary prefix"
                );
            }
        }
        // Sectors: each 512-byte sector of the unsynced span is all old or all new, and some
        // seed keeps a later sector while losing an earlier one.
        let mut reordered = false;
        for seed in 0..16 {
            let got = img(TornTail::Sectors(seed));
            assert_eq!(got.len(), 12_000);
            let live = read(&fs, "/d/seg").expect("file");
            let mut old = vec![1u8; 10_000];
            old.resize(12_000, 0);
            let kept: Vec<bool> = (2..(12_000 / 512))
                .map(|sector| {
                    let r = sector * 512..((sector + 1) * 512).min(12_000);
                    let new = got[r.clone()] == live[r.clone()];
                    assert!(
                        new || got[r.clone()] == old[r.clone()],
                        "sector {sector} mixes old and new bytes"
                    );
                    new
                })
                .collect();
            reordered |= kept.windows(2).any(|w| !w[0] && w[1]);
        }
        assert!(reordered);
        // Garbage replaces exactly the unsynced span.
        let g = img(TornTail::Garbage(7));
        assert_eq!(g.len(), 12_000);
        assert_eq!(&g[..1000], &[1u8; 1000][..]);
        let changed = g[1000..].iter().filter(|b| **b == 1 || **b == 2).count();
        assert!(changed < 200, "garbage looks like the data: {changed}");
        // After a sync nothing is torn any more.
        f.sync_data().expect("sync");
        assert_eq!(
            img(TornTail::Garbage(7)),
            read(&fs, "/d/seg").expect("file")
        );
    }

    #[test]
    fn syncs_fail_after_the_crash_point_and_the_image_freezes() {
        let fs = with_dir();
        assert_eq!(fs.syncs(), 1);
        fs.crash_after_syncs(Some(2));
        let f = write(&fs, "/d/a", b"one");
        f.sync_all().expect("sync 2 succeeds");
        assert!(fs.sync_dir(Path::new("/d")).is_err(), "sync 3 fails");
        assert!(f.sync_all().is_err(), "and every later one");
        assert_eq!((fs.syncs(), fs.successful_syncs()), (4, 2));
        assert!(read(&fs.crash(TornTail::None), "/d/a").is_none());
        fs.crash_after_syncs(None);
        fs.sync_dir(Path::new("/d")).expect("healed");
        assert_eq!(
            read(&fs.crash(TornTail::None), "/d/a").as_deref(),
            Some(&b"one"[..])
        );
    }

    #[test]
    fn locks_are_exclusive_until_dropped_and_maps_see_later_writes() {
        let fs = with_dir();
        let lock = fs.lock_dir(Path::new("/d")).expect("lock");
        let again = fs.lock_dir(Path::new("/d")).expect_err("second lock");
        assert_eq!(again.kind(), io::ErrorKind::WouldBlock);
        let other = fs.clone();
        assert!(
            other.lock_dir(Path::new("d")).is_err(),
            "clones share locks"
        );
        drop(lock);
        let _lock = fs.lock_dir(Path::new("/d")).expect("free again");
        assert!(fs.lock_dir(Path::new("/nope")).is_err());

        let f = write(&fs, "/d/m", &[0u8; 16]);
        let map = f.map_read().expect("map");
        f.write_all_at(b"abc", 4).expect("write");
        let mut buf = [0u8; 3];
        map.read_into(4, &mut buf).expect("read");
        assert_eq!(&buf, b"abc");
        assert!(map.read_into(15, &mut buf).is_err(), "outside the region");
        let ro = fs.open(Path::new("/d/m"), false).expect("open");
        assert!(ro.write_all_at(b"x", 0).is_err(), "read-only handle");
        assert!(fs.create_new(Path::new("/d/m")).is_err(), "exists");
        assert!(fs.create_new(Path::new("/nodir/x")).is_err(), "no parent");
        assert_eq!(
            fs.free_space(Path::new("/d")).expect("df"),
            DEFAULT_FREE_SPACE
        );
        fs.set_free_space(5);
        assert_eq!(fs.free_space(Path::new("/d")).expect("df"), 5);
    }
}
