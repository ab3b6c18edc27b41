//! Run-time control of a running daemon over its own socket: `io.systemd.service`
//! (wire-compatible with systemd's, so `varlinkctl call SOCKET io.systemd.service.SetLogLevel
//! '{"level":7}'` works as on a systemd daemon) and `io.localrpc.Control` (counters, health,
//! the full log filter). Owns the daemon's health state and its reload procedure, which
//! SIGHUP and `io.systemd.service.Reload` share.
//!
//! Who may call what: `Ping`, `GetLogLevel`, `GetStats`, `GetHealth` and `GetLogFilter` are
//! open to whoever may connect (the socket's mode and group decide that, and a service-wide
//! [`AccessPolicy`] applies); `SetLogLevel`, `Reload`, `GetEnvironment` (the environment can
//! hold secrets) and `SetLogFilter` only to root and the daemon's own uid, as systemd does,
//! whatever the service-wide policy allows.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use super::ReloadHook;
use super::logging::{self, LogFilterError};
use super::notify::Notifier;
use crate::server::Server;
use crate::service::{AccessPolicy, BuildError, Call, ErrorReply, InterfaceBuilder, Reply};

/// The IDL of `io.systemd.service`, as systemd 262's `varlinkctl introspect` prints it.
pub const SYSTEMD_SERVICE_IDL: &str = include_str!("io.systemd.service.varlink");

/// The IDL of `io.localrpc.Control`.
pub const CONTROL_IDL: &str = include_str!("io.localrpc.Control.varlink");

/// The error of an invalid filter given to `SetLogFilter` (`filter`, `reason`).
pub const INVALID_LOG_FILTER: &str = "io.localrpc.Control.InvalidLogFilter";

/// The error of the log methods when the program did not set up logging with
/// [`logging::init`] (`reason`).
pub const LOG_FILTER_UNAVAILABLE: &str = "io.localrpc.Control.LogFilterUnavailable";

/// What a daemon is doing, as `io.localrpc.Control.GetHealth` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Serving.
    Ready,
    /// Running its reload (between `RELOADING=1` and `READY=1`).
    Reloading,
    /// Finishing the calls in flight before it exits; no new connection is accepted.
    Draining,
}

impl Health {
    fn from_u8(value: u8) -> Health {
        match value {
            1 => Health::Reloading,
            2 => Health::Draining,
            _ => Health::Ready,
        }
    }
}

/// The state the control interfaces serve, shared by the daemon runtime and their handlers.
pub(crate) struct Control {
    name: String,
    started: Instant,
    /// A [`Health`] as u8.
    health: AtomicU8,
    /// The server, once created (after the service that holds these handlers was built).
    /// Weak: the server holds the service, which holds this.
    server: OnceLock<Weak<Server>>,
    notifier: Notifier,
    on_reload: Option<ReloadHook>,
    /// One reload at a time (SIGHUP and Reload calls), so that `RELOADING=1` … `READY=1`
    /// pairs never interleave.
    reloading: Mutex<()>,
}

impl Control {
    pub(crate) fn new(name: &str, notifier: Notifier, on_reload: Option<ReloadHook>) -> Arc<Self> {
        Arc::new(Control {
            name: name.to_owned(),
            started: Instant::now(),
            health: AtomicU8::new(Health::Ready as u8),
            server: OnceLock::new(),
            notifier,
            on_reload,
            reloading: Mutex::new(()),
        })
    }

    /// Gives the handlers the server's counters.
    pub(crate) fn attach(&self, server: &Arc<Server>) {
        let _ = self.server.set(Arc::downgrade(server));
    }

    pub(crate) fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// From now on the daemon drains (final: a reload ending later leaves it draining).
    pub(crate) fn set_draining(&self) {
        self.health.store(Health::Draining as u8, Ordering::Relaxed);
    }

    /// The reload procedure: `RELOADING=1`, the application's hook, `READY=1`. Not while the
    /// daemon drains: it has said `STOPPING=1` then, and a `READY=1` after that would tell
    /// the service manager it is serving again.
    pub(crate) fn reload(&self, why: &str) {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let began = self.health.compare_exchange(
            Health::Ready as u8,
            Health::Reloading as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if began.is_err() {
            tracing::info!("{why}, but the daemon is stopping: not reloading");
            return;
        }
        tracing::info!("{why}, reloading");
        self.notifier.reloading();
        if let Some(hook) = &self.on_reload {
            hook();
        }
        // A drain that began during the hook keeps its state and gets no READY=1.
        let ended = self.health.compare_exchange(
            Health::Reloading as u8,
            Health::Ready as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if ended.is_ok() {
            self.notifier.ready("reloaded");
        }
    }

    fn uptime_usec(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn server(&self) -> Result<Arc<Server>, ErrorReply> {
        self.server
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| internal_error("the server is not running"))
    }
}

fn internal_error(message: &str) -> ErrorReply {
    ErrorReply::new("io.localrpc.InternalError", json!({ "message": message }))
}

/// A [`LogFilterError`] as the error reply it is on the wire.
fn filter_error(error: LogFilterError) -> ErrorReply {
    match error {
        LogFilterError::Unavailable => ErrorReply::new(
            LOG_FILTER_UNAVAILABLE,
            json!({ "reason": error.to_string() }),
        ),
        LogFilterError::Invalid { filter, reason } => ErrorReply::new(
            INVALID_LOG_FILTER,
            json!({ "filter": filter, "reason": reason }),
        ),
    }
}

/// Replaces the log filter and logs the change with who asked.
fn apply_filter(call: &Call<'_>, directives: &str) -> Result<(), ErrorReply> {
    let before = logging::log_filter().map_err(filter_error)?;
    logging::set_log_filter(directives).map_err(filter_error)?;
    tracing::info!(method = %call.context.method, op_id = %call.context.op_id,
        peer = ?call.context.peer, from = %before, to = %directives.trim(), "log filter changed");
    Ok(())
}

/// `io.systemd.service`, served as systemd's daemons serve it.
fn systemd_service(control: &Arc<Control>) -> Result<InterfaceBuilder, BuildError> {
    let reload = control.clone();
    Ok(InterfaceBuilder::new(SYSTEMD_SERVICE_IDL)?
        .method_policy("SetLogLevel", AccessPolicy::root_and_self())
        .method_policy("Reload", AccessPolicy::root_and_self())
        .method_policy("GetEnvironment", AccessPolicy::root_and_self())
        .method("Ping", |_call| Box::pin(async { Ok(Reply::empty()) }))
        .method("Reload", move |_call| {
            // allowInteractiveAuthentication is about polkit, which localrpc does not use.
            reload.reload("io.systemd.service.Reload called");
            Box::pin(async { Ok(Reply::empty()) })
        })
        .method("SetLogLevel", |call| {
            // As systemd: `level` must be present (0–7); null goes back to the start level,
            // here the filter the daemon started with.
            let result = match call.parameters().get("level") {
                None => Err(ErrorReply::invalid_parameter("level")),
                Some(Value::Null) => logging::initial_log_filter()
                    .map_err(filter_error)
                    .and_then(|initial| apply_filter(&call, &initial)),
                Some(level) => match level.as_i64().and_then(logging::syslog_level_filter) {
                    None => Err(ErrorReply::invalid_parameter("level")),
                    Some(directive) => apply_filter(&call, directive),
                },
            };
            Box::pin(async move { result.map(|()| Reply::empty()) })
        })
        .method("GetLogLevel", |_call| {
            let result = logging::max_syslog_level().map_err(filter_error);
            Box::pin(async move { Reply::with(json!({ "level": result? })) })
        })
        .method("GetEnvironment", |_call| {
            let environment: Vec<String> = std::env::vars_os()
                .map(|(name, value)| {
                    let mut entry = name;
                    entry.push("=");
                    entry.push(value);
                    entry.to_string_lossy().into_owned()
                })
                .collect();
            Box::pin(async move { Reply::with(json!({ "environment": environment })) })
        }))
}

/// `io.localrpc.Control`.
fn localrpc_control(control: &Arc<Control>) -> Result<InterfaceBuilder, BuildError> {
    let stats = control.clone();
    let health = control.clone();
    Ok(InterfaceBuilder::new(CONTROL_IDL)?
        .method_policy("SetLogFilter", AccessPolicy::root_and_self())
        .method("GetStats", move |_call| {
            let result = stats.server().and_then(|server| {
                let mut counters = serde_json::to_value(&**server.stats())
                    .map_err(|e| internal_error(&e.to_string()))?;
                if let Some(fields) = counters.as_object_mut() {
                    fields.insert(
                        "connections_open".into(),
                        server.active_connections().into(),
                    );
                    fields.insert("uptime_usec".into(), stats.uptime_usec().into());
                }
                Ok(counters)
            });
            Box::pin(async move { Reply::with(result?) })
        })
        .method("GetHealth", move |_call| {
            let open = health
                .server()
                .map_or(0, |server| server.active_connections());
            let reply = json!({
                "state": health.health(),
                "name": health.name,
                "pid": std::process::id(),
                "uptime_usec": health.uptime_usec(),
                "connections_open": open,
            });
            Box::pin(async move { Reply::with(reply) })
        })
        .method("GetLogFilter", |_call| {
            let result = logging::log_filter()
                .and_then(|filter| Ok((filter, logging::initial_log_filter()?)))
                .map_err(filter_error);
            Box::pin(async move {
                let (filter, initial) = result?;
                Reply::with(json!({ "filter": filter, "initial_filter": initial }))
            })
        })
        .method("SetLogFilter", |call| {
            let result = match call.parameters().get("filter") {
                None | Some(Value::Null) => logging::initial_log_filter()
                    .map_err(filter_error)
                    .and_then(|initial| apply_filter(&call, &initial)),
                // Checked against the IDL already: a string.
                Some(filter) => apply_filter(&call, filter.as_str().unwrap_or_default()),
            };
            Box::pin(async move { result.map(|()| Reply::empty()) })
        }))
}

/// Both control interfaces, `io.systemd.service` first.
pub(crate) fn interfaces(control: &Arc<Control>) -> Result<Vec<InterfaceBuilder>, BuildError> {
    Ok(vec![systemd_service(control)?, localrpc_control(control)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{BoxFuture, Output, Service};

    struct Buffer(Vec<u8>);

    impl Output for Buffer {
        fn buffer(&mut self) -> &mut Vec<u8> {
            &mut self.0
        }
        fn flush(&mut self) -> BoxFuture<'_, std::io::Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn service() -> Service {
        service_from(Service::builder().product("testd"))
    }

    /// The service `builder` builds, with both control interfaces added.
    fn service_from(builder: crate::service::ServiceBuilder) -> Service {
        let control = Control::new("testd", Notifier::default(), None);
        let mut service = builder.build().expect("an empty service builds");
        service
            .add_interfaces(interfaces(&control).expect("the control IDLs parse"))
            .expect("add the interfaces");
        service
    }

    /// A uid that is neither root nor this process's.
    fn stranger() -> u32 {
        let own = rustix::process::geteuid().as_raw();
        if own == 65534 { 65533 } else { 65534 }
    }

    async fn call(service: &Service, uid: u32, message: Value) -> Value {
        let mut out = Buffer(Vec::new());
        let peer = crate::service::PeerCredentials {
            uid,
            gid: uid,
            pid: None,
        };
        let bytes = serde_json::to_vec(&message).expect("serialize");
        service
            .handle(&bytes, Some(peer), &mut out)
            .await
            .expect("no protocol error");
        let reply = out.0.strip_suffix(&[0]).expect("one NUL-terminated reply");
        serde_json::from_slice(reply).expect("a JSON reply")
    }

    #[tokio::test]
    async fn interfaces_are_listed_and_described_after_the_services_own() {
        let service = service();
        let info = call(
            &service,
            0,
            json!({"method": "org.varlink.service.GetInfo"}),
        )
        .await;
        assert_eq!(
            info["parameters"]["interfaces"],
            json!([
                "org.varlink.service",
                "io.systemd.service",
                "io.localrpc.Control"
            ])
        );
        let description = call(
            &service,
            0,
            json!({"method": "org.varlink.service.GetInterfaceDescription",
                   "parameters": {"interface": "io.systemd.service"}}),
        )
        .await;
        assert_eq!(
            description["parameters"]["description"],
            SYSTEMD_SERVICE_IDL
        );
    }

    #[tokio::test]
    async fn mutating_methods_are_for_root_and_the_daemons_uid_only() {
        let service = service();
        let own = rustix::process::geteuid().as_raw();
        let stranger = stranger();
        for method in [
            "io.systemd.service.SetLogLevel",
            "io.systemd.service.Reload",
            "io.systemd.service.GetEnvironment",
            "io.localrpc.Control.SetLogFilter",
        ] {
            let reply = call(
                &service,
                stranger,
                json!({"method": method, "parameters": {"level": 7, "filter": "debug"}}),
            )
            .await;
            assert_eq!(
                reply["error"], "org.varlink.service.PermissionDenied",
                "{method}: {reply}"
            );
        }
        let environment = call(
            &service,
            own,
            json!({"method": "io.systemd.service.GetEnvironment"}),
        )
        .await;
        assert!(
            environment["parameters"]["environment"].is_array(),
            "{environment}"
        );
        for method in ["io.systemd.service.Ping", "io.localrpc.Control.GetHealth"] {
            let reply = call(&service, stranger, json!({ "method": method })).await;
            assert!(reply.get("error").is_none(), "{method}: {reply}");
        }
    }

    #[tokio::test]
    async fn a_service_wide_policy_also_guards_the_read_only_methods() {
        let service = service_from(Service::builder().policy(AccessPolicy::root_and_self()));
        let own = rustix::process::geteuid().as_raw();
        let stranger = stranger();
        let denied = call(
            &service,
            stranger,
            json!({"method": "io.localrpc.Control.GetStats"}),
        )
        .await;
        assert_eq!(
            denied["error"], "org.varlink.service.PermissionDenied",
            "{denied}"
        );
        let info = call(
            &service,
            stranger,
            json!({"method": "org.varlink.service.GetInfo"}),
        )
        .await;
        assert!(
            info.get("error").is_none(),
            "introspection stays open: {info}"
        );
        let ping = call(&service, own, json!({"method": "io.systemd.service.Ping"})).await;
        assert_eq!(ping, json!({}));
    }

    #[tokio::test]
    async fn set_log_level_checks_its_level_as_systemd_does() {
        let service = service();
        for parameters in [json!({}), json!({"level": 8}), json!({"level": -1})] {
            let reply = call(
                &service,
                0,
                json!({"method": "io.systemd.service.SetLogLevel", "parameters": parameters}),
            )
            .await;
            assert_eq!(
                reply,
                json!({"error": "org.varlink.service.InvalidParameter",
                       "parameters": {"parameter": "level"}}),
                "{parameters}"
            );
        }
    }

    #[tokio::test]
    async fn without_init_the_log_methods_say_so_instead_of_pretending() {
        // Unit tests never call logging::init.
        let service = service();
        for (method, parameters) in [
            ("io.systemd.service.SetLogLevel", json!({"level": 7})),
            ("io.systemd.service.GetLogLevel", json!({})),
            ("io.localrpc.Control.GetLogFilter", json!({})),
            (
                "io.localrpc.Control.SetLogFilter",
                json!({"filter": "debug"}),
            ),
        ] {
            let reply = call(
                &service,
                0,
                json!({"method": method, "parameters": parameters}),
            )
            .await;
            assert_eq!(reply["error"], LOG_FILTER_UNAVAILABLE, "{method}: {reply}");
            let reason = reply["parameters"]["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("logging::init"), "{reason}");
        }
    }

    #[test]
    fn get_stats_declares_every_server_counter() {
        let idl = localrpc_idl::parse(CONTROL_IDL).expect("the IDL parses");
        let declared: Vec<&str> = idl
            .members
            .iter()
            .find_map(|member| match member {
                localrpc_idl::Member::Method(method) if method.name == "GetStats" => Some(
                    method
                        .output
                        .iter()
                        .map(|field| field.name.as_str())
                        .collect(),
                ),
                _ => None,
            })
            .expect("GetStats is declared");
        let counters = serde_json::to_value(crate::server::ServerStats::default())
            .expect("the counters serialize");
        // The reply's order is the IDL's: the counters, then the two added by the handler.
        let served: Vec<&str> = counters
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .chain(["connections_open", "uptime_usec"])
            .collect();
        assert_eq!(
            served, declared,
            "a counter added to ServerStats needs a line in the IDL, in the same place"
        );
    }

    #[test]
    fn health_is_ready_then_reloading_then_draining() {
        // The reload hook records the state its own daemon is in while it runs.
        let cell: Arc<OnceLock<Weak<Control>>> = Arc::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (probe, record) = (cell.clone(), seen.clone());
        let hook: ReloadHook = Arc::new(move || {
            if let Some(control) = probe.get().and_then(Weak::upgrade) {
                record
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(control.health());
            }
        });
        let control = Control::new("testd", Notifier::default(), Some(hook));
        let _ = cell.set(Arc::downgrade(&control));
        assert_eq!(control.health(), Health::Ready);
        control.reload("test");
        assert_eq!(control.health(), Health::Ready);
        control.set_draining();
        control.reload("test");
        assert_eq!(
            control.health(),
            Health::Draining,
            "a reload does not end a drain"
        );
        assert_eq!(
            *seen.lock().unwrap_or_else(PoisonError::into_inner),
            vec![Health::Reloading],
            "no reload runs while the daemon drains"
        );
    }
}
