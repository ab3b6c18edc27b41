//! Interoperability with the Python reference implementation (PyPI `varlink` 31, installed
//! by `scripts/peers`), both directions over real Unix sockets:
//! - its client (`varlink.Client`, and `python -m varlink.cli call/info/help`) against
//!   localrpcd: Echo, Count with `_more=True`, every standard error and an interface error,
//!   with the exception classes and parameters Python reports;
//! - our `Connection` against a Python `varlink.ThreadingServer` serving an interface defined
//!   here: plain calls, `more`, error replies, pipelining, GetInfo, GetInterfaceDescription.
//!
//! Every test skips visibly (`require_peer!`) when the Python peer is not installed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{IO_TIMEOUT, wait_exit};
use localrpc::client::{Connection, Error};
use localrpc_testkit::{
    ChildGuard, Peer, require_peer, spawn_localrpcd, temp_dir, wait_for_socket,
};
use serde_json::{Value, json};

const PYTHON_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `python <args>` to completion (bounded); returns (success, stdout, stderr).
fn run_python(python: &Path, args: &[&str]) -> (bool, String, String) {
    let dir = temp_dir();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(python)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("start python");
    let status = wait_exit(&mut child, PYTHON_TIMEOUT);
    let read = |p: &Path| std::fs::read_to_string(p).expect("read python output");
    (status.success(), read(&stdout_path), read(&stderr_path))
}

/// Python client script: prints one JSON object with every result.
const PY_CLIENT: &str = r#"
import json, sys, varlink

address = sys.argv[1]
out = {}

def err(fn):
    try:
        fn()
        return None
    except varlink.VarlinkError as e:
        return {"class": type(e).__name__, "error": e.error(), "parameters": e.parameters()}

with varlink.Client(address=address) as client:
    with client.open("io.localrpc.Echo") as con:
        out["echo"] = con.Echo(text="héllo \u0000 wörld")
        out["echo_positional"] = con.Echo("positional")
        out["count"] = list(con.Count(count=3, text="x", _more=True))
        out["count_no_text"] = list(con.Count(count=2, _more=True))
        out["failed"] = err(lambda: con.Fail(reason="from python"))
        out["not_implemented"] = err(lambda: con.Unimplemented())
        out["expected_more"] = err(lambda: con.Count(count=2))
        out["expected_upgrade"] = err(lambda: con.RawEcho())
        out["after_errors"] = con.Echo(text="still open")
    with client.open("org.varlink.service") as svc:
        out["info"] = svc.GetInfo()
        out["service_description"] = svc.GetInterfaceDescription(interface="org.varlink.service")["description"]
    out["interface_not_found"] = err(lambda: client.open("io.localrpc.Nope"))

# A client that believes in a different io.localrpc.Echo, to send what the real one rejects.
fake = varlink.Interface("""interface io.localrpc.Echo
method Echo(text: int) -> (text: string)
method Nope() -> ()
method Sleep(milliseconds: int, extra: string) -> ()
""")
with varlink.Client(address=address) as client:
    client.add_interface(fake)
    with client.open("io.localrpc.Echo") as con:
        out["method_not_found"] = err(lambda: con.Nope())
        out["wrong_type"] = err(lambda: con.Echo(text=5))
        out["undeclared"] = err(lambda: con.Sleep(milliseconds=0, extra="x"))

print(json.dumps(out))
"#;

#[test]
fn python_client_against_localrpcd() {
    let python = require_peer!(Peer::Python);
    let dir = temp_dir();
    let socket = dir.path().join("echo.sock");
    let _daemon = spawn_localrpcd(&socket, &[]);
    let address = format!("unix:{}", socket.display());
    let (ok, stdout, stderr) = run_python(&python, &["-c", PY_CLIENT, &address]);
    assert!(ok, "python client failed:\n{stderr}\n{stdout}");
    let out: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    assert_eq!(out["echo"], json!({"text": "héllo \u{0} wörld"}));
    assert_eq!(out["echo_positional"], json!({"text": "positional"}));
    assert_eq!(
        out["count"],
        json!([{"index": 0, "text": "x"}, {"index": 1, "text": "x"}, {"index": 2, "text": "x"}])
    );
    assert_eq!(out["count_no_text"][0]["index"], 0);
    assert_eq!(out["count_no_text"][1]["index"], 1);
    assert_eq!(
        out["failed"],
        json!({"class": "VarlinkError", "error": "io.localrpc.Echo.Failed", "parameters": {"reason": "from python"}})
    );
    assert_eq!(
        out["not_implemented"],
        json!({
            "class": "MethodNotImplemented",
            "error": "org.varlink.service.MethodNotImplemented",
            "parameters": {"method": "io.localrpc.Echo.Unimplemented"}
        })
    );
    assert_eq!(
        out["expected_more"]["error"],
        "org.varlink.service.ExpectedMore"
    );
    assert_eq!(
        out["expected_upgrade"]["error"],
        "org.varlink.service.ExpectedUpgrade"
    );
    assert_eq!(out["after_errors"], json!({"text": "still open"}));
    assert_eq!(
        out["info"]["interfaces"],
        json!([
            "org.varlink.service",
            "io.localrpc.Echo",
            "io.systemd.service",
            "io.localrpc.Control"
        ])
    );
    assert_eq!(out["info"]["vendor"], "localrpc");
    assert_eq!(out["info"]["product"], "localrpcd");
    assert!(
        out["service_description"]
            .as_str()
            .is_some_and(|d| d.contains("interface org.varlink.service"))
    );
    assert_eq!(
        out["interface_not_found"],
        json!({
            "class": "InterfaceNotFound",
            "error": "org.varlink.service.InterfaceNotFound",
            "parameters": {"interface": "io.localrpc.Nope"}
        })
    );
    // Python maps MethodNotFound to the base class (error.py has no branch for it).
    assert_eq!(
        out["method_not_found"]["error"],
        "org.varlink.service.MethodNotFound"
    );
    assert_eq!(
        out["method_not_found"]["parameters"],
        json!({"method": "io.localrpc.Echo.Nope"})
    );
    assert_eq!(
        out["wrong_type"],
        json!({
            "class": "InvalidParameter",
            "error": "org.varlink.service.InvalidParameter",
            "parameters": {"parameter": "text"}
        })
    );
    assert_eq!(out["undeclared"]["class"], "InvalidParameter");
    assert_eq!(
        out["undeclared"]["parameters"],
        json!({"parameter": "extra"})
    );
}

#[test]
fn python_cli_against_localrpcd() {
    let python = require_peer!(Peer::Python);
    let dir = temp_dir();
    let socket = dir.path().join("echo.sock");
    let _daemon = spawn_localrpcd(&socket, &[]);
    let address = format!("unix:{}", socket.display());

    let (ok, stdout, stderr) = run_python(
        &python,
        &[
            "-m",
            "varlink.cli",
            "call",
            &format!("{address}/io.localrpc.Echo.Echo"),
            r#"{"text":"cli"}"#,
        ],
    );
    assert!(ok, "varlink.cli call failed: {stderr}");
    let reply: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(reply, json!({"text": "cli"}));

    let (ok, stdout, stderr) = run_python(
        &python,
        &[
            "-m",
            "varlink.cli",
            "call",
            "--more",
            &format!("{address}/io.localrpc.Echo.Count"),
            r#"{"count":3}"#,
        ],
    );
    assert!(ok, "varlink.cli call --more failed: {stderr}");
    let replies: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        replies,
        vec![
            json!({"index": 0}),
            json!({"index": 1}),
            json!({"index": 2})
        ]
    );

    let (_, _, stderr) = run_python(
        &python,
        &[
            "-m",
            "varlink.cli",
            "call",
            &format!("{address}/io.localrpc.Echo.Nope"),
        ],
    );
    assert!(
        stderr.contains("org.varlink.service.MethodNotFound"),
        "{stderr}"
    );
    assert!(stderr.contains("io.localrpc.Echo.Nope"), "{stderr}");

    let (ok, stdout, stderr) = run_python(&python, &["-m", "varlink.cli", "info", &address]);
    assert!(ok, "varlink.cli info failed: {stderr}");
    assert!(stdout.contains("Vendor: localrpc\n"), "{stdout}");
    assert!(stdout.contains("Product: localrpcd\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    let interfaces: Vec<&str> = stdout
        .split_once("Interfaces:\n")
        .expect("an Interfaces: section")
        .1
        .lines()
        .map(str::trim)
        .collect();
    assert_eq!(
        interfaces,
        [
            "org.varlink.service",
            "io.localrpc.Echo",
            "io.systemd.service",
            "io.localrpc.Control"
        ]
    );

    let (ok, stdout, stderr) = run_python(
        &python,
        &[
            "-m",
            "varlink.cli",
            "help",
            &format!("{address}/io.localrpc.Echo"),
        ],
    );
    assert!(ok, "varlink.cli help failed: {stderr}");
    assert_eq!(stdout.trim_end(), localrpcd::ECHO_IDL.trim_end());
}

const PY_IDL: &str = "# A test interface served by the Python reference server.
interface org.example.pytest

type Item (name: string, tags: []string, extra: ?object)

# Answers with the text and its length.
method Ping(text: string) -> (text: string, length: int)

# Streams n items when called with more.
method Stream(n: int) -> (item: Item, index: int)

method Boom(reason: string) -> ()

error Failure (reason: string, code: int)
";

const PY_SERVER: &str = r#"
import sys, varlink

socket_path, idl_dir = sys.argv[1], sys.argv[2]
service = varlink.Service(vendor="Python Test Vendor", product="pytest-server", version="31",
                          url="https://example.org/pytest", interface_dir=idl_dir)

@service.interface("org.example.pytest")
class PyTest:
    def Ping(self, text):
        return {"text": text, "length": len(text)}

    def Stream(self, n, _more=False):
        for i in range(n):
            yield {"item": {"name": "item-%d" % i, "tags": ["t"] * i}, "index": i, "_continues": i + 1 < n}

    def Boom(self, reason):
        raise varlink.VarlinkError({"error": "org.example.pytest.Failure",
                                    "parameters": {"reason": reason, "code": 42}})

class Handler(varlink.RequestHandler):
    service = service

with varlink.ThreadingServer("unix:" + socket_path, Handler) as server:
    server.serve_forever()
"#;

#[test]
fn our_client_against_the_python_server() {
    let python = require_peer!(Peer::Python);
    let dir = temp_dir();
    std::fs::write(dir.path().join("org.example.pytest.varlink"), PY_IDL).expect("write IDL");
    let socket = dir.path().join("py.sock");
    let child = Command::new(&python)
        .arg("-c")
        .arg(PY_SERVER)
        .arg(&socket)
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Python server");
    let _server = ChildGuard(child);
    assert!(
        wait_for_socket(&socket, PYTHON_TIMEOUT),
        "the Python server did not listen"
    );
    let address = format!("unix:{}", socket.display());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut conn = tokio::time::timeout(IO_TIMEOUT, Connection::connect(&address))
            .await
            .expect("connect timed out")
            .expect("connect to the Python server");
        conn.set_timeout(Some(IO_TIMEOUT));

        let reply = conn
            .call("org.example.pytest.Ping", json!({"text": "héllo"}))
            .await
            .expect("Ping");
        assert_eq!(Value::Object(reply), json!({"text": "héllo", "length": 5}));

        let items = conn
            .call_more("org.example.pytest.Stream", json!({"n": 3}))
            .await
            .expect("start Stream")
            .collect()
            .await
            .expect("Stream replies");
        assert_eq!(items.len(), 3, "{items:?}");
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item["index"], i);
            assert_eq!(item["item"]["name"], format!("item-{i}"));
            assert_eq!(item["item"]["tags"].as_array().map(Vec::len), Some(i));
        }

        match conn
            .call("org.example.pytest.Boom", json!({"reason": "kaboom"}))
            .await
        {
            Err(Error::Reply(error)) => {
                assert_eq!(error.name, "org.example.pytest.Failure");
                assert_eq!(
                    Value::Object(error.parameters),
                    json!({"reason": "kaboom", "code": 42})
                );
            }
            other => panic!("expected the Failure error, got {other:?}"),
        }
        match conn.call("org.example.pytest.Nope", json!({})).await {
            Err(Error::Reply(error)) => {
                assert_eq!(error.name, "org.varlink.service.MethodNotFound")
            }
            other => panic!("expected MethodNotFound, got {other:?}"),
        }
        match conn.call("org.example.nope.Ping", json!({})).await {
            Err(Error::Reply(error)) => {
                assert_eq!(error.name, "org.varlink.service.InterfaceNotFound");
                assert_eq!(error.parameters["interface"], "org.example.nope");
            }
            other => panic!("expected InterfaceNotFound, got {other:?}"),
        }
        match conn
            .call("org.example.pytest.Ping", json!({"text": "x", "bogus": 1}))
            .await
        {
            Err(Error::Reply(error)) => {
                assert_eq!(error.name, "org.varlink.service.InvalidParameter");
                assert_eq!(error.parameters["parameter"], "bogus");
            }
            other => panic!("expected InvalidParameter, got {other:?}"),
        }

        // Pipelined calls (one write) to a server that reads byte by byte.
        let calls: Vec<(&str, Value)> = (0..20)
            .map(|i| ("org.example.pytest.Ping", json!({"text": format!("p{i}")})))
            .collect();
        let results = conn.pipeline(&calls).await.expect("pipeline");
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(result.expect("Ping")["text"], format!("p{i}"));
        }

        let info = conn
            .call("org.varlink.service.GetInfo", json!({}))
            .await
            .expect("GetInfo");
        assert_eq!(info["vendor"], "Python Test Vendor");
        assert_eq!(info["product"], "pytest-server");
        assert_eq!(info["version"], "31");
        assert_eq!(info["url"], "https://example.org/pytest");
        assert_eq!(
            info["interfaces"],
            json!(["org.varlink.service", "org.example.pytest"])
        );

        let description = conn
            .call(
                "org.varlink.service.GetInterfaceDescription",
                json!({"interface": "org.example.pytest"}),
            )
            .await
            .expect("GetInterfaceDescription");
        let text = description["description"]
            .as_str()
            .expect("a description string");
        let idl = localrpc::idl::parse(text).expect("the Python server's description parses");
        assert_eq!(idl.name, "org.example.pytest");
        assert_eq!(idl, localrpc::idl::parse(PY_IDL).expect("our IDL parses"));

        let description = conn
            .call(
                "org.varlink.service.GetInterfaceDescription",
                json!({"interface": "org.varlink.service"}),
            )
            .await
            .expect("GetInterfaceDescription of org.varlink.service");
        let idl = localrpc::idl::parse(description["description"].as_str().expect("string"))
            .expect("Python's org.varlink.service description parses");
        assert_eq!(idl.name, "org.varlink.service");

        // Oneway then a call: the reply read answers the call.
        conn.oneway("org.example.pytest.Ping", json!({"text": "quiet"}))
            .await
            .expect("oneway");
        let reply = conn
            .call("org.example.pytest.Ping", json!({"text": "loud"}))
            .await
            .expect("Ping after oneway");
        assert_eq!(reply["text"], "loud");
    });
}
