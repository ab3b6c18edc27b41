//! Every `*.varlink` file under `tests/data` (recursively) must parse, format, re-parse to an equal
//! syntax tree and format idempotently.

use std::path::{Path, PathBuf};

use localrpc_idl::{Member, Type, format, parse, systemd_lint};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "varlink") {
            out.push(path);
        }
    }
}

fn corpus() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    collect(&data_dir(), &mut files);
    files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect()
}

#[test]
fn every_file_roundtrips() {
    let files = corpus();
    assert!(
        files.len() >= 9,
        "expected the corpus files, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for (path, text) in &files {
        let name = path
            .strip_prefix(data_dir())
            .unwrap_or(path)
            .display()
            .to_string();
        let iface = match parse(text) {
            Ok(i) => i,
            Err(e) => {
                failures.push(format!("{name}: parse: {e}"));
                continue;
            }
        };
        // The file is named after its interface.
        if path.file_stem().and_then(|s| s.to_str()) != Some(iface.name.as_str()) {
            failures.push(format!("{name}: declares interface {}", iface.name));
        }
        let formatted = format(&iface);
        match parse(&formatted) {
            Ok(again) if again == iface => {}
            Ok(_) => failures.push(format!(
                "{name}: re-parse of the formatted text differs:\n{formatted}"
            )),
            Err(e) => failures.push(format!("{name}: re-parse: {e}\n{formatted}")),
        }
        let twice = parse(&formatted).map(|i| format(&i)).unwrap_or_default();
        if twice != formatted {
            failures.push(format!("{name}: formatting is not idempotent"));
        }
        for line in formatted.lines() {
            if line.ends_with(' ') && !line.trim_start().starts_with('#') {
                failures.push(format!("{name}: trailing space in {line:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn load(name: &str) -> localrpc_idl::Interface {
    let text = std::fs::read_to_string(data_dir().join(name)).expect("read");
    parse(&text).expect("parse")
}

#[test]
fn service_interface_matches_varlink_md() {
    let iface = load("org.varlink.service.varlink");
    assert_eq!(iface.name, "org.varlink.service");
    assert_eq!(
        iface.doc,
        [
            "The Varlink Service Interface is provided by every varlink service. It",
            "describes the service and the interfaces it implements."
        ]
    );
    let names: Vec<&str> = iface
        .members
        .iter()
        .map(|m| match m {
            Member::Type(t) => t.name.as_str(),
            Member::Method(m) => m.name.as_str(),
            Member::Error(e) => e.name.as_str(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "GetInfo",
            "GetInterfaceDescription",
            "InterfaceNotFound",
            "MethodNotFound",
            "MethodNotImplemented",
            "InvalidParameter",
            "PermissionDenied",
            "ExpectedMore",
            "ExpectedUpgrade"
        ]
    );
    let get_info = iface.method("GetInfo").expect("GetInfo");
    assert!(get_info.input.is_empty());
    assert_eq!(get_info.output.len(), 5);
    assert_eq!(get_info.output[4].ty, Type::Array(Box::new(Type::String)));
    // Trailing same-line comments are not docs of the next declaration.
    assert_eq!(
        iface.error("MethodNotImplemented").expect("error").doc,
        [
            "The interface defines the requested method, but the service does not",
            "implement it."
        ]
    );
    assert_eq!(
        iface.error("PermissionDenied").expect("error").doc,
        ["Permission denied."]
    );
    // The service interface itself is systemd-compatible.
    assert_eq!(systemd_lint(&iface), Vec::<String>::new());
}

#[test]
fn service_interface_canonical_form() {
    let iface = load("org.varlink.service.varlink");
    let expected = "\
# The Varlink Service Interface is provided by every varlink service. It
# describes the service and the interfaces it implements.
interface org.varlink.service

# Get a list of all the interfaces a service provides and information
# about the implementation.
method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

# Get the description of an interface that is implemented by this service.
method GetInterfaceDescription(interface: string) -> (description: string)

# The requested interface was not found.
error InterfaceNotFound (interface: string)

# The requested method was not found
error MethodNotFound (method: string)

# The interface defines the requested method, but the service does not
# implement it.
error MethodNotImplemented (method: string)

# One of the passed parameters is invalid.
error InvalidParameter (parameter: string)

# Permission denied.
error PermissionDenied ()

# The method must be called with the 'more' flag.
error ExpectedMore ()

# The method must be called with the 'upgrade' flag.
error ExpectedUpgrade ()
";
    assert_eq!(format(&iface), expected);
}

#[test]
fn python_service_file_is_already_canonical() {
    // The org.varlink.service.varlink shipped by python `varlink` (varlink.org's text).
    let text = "\
# The Varlink Service Interface is provided by every varlink service. It
# describes the service and the interfaces it implements.
interface org.varlink.service

# Get a list of all the interfaces a service provides and information
# about the implementation.
method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

# Get the description of an interface that is implemented by this service.
method GetInterfaceDescription(interface: string) -> (description: string)

# The requested interface was not found.
error InterfaceNotFound (interface: string)

# The requested method was not found
error MethodNotFound (method: string)

# The interface defines the requested method, but the service does not
# implement it.
error MethodNotImplemented (method: string)

# One of the passed parameters is invalid.
error InvalidParameter (parameter: string)
";
    assert_eq!(format(&parse(text).expect("parse")), text);
}

#[test]
fn certification_types() {
    let iface = load("org.varlink.certification.varlink");
    let my_type = iface.type_def("MyType").expect("MyType");
    let Type::Struct(fields) = &my_type.ty else {
        panic!("MyType is a struct")
    };
    let ty = |name: &str| {
        fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.ty.to_string())
    };
    assert_eq!(ty("enum").as_deref(), Some("(one, two, three)"));
    assert_eq!(ty("stringset").as_deref(), Some("[string]()"));
    assert_eq!(
        ty("nullable_array_struct").as_deref(),
        Some("?[](first: int, second: string)")
    );
    let iface_type = iface.type_def("Interface").expect("Interface");
    assert_eq!(
        iface_type.ty.to_string(),
        "(foo: ?[]?[string](foo, bar, baz), anon: (foo: bool, bar: bool))"
    );
    // It uses constructs systemd refuses.
    let lint = systemd_lint(&iface);
    assert!(
        lint.iter()
            .any(|l| l.starts_with("type MyType field \"stringset\"")),
        "{lint:?}"
    );
    assert!(
        lint.iter()
            .any(|l| l.starts_with("type Interface field \"foo\"")),
        "{lint:?}"
    );
    assert!(
        lint.iter()
            .any(|l| l.starts_with("method Test08 output \"set\"")),
        "{lint:?}"
    );
}

#[test]
fn systemd_interfaces_pass_the_systemd_lint() {
    // Whatever systemd itself printed must be accepted by systemd's parser.
    for (path, text) in corpus() {
        if path.components().any(|c| c.as_os_str() == "systemd") {
            let iface = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                systemd_lint(&iface),
                Vec::<String>::new(),
                "{}",
                path.display()
            );
        }
    }
}
