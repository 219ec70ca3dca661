//! The effect layer: running `nft`. [`NftCli`] execs the binary (one `nft -f -` = one atomic transaction),
//! reads set elements and table skeletons back over netlink ([`crate::nfnl`]; for elements `nft -j` when
//! that fails) and removes elements over netlink (no nft process, and the socket's slow release happens in a
//! child, see [`crate::nfnl::socket::remove_elements`]); tests use `testing::FakeBackend`, which records scripts and never touches the kernel.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::element::{Element, Table, TABLE_NAME};
use crate::error::NatError;
use crate::inspect::{parse_counted, CountedElements};
use crate::plan::skeleton_damage;

/// Where nft scripts go and where listings come from.
pub trait NftBackend {
    /// Applies one nft text script as one transaction.
    fn apply(&self, script: &str) -> Result<(), NatError>;
    /// `nft -j list table <family> <table>` parsed as JSON; `None` when the table does not exist.
    fn list_table(&self, family: &str, table: &str) -> Result<Option<Value>, NatError>;
    /// Checks that nft can be used here (`nft -j list tables` runs and prints JSON).
    fn probe(&self) -> Result<(), NatError>;
    /// Every element of corral's sets and maps in `table`, with per-element counters; `None` when the table
    /// does not exist. By default parsed from [`NftBackend::list_table`].
    fn list_elements(&self, table: Table) -> Result<Option<CountedElements>, NatError> {
        Ok(self
            .list_table(table.family(), TABLE_NAME)?
            .map(|listing| parse_counted(&listing)))
    }
    /// Whether corral's `table` holds exactly the skeleton a full transaction writes
    /// ([`crate::plan::skeleton_damage`]), so element lines alone can be applied. By default `false`: a
    /// backend that cannot tell always gets the full script.
    fn skeleton_intact(&self, table: Table) -> Result<bool, NatError> {
        let _ = table;
        Ok(false)
    }
    /// Removes `elements` from corral's sets in one transaction without nft, where the backend can; missing
    /// elements are fine. By default not supported (an error): the caller then sends the nft script, which is
    /// always correct. Only used while the touched tables' skeletons are intact.
    fn remove_elements(&self, elements: &[Element]) -> Result<(), NatError> {
        let _ = elements;
        Err(NatError::Netlink {
            operation: "remove elements".to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::Unsupported),
        })
    }
}

impl<B: NftBackend + ?Sized> NftBackend for &B {
    fn apply(&self, script: &str) -> Result<(), NatError> {
        (**self).apply(script)
    }
    fn list_table(&self, family: &str, table: &str) -> Result<Option<Value>, NatError> {
        (**self).list_table(family, table)
    }
    fn probe(&self) -> Result<(), NatError> {
        (**self).probe()
    }
    fn list_elements(&self, table: Table) -> Result<Option<CountedElements>, NatError> {
        (**self).list_elements(table)
    }
    fn skeleton_intact(&self, table: Table) -> Result<bool, NatError> {
        (**self).skeleton_intact(table)
    }
    fn remove_elements(&self, elements: &[Element]) -> Result<(), NatError> {
        (**self).remove_elements(elements)
    }
}

/// How [`NftCli`] reads set elements back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ElementReader {
    /// nf_tables element dumps over netlink (no process; ~20x faster at 10,000 elements), falling back to
    /// `nft -j` when netlink fails.
    #[default]
    Netlink,
    /// `nft -j list table` only.
    NftJson,
}

/// Runs the `nft` binary in the calling thread's network namespace, or in `netns` through
/// `nsenter --net=<netns>` (for tests that must never touch the host's ruleset).
#[derive(Debug, Clone)]
pub struct NftCli {
    /// The nft binary; `nft` (looked up in PATH) by default.
    pub program: PathBuf,
    /// Run inside this network namespace (a `/run/netns/<name>` or `/proc/<pid>/ns/net` path).
    pub netns: Option<PathBuf>,
    /// How elements are read back ([`NftBackend::list_elements`]).
    pub reader: ElementReader,
}

impl Default for NftCli {
    fn default() -> Self {
        Self {
            program: PathBuf::from("nft"),
            netns: None,
            reader: ElementReader::default(),
        }
    }
}

impl NftCli {
    /// `nft` from PATH, in the caller's netns.
    pub fn new() -> Self {
        Self::default()
    }

    /// `nft` from PATH, inside `netns`.
    pub fn in_netns(netns: impl Into<PathBuf>) -> Self {
        Self {
            netns: Some(netns.into()),
            ..Self::default()
        }
    }

    fn command(&self) -> (Command, String) {
        match &self.netns {
            Some(netns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", netns.display())).arg(&self.program);
                (cmd, "nsenter".to_owned())
            }
            None => (Command::new(&self.program), self.program.display().to_string()),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<Output, NatError> {
        let (mut cmd, program) = self.command();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let unavailable = |source| NatError::NftUnavailable {
            program: program.clone(),
            source,
        };
        let mut child = cmd.spawn().map_err(unavailable)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // nft reads its whole input before it starts, so writing first cannot deadlock on its output. A
            // broken pipe means it exited early: its exit status and stderr tell why.
            match pipe.write_all(text.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(unavailable(e)),
                _ => {}
            }
        }
        child.wait_with_output().map_err(unavailable)
    }
}

fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

impl NftBackend for NftCli {
    fn apply(&self, script: &str) -> Result<(), NatError> {
        tracing::debug!(netns = ?self.netns, script, "nft apply");
        let output = self.run(&["-f", "-"], Some(script))?;
        if output.status.success() {
            return Ok(());
        }
        Err(NatError::NftFailed {
            operation: "apply".to_owned(),
            status: output.status.to_string(),
            stderr: stderr_text(&output),
        })
    }

    fn list_table(&self, family: &str, table: &str) -> Result<Option<Value>, NatError> {
        let output = self.run(&["-j", "list", "table", family, table], None)?;
        let operation = format!("list table {family} {table}");
        if !output.status.success() {
            let stderr = stderr_text(&output);
            // nft 1.0.6 reports a missing table as ENOENT.
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(NatError::NftFailed {
                operation,
                status: output.status.to_string(),
                stderr,
            });
        }
        serde_json::from_slice(&output.stdout)
            .map(Some)
            .map_err(|source| NatError::NftOutput { operation, source })
    }

    fn probe(&self) -> Result<(), NatError> {
        let output = self.run(&["-j", "list", "tables"], None)?;
        if !output.status.success() {
            let stderr = stderr_text(&output);
            let stderr = if stderr.is_empty() {
                output.status.to_string()
            } else {
                stderr
            };
            return Err(NatError::NftUnusable { stderr });
        }
        match serde_json::from_slice::<Value>(&output.stdout) {
            Ok(v) if v.get("nftables").is_some() => Ok(()),
            _ => Err(NatError::NftUnusable {
                stderr: "`nft -j list tables` did not print nftables JSON".into(),
            }),
        }
    }

    fn list_elements(&self, table: Table) -> Result<Option<CountedElements>, NatError> {
        if self.reader == ElementReader::Netlink {
            match crate::nfnl::socket::list_elements(self.netns.as_deref(), table) {
                Ok(found) => return Ok(found),
                Err(error) => tracing::debug!(%error, "netlink element dump failed; falling back to nft -j"),
            }
        }
        Ok(self
            .list_table(table.family(), TABLE_NAME)?
            .map(|listing| parse_counted(&listing)))
    }

    /// Over netlink (sets, chains and rules dumps of the table), never by running nft: the check must cost
    /// far less than the skeleton it saves.
    fn skeleton_intact(&self, table: Table) -> Result<bool, NatError> {
        let observed = crate::nfnl::socket::skeleton(self.netns.as_deref(), table)?;
        let damage = skeleton_damage(table, observed.as_ref());
        if !damage.is_empty() {
            tracing::debug!(
                table = table.family(),
                damage = damage.join(", "),
                "NAT table skeleton is damaged"
            );
        }
        Ok(damage.is_empty())
    }

    /// One `NFT_MSG_DESTROYSETELEM` batch over netlink: ~0.3 ms where `nft -f` with `delete element` lines
    /// takes ~13 ms, most of it waiting at exit for the release of its socket.
    fn remove_elements(&self, elements: &[Element]) -> Result<(), NatError> {
        tracing::debug!(netns = ?self.netns, count = elements.len(), "netlink element removal");
        crate::nfnl::socket::remove_elements(self.netns.as_deref(), elements)
    }
}

/// Test doubles. Compiled for this crate's tests and behind the `testing` feature; never in release code paths.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

    use super::*;

    /// Records applied scripts; serves canned listings; can be told to fail. Clones share state.
    #[derive(Debug, Clone, Default)]
    pub struct FakeBackend {
        inner: Arc<Mutex<FakeState>>,
    }

    #[derive(Debug, Default)]
    struct FakeState {
        scripts: Vec<String>,
        attempts: usize,
        fail_apply: Option<String>,
        fail_next: usize,
        skeleton: Option<Result<bool, String>>,
        removals: Vec<Vec<Element>>,
        remove_support: Option<Result<(), String>>,
        unusable: bool,
        tables: HashMap<(String, String), Value>,
    }

    impl FakeBackend {
        /// A backend that accepts everything.
        pub fn new() -> Self {
            Self::default()
        }

        fn state(&self) -> MutexGuard<'_, FakeState> {
            self.inner.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Every script applied so far, in order (failed ones excluded).
        pub fn scripts(&self) -> Vec<String> {
            self.state().scripts.clone()
        }

        /// Makes every later `apply` fail with this stderr (`None` to succeed again).
        pub fn fail_apply(&self, stderr: Option<&str>) {
            self.state().fail_apply = stderr.map(str::to_owned);
        }

        /// How many `apply` calls were made, failed ones included.
        pub fn attempts(&self) -> usize {
            self.state().attempts
        }

        /// Makes the next `count` applies fail (then they succeed again).
        pub fn fail_next_applies(&self, count: usize) {
            self.state().fail_next = count;
        }

        /// Sets what `skeleton_intact` answers for every table: `Ok(true)`, `Ok(false)` (the default) or an
        /// error with this text.
        pub fn set_skeleton_intact(&self, answer: Result<bool, &str>) {
            self.state().skeleton = Some(answer.map_err(str::to_owned));
        }

        /// Makes `remove_elements` work (`Ok`, recorded) or fail with this text; by default it is not
        /// supported, like the trait's default.
        pub fn set_remove_elements(&self, answer: Result<(), &str>) {
            self.state().remove_support = Some(answer.map_err(str::to_owned));
        }

        /// Every successful `remove_elements` call's elements, in order.
        pub fn removals(&self) -> Vec<Vec<Element>> {
            self.state().removals.clone()
        }

        /// Makes `probe` fail.
        pub fn set_unusable(&self, unusable: bool) {
            self.state().unusable = unusable;
        }

        /// Sets what `list_table(family, table)` returns.
        pub fn set_table(&self, family: &str, table: &str, listing: Value) {
            self.state()
                .tables
                .insert((family.to_owned(), table.to_owned()), listing);
        }
    }

    impl NftBackend for FakeBackend {
        fn apply(&self, script: &str) -> Result<(), NatError> {
            let mut state = self.state();
            state.attempts += 1;
            if state.fail_next > 0 {
                state.fail_next -= 1;
                return Err(NatError::NftFailed {
                    operation: "apply".into(),
                    status: "exit status: 1".into(),
                    stderr: "fake: No such file or directory".into(),
                });
            }
            if let Some(stderr) = &state.fail_apply {
                let stderr = stderr.clone();
                return Err(NatError::NftFailed {
                    operation: "apply".into(),
                    status: "exit status: 1".into(),
                    stderr,
                });
            }
            state.scripts.push(script.to_owned());
            Ok(())
        }

        fn list_table(&self, family: &str, table: &str) -> Result<Option<Value>, NatError> {
            Ok(self
                .state()
                .tables
                .get(&(family.to_owned(), table.to_owned()))
                .cloned())
        }

        fn skeleton_intact(&self, _table: Table) -> Result<bool, NatError> {
            match self.state().skeleton.clone() {
                None => Ok(false),
                Some(Ok(intact)) => Ok(intact),
                Some(Err(message)) => Err(NatError::Netlink {
                    operation: "fake skeleton check".into(),
                    source: std::io::Error::other(message),
                }),
            }
        }

        fn remove_elements(&self, elements: &[Element]) -> Result<(), NatError> {
            let mut state = self.state();
            match state.remove_support.clone() {
                None => Err(NatError::Netlink {
                    operation: "remove elements".into(),
                    source: std::io::Error::from(std::io::ErrorKind::Unsupported),
                }),
                Some(Ok(())) => {
                    state.removals.push(elements.to_vec());
                    Ok(())
                }
                Some(Err(message)) => Err(NatError::Netlink {
                    operation: "fake remove elements".into(),
                    source: std::io::Error::other(message),
                }),
            }
        }

        fn probe(&self) -> Result<(), NatError> {
            if self.state().unusable {
                return Err(NatError::NftUnusable {
                    stderr: "fake: unusable".into(),
                });
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_unavailable_with_code_50() {
        let cli = NftCli {
            program: "/nonexistent/corral-test-nft".into(),
            netns: None,
            reader: ElementReader::NftJson,
        };
        let err = cli.probe().unwrap_err();
        assert_eq!(err.code(), 50, "{err}");
        assert!(err.to_string().contains("/nonexistent/corral-test-nft"), "{err}");
        assert_eq!(cli.apply("").unwrap_err().code(), 50);
    }

    #[test]
    fn failing_program_reports_its_stderr() {
        // A shell script stands in for nft: it prints to stderr and exits 1 without reading stdin.
        let script = std::env::temp_dir().join(format!("corral-nat-fake-nft-{}", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\necho 'Error: boom' >&2\nexit 1\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cli = NftCli {
            program: script.clone(),
            netns: None,
            reader: ElementReader::NftJson,
        };
        let err = cli.apply("add table inet corral\n").unwrap_err();
        assert!(err.to_string().contains("Error: boom"), "{err}");
        assert_eq!(err.code(), 999);
        assert!(matches!(cli.probe().unwrap_err(), NatError::NftUnusable { .. }));
        std::fs::remove_file(script).unwrap();
    }
}
