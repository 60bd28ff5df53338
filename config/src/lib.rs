//! TOML config files for journal-router's command lines.
//!
//! Every option of a binary is a long flag, usually with a `JR_…`
//! environment variable; the same option is a key of the TOML file given
//! with `--config`, spelled as the long flag without its dashes. The keys
//! are not listed anywhere else: [`matches_with_file`] reads the file and
//! makes each key's value the *default* of the flag of that name, so one
//! clap parse gives the documented precedence, lowest first:
//!
//! 1. built-in defaults,
//! 2. the config file,
//! 3. the environment,
//! 4. the command line.
//!
//! A table named after a subcommand holds that subcommand's flags
//! (`[logs]` in `jrctl`'s file). Repeatable flags take an array. An
//! unknown key, a key that is not an option, or a value the flag does not
//! accept is an error naming the file, the line and the key.
//!
//! The file is parsed with `toml_edit` because its keys keep their
//! positions, which gives every error its line.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::ops::Range;
use std::path::{Path, PathBuf};
use thiserror::Error;
use toml_edit::{ImDocument, Item, TableLike, Value};

/// The id (and long name) of the flag that names the config file.
pub const CONFIG_ARG: &str = "config";

#[derive(Debug, Error)]
pub enum ConfigFileError {
    /// The command line itself (including `--help` and `--version`).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}, line {line}: {key}: {reason}")]
    Key {
        path: PathBuf,
        line: usize,
        key: String,
        reason: String,
    },
}

/// Parses `args` (the first is the program name) with `cmd`. When the
/// `--config` flag (or its environment variable) names a file, its keys
/// become the defaults of the flags of the same names before the command
/// line is parsed again; see the module documentation.
pub fn matches_with_file<I, T>(cmd: Command, args: I) -> Result<ArgMatches, ConfigFileError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let first = cmd.clone().try_get_matches_from(&args)?;
    let Some(path) = config_path(&first) else {
        return Ok(first);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigFileError::Read {
        path: path.clone(),
        source,
    })?;
    let file = ConfigFile::parse(&path, &text)?;
    let (cmd, given) = file.apply(cmd)?;
    cmd.try_get_matches_from(&args)
        .map_err(|e| file.blame(e, &given))
}

/// The `--config` value, wherever in the subcommand chain it was given.
fn config_path(m: &ArgMatches) -> Option<PathBuf> {
    let mut m = m;
    loop {
        if let Ok(Some(mut raw)) = m.try_get_raw(CONFIG_ARG) {
            if let Some(v) = raw.next() {
                return Some(PathBuf::from(v));
            }
        }
        m = m.subcommand()?.1;
    }
}

/// A file key that became a flag's default: where it is, for errors.
#[derive(Debug, Clone)]
struct Given {
    key: String,
    long: String,
    line: usize,
}

/// A parsed config file.
pub struct ConfigFile<'a> {
    path: PathBuf,
    text: &'a str,
    doc: ImDocument<&'a str>,
}

impl<'a> ConfigFile<'a> {
    /// Parses `text`, the contents of `path`.
    pub fn parse(path: &Path, text: &'a str) -> Result<ConfigFile<'a>, ConfigFileError> {
        let doc = ImDocument::parse(text).map_err(|e| ConfigFileError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        Ok(ConfigFile {
            path: path.to_owned(),
            text,
            doc,
        })
    }

    fn line(&self, span: Option<Range<usize>>) -> usize {
        let at = span.map_or(0, |s| s.start).min(self.text.len());
        self.text.as_bytes()[..at]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn key_error(&self, line: usize, key: &str, reason: impl Into<String>) -> ConfigFileError {
        ConfigFileError::Key {
            path: self.path.clone(),
            line,
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// `cmd` with the file's values as flag defaults, and what was set.
    fn apply(&self, cmd: Command) -> Result<(Command, Vec<Given>), ConfigFileError> {
        let mut given = Vec::new();
        let cmd = self.apply_table(cmd, self.doc.as_table(), "", &mut given)?;
        Ok((cmd, given))
    }

    fn apply_table(
        &self,
        mut cmd: Command,
        table: &dyn TableLike,
        prefix: &str,
        given: &mut Vec<Given>,
    ) -> Result<Command, ConfigFileError> {
        for (name, item) in table.iter() {
            let key = format!("{prefix}{name}");
            let line = self.line(table.key(name).and_then(|k| k.span()));
            if let Some(sub) = item.as_table_like() {
                let Some(inner) = cmd.find_subcommand(name).cloned() else {
                    return Err(self.key_error(line, &key, unknown(&cmd, name)));
                };
                let inner = self.apply_table(inner, sub, &format!("{key}."), given)?;
                cmd = cmd.mut_subcommand(name, |_| inner);
                continue;
            }
            let Some(arg) = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(name))
                .cloned()
            else {
                return Err(self.key_error(line, &key, unknown(&cmd, name)));
            };
            let values = self.values(&arg, item, line, &key)?;
            let id = arg.get_id().clone();
            cmd = cmd.mut_arg(id, |a| a.default_values(values));
            given.push(Given {
                key,
                long: name.to_owned(),
                line,
            });
        }
        Ok(cmd)
    }

    /// The flag values a key's TOML value stands for.
    fn values(
        &self,
        arg: &Arg,
        item: &Item,
        line: usize,
        key: &str,
    ) -> Result<Vec<String>, ConfigFileError> {
        if arg.get_id() == CONFIG_ARG {
            return Err(self.key_error(line, key, "a config file cannot name another one"));
        }
        let repeatable = matches!(arg.get_action(), ArgAction::Append);
        let settable = arg.get_action().takes_values()
            || matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        if !settable {
            return Err(self.key_error(line, key, "not a setting"));
        }
        let Some(value) = item.as_value() else {
            return Err(self.key_error(line, key, "expected a value"));
        };
        match value {
            Value::Array(items) if repeatable => items
                .iter()
                .map(|v| {
                    scalar(v).ok_or_else(|| {
                        self.key_error(line, key, "expected an array of strings or numbers")
                    })
                })
                .collect(),
            Value::Array(_) => Err(self.key_error(line, key, "takes one value, not an array")),
            v => scalar(v)
                .map(|s| vec![s])
                .ok_or_else(|| self.key_error(line, key, "expected a string, number or boolean")),
        }
    }

    /// Turns a parse error caused by one of the file's values into an
    /// error naming the file, line and key.
    fn blame(&self, e: clap::Error, given: &[Given]) -> ConfigFileError {
        let value_error = matches!(
            e.kind(),
            ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::ArgumentConflict
        );
        let culprit = match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(s)) if value_error => given.iter().find(|g| {
                s.strip_prefix("--")
                    .and_then(|rest| rest.strip_prefix(g.long.as_str()))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '=', '<']))
            }),
            _ => None,
        };
        match culprit {
            Some(g) => {
                let reason = e
                    .render()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_owned();
                self.key_error(g.line, &g.key, reason)
            }
            None => ConfigFileError::Cli(e),
        }
    }
}

fn unknown(cmd: &Command, name: &str) -> String {
    let mut known: Vec<&str> = cmd
        .get_arguments()
        .filter(|a| a.get_id() != CONFIG_ARG)
        .filter(|a| {
            a.get_action().takes_values()
                || matches!(a.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
        })
        .filter_map(Arg::get_long)
        .collect();
    known.extend(cmd.get_subcommands().map(|s| s.get_name()));
    match known.iter().find(|k| close(k, name)) {
        Some(k) => format!("unknown key (did you mean {k:?}?)"),
        None => format!("unknown key (known keys: {})", known.join(", ")),
    }
}

/// Whether `a` and `b` differ by one edit at most: a likely typo.
fn close(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    a.len().max(b.len()) - prefix - suffix <= 1
}

fn scalar(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => s.value().clone(),
        Value::Integer(i) => i.value().to_string(),
        Value::Float(f) => f.value().to_string(),
        Value::Boolean(b) => b.value().to_string(),
        Value::Datetime(d) => d.value().to_string(),
        Value::Array(_) | Value::InlineTable(_) => return None,
    })
}

/// The long flags a command (and its subcommands, as `sub.flag`) accepts
/// as config keys: what an example config must mention.
pub fn keys(cmd: &Command) -> Vec<String> {
    fn walk(cmd: &Command, prefix: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let settable = a.get_action().takes_values()
                || matches!(a.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
            if a.get_id() == CONFIG_ARG || !settable || a.is_global_set() && !prefix.is_empty() {
                continue;
            }
            if let Some(long) = a.get_long() {
                out.push(format!("{prefix}{long}"));
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, &format!("{prefix}{}.", s.get_name()), out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, "", &mut out);
    out
}

#[cfg(test)]
mod tests;
