//! Generates Rust code for varlink interfaces, for use from `build.rs` (like `prost-build`).
//!
//! This crate owns turning `.varlink` files into formatted Rust source: naming, type mapping,
//! the error enum, the server trait with its registration glue and the typed client. The
//! generated code uses the `localrpc` runtime; the including crate needs the dependencies
//! `localrpc`, `serde` (with `derive`) and `serde_json`.
//!
//! # Usage
//!
//! `build.rs`:
//!
//! ```no_run
//! // fn main() in build.rs:
//! localrpc_build::compile_interfaces(&["src/org.example.ping.varlink"])
//!     .unwrap_or_else(|e| panic!("{e}"));
//! ```
//!
//! Each interface becomes `$OUT_DIR/<interface name, dots as underscores>.rs`; include each
//! one in a module of its own:
//!
//! ```ignore
//! pub mod ping {
//!     include!(concat!(env!("OUT_DIR"), "/org_example_ping.rs"));
//! }
//!
//! // Server: implement the trait with plain `async fn`s.
//! struct Pinger;
//! impl ping::Service for Pinger {
//!     async fn ping(&self, _call: &CallContext, input: ping::PingInput)
//!         -> Result<ping::PingOutput, ping::Error> {
//!         Ok(ping::PingOutput { pong: input.ping })
//!     }
//! }
//! let service = localrpc::service::Service::builder()
//!     .interface(ping::interface(std::sync::Arc::new(Pinger))?)
//!     .build()?;
//!
//! // Client: one method per varlink method, positional arguments.
//! let mut client = ping::Client::connect("unix:/run/ping.sock").await?;
//! let reply: ping::PingOutput = client.ping("hello".into()).await?;
//! ```
//!
//! # What is generated
//!
//! For interface `org.example.ping`:
//! - `INTERFACE_NAME` and `INTERFACE_DESCRIPTION` (the IDL text, verbatim).
//! - A struct or enum per named type, per inline type, and `<Method>Input` /
//!   `<Method>Output` structs per method. Inline types are named after their path:
//!   `<Parent><Field>` in UpperCamelCase, where the parent is the named type, the method's
//!   `<Method>Input` / `<Method>Output`, or the error's name; arrays, maps and `?` add nothing
//!   to the path. So `type MyType (struct: (first: int))` gives `MyTypeStruct`, and
//!   `method Test06(...) -> (struct: (...))` gives `Test06OutputStruct`. A name collision is a
//!   build error naming the file and interface.
//! - Fields are snake_case with `#[serde(rename)]` where the wire name differs; Rust keywords
//!   become raw identifiers (`r#type`), and `self`/`crate`/`super`/`Self` get a trailing `_`.
//!   Enum values become UpperCamelCase variants (`Self` becomes `SelfValue`).
//! - Types: `bool`, `i64`, `f64`, `String`, `serde_json::Value` for `object` and `any`,
//!   `Vec<T>`, `BTreeMap<String, T>` for `[string]T` (a stable order, so output is
//!   reproducible), `Option<T>` for `?T` (absent when `None`), and `BTreeSet<String>` for a
//!   `[string]()` set field (or `Option<BTreeSet<String>>`), mapped to `{"key": {}}` by a
//!   serde adapter. A set nested inside an array or map stays a map of an empty struct.
//!   Structs that would contain themselves get a `Box`.
//! - Compatibility with newer peers: structs ignore unknown fields, and every enum has a
//!   catch-all variant `Unknown(String)` (renamed `UnknownValue` if the enum has a value
//!   `unknown`) that keeps a value it does not know and sends it back unchanged.
//! - `Error`: one variant per varlink error with its parameters, plus `Other(ErrorReply)`
//!   for any other error (standard `org.varlink.service` errors, errors of newer versions).
//!   It converts to and from `localrpc::service::ErrorReply`.
//! - `Service`: a trait with one method per varlink method,
//!   `fn name(&self, call: &CallContext, input: NameInput) -> impl Future<Output =
//!   Result<NameOutput, Error>> + Send`, implemented with plain `async fn`. Streaming methods
//!   also get a `ReplySink<'_, NameOutput>` (typed `send`); the returned value is the final
//!   reply. Upgrade methods return `(NameOutput, UpgradeHandler)` (see below).
//!   `interface(Arc<impl Service>)` builds the `InterfaceBuilder`.
//! - `Client<C>` over an owned or borrowed `Connection`: `name(args) -> Result<NameOutput,
//!   CallError<Error>>`, `name_oneway(args)`, and for streaming methods a
//!   `TypedReplyStream` (a `futures_core::Stream`): `name(args)` when the method requires
//!   `more`, `name_more(args)` when it only supports it. `Client::batch()` pipelines calls.
//!   Upgrade methods are on `Client<Connection>` only (see below).
//!
//! # Unimplemented methods
//!
//! Every method of the `Service` trait has a default body answering
//! `org.varlink.service.MethodNotImplemented` (naming the method), exactly what the runtime
//! answers for a declared method without a handler. An implementation overrides the methods
//! it serves; the others stay declared (introspection still lists them), and an
//! implementation keeps compiling when a newer version of the interface adds methods. The
//! flip side: the compiler does not point out a method one forgot to implement.
//!
//! # Streaming methods
//!
//! A method whose doc comment contains systemd's marker `[Requires 'more' flag]` is
//! registered so that calls without `more` get `ExpectedMore`; `[Supports 'more' flag]`
//! streams only when the caller asks. For IDL without the markers, set the mode with
//! [`Config::streaming`].
//!
//! # Upgrade methods
//!
//! A method marked `[Requires 'upgrade' flag]` ([`Upgrade::Requires`]) confirms the call
//! with one reply, then the connection carries a raw byte protocol. Its trait method returns
//! the reply and the continuation that takes over the connection,
//! `localrpc::service::UpgradeHandler` — a boxed
//! `FnOnce(Box<dyn RawStream>) -> BoxFuture<'static, ()>` that runs once the confirmation is
//! written, with the socket and any bytes the caller already sent:
//!
//! ```ignore
//! async fn raw_echo(&self, _call: &CallContext, _input: echo::RawEchoInput)
//!     -> Result<(echo::RawEchoOutput, UpgradeHandler), echo::Error> {
//!     Ok((echo::RawEchoOutput {}, Box::new(|raw| Box::pin(serve_raw(raw)))))
//! }
//! ```
//!
//! Returning an error instead sends that error and keeps the connection a varlink one. The
//! method is registered with `Requires::Upgrade`, so calls without `upgrade` get
//! `ExpectedUpgrade` before the trait method runs. On the client side,
//! `Client<Connection>::raw_echo(self, args)` consumes the client and returns
//! `(RawEchoOutput, localrpc::transport::UpgradedStream)` (through `Connection::upgrade`); a
//! client on a borrowed connection cannot upgrade it. There is no `_oneway` variant and no
//! batched form (neither could upgrade).
//!
//! A method marked `[Supports 'upgrade' flag]` ([`Upgrade::Supports`]) has the same trait
//! signature but is registered for every call: the continuation runs only when the caller set
//! `upgrade` (`call.flags.upgrade`), otherwise it is dropped unrun and the connection goes on
//! carrying varlink calls. The client gets the ordinary `name(args)` (plus `name_oneway` and a
//! batched form) and `name_upgrade(self, args)` on `Client<Connection>`. For IDL without the
//! markers, set the mode with [`Config::upgrade`]. A method cannot both stream and upgrade.

mod codegen;
mod model;
mod names;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use model::{Streaming, Upgrade};
pub use names::file_name;

/// Why code generation failed; every message names the file (and the interface when known).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An interface file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An interface file does not parse.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error (with line and column).
        #[source]
        source: localrpc_idl::ParseError,
    },
    /// The interface cannot be mapped to Rust (e.g. two names collide).
    #[error("{path}: interface {interface}: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The interface.
        interface: String,
        /// What went wrong.
        reason: String,
    },
    /// The generated code is not valid Rust (a bug in this crate).
    #[error(
        "{path}: interface {interface}: generated code does not parse ({reason}); please report this"
    )]
    Generated {
        /// The file.
        path: PathBuf,
        /// The interface.
        interface: String,
        /// The parser's message.
        reason: String,
    },
    /// The output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `OUT_DIR` is not set (not running from a build script).
    #[error("OUT_DIR is not set; call compile_interfaces from build.rs or use Config::compile")]
    NoOutDir,
}

/// Generation settings.
#[derive(Debug, Clone)]
pub struct Config {
    server: bool,
    client: bool,
    rerun_if_changed: bool,
    streaming: HashMap<String, Streaming>,
    upgrade: HashMap<String, Upgrade>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// Server and client code; `cargo:rerun-if-changed` lines are printed for each input.
    pub fn new() -> Self {
        Config {
            server: true,
            client: true,
            rerun_if_changed: true,
            streaming: HashMap::new(),
            upgrade: HashMap::new(),
        }
    }

    /// Whether to generate the `Service` trait and `interface` function (default: yes).
    pub fn server(mut self, enabled: bool) -> Self {
        self.server = enabled;
        self
    }

    /// Whether to generate `Client` and `Batch` (default: yes).
    pub fn client(mut self, enabled: bool) -> Self {
        self.client = enabled;
        self
    }

    /// Whether to print `cargo:rerun-if-changed=<file>` for each input (default: yes).
    pub fn emit_rerun_if_changed(mut self, enabled: bool) -> Self {
        self.rerun_if_changed = enabled;
        self
    }

    /// Sets the streaming mode of a method, by its fully qualified name
    /// (`org.varlink.certification.Test10`), overriding the doc comment markers.
    pub fn streaming(mut self, method: &str, mode: Streaming) -> Self {
        self.streaming.insert(method.to_owned(), mode);
        self
    }

    /// Sets the upgrade mode of a method, by its fully qualified name
    /// (`io.localrpc.Echo.RawEcho`), overriding the doc comment markers. A method cannot both
    /// stream and upgrade.
    pub fn upgrade(mut self, method: &str, mode: Upgrade) -> Self {
        self.upgrade.insert(method.to_owned(), mode);
        self
    }

    /// Generates one file per interface into `out_dir` and returns their paths.
    pub fn compile(
        &self,
        files: &[impl AsRef<Path>],
        out_dir: impl AsRef<Path>,
    ) -> Result<Vec<PathBuf>, Error> {
        let mut written = Vec::new();
        for file in files {
            let path = file.as_ref();
            if self.rerun_if_changed {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?;
            let (interface, source) = self.generate_named(&text, path)?;
            let target = out_dir.as_ref().join(file_name(&interface));
            // Only write when changed, so dependents are not rebuilt needlessly.
            if std::fs::read_to_string(&target).ok().as_deref() != Some(source.as_str()) {
                std::fs::write(&target, &source).map_err(|source| Error::Write {
                    path: target.clone(),
                    source,
                })?;
            }
            written.push(target);
        }
        Ok(written)
    }

    /// The formatted Rust source for one interface's IDL text; `origin` names it in errors
    /// and in the generated header.
    pub fn generate(&self, idl_text: &str, origin: impl AsRef<Path>) -> Result<String, Error> {
        Ok(self.generate_named(idl_text, origin.as_ref())?.1)
    }

    fn generate_named(&self, idl_text: &str, path: &Path) -> Result<(String, String), Error> {
        let interface = localrpc_idl::parse(idl_text).map_err(|source| Error::Parse {
            path: path.to_owned(),
            source,
        })?;
        let prefix = format!("{}.", interface.name);
        let streaming = own_methods(&self.streaming, &prefix);
        let upgrade = own_methods(&self.upgrade, &prefix);
        let unsupported = |reason: String| Error::Unsupported {
            path: path.to_owned(),
            interface: interface.name.clone(),
            reason,
        };
        let model = model::lower(&interface, &streaming, &upgrade).map_err(unsupported)?;
        let parts = codegen::Parts {
            server: self.server,
            client: self.client,
        };
        let tokens = codegen::generate(&model, idl_text, parts);
        let file: syn::File = syn::parse2(tokens).map_err(|e| Error::Generated {
            path: path.to_owned(),
            interface: interface.name.clone(),
            reason: e.to_string(),
        })?;
        let origin = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let source = format!(
            "// @generated by localrpc-build from {origin} (interface {}). Do not edit.\n\n{}",
            interface.name,
            prettyplease::unparse(&file)
        );
        Ok((interface.name, source))
    }
}

/// The entries of `modes` (by fully qualified method name) for methods of the interface
/// whose names start with `prefix` (`org.example.`), keyed by the method's own name.
fn own_methods<T: Copy>(modes: &HashMap<String, T>, prefix: &str) -> HashMap<String, T> {
    modes
        .iter()
        .filter_map(|(method, mode)| {
            let name = method.strip_prefix(prefix).filter(|m| !m.contains('.'))?;
            Some((name.to_owned(), *mode))
        })
        .collect()
}

/// Generates every interface in `files` into `$OUT_DIR` with the default [`Config`]
/// (call from `build.rs`).
pub fn compile_interfaces(files: &[impl AsRef<Path>]) -> Result<Vec<PathBuf>, Error> {
    let out_dir = std::env::var_os("OUT_DIR").ok_or(Error::NoOutDir)?;
    Config::new().compile(files, PathBuf::from(out_dir))
}
