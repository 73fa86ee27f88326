//! The `--config` file: TOML whose keys are the flags' long names, plus `[[rule]]`
//! tables (see [`crate::http::rules`]).
//!
//! Precedence: built-in default < config file < environment < command line. The
//! command line (with the environment) is parsed first; then each key of the file is
//! turned into the flag it names (`threads = 4` → `--threads=4`) only where clap says
//! the value came from its default, and everything is parsed again. The keys are
//! found by asking clap's `Command` for the argument of that long name, and the type
//! a key needs comes from the argument's action and value parser, so a new flag is a
//! new key with no change here.
//!
//! Unknown keys, wrong types and bad values are errors naming the key and the line;
//! a value `Cli::into_config` refuses names its flag, and [`Loaded::into_config`]
//! adds the key and line of the file that set it.

use crate::config::{self, Cli, Config, ConfigError};
use crate::http::rules::{Redirect, Rule};
use crate::http::status::Status;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use serde::Deserialize;
use std::any::TypeId;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Flags that cannot be keys of the file.
const NOT_KEYS: &[&str] = &["config", "check-config", "help", "version"];

/// The parsed command line, merged with the config file.
#[derive(Debug)]
pub struct Loaded {
    /// The flags, as if every key of the file had been given as its flag.
    pub cli: Cli,
    /// The file, if one was read.
    file: Option<FileDoc>,
    /// Each setting, its value and where it came from (for `--check-config`).
    report: Vec<String>,
}

/// Parses `args` (the program name first) and the `--config` file they name. clap's
/// own errors, `--help` and `--version` exit the process as `Cli::parse` does.
pub fn parse(args: Vec<OsString>) -> Result<Loaded, ConfigError> {
    let cmd = Cli::command();
    let first = cmd.clone().get_matches_from(args.clone());
    let mut args = args;
    let mut file = None;
    if let (None, Some(path)) = (first.subcommand(), first.get_one::<PathBuf>("config")) {
        let mut doc = FileDoc::read(path)?;
        args.extend(doc.flags(&cmd, &first)?);
        file = Some(doc);
    }
    if let Some(("healthcheck", sub)) = first.subcommand() {
        if let Some(path) = sub.get_one::<PathBuf>("config") {
            args.extend(FileDoc::read(path)?.healthcheck_flags(sub)?);
        }
    }
    let matches = cmd
        .clone()
        .try_get_matches_from(&args)
        .map_err(|e| ConfigError(clap_message(&e)))?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| ConfigError(clap_message(&e)))?;
    if let Some(doc) = &file {
        cli.rules = doc.rules.clone();
    }
    let report = report(&cmd, &matches, file.as_ref());
    Ok(Loaded { cli, file, report })
}

impl Loaded {
    /// Validates into a [`Config`]; an error about a flag the file set also names the
    /// file's key and line.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let file = self.file;
        self.cli.into_config().map_err(|e| match &file {
            Some(doc) => doc.annotate(e),
            None => e,
        })
    }

    /// The effective settings as TOML lines, each with where it came from.
    pub fn report(&self) -> String {
        self.report.join("\n")
    }
}

/// A `[[rule]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RuleDef {
    path: String,
    headers: Option<BTreeMap<String, String>>,
    cache_control: Option<String>,
    auth: Option<bool>,
    redirect: Option<RedirectDef>,
}

/// A rule's `redirect = { to = "/new/", status = 308 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectDef {
    to: String,
    #[serde(default = "default_redirect_status")]
    status: u16,
}

/// A redirect without `status` is temporary: a permanent one is cached by browsers,
/// so it must be asked for.
fn default_redirect_status() -> u16 {
    307
}

#[derive(Debug, Deserialize)]
struct RulesDoc {
    #[serde(default)]
    rule: Vec<Spanned<RuleDef>>,
}

/// A read config file.
#[derive(Debug)]
struct FileDoc {
    path: String,
    text: String,
    keys: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    rules: Vec<Rule>,
    /// The keys turned into flags, with their lines.
    used: Vec<(String, usize)>,
}

impl FileDoc {
    fn read(path: &Path) -> Result<FileDoc, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        FileDoc::parse(text, &path.display().to_string())
    }

    fn parse(text: String, path: &str) -> Result<FileDoc, ConfigError> {
        let at = |e: toml::de::Error| {
            let line = e
                .span()
                .map_or(String::new(), |s| format!(" line {}", line_of(&text, s.start)));
            ConfigError(format!("config file {path}{line}: {}", e.message().trim()))
        };
        let keys: BTreeMap<Spanned<String>, Spanned<toml::Value>> = toml::from_str(&text).map_err(at)?;
        let defs: RulesDoc = toml::from_str(&text).map_err(at)?;
        let mut rules = Vec::with_capacity(defs.rule.len());
        for def in defs.rule {
            let line = line_of(&text, def.span().start);
            let rule = compile(def.into_inner())
                .map_err(|why| ConfigError(format!("config file {path} line {line}: [[rule]]: {why}")))?;
            rules.push(rule);
        }
        Ok(FileDoc {
            path: path.to_string(),
            text,
            keys,
            rules,
            used: Vec::new(),
        })
    }

    /// The flags the file's keys stand for, where `matches` (command line and
    /// environment) took the default; every key is checked either way.
    fn flags(&mut self, cmd: &clap::Command, matches: &ArgMatches) -> Result<Vec<OsString>, ConfigError> {
        let mut flags = Vec::new();
        let mut root = None;
        for (key, value) in &self.keys {
            if key.as_ref() == "rule" {
                continue;
            }
            let line = line_of(&self.text, key.span().start);
            let err = |why: String| ConfigError(format!("config file {} line {line}: {why}", self.path));
            let arg = find_arg(cmd, key.as_ref()).ok_or_else(|| err(unknown_key(cmd, key.as_ref())))?;
            let values =
                values_of(arg, value.as_ref()).map_err(|why| err(format!("'{key}' {why}", key = key.as_ref())))?;
            for v in &values {
                check_value(cmd, arg, v).map_err(|why| err(format!("bad value for '{}': {why}", key.as_ref())))?;
            }
            let from_default = matches!(
                matches.value_source(arg.get_id().as_str()),
                None | Some(ValueSource::DefaultValue)
            );
            if !from_default {
                continue;
            }
            self.used.push((key.as_ref().clone(), line));
            match arg.get_long() {
                Some(long) if arg.get_action().takes_values() => {
                    flags.extend(values.iter().map(|v| OsString::from(format!("--{long}={v}"))));
                }
                Some(long) if values.first().is_some_and(|v| v == "true") => flags.push(format!("--{long}").into()),
                Some(_) => {}
                None => root = values.into_iter().next(),
            }
        }
        if let Some(root) = root {
            flags.push("--".into());
            flags.push(root.into());
        }
        Ok(flags)
    }

    /// What `threadserve healthcheck --config FILE` takes from the server's file: its
    /// `bind`, `port` and `health-path`, where `sub` (command line and environment)
    /// took the default. The other keys are the server's business.
    fn healthcheck_flags(&self, sub: &ArgMatches) -> Result<Vec<OsString>, ConfigError> {
        let mut flags = Vec::new();
        for (key, id) in [("bind", "bind"), ("port", "port"), ("health-path", "path")] {
            let Some(value) = self.keys.iter().find(|(k, _)| k.as_ref() == key).map(|(_, v)| v) else {
                continue;
            };
            let text = match value.as_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                v => {
                    let line = line_of(&self.text, value.span().start);
                    return Err(ConfigError(format!(
                        "config file {} line {line}: '{key}' cannot be {}",
                        self.path,
                        article(v)
                    )));
                }
            };
            if matches!(sub.value_source(id), None | Some(ValueSource::DefaultValue)) {
                flags.push(OsString::from(format!("--{id}={text}")));
            }
        }
        Ok(flags)
    }

    /// Adds the keys and lines to an error about flags this file set.
    fn annotate(&self, e: ConfigError) -> ConfigError {
        let mentions = |key: &str| {
            let flag = format!("--{key}");
            e.0.match_indices(&flag).any(|(i, _)| {
                let next = e.0[i + flag.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        };
        let named: Vec<String> = (self.used.iter())
            .filter(|(key, _)| mentions(key))
            .map(|(key, line)| format!("'{key}' on line {line}"))
            .collect();
        if named.is_empty() {
            return e;
        }
        ConfigError(format!("{} (set by {} of {})", e.0, named.join(" and "), self.path))
    }
}

/// The argument a key names: the flag of that long name, or the positional `root`.
fn find_arg<'c>(cmd: &'c clap::Command, key: &str) -> Option<&'c Arg> {
    if NOT_KEYS.contains(&key) {
        return None;
    }
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(key) || (a.is_positional() && a.get_id().as_str() == key))
}

fn unknown_key(cmd: &clap::Command, key: &str) -> String {
    let close = cmd
        .get_arguments()
        .filter_map(Arg::get_long)
        .filter(|l| !NOT_KEYS.contains(l))
        .find(|l| l.replace('_', "-") == key.replace('_', "-") || strsim_close(l, key));
    match (NOT_KEYS.contains(&key), close) {
        (true, _) => format!("'{key}' cannot be set in a config file"),
        (false, Some(l)) => format!("unknown key '{key}' (did you mean '{l}'?)"),
        (false, None) => format!("unknown key '{key}' (keys are the long names of the flags, see --help)"),
    }
}

/// Whether two keys differ by one added, removed or changed character.
fn strsim_close(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() { (&a, &b) } else { (&b, &a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long.iter()).take_while(|(x, y)| x == y).count();
    let (rest_short, rest_long) = (&short[prefix..], &long[prefix..]);
    if short.len() == long.len() {
        rest_short.get(1..) == rest_long.get(1..)
    } else {
        rest_short == &rest_long[1..]
    }
}

/// What a flag's value parser reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Integer,
    Text,
}

fn kind(arg: &Arg) -> Kind {
    let t = arg.get_value_parser().type_id();
    let ints = [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i64>(),
    ];
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) || t == TypeId::of::<bool>() {
        Kind::Bool
    } else if ints.iter().any(|i| t == *i) {
        Kind::Integer
    } else {
        Kind::Text
    }
}

/// The flag values a TOML value stands for, or why its type is wrong.
fn values_of(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    let repeatable = matches!(arg.get_action(), ArgAction::Append);
    let kind = kind(arg);
    match value {
        toml::Value::Array(items) if repeatable => items.iter().map(|v| scalar(kind, v)).collect(),
        v if repeatable => Err(format!("must be an array of {}s, not {}", kind_name(kind), article(v))),
        v => scalar(kind, v).map(|s| vec![s]),
    }
}

fn scalar(kind: Kind, value: &toml::Value) -> Result<String, String> {
    match (kind, value) {
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(b.to_string()),
        (Kind::Integer, toml::Value::Integer(i)) => Ok(i.to_string()),
        (Kind::Text, toml::Value::String(s)) => Ok(s.clone()),
        (k, v) => Err(format!(
            "must be a{} {}, not {}",
            if k == Kind::Integer { "n" } else { "" },
            kind_name(k),
            article(v)
        )),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "boolean",
        Kind::Integer => "integer",
        Kind::Text => "string",
    }
}

/// `a string`, `an integer`, ...
fn article(v: &toml::Value) -> String {
    let t = v.type_str();
    let vowel = t.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {t}", if vowel { "an" } else { "a" })
}

/// Runs the flag's own value parser on `value` (ranges, enums, durations), by
/// parsing it alone.
fn check_value(cmd: &clap::Command, arg: &Arg, value: &str) -> Result<(), String> {
    let flag = match arg.get_long() {
        _ if !arg.get_action().takes_values() => return Ok(()),
        Some(long) => vec![format!("--{long}={value}")],
        None => vec!["--".to_string(), value.to_string()],
    };
    let args = std::iter::once("threadserve".to_string()).chain(flag);
    cmd.clone()
        .try_get_matches_from(args)
        .map(|_| ())
        .map_err(|e| clap_message(&e))
}

/// A clap error on one line, without its `error: ` prefix and `--help` hint.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = (text.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    let line = lines.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// Checks a rule and compiles it, as `--immutable-pattern`, `--header` and
/// `--cache-control` check their values.
fn compile(def: RuleDef) -> Result<Rule, String> {
    let pattern = glob::Pattern::new(def.path.trim_start_matches('/'))
        .map_err(|e| format!("invalid path glob '{}': {e}", def.path))?;
    let headers = def
        .headers
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| config::parse_header(&format!("{name}: {value}")).map_err(|e| e.0))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_control = def
        .cache_control
        .map(|v| config::header_value(&v, "cache-control").map_err(|e| e.0))
        .transpose()?;
    let redirect = def.redirect.map(redirect).transpose()?;
    Ok(Rule {
        pattern,
        headers,
        cache_control,
        auth: def.auth,
        redirect,
    })
}

fn redirect(def: RedirectDef) -> Result<Redirect, String> {
    let status = match def.status {
        301 => Status::MovedPermanently,
        302 => Status::Found,
        307 => Status::TemporaryRedirect,
        308 => Status::PermanentRedirect,
        s => return Err(format!("redirect status {s} is not one of 301, 302, 307, 308")),
    };
    let to = config::header_value(&def.to, "redirect.to").map_err(|e| e.0)?;
    if to.is_empty() {
        return Err("redirect.to is empty".into());
    }
    Ok(Redirect { to, status })
}

/// Every setting as a TOML line with its source, then the rules.
fn report(cmd: &clap::Command, matches: &ArgMatches, file: Option<&FileDoc>) -> Vec<String> {
    let mut lines = Vec::new();
    for arg in cmd.get_arguments() {
        let key = arg.get_long().unwrap_or(arg.get_id().as_str());
        if NOT_KEYS.contains(&key) {
            continue;
        }
        let id = arg.get_id().as_str();
        let used = file.and_then(|f| f.used.iter().find(|(k, _)| k == key));
        let source = match (used, matches.value_source(id)) {
            (Some((_, line)), _) => format!("config file line {line}"),
            (None, Some(ValueSource::CommandLine)) => "command line".into(),
            (None, Some(ValueSource::EnvVariable)) => "environment".into(),
            (None, _) => "default".into(),
        };
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = match (raw.is_empty(), kind(arg), matches!(arg.get_action(), ArgAction::Append)) {
            (true, _, false) => {
                lines.push(format!("# {key} is not set"));
                continue;
            }
            (_, k, true) => format!(
                "[{}]",
                raw.iter().map(|v| toml_scalar(k, v)).collect::<Vec<_>>().join(", ")
            ),
            (_, k, false) => toml_scalar(k, &raw[0]),
        };
        lines.push(format!("{key} = {value}  # {source}"));
    }
    for rule in file.map_or(&[][..], |f| &f.rules[..]) {
        lines.push(describe_rule(rule));
    }
    lines
}

/// One rule as an inline TOML line.
fn describe_rule(rule: &Rule) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut parts = vec![format!("path = {}", q(rule.pattern.as_str()))];
    if !rule.headers.is_empty() {
        let h: Vec<String> = rule
            .headers
            .iter()
            .map(|(n, v)| format!("{} = {}", q(n), q(v)))
            .collect();
        parts.push(format!("headers = {{ {} }}", h.join(", ")));
    }
    if let Some(cc) = &rule.cache_control {
        parts.push(format!("cache-control = {}", q(cc)));
    }
    if let Some(auth) = rule.auth {
        parts.push(format!("auth = {auth}"));
    }
    if let Some(r) = &rule.redirect {
        parts.push(format!(
            "redirect = {{ to = {}, status = {} }}",
            q(&r.to),
            r.status.code()
        ));
    }
    format!("[[rule]] {}", parts.join(", "))
}

fn toml_scalar(kind: Kind, raw: &str) -> String {
    match kind {
        Kind::Bool | Kind::Integer => raw.to_string(),
        Kind::Text => toml::Value::String(raw.to_string()).to_string(),
    }
}

#[cfg(test)]
mod tests;
