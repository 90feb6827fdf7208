//! Where the CLI finds its credential for an API: `STRATA_TOKEN`, else the context recorded
//! for that API's URL by `strata dev`, `strata server` (their data directory's
//! `admin-token`) or `strata login` (a token file). A context names the token's file, never
//! the token, so the secret stays in one file only its owner reads.
//!
//! Contexts live in `$STRATA_CONFIG_DIR`, else `$XDG_CONFIG_HOME/strata`, else
//! `~/.config/strata`, one file per API URL under `contexts/`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One API's credential, by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub url: String,
    pub token_file: PathBuf,
    /// The CA an HTTPS API's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// The CLI's configuration directory.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STRATA_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("strata"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|home| PathBuf::from(home).join(".config").join("strata"))
}

/// `http://HOST:PORT` for an address given as `HOST:PORT` or a URL.
pub fn normalize_url(addr: &str) -> String {
    let addr = addr.trim();
    let base = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    base.trim_end_matches('/').to_string()
}

/// A file name for the API at `url` (its normalized URL, letters and digits kept).
fn name_for(url: &str) -> String {
    normalize_url(url)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn file_for(dir: &Path, url: &str) -> PathBuf {
    dir.join("contexts").join(format!("{}.json", name_for(url)))
}

/// Records that the API at `url` is reached with the token in `token_file`, trusting the CA
/// in `ca_file` (HTTPS).
pub fn record(url: &str, token_file: &Path, ca_file: Option<&Path>) -> std::io::Result<PathBuf> {
    let dir = config_dir().ok_or_else(|| std::io::Error::other("no HOME to keep contexts in"))?;
    let path = file_for(&dir, url);
    let parent = path.parent().expect("a context file has a directory");
    std::fs::create_dir_all(parent)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
    }
    let context = Context {
        url: normalize_url(url),
        token_file: std::path::absolute(token_file)?,
        ca_file: ca_file.map(std::path::absolute).transpose()?,
    };
    let json = serde_json::to_string_pretty(&context).expect("a context serializes");
    strata_control::credentials::write_private(&path, &json)?;
    Ok(path)
}

fn context_of(url: &str) -> Option<Context> {
    let path = file_for(&config_dir()?, url);
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The CA (PEM) to trust for the API at `url`: the file `STRATA_CA` names, else its context's.
pub fn ca_for(url: &str) -> Option<Vec<u8>> {
    if let Some(path) = std::env::var_os("STRATA_CA").filter(|p| !p.is_empty()) {
        return std::fs::read(path).ok();
    }
    std::fs::read(context_of(url)?.ca_file?).ok()
}

/// Where `strata login` keeps the CA it was shown for the API at `url`.
pub fn ca_file_for(url: &str) -> Option<PathBuf> {
    config_dir().map(|dir| dir.join("cas").join(format!("{}.pem", name_for(url))))
}

/// The token for the API at `url`: `STRATA_TOKEN`, else its context's token file.
pub fn token_for(url: &str) -> Option<String> {
    if let Some(token) = std::env::var("STRATA_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Some(token.trim().to_string());
    }
    let token = std::fs::read_to_string(context_of(url)?.token_file).ok()?;
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalize() {
        assert_eq!(normalize_url("127.0.0.1:7700"), "http://127.0.0.1:7700");
        assert_eq!(
            normalize_url("http://127.0.0.1:7700/"),
            "http://127.0.0.1:7700"
        );
        let dir = Path::new("/c");
        assert_eq!(
            file_for(dir, "127.0.0.1:7700"),
            file_for(dir, "http://127.0.0.1:7700")
        );
    }
}
