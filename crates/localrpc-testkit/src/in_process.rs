//! A service served on a private Unix socket inside the test's own tokio runtime: the one
//! harness every in-process server test uses.

use std::path::PathBuf;
use std::time::Duration;

use localrpc::server::{Server, ServerConfig, StopReason};
use localrpc::service::Service;
use localrpc::transport::{Address, Listener, UnixBindOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running in-process server on `<tempdir>/server.sock` (mode 0600). Dropping it stops
/// accepting and removes the socket file; connections already open run on.
pub struct InProcessServer {
    /// The server, for its stats, connection count and drain.
    pub server: Server,
    /// The socket file.
    pub path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<StopReason>>,
    _dir: tempfile::TempDir,
}

impl InProcessServer {
    /// Serves `service` with the default configuration. Call inside a tokio runtime.
    pub async fn start(service: Service) -> InProcessServer {
        InProcessServer::start_with(service, ServerConfig::default()).await
    }

    /// Serves `service` with `config`. Call inside a tokio runtime.
    pub async fn start_with(service: Service, config: ServerConfig) -> InProcessServer {
        let dir = crate::temp_dir();
        let path = dir.path().join("server.sock");
        let listener = Listener::bind(&Address::Unix(path.clone()), UnixBindOptions::default())
            .await
            .expect("bind the test socket");
        let server = Server::with_config(service, config);
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn({
            let server = server.clone();
            async move {
                server
                    .serve(vec![listener], async {
                        // A dropped sender stops the server too.
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        InProcessServer {
            server,
            path,
            stop: Some(stop),
            serving: Some(serving),
            _dir: dir,
        }
    }

    /// The socket as a client address (`unix:/...`).
    pub fn address(&self) -> String {
        format!("unix:{}", self.path.display())
    }

    /// True while the server still accepts connections.
    pub fn is_serving(&self) -> bool {
        self.serving
            .as_ref()
            .is_some_and(|task| !task.is_finished())
    }

    /// Asks the server to stop accepting and waits until it has (its socket file is then
    /// gone). Returns why it stopped.
    pub async fn stop(&mut self) -> StopReason {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.stopped_within(crate::TIMEOUT)
            .await
            .expect("the server stops when asked")
    }

    /// Waits up to `limit` for the server to stop by itself (e.g. exit-on-idle); `None` if it
    /// is still serving then.
    pub async fn stopped_within(&mut self, limit: Duration) -> Option<StopReason> {
        let task = self.serving.as_mut()?;
        let reason = tokio::time::timeout(limit, task).await.ok()?;
        self.serving = None;
        Some(reason.expect("the serve task does not panic"))
    }
}
