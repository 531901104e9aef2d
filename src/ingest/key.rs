//! The Open Exchange Rates App ID: where it comes from, and a type that never prints it.
//!
//! The original put the key on a crontab command line, where `ps`, shell history and cron
//! mail all see it. Here it comes only from the environment or a config file, travels only
//! in an `Authorization` header, and is held in [`AppId`], whose `Debug` and `Display` print
//! `***`, so no log line, error, report or panic message can carry it by accident.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The environment variables that may hold the key, in the order they are read.
/// `OPENEXCHANGE_APP_ID` is the original's name, kept so migrated deployments keep working.
pub const KEY_VARIABLES: [&str; 2] = ["OXR_APP_ID", "OPENEXCHANGE_APP_ID"];

/// A secret App ID. The only way to the text is [`AppId::expose`], used once: to build the
/// request header.
#[derive(Clone, PartialEq, Eq)]
pub struct AppId(String);

impl AppId {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppId(***)")
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why no usable key was found. No variant holds the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no Open Exchange Rates App ID: set OXR_APP_ID (or OPENEXCHANGE_APP_ID) in the environment, \
         or `app_id` under [oxr] in a config file ({searched}); it is never read from the command line"
    )]
    Missing { searched: String },
    #[error("config file {path}: {why}")]
    Config { path: PathBuf, why: String },
    #[error("{variable} is set but empty: set it to your Open Exchange Rates App ID")]
    Empty { variable: String },
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    oxr: OxrSection,
}

#[derive(Deserialize, Default)]
struct OxrSection {
    app_id: Option<String>,
}

/// Where `fxpipe.toml` is looked for when `--config` is not given, first match wins:
/// the working directory, `$XDG_CONFIG_HOME/fxpipe/` (or `~/.config/fxpipe/`), `/etc/fxpipe/`.
pub fn config_search_path() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("fxpipe.toml")];
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = config_home {
        paths.push(dir.join("fxpipe").join("fxpipe.toml"));
    }
    paths.push(PathBuf::from("/etc/fxpipe/fxpipe.toml"));
    paths
}

fn read_config(path: &Path) -> Result<Option<String>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Config {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    // toml's error text quotes the offending line, which may be the key itself: name the
    // place only.
    let parsed: ConfigFile = toml::from_str(&text).map_err(|e| KeyError::Config {
        path: path.to_path_buf(),
        why: match e.span() {
            Some(span) => format!(
                "not valid TOML near line {}",
                text[..span.start.min(text.len())].lines().count().max(1)
            ),
            None => "not valid TOML".to_string(),
        },
    })?;
    let key = parsed.oxr.app_id.filter(|k| !k.trim().is_empty());
    if key.is_some() {
        warn_if_shared(path);
    }
    Ok(key)
}

/// A config file holding the App ID should be readable by its owner only: says so (naming the
/// file, never the key) when group or others can read it.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o044 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "this config file holds the Open Exchange Rates App ID and other users can read it: chmod 600 it"
                );
            }
        }
    }
}

/// Where a key was found: what `fxpipe doctor` reports instead of the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// One of [`KEY_VARIABLES`].
    Environment(&'static str),
    /// A config file's `[oxr] app_id`.
    File(PathBuf),
}

impl fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOrigin::Environment(variable) => write!(f, "environment variable {variable}"),
            KeyOrigin::File(path) => write!(f, "config file {}", path.display()),
        }
    }
}

/// The key from the environment, else from `config` (when given) or the first `fxpipe.toml`
/// on the search path. `lookup` reads a variable (the process environment in production).
pub fn resolve(
    config: Option<&Path>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<AppId, KeyError> {
    locate(config, lookup).map(|(key, _)| key)
}

/// [`resolve`], also saying where the key was found.
pub fn locate(
    config: Option<&Path>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(AppId, KeyOrigin), KeyError> {
    for variable in KEY_VARIABLES {
        if let Some(value) = lookup(variable) {
            if value.trim().is_empty() {
                return Err(KeyError::Empty {
                    variable: variable.to_string(),
                });
            }
            return Ok((AppId::new(value.trim()), KeyOrigin::Environment(variable)));
        }
    }
    let candidates = match config {
        Some(path) => vec![path.to_path_buf()],
        None => config_search_path(),
    };
    for path in &candidates {
        if config.is_some() || path.is_file() {
            if let Some(key) = read_config(path)? {
                return Ok((AppId::new(key.trim()), KeyOrigin::File(path.clone())));
            }
        }
    }
    Err(KeyError::Missing {
        searched: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_key() {
        let key = AppId::new("s3cr3t-key");
        assert_eq!(format!("{key}"), "***");
        assert_eq!(format!("{key:?}"), "AppId(***)");
        assert_eq!(format!("{:?}", Some(key.clone())), "Some(AppId(***))");
        assert_eq!(key.expose(), "s3cr3t-key");
    }

    #[test]
    fn environment_first_then_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fxpipe.toml");
        std::fs::write(&file, "[oxr]\napp_id = \"from-file\"\n").unwrap();
        let env = |v: &str| (v == "OPENEXCHANGE_APP_ID").then(|| "from-env".to_string());
        assert_eq!(resolve(Some(&file), env).unwrap().expose(), "from-env");
        assert_eq!(
            resolve(Some(&file), |_| None).unwrap().expose(),
            "from-file"
        );
        let (_, origin) = locate(Some(&file), env).unwrap();
        assert_eq!(
            origin.to_string(),
            "environment variable OPENEXCHANGE_APP_ID"
        );
        let (_, origin) = locate(Some(&file), |_| None).unwrap();
        assert_eq!(origin, KeyOrigin::File(file.clone()));
        let empty = |v: &str| (v == "OXR_APP_ID").then(String::new);
        assert!(resolve(None, empty)
            .unwrap_err()
            .to_string()
            .contains("OXR_APP_ID is set but empty"));
    }

    #[test]
    fn a_missing_key_names_the_variable_and_a_bad_file_hides_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let nothing = dir.path().join("none.toml");
        std::fs::write(&nothing, "[other]\nx = 1\n").unwrap();
        let why = resolve(Some(&nothing), |_| None).unwrap_err().to_string();
        assert!(why.contains("set OXR_APP_ID"), "{why}");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[oxr]\napp_id = \"leaky-key\n").unwrap();
        let why = resolve(Some(&bad), |_| None).unwrap_err().to_string();
        assert!(!why.contains("leaky-key"), "{why}");
        assert!(why.contains("line 2"), "{why}");
    }
}
