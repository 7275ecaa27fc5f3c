//! Small file helpers shared by fetch and convert: hashing, atomic writes, records that make
//! a second run a no-op.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ModelError;

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file written next to its destination and renamed into place when complete, so a crash
/// or a full disk never leaves a half-written model under the real name.
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
}

impl AtomicFile {
    pub fn create(dest: &Path) -> Result<Self, ModelError> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
        }
        let tmp = dest.with_extension("partial");
        let f = File::create(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, f),
            hasher: Sha256::new(),
        })
    }

    /// Flush, sync and rename; returns the sha256 of what was written.
    pub fn commit(mut self) -> Result<String, ModelError> {
        let tmp = self.tmp.clone();
        let res = (|| {
            self.out.flush()?;
            self.out.get_ref().sync_all()
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(ModelError::io(&self.dest, e));
        }
        std::fs::rename(&tmp, &self.dest).map_err(|e| ModelError::io(&self.dest, e))?;
        Ok(hex(&self.hasher.finalize()))
    }

    /// Drop the partial file.
    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Write a JSON record atomically.
pub fn write_record<T: serde::Serialize>(path: &Path, record: &T) -> Result<(), ModelError> {
    let mut f = AtomicFile::create(path)?;
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| ModelError::io(path, std::io::Error::other(e)))?;
    f.write_all(&json).map_err(|e| ModelError::io(path, e))?;
    f.commit().map(|_| ())
}

/// Read a JSON record; `None` when absent or unreadable (it is then rebuilt).
pub fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_file_hashes_and_renames() {
        let dir = tempfile::tempdir().expect("tmp");
        let dest = dir.path().join("x.bin");
        let mut f = AtomicFile::create(&dest).expect("create");
        f.write_all(b"abc").expect("write");
        assert!(!dest.exists());
        let sha = f.commit().expect("commit");
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_file(&dest).expect("sha"), sha);
        let mut g = AtomicFile::create(&dest).expect("create");
        g.write_all(b"zzz").expect("write");
        g.abort();
        assert_eq!(std::fs::read(&dest).expect("read"), b"abc");
    }

    #[test]
    fn full_disk_is_recognised() {
        let e = ModelError::io("/x", std::io::Error::from_raw_os_error(28));
        assert!(matches!(e, ModelError::DiskFull(_)), "{e}");
        assert!(e.to_string().contains("disk full"));
    }
}
