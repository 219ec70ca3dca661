//! The user a container's process runs as (`run -u user[:group]`, or the image's `User`): names resolved against
//! the container's own /etc/passwd and /etc/group like Docker (runc's `GetExecUser`): a name or a uid picks the
//! passwd entry (its gid, home and the groups naming it as a member); a numeric uid without an entry runs with gid
//! 0 and HOME=/; a group given after `:` replaces the primary gid.

use std::path::{Component, Path, PathBuf};

/// A parsed `user[:group]`, not yet resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSpec {
    /// A name or a numeric uid.
    pub user: String,
    /// A name or a numeric gid.
    pub group: Option<String>,
}

impl UserSpec {
    /// Parses `user`, `uid`, `user:group`, `uid:gid` (empty = root).
    pub fn parse(spec: &str) -> Result<UserSpec, String> {
        if spec.is_empty() {
            return Ok(UserSpec {
                user: "0".into(),
                group: None,
            });
        }
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let word = |w: &str| {
            !w.is_empty()
                && !w.starts_with('-')
                && w.chars().all(|c| c.is_ascii_alphanumeric() || "_.-$".contains(c))
        };
        if !word(user) || group.is_some_and(|g| !word(g)) {
            return Err(format!("-u {spec}: want user[:group], each a name or a number"));
        }
        for id in [Some(user), group].into_iter().flatten() {
            if id.starts_with(|c: char| c.is_ascii_digit()) && id.parse::<u32>().is_err() {
                return Err(format!("-u {spec}: {id} is not a valid id"));
            }
        }
        Ok(UserSpec {
            user: user.into(),
            group: group.map(str::to_string),
        })
    }
}

/// What the process runs as.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecUser {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids (groups listing the user as a member).
    pub additional_gids: Vec<u32>,
    /// The home directory (`/` when the user has no passwd entry), the default `HOME`.
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// The well-formed entries of a colon-separated file (comments, blank and malformed lines skipped).
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
}

fn passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    entries(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?,
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).copied().unwrap_or(""),
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<GroupEntry<'_>> {
    entries(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?,
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| m.split(',').map(str::trim).filter(|m| !m.is_empty()).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` against the text of /etc/passwd and /etc/group (empty when the image has none).
pub fn resolve(spec: &UserSpec, passwd_text: &str, group_text: &str) -> Result<ExecUser, String> {
    let users = passwd(passwd_text);
    let numeric_uid = spec.user.parse::<u32>().ok();
    let entry = users
        .iter()
        .find(|u| u.name == spec.user)
        .or_else(|| numeric_uid.and_then(|n| users.iter().find(|u| u.uid == n)));
    let mut user = match (entry, numeric_uid) {
        (Some(u), _) => ExecUser {
            uid: u.uid,
            gid: u.gid,
            additional_gids: vec![],
            home: if u.home.is_empty() {
                "/".into()
            } else {
                u.home.into()
            },
        },
        (None, Some(uid)) => ExecUser {
            uid,
            gid: 0,
            additional_gids: vec![],
            home: "/".into(),
        },
        (None, None) => {
            return Err(format!(
                "unable to find user {}: no matching entries in passwd file",
                spec.user
            ))
        }
    };
    let all_groups = groups(group_text);
    if let Some(g) = &spec.group {
        let numeric_gid = g.parse::<u32>().ok();
        user.gid = match all_groups
            .iter()
            .find(|e| e.name == g)
            .or_else(|| numeric_gid.and_then(|n| all_groups.iter().find(|e| e.gid == n)))
        {
            Some(e) => e.gid,
            None => numeric_gid
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        };
    }
    if let Some(u) = entry {
        for e in all_groups.iter().filter(|e| e.members.contains(&u.name)) {
            if !user.additional_gids.contains(&e.gid) {
                user.additional_gids.push(e.gid);
            }
        }
    }
    Ok(user)
}

/// How many symbolic links `resolve_in_root` follows before giving up (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// `path` inside the directory tree `root`, with symbolic links followed as if `root` were `/` (an absolute
/// link or `..` never leads out of it), so an image's `/etc/passwd -> /host/file` cannot make corrald read a
/// file of the node. The container is not running while this is called.
pub fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, String> {
    let mut todo: Vec<String> = components(Path::new(path));
    todo.reverse();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        done.push(name);
        let here = done.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        let Ok(meta) = std::fs::symlink_metadata(&here) else {
            continue; // missing: the caller's open fails with the path it names
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(format!("{path}: too many levels of symbolic links"));
            }
            let target = std::fs::read_link(&here).map_err(|e| format!("{}: {e}", here.display()))?;
            done.pop();
            if target.is_absolute() {
                done.clear();
            }
            todo.extend(components(&target).into_iter().rev());
        }
    }
    Ok(done.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

fn components(p: &Path) -> Vec<String> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Reads `/etc/passwd` and `/etc/group` of the container root `root` (empty text for a missing file) and
/// resolves `spec` against them.
pub fn resolve_in_rootfs(spec: &UserSpec, root: &Path) -> Result<ExecUser, String> {
    let read = |p: &str| -> Result<String, String> {
        let f = resolve_in_root(root, p)?;
        match std::fs::read(&f) {
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(format!("the container's {p}: {e}")),
        }
    };
    resolve(spec, &read("/etc/passwd")?, &read("/etc/group")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\n\
        app:x:1000:1000:App:/home/app:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:other, app\nstaff:x:50:\n";

    fn spec(s: &str) -> UserSpec {
        UserSpec::parse(s).unwrap()
    }

    #[test]
    fn parses_user_specs() {
        assert_eq!(
            spec("app:staff"),
            UserSpec {
                user: "app".into(),
                group: Some("staff".into())
            }
        );
        assert_eq!(spec("1000").group, None);
        assert_eq!(spec("").user, "0");
        for bad in [
            "app:",
            ":staff",
            "a:b:c",
            "a b",
            "99999999999",
            "1:4294967296",
            "-x",
        ] {
            assert!(UserSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_names_ids_and_groups_like_docker() {
        let app = resolve(&spec("app"), PASSWD, GROUP).unwrap();
        assert_eq!(
            app,
            ExecUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29],
                home: "/home/app".into()
            }
        );
        // A uid with an entry is that user; a group overrides the primary gid only.
        assert_eq!(resolve(&spec("1000:staff"), PASSWD, GROUP).unwrap().gid, 50);
        assert_eq!(
            resolve(&spec("1000:staff"), PASSWD, GROUP)
                .unwrap()
                .additional_gids,
            [10, 29]
        );
        assert_eq!(resolve(&spec("app:4242"), PASSWD, GROUP).unwrap().gid, 4242);
        // A uid without an entry: gid 0, HOME=/, no groups.
        assert_eq!(
            resolve(&spec("1234"), "", "").unwrap(),
            ExecUser {
                uid: 1234,
                gid: 0,
                additional_gids: vec![],
                home: "/".into()
            }
        );
        assert_eq!(resolve(&spec(""), PASSWD, GROUP).unwrap().home, "/root");
        assert_eq!(
            resolve(&spec("ghost"), PASSWD, GROUP).unwrap_err(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            resolve(&spec("app:ghosts"), PASSWD, GROUP).unwrap_err(),
            "unable to find group ghosts: no matching entries in group file"
        );
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let root = std::env::temp_dir().join(format!("corral-user-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("data/passwd"), "app:x:7:8::/h:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/data/passwd", root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/shadow", root.join("etc/group")).unwrap();
        assert_eq!(
            resolve_in_root(&root, "/etc/passwd").unwrap(),
            root.join("data/passwd")
        );
        assert_eq!(
            resolve_in_root(&root, "/etc/group").unwrap(),
            root.join("etc/shadow")
        );
        let u = resolve_in_rootfs(&spec("app"), &root).unwrap();
        assert_eq!((u.uid, u.gid), (7, 8));
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(&root, "/loop/x").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
