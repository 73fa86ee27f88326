use super::*;

fn load(toml: &str, extra: &[&str]) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, toml).unwrap();
    let mut args: Vec<OsString> = vec!["threadserve".into(), ".".into(), "--config".into(), path.into()];
    args.extend(extra.iter().map(OsString::from));
    parse(args)
}

/// Each kind of mistake, with the line it is on.
#[test]
fn errors_name_the_key_and_the_line() {
    let cases = [
        (
            "threads = 2\nthreds = 3\n",
            "line 2: unknown key 'threds' (did you mean 'threads'?)",
        ),
        ("bogus-key = 1\n", "line 1: unknown key 'bogus-key'"),
        ("\nconfig = \"x.toml\"\n", "line 2: 'config' cannot be set"),
        (
            "threads = \"4\"\n",
            "line 1: 'threads' must be an integer, not a string",
        ),
        ("cors = \"yes\"\n", "line 1: 'cors' must be a boolean, not a string"),
        (
            "header = \"X-A: b\"\n",
            "line 1: 'header' must be an array of strings, not a string",
        ),
        ("header = [1]\n", "line 1: 'header' must be a string, not an integer"),
        ("\n\nthreads = 0\n", "line 3: bad value for 'threads'"),
        ("log-format = \"xml\"\n", "possible values: combined, json, off"),
        ("idle-timeout = \"3h\"\n", "line 1: bad value for 'idle-timeout'"),
        ("threads = \n", "line 1"),
        ("[[rule]]\npath = \"a\"\n[[rule]]\npath = \"b\"\nauth = 1\n", "line 5"),
        (
            "[[rule]]\npath = \"a\"\nheader = {}\n",
            "line 3: unknown field `header`",
        ),
        (
            "\n[[rule]]\npath = \"a\"\nredirect = { to = \"/\", status = 303 }\n",
            "line 2: [[rule]]: redirect status 303",
        ),
        ("[[rule]]\npath = \"a[\"\n", "line 1: [[rule]]: invalid path glob"),
        (
            "[[rule]]\npath = \"a\"\nheaders = { \"Content-Length\" = \"1\" }\n",
            "Content-Length cannot be set",
        ),
        ("[[rule]]\nheaders = {}\n", "missing field `path`"),
    ];
    for (toml, want) in cases {
        let err = load(toml, &[]).expect_err(toml).to_string();
        assert!(err.contains(want), "{toml:?}: {err}");
        assert!(err.contains("t.toml"), "{toml:?}: names the file: {err}");
    }
}

#[test]
fn file_fills_only_what_the_command_line_left_at_its_default() {
    let toml = "threads = 3\ndotfiles = true\nprecompressed = false\nheader = [\"X-A: 1\", \"X-B: 2\"]\nbind = \"127.0.0.1:9\"\n";
    let loaded = load(toml, &["--bind", "127.0.0.1:7"]).unwrap();
    assert_eq!(loaded.cli.threads, Some(3));
    assert!(loaded.cli.dotfiles && !loaded.cli.precompressed);
    assert_eq!(loaded.cli.headers, ["X-A: 1", "X-B: 2"]);
    assert_eq!(loaded.cli.bind, "127.0.0.1:7", "the command line wins");
    let report = loaded.report();
    assert!(report.contains("threads = 3  # config file line 1"), "{report}");
    assert!(report.contains("bind = \"127.0.0.1:7\"  # command line"), "{report}");
}

#[test]
fn semantic_errors_name_the_key_that_set_them() {
    let err = load("cors = true\n\nheader = [\"Access-Control-Allow-Origin: *\"]\n", &[])
        .unwrap()
        .into_config()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'header' on line 3") && err.contains("'cors' on line 1"),
        "{err}"
    );
    let err = load("[[rule]]\npath = \"x\"\nauth = true\n", &[])
        .unwrap()
        .into_config()
        .unwrap_err();
    assert!(err.to_string().contains("no --auth-file"), "{err}");
}

#[test]
fn close_keys_are_one_edit_apart() {
    assert!(strsim_close("threads", "thread"));
    assert!(strsim_close("threads", "threadz"));
    assert!(strsim_close("cors", "cor"));
    assert!(!strsim_close("threads", "bind"));
}
