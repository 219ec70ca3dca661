//! How a corral plugin recognises another corral plugin binary. Every corral plugin carries an ELF note (owner
//! `corral`, description `cni-plugin`), which linkers place among the first notes of the file, at a few hundred
//! bytes from its start. Reading the first 4 KiB of a delegate found in CNI_PATH tells whether it is corral's
//! own build, so the bridge can run host-local in-process (saving an exec) only when the node really has
//! corral's host-local there, and still exec whatever other IPAM plugin a node installed.

use std::io::Read;
use std::path::Path;

/// The note's bytes: namesz 7, descsz 12, type 1, "corral\0" padded to 8, "cni-plugin\0" padded to 12.
pub const NOTE: [u8; 32] =
    *b"\x07\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00corral\x00\x00cni-plugin\x00\x00";

/// What is searched for: the note's name and description.
const MARKER: &[u8] = b"corral\x00\x00cni-plugin\x00\x00";

/// How much of a file is read: the notes sit right after the ELF and program headers.
const HEAD: u64 = 4096;

/// Puts corral's plugin note into the binary that invokes it (once, in the binary's `main.rs`).
#[macro_export]
macro_rules! plugin_note {
    () => {
        #[used]
        #[link_section = ".note.corral"]
        static CORRAL_PLUGIN_NOTE: [u8; 32] = $crate::identity::NOTE;
    };
}

/// Whether the executable at `path` is a corral plugin (its first 4 KiB hold corral's note).
pub fn is_corral_plugin(path: &Path) -> bool {
    let mut head = Vec::with_capacity(HEAD as usize);
    match std::fs::File::open(path) {
        Ok(f) => {
            if f.take(HEAD).read_to_end(&mut head).is_err() {
                return false;
            }
        }
        Err(_) => return false,
    }
    head.windows(MARKER.len()).any(|w| w == MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(tag: &str, at: usize, marker: bool) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("corral-identity-{tag}-{}", std::process::id()));
        let mut bytes = vec![0u8; at + 64];
        if marker {
            bytes[at..at + NOTE.len()].copy_from_slice(&NOTE);
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn finds_the_note_near_the_start_only() {
        let near = file_with("near", 920, true);
        let far = file_with("far", 8192, true);
        let none = file_with("none", 920, false);
        assert!(is_corral_plugin(&near));
        assert!(!is_corral_plugin(&far), "notes live in the first page");
        assert!(!is_corral_plugin(&none));
        assert!(!is_corral_plugin(Path::new("/nonexistent/corral")));
        for p in [near, far, none] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn the_note_is_well_formed() {
        assert_eq!(&NOTE[12..], MARKER);
        assert_eq!(u32::from_le_bytes([NOTE[0], NOTE[1], NOTE[2], NOTE[3]]), 7);
        assert_eq!(u32::from_le_bytes([NOTE[4], NOTE[5], NOTE[6], NOTE[7]]), 12);
    }
}
