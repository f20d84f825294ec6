//! Loading the master key: inline from configuration, or from a key file that a single SQLite
//! node creates on first start (mode 0600, never overwritten).

use std::io::Write as _;
use std::path::Path;

use latchkey_core::crypto::MasterKey;

use crate::config::MasterKeySource;

pub fn load(source: &MasterKeySource) -> Result<MasterKey, String> {
    match source {
        MasterKeySource::Inline(text) => MasterKey::from_base64(text).map_err(|e| format!("master_key: {e}")),
        MasterKeySource::File { path, create } => {
            if path.exists() {
                return read(path);
            }
            if !create {
                return Err(format!("master key file {} does not exist", path.display()));
            }
            write_new(path)
        }
    }
}

fn read(path: &Path) -> Result<MasterKey, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the master key file is readable by other users; chmod 600 it");
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    MasterKey::from_base64(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_new(path: &Path) -> Result<MasterKey, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let (key, text) = MasterKey::generate().map_err(|e| e.to_string())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    writeln!(file, "{text}")
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "created a new master key file; back it up with the database");
    Ok(key)
}
