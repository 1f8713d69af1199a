//! Path walk: from a starting directory (or `/`), component by component, crossing mount
//! points in both directions and following symbolic links (ELOOP after 40).
//!
//! A location ([`Loc`]) is the whole chain of directories from `/` down to a node, each
//! with the mount it belongs to. `..` pops the chain, so it leaves a mounted file
//! system's root for the directory it is mounted on, and after a symbolic link it goes
//! to the parent of where the link led (the physical path, as Linux does). Mount points
//! are matched by the canonical path the chain spells.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::mount::{self, Mounted};
use super::node::{FileKind, NodeRef};
use crate::errno::Errno;

/// Longest path accepted, including its NUL (Linux's PATH_MAX).
pub const PATH_MAX: usize = 4096;
/// Longest name component.
pub const NAME_MAX: usize = 255;
/// Most symbolic links followed in one walk (Linux's MAXSYMLINKS).
pub const MAX_SYMLINKS: u32 = 40;

/// One directory (or the final node) of a location.
#[derive(Clone)]
pub struct Step {
    pub mnt: Arc<Mounted>,
    pub node: NodeRef,
    /// The name it was reached by (empty for `/`).
    pub name: Vec<u8>,
}

/// Where a node is: the chain of steps from `/`.
#[derive(Clone)]
pub struct Loc {
    steps: Vec<Step>,
}

impl Loc {
    /// `/`.
    pub fn root() -> Loc {
        let m = mount::root_mount();
        Loc {
            steps: alloc::vec![Step {
                node: m.root.clone(),
                mnt: m,
                name: Vec::new(),
            }],
        }
    }

    /// The node itself.
    pub fn node(&self) -> &NodeRef {
        &self.last().node
    }

    /// The mount it belongs to.
    pub fn mount(&self) -> &Arc<Mounted> {
        &self.last().mnt
    }

    fn last(&self) -> &Step {
        // A Loc always has at least the root step.
        &self.steps[self.steps.len() - 1]
    }

    /// The canonical absolute path.
    pub fn path(&self) -> Vec<u8> {
        if self.steps.len() == 1 {
            return b"/".to_vec();
        }
        let mut p = Vec::new();
        for s in &self.steps[1..] {
            p.push(b'/');
            p.extend_from_slice(&s.name);
        }
        p
    }

    /// The path of `name` inside this directory.
    fn child_path(&self, name: &[u8]) -> Vec<u8> {
        let mut p = if self.steps.len() == 1 {
            Vec::new()
        } else {
            self.path()
        };
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }

    /// Whether this is the root directory of its mount.
    pub fn is_mount_root(&self) -> bool {
        Arc::ptr_eq(self.node(), &self.mount().root)
    }

    /// The location of `node`, reached as `name` from this directory (crossing into a
    /// file system mounted there).
    pub fn child(&self, name: &[u8], node: NodeRef) -> Loc {
        let mut l = self.clone();
        l.push(name, node);
        l
    }

    fn push(&mut self, name: &[u8], node: NodeRef) {
        let path = self.child_path(name);
        let (mnt, node) = match mount::mounted_at(&path) {
            Some(m) => (m.clone(), m.root.clone()),
            None => (self.mount().clone(), node),
        };
        self.steps.push(Step {
            mnt,
            node,
            name: name.to_vec(),
        });
    }

    fn pop(&mut self) {
        if self.steps.len() > 1 {
            self.steps.pop();
        }
    }

    /// Depth below `/`.
    pub fn depth(&self) -> usize {
        self.steps.len() - 1
    }
}

/// The result of a walk that may end at a missing name (for creating it).
pub enum Walked {
    Found(Loc),
    /// Everything but the last component exists; `name` does not.
    Missing {
        parent: Loc,
        name: Vec<u8>,
        /// The path ended in `/`: what is created there must be a directory.
        trailing_slash: bool,
    },
}

fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// Walk `path` from `start` (absolute paths from `/`). The final component's symbolic
/// link is followed only if `follow_last`; a trailing `/` always follows it and
/// requires a directory.
pub fn walk(start: &Loc, path: &[u8], follow_last: bool) -> Result<Walked, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let trailing_slash = path.last() == Some(&b'/');
    let follow_last = follow_last || trailing_slash;
    let mut loc = if path[0] == b'/' {
        Loc::root()
    } else {
        start.clone()
    };
    // Components still to visit, the next one last.
    let mut pending: Vec<Vec<u8>> = components(path).rev().map(|c| c.to_vec()).collect();
    let mut links = 0u32;
    while let Some(comp) = pending.pop() {
        let is_last = pending.is_empty();
        if loc.node().kind() != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        if comp.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        match &comp[..] {
            b"." => continue,
            b".." => {
                loc.pop();
                continue;
            }
            _ => {}
        }
        let node = match loc.node().lookup(&comp) {
            Ok(n) => n,
            Err(Errno::ENOENT) if is_last => {
                return Ok(Walked::Missing {
                    parent: loc,
                    name: comp,
                    trailing_slash,
                });
            }
            Err(e) => return Err(e),
        };
        if node.kind() == FileKind::Symlink && (!is_last || follow_last) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::ELOOP);
            }
            let target = node.readlink()?;
            if target.is_empty() {
                return Err(Errno::ENOENT);
            }
            if target.len() >= PATH_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
            if target[0] == b'/' {
                loc = Loc::root();
            }
            pending.extend(components(&target).rev().map(|c| c.to_vec()));
            continue;
        }
        loc.push(&comp, node);
    }
    if trailing_slash && loc.node().kind() != FileKind::Directory {
        return Err(Errno::ENOTDIR);
    }
    Ok(Walked::Found(loc))
}

/// The location `path` names (ENOENT if it does not exist).
pub fn resolve(start: &Loc, path: &[u8], follow_last: bool) -> Result<Loc, Errno> {
    match walk(start, path, follow_last)? {
        Walked::Found(l) => Ok(l),
        Walked::Missing { .. } => Err(Errno::ENOENT),
    }
}

/// The directory holding the last component of `path`, and that component (not looked
/// up). The name may be `.`, `..` or empty (for `/`): callers reject those the way each
/// operation does.
pub struct Parent {
    pub dir: Loc,
    pub name: Vec<u8>,
    pub trailing_slash: bool,
}

/// Split `path` into its directory (walked, following every link) and last name.
pub fn resolve_parent(start: &Loc, path: &[u8]) -> Result<Parent, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let trimmed_len = path.len() - path.iter().rev().take_while(|&&b| b == b'/').count();
    let trailing_slash = trimmed_len < path.len();
    let trimmed = &path[..trimmed_len];
    let (dir_part, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..i + 1], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let dir = if dir_part.is_empty() {
        if path[0] == b'/' {
            Loc::root()
        } else {
            start.clone()
        }
    } else {
        resolve(start, dir_part, true)?
    };
    if dir.node().kind() != FileKind::Directory {
        return Err(Errno::ENOTDIR);
    }
    Ok(Parent {
        dir,
        name: name.to_vec(),
        trailing_slash,
    })
}

impl Parent {
    /// Whether the name is `.`, `..` or empty (the path was `/` or ended in a dot).
    pub fn is_dot(&self) -> bool {
        matches!(&self.name[..], b"" | b"." | b"..")
    }
}
