//! Side by side with systemd 262's varlinkctl against the same localrpcd: for info,
//! list-interfaces, list-methods, introspect, call, --more, --collect, --oneway, --json=pretty,
//! -q, --graceful and error replies, `localrpc` prints the same stdout and exits with the same
//! code. Compared byte for byte, with no normalization: varlinkctl's pretty printer (sd-json)
//! and IDL dumper are reproduced exactly. (stderr is not compared: localrpc adds hints.)
//!
//! And varlinkctl drives every localrpcd feature, including `--upgrade` against RawEcho.

mod common;

use common::{Peer, daemon, localrpc, require_peer, run_program, workspace_binary};

fn cases(address: &str) -> Vec<Vec<String>> {
    let a = address.to_owned();
    let call = |flags: &[&str], method: &str, params: &str| {
        let mut v: Vec<String> = vec!["call".into()];
        v.extend(flags.iter().map(|f| f.to_string()));
        v.extend([a.clone(), method.to_owned(), params.to_owned()]);
        v
    };
    vec![
        vec!["info".into(), a.clone()],
        vec!["list-interfaces".into(), a.clone()],
        vec!["list-methods".into(), a.clone()],
        vec!["list-methods".into(), a.clone(), "io.localrpc.Echo".into()],
        vec!["introspect".into(), a.clone()],
        vec!["introspect".into(), a.clone(), "io.localrpc.Echo".into()],
        vec!["introspect".into(), a.clone(), "org.varlink.service".into()],
        call(&[], "io.localrpc.Echo.Echo", r#"{"text":"héllo \"x\"\n"}"#),
        call(&["--json=pretty"], "org.varlink.service.GetInfo", "{}"),
        call(&["--json=short"], "org.varlink.service.GetInfo", "{}"),
        call(&["-q"], "io.localrpc.Echo.Echo", r#"{"text":"q"}"#),
        call(
            &["--more"],
            "io.localrpc.Echo.Count",
            r#"{"count":4,"text":"t"}"#,
        ),
        call(
            &["--more", "--json=pretty"],
            "io.localrpc.Echo.Count",
            r#"{"count":2}"#,
        ),
        call(&["--more"], "io.localrpc.Echo.Echo", r#"{"text":"single"}"#),
        call(&["--collect"], "io.localrpc.Echo.Count", r#"{"count":3}"#),
        call(
            &["--collect", "--json=pretty"],
            "io.localrpc.Echo.Count",
            r#"{"count":2}"#,
        ),
        call(&["--oneway"], "io.localrpc.Echo.Echo", r#"{"text":"x"}"#),
        call(&["--oneway"], "io.localrpc.Echo.Fail", r#"{"reason":"x"}"#),
        // Error replies: exit 1, parameters on stdout.
        call(&[], "io.localrpc.Echo.Fail", r#"{"reason":"r"}"#),
        call(&["-q"], "io.localrpc.Echo.Fail", r#"{"reason":"r"}"#),
        call(
            &["--graceful=io.localrpc.Echo.Failed"],
            "io.localrpc.Echo.Fail",
            r#"{"reason":"r"}"#,
        ),
        call(&["--more"], "io.localrpc.Echo.Fail", r#"{"reason":"r"}"#),
        call(&["--collect"], "io.localrpc.Echo.Fail", r#"{"reason":"r"}"#),
        call(&[], "io.localrpc.Echo.Count", r#"{"count":2}"#),
        call(&[], "io.localrpc.Echo.Nope", "{}"),
        call(&[], "io.localrpc.Nope.Nope", "{}"),
        call(&[], "io.localrpc.Echo.Unimplemented", "{}"),
        call(&[], "io.localrpc.Echo.Echo", r#"{"text":3}"#),
        call(&[], "io.localrpc.Echo.Echo", "{}"),
        call(&[], "io.localrpc.Echo.RawEcho", "{}"),
    ]
}

#[test]
fn same_output_and_exit_code_as_varlinkctl() {
    let varlinkctl = require_peer!(Peer::Varlinkctl);
    let (_dir, _daemon, address) = daemon();
    let localrpc_bin = workspace_binary("localrpc");
    for case in cases(&address) {
        let args: Vec<&str> = case.iter().map(String::as_str).collect();
        let theirs = run_program(&varlinkctl, &args, b"");
        let ours = run_program(&localrpc_bin, &args, b"");
        assert_eq!(
            (ours.code, &ours.stdout),
            (theirs.code, &theirs.stdout),
            "localrpc {args:?} differs from varlinkctl\nvarlinkctl stderr: {}\nlocalrpc stderr: {}",
            theirs.stderr,
            ours.stderr
        );
    }
}

#[test]
fn varlinkctl_drives_every_localrpcd_feature() {
    let varlinkctl = require_peer!(Peer::Varlinkctl);
    let (_dir, _daemon, address) = daemon();
    let ok = |args: &[&str], stdin: &[u8]| {
        let run = run_program(&varlinkctl, args, stdin);
        assert_eq!(run.code, 0, "varlinkctl {args:?}: {run:?}");
        run.stdout
    };
    ok(&["info", &address], b"");
    ok(&["introspect", &address], b"");
    assert_eq!(
        ok(
            &["call", &address, "io.localrpc.Echo.Echo", r#"{"text":"v"}"#],
            b""
        ),
        "{\"text\":\"v\"}\n"
    );
    assert_eq!(
        ok(
            &[
                "call",
                "--collect",
                &address,
                "io.localrpc.Echo.Count",
                r#"{"count":2}"#
            ],
            b""
        ),
        "[{\"index\":0},{\"index\":1}]\n"
    );
    ok(
        &[
            "call",
            "--oneway",
            &address,
            "io.localrpc.Echo.Echo",
            r#"{"text":"v"}"#,
        ],
        b"",
    );
    ok(
        &[
            "call",
            &address,
            "io.localrpc.Echo.Sleep",
            r#"{"milliseconds":10}"#,
        ],
        b"",
    );
    assert_eq!(
        ok(
            &[
                "call",
                "--upgrade",
                &address,
                "io.localrpc.Echo.RawEcho",
                "{}"
            ],
            b"raw through varlinkctl\n"
        ),
        "raw through varlinkctl\n"
    );
    // The timeout path: varlinkctl gives up, localrpcd keeps serving.
    let slow = run_program(
        &varlinkctl,
        &[
            "call",
            "--timeout=0.2",
            &address,
            "io.localrpc.Echo.Sleep",
            r#"{"milliseconds":3000}"#,
        ],
        b"",
    );
    assert_ne!(slow.code, 0);
    assert_eq!(
        localrpc(&[
            "call",
            &address,
            "io.localrpc.Echo.Echo",
            r#"{"text":"after"}"#
        ])
        .code,
        0
    );
}

#[test]
fn localrpc_upgrade_matches_varlinkctl_upgrade() {
    let varlinkctl = require_peer!(Peer::Varlinkctl);
    let (_dir, _daemon, address) = daemon();
    let args = [
        "call",
        "--upgrade",
        &address,
        "io.localrpc.Echo.RawEcho",
        "{}",
    ];
    let payload = b"line one\nline two\n";
    let theirs = run_program(&varlinkctl, &args, payload);
    let ours = run_program(&workspace_binary("localrpc"), &args, payload);
    assert_eq!((ours.code, ours.stdout), (theirs.code, theirs.stdout));
}
