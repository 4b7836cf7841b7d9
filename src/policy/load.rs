//! Reading the three formats, with every error placed at its path in the file.

use super::ClientConfig;
use crate::error::ConfigError;
use serde::de::DeserializeOwned;
use std::path::Path;

/// The setting a syntax or type error is reported under; its [`path`](ConfigError::path)
/// says where in the file.
const SETTING: &str = "policy";

/// A configuration file format.
///
/// ```
/// use meshless::policy::Format;
/// use meshless::retry::RetryConfig;
///
/// assert_eq!(Format::from_path("client.yml".as_ref()), Some(Format::Yaml));
/// let retry: RetryConfig = Format::Json.parse(r#"{"max_retries": 1, "max_pushback": "2s"}"#)?;
/// assert_eq!(retry.max_retries, 1);
/// let err = Format::Toml.parse::<RetryConfig>("max_retrys = 1").unwrap_err();
/// assert_eq!(err.path(), "max_retrys");
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format a file's extension names, if any.
    ///
    /// ```
    /// use meshless::policy::Format;
    /// assert_eq!(Format::from_path("a/b.toml".as_ref()), Some(Format::Toml));
    /// assert_eq!(Format::from_path("a/b.ini".as_ref()), None);
    /// ```
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// Reads any settings type (a layer's config struct, say) from `text`, unchecked: a
    /// syntax error, an unknown field or a value of the wrong type comes back as a
    /// [`ConfigError`] whose [`path`](ConfigError::path) names the field. Run the type's own
    /// `validate` after (the [`ClientConfig`] readers do).
    ///
    /// ```
    /// use meshless::policy::Format;
    /// let budget: meshless::budget::BudgetConfig = Format::Yaml.parse("ratio: 0.1")?;
    /// budget.validate()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn parse<T: DeserializeOwned>(self, text: &str) -> Result<T, ConfigError> {
        match self {
            Format::Toml => {
                let de = toml::Deserializer::parse(text).map_err(|e| toml_error("", &e, text))?;
                serde_path_to_error::deserialize(de)
                    .map_err(|e| toml_error(&e.path().to_string(), e.inner(), text))
            }
            Format::Yaml => {
                let de = serde_norway::Deserializer::from_str(text);
                serde_path_to_error::deserialize(de)
                    .map_err(|e| serde_error(&e.path().to_string(), &e.inner().to_string()))
            }
            Format::Json => {
                let mut de = serde_json::Deserializer::from_str(text);
                let value = serde_path_to_error::deserialize(&mut de)
                    .map_err(|e| serde_error(&e.path().to_string(), &e.inner().to_string()))?;
                de.end().map_err(|e| serde_error("", &e.to_string()))?;
                Ok(value)
            }
        }
    }
}

/// A TOML error, its message with the line it is on.
fn toml_error(path: &str, err: &toml::de::Error, text: &str) -> ConfigError {
    let problem = match err.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!("{} (line {line})", err.message().trim_end())
        }
        None => err.message().trim_end().to_string(),
    };
    serde_error(path, &problem)
}

/// A deserializer's error at `path`; an unknown field is placed at its own name rather than
/// at the section that holds it, so that the path points at the typo in every format.
fn serde_error(path: &str, problem: &str) -> ConfigError {
    let mut path = if path == "." {
        String::new()
    } else {
        path.to_string()
    };
    if let Some(field) = problem
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        // Some formats already step into the unknown key before failing.
        let last = path.rsplit('.').next().unwrap_or("");
        if last != field {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(field);
        }
    }
    let err = ConfigError::new(SETTING, problem.to_string());
    if path.is_empty() {
        err
    } else {
        err.placed(path)
    }
}

impl ClientConfig {
    /// Reads and checks a client's configuration in `format`.
    ///
    /// ```
    /// use meshless::policy::{ClientConfig, Format};
    /// let config = ClientConfig::parse(Format::Json, r#"{"endpoints": ["127.0.0.1:80"]}"#)?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn parse(format: Format, text: &str) -> Result<ClientConfig, ConfigError> {
        format.parse::<ClientConfig>(text)?.normalized()
    }

    /// Reads and checks a client's configuration from TOML.
    ///
    /// ```
    /// let config = meshless::policy::ClientConfig::from_toml_str("endpoints = ['127.0.0.1:80']")?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_toml_str(text: &str) -> Result<ClientConfig, ConfigError> {
        ClientConfig::parse(Format::Toml, text)
    }

    /// Reads and checks a client's configuration from YAML.
    ///
    /// ```
    /// let config = meshless::policy::ClientConfig::from_yaml_str("endpoints: ['127.0.0.1:80']")?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_yaml_str(text: &str) -> Result<ClientConfig, ConfigError> {
        ClientConfig::parse(Format::Yaml, text)
    }

    /// Reads and checks a client's configuration from JSON.
    ///
    /// ```
    /// let config = meshless::policy::ClientConfig::from_json_str(r#"{"endpoints": ["127.0.0.1:80"]}"#)?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_json_str(text: &str) -> Result<ClientConfig, ConfigError> {
        ClientConfig::parse(Format::Json, text)
    }

    /// Reads and checks a client's configuration from a file, its format named by its
    /// extension (`.toml`, `.yaml`, `.yml`, `.json`).
    ///
    /// ```
    /// let err = meshless::policy::ClientConfig::from_file("missing.toml").unwrap_err();
    /// assert_eq!(err.setting(), "file");
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<ClientConfig, ConfigError> {
        let path = path.as_ref();
        let Some(format) = Format::from_path(path) else {
            return Err(ConfigError::new(
                "file",
                format!("{path:?}: name a .toml, .yaml, .yml or .json file"),
            ));
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("file", format!("{path:?}: {e}")))?;
        ClientConfig::parse(format, &text)
    }

    /// The configuration as TOML, every setting written out (durations in their largest
    /// exact unit, settings turned off as `"off"`): print what a client runs with.
    ///
    /// ```
    /// let config = meshless::policy::ClientConfig::default();
    /// let text = config.to_toml_string();
    /// assert!(text.contains("max_retries = 2"));
    /// ```
    pub fn to_toml_string(&self) -> String {
        // Every field is a string, number, bool, list or table, which TOML always writes.
        toml::to_string(self).unwrap_or_else(|e| format!("# not writable as TOML: {e}"))
    }
}
