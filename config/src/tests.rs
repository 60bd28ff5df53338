//! The merge order and the errors, on a small command shaped like the
//! real ones (a global flag, a repeatable flag, a switch, a subcommand).

use super::*;
use std::io::Write as _;

fn cmd() -> Command {
    Command::new("demo")
        .arg(
            Arg::new(CONFIG_ARG)
                .long("config")
                .global(true)
                .env("JR_TEST_CONFIG"),
        )
        .arg(
            Arg::new("server")
                .long("server")
                .global(true)
                .env("JR_TEST_SERVER")
                .default_value("http://127.0.0.1:7070"),
        )
        .arg(
            Arg::new("batch")
                .long("batch-entries")
                .value_parser(clap::value_parser!(u32))
                .default_value("2048"),
        )
        .arg(Arg::new("unit").long("unit").action(ArgAction::Append))
        .arg(
            Arg::new("quiet")
                .long("no-follow")
                .action(ArgAction::SetTrue),
        )
        .subcommand(
            Command::new("logs").arg(
                Arg::new("output")
                    .long("output")
                    .value_parser(["short", "json"])
                    .default_value("short"),
            ),
        )
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn parse(text: &str, extra: &[&str]) -> Result<ArgMatches, ConfigFileError> {
    let f = file(text);
    let mut args = vec!["demo", "--config", f.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    matches_with_file(cmd(), args)
}

#[test]
fn without_a_file_the_command_line_alone_counts() {
    let m = matches_with_file(cmd(), ["demo", "--batch-entries", "7"]).unwrap();
    assert_eq!(m.get_one::<u32>("batch"), Some(&7));
    assert_eq!(
        m.get_one::<String>("server").map(String::as_str),
        Some("http://127.0.0.1:7070")
    );
}

#[test]
fn file_values_sit_between_defaults_and_flags() {
    let text = "server = \"http://central:7070\"\nbatch-entries = 100\nunit = [\"a.service\", \"b.service\"]\nno-follow = true\n";
    let m = parse(text, &[]).unwrap();
    assert_eq!(m.get_one::<u32>("batch"), Some(&100));
    assert_eq!(
        m.get_one::<String>("server").map(String::as_str),
        Some("http://central:7070")
    );
    let units: Vec<&String> = m.get_many("unit").unwrap().collect();
    assert_eq!(units, ["a.service", "b.service"]);
    assert!(m.get_flag("quiet"));

    let m = parse(text, &["--batch-entries", "5", "--unit", "c.service"]).unwrap();
    assert_eq!(m.get_one::<u32>("batch"), Some(&5));
    let units: Vec<&String> = m.get_many("unit").unwrap().collect();
    assert_eq!(
        units,
        ["c.service"],
        "flags replace, not extend, the file's list"
    );
}

#[test]
fn subcommand_tables_and_global_flags() {
    let m = parse("[logs]\noutput = \"json\"\n", &["logs"]).unwrap();
    let (name, sub) = m.subcommand().unwrap();
    assert_eq!(name, "logs");
    assert_eq!(
        sub.get_one::<String>("output").map(String::as_str),
        Some("json")
    );
    // --config given after the subcommand is found as well.
    let f = file("server = \"http://other:1\"\n");
    let m = matches_with_file(
        cmd(),
        ["demo", "logs", "--config", f.path().to_str().unwrap()],
    )
    .unwrap();
    let sub = m.subcommand().unwrap().1;
    assert_eq!(
        sub.get_one::<String>("server").map(String::as_str),
        Some("http://other:1")
    );
}

#[test]
fn errors_name_file_line_and_key() {
    let err = parse("server = \"http://x:1\"\n\nbach-entries = 5\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigFileError::Key { line: 3, .. }), "{msg}");
    assert!(
        msg.contains("bach-entries") && msg.contains("did you mean \"batch-entries\""),
        "{msg}"
    );

    let err = parse("batch-entries = \"many\"\n", &[]).unwrap_err();
    assert!(matches!(err, ConfigFileError::Key { line: 1, .. }), "{err}");
    assert!(err.to_string().contains("many"), "{err}");

    let err = parse("[logs]\noutput = \"xml\"\n", &["logs"]).unwrap_err();
    assert!(
        matches!(&err, ConfigFileError::Key { line: 2, key, .. } if key == "logs.output"),
        "{err}"
    );

    let err = parse("batch-entries = [1, 2]\n", &[]).unwrap_err();
    assert!(err.to_string().contains("not an array"), "{err}");
    let err = parse("config = \"/etc/x.toml\"\n", &[]).unwrap_err();
    assert!(err.to_string().contains("cannot name another"), "{err}");
    let err = parse("[nosuch]\nx = 1\n", &[]).unwrap_err();
    assert!(err.to_string().contains("nosuch"), "{err}");
    let err = parse("server = \n", &[]).unwrap_err();
    assert!(matches!(err, ConfigFileError::Syntax { .. }), "{err}");

    // A bad value overridden on the command line is no error.
    assert!(parse("batch-entries = \"many\"\n", &["--batch-entries", "3"]).is_ok());
    let missing = matches_with_file(cmd(), ["demo", "--config", "/nonexistent/x.toml"]);
    assert!(matches!(missing, Err(ConfigFileError::Read { .. })));
}

#[test]
fn keys_lists_every_setting() {
    assert_eq!(
        keys(&cmd()),
        [
            "server",
            "batch-entries",
            "unit",
            "no-follow",
            "logs.output"
        ]
    );
}
