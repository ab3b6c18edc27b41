//! A real systemd user manager (`systemd --user`) for tests, on machines where systemd is
//! installed but is not PID 1 (shared/docs/LIFECYCLE.md, last section).
//!
//! [`UserManager::start`] follows the recipe measured on these machines:
//! 1. take a file lock (`/run/localrpc-test-user-manager.lock`) so that only one manager per
//!    machine runs for the test user at a time (test binaries run in parallel);
//! 2. create `/run/systemd/system` (sd_booted() looks for it) unless it exists, and remember
//!    whether we did;
//! 3. create the test user `localrpc-test` once (`useradd --system`, home
//!    `/var/lib/localrpc-test`);
//! 4. create a cgroup owned by that user in each hierarchy the manager needs (cgroup v2 only:
//!    `/sys/fs/cgroup/<name>`; hybrid: `/sys/fs/cgroup/unified/<name>` and
//!    `/sys/fs/cgroup/systemd/<name>`);
//! 5. create `XDG_RUNTIME_DIR` (`/run/localrpc-test-um-<pid>`, 0700, owned by the user);
//! 6. start `sh -c 'echo $$ > <cgroup>/cgroup.procs ...; exec setpriv --reuid .. --regid ..
//!    --init-groups env -i HOME=.. XDG_RUNTIME_DIR=.. /lib/systemd/systemd --user'`, and wait
//!    until `systemctl --user is-system-running` answers.
//!
//! `systemctl --user` runs as the user with only `HOME`, `USER`, `PATH` and `XDG_RUNTIME_DIR`:
//! it talks to the manager over `$XDG_RUNTIME_DIR/systemd/private`, no D-Bus needed.
//! Dropping the [`UserManager`] stops the manager (SIGTERM, then SIGKILL of anything left in
//! its cgroups), removes the cgroups, the runtime directory, the installed unit files and the
//! `/run/systemd/system` marker if it created it.
//!
//! Where the manager cannot start (not root, no systemd, no writable cgroups), `start` returns
//! `Err(reason)`: tests record a visible skip with [`crate::skip`].
//!
//! [`socket_activation_scenario`] is the check every daemon's shipped socket and service units
//! must pass under such a manager (parity R11): the socket is enabled and started, the first
//! call activates the service, stopping the service keeps the socket, the next call activates
//! it again.
//!
//! [`UserManager::start`]: crate::user_manager::UserManager::start
//! [`UserManager`]: crate::user_manager::UserManager
//! [`socket_activation_scenario`]: crate::user_manager::socket_activation_scenario

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The user the manager runs as (created on first use).
pub const TEST_USER: &str = "localrpc-test";
/// Its home directory.
const TEST_HOME: &str = "/var/lib/localrpc-test";
/// The systemd binary.
const SYSTEMD: &str = "/lib/systemd/systemd";
/// Serializes user managers across test processes.
const LOCK_FILE: &str = "/run/localrpc-test-user-manager.lock";
/// sd_booted() checks this directory.
const BOOTED_MARKER: &str = "/run/systemd/system";
/// How long the manager may take to come up, and to go down.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `systemd --user` for [`TEST_USER`].
pub struct UserManager {
    child: Option<Child>,
    uid: u32,
    gid: u32,
    runtime_dir: PathBuf,
    cgroups: Vec<PathBuf>,
    created_marker: bool,
    log: PathBuf,
    _lock: File,
}

impl UserManager {
    /// Starts a user manager, or says why it cannot run here.
    pub fn start() -> Result<UserManager, String> {
        if !is_root() {
            return Err(
                "a systemd user manager for tests needs root (to create a user and cgroups)".into(),
            );
        }
        if !Path::new(SYSTEMD).is_file() {
            return Err(format!("{SYSTEMD} is not installed"));
        }
        for tool in ["setpriv", "systemctl", "useradd"] {
            if !in_path(tool) {
                return Err(format!("{tool} is not installed"));
            }
        }
        let lock = File::create(LOCK_FILE).map_err(|e| format!("create {LOCK_FILE}: {e}"))?;
        lock.lock().map_err(|e| format!("lock {LOCK_FILE}: {e}"))?;

        let (uid, gid) = ensure_user()?;
        let name = format!("localrpc-test-um-{}", std::process::id());
        let runtime_dir = PathBuf::from("/run").join(&name);
        let mut manager = UserManager {
            child: None,
            uid,
            gid,
            log: runtime_dir.with_extension("log"),
            runtime_dir,
            cgroups: Vec::new(),
            created_marker: false,
            _lock: lock,
        };
        // From here on, Drop cleans up whatever was created.
        if !Path::new(BOOTED_MARKER).exists() {
            std::fs::create_dir_all(BOOTED_MARKER)
                .map_err(|e| format!("create {BOOTED_MARKER}: {e}"))?;
            manager.created_marker = true;
        }
        for hierarchy in cgroup_hierarchies()? {
            let dir = hierarchy.join(&name);
            std::fs::create_dir(&dir)
                .map_err(|e| format!("create cgroup {}: {e}", dir.display()))?;
            manager.cgroups.push(dir.clone());
            chown_recursive(&dir, uid, gid)?;
        }
        let _ = std::fs::remove_dir_all(&manager.runtime_dir);
        std::fs::create_dir(&manager.runtime_dir)
            .and_then(|()| {
                std::fs::set_permissions(
                    &manager.runtime_dir,
                    std::fs::Permissions::from_mode(0o700),
                )
            })
            .map_err(|e| format!("create {}: {e}", manager.runtime_dir.display()))?;
        chown(&manager.runtime_dir, uid, gid)?;
        // Fresh unit directory (a previous run may have been killed).
        let unit_dir = manager.unit_dir();
        let _ = std::fs::remove_dir_all(&unit_dir);
        manager.mkdir_owned(&unit_dir)?;

        let moves: String = manager
            .cgroups
            .iter()
            .map(|dir| format!("echo $$ > {}/cgroup.procs && ", dir.display()))
            .collect();
        let script = format!(
            "{moves}exec setpriv --reuid={uid} --regid={gid} --init-groups env -i {env} {SYSTEMD} --user",
            env = manager.env_assignments().join(" ")
        );
        let log = File::create(&manager.log)
            .map_err(|e| format!("create {}: {e}", manager.log.display()))?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start systemd --user: {e}"))?;
        manager.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = manager.systemctl(&["is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if matches!(state.as_str(), "running" | "degraded") {
                return Ok(manager);
            }
            if let Some(Ok(Some(status))) = manager.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "systemd --user exited ({status}): {}",
                    manager.log_text()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "systemd --user did not come up within {START_TIMEOUT:?} (state {state:?}): {}",
                    manager.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// [`UserManager::start`], or else a visible skip of `test` (see [`crate::skip`]) and
    /// None.
    pub fn start_or_skip(test: &str) -> Option<UserManager> {
        match UserManager::start() {
            Ok(manager) => Some(manager),
            Err(reason) => {
                crate::skip(test, &reason);
                None
            }
        }
    }

    fn env_assignments(&self) -> Vec<String> {
        vec![
            format!("HOME={TEST_HOME}"),
            format!("USER={TEST_USER}"),
            format!("LOGNAME={TEST_USER}"),
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            format!("XDG_RUNTIME_DIR={}", self.runtime_dir.display()),
        ]
    }

    /// The manager's `XDG_RUNTIME_DIR` (`%t` in its units).
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// Where user units go: `~/.config/systemd/user` of the test user.
    pub fn unit_dir(&self) -> PathBuf {
        Path::new(TEST_HOME).join(".config/systemd/user")
    }

    /// The test user's uid and gid.
    pub fn user_ids(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    /// The manager's own output (it logs there when no journal is reachable).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates `dir` (and parents) owned by the test user.
    pub fn mkdir_owned(&self, dir: &Path) -> Result<(), String> {
        let mut missing = Vec::new();
        let mut current = dir;
        while !current.exists() {
            missing.push(current.to_path_buf());
            current = current.parent().ok_or("no parent")?;
        }
        for dir in missing.iter().rev() {
            std::fs::create_dir(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            chown(dir, self.uid, self.gid)?;
        }
        Ok(())
    }

    /// Copies a binary to `<runtime dir>/bin/` (0755), where the test user can run it, and
    /// returns that directory (the `@BINDIR@` of the unit files).
    pub fn install_binary(&self, binary: &Path) -> Result<PathBuf, String> {
        let bin = self.runtime_dir.join("bin");
        self.mkdir_owned(&bin)?;
        let name = binary.file_name().ok_or("binary without a file name")?;
        let target = bin.join(name);
        std::fs::copy(binary, &target).map_err(|e| format!("copy {}: {e}", binary.display()))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        Ok(bin)
    }

    /// Writes a unit file (or a drop-in, `name` = `x.socket.d/y.conf`) into [`Self::unit_dir`],
    /// replacing each `(from, to)` pair in `text`.
    pub fn install_unit(
        &self,
        name: &str,
        text: &str,
        substitutions: &[(&str, &str)],
    ) -> Result<(), String> {
        let path = self.unit_dir().join(name);
        self.mkdir_owned(path.parent().ok_or("no parent")?)?;
        let mut text = text.to_owned();
        for (from, to) in substitutions {
            text = text.replace(from, to);
        }
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        chown(&path, self.uid, self.gid)
    }

    /// Installs unit files from a directory (e.g. the workspace's `systemd/`).
    pub fn install_units_from(
        &self,
        dir: &Path,
        names: &[&str],
        substitutions: &[(&str, &str)],
    ) -> Result<(), String> {
        for name in names {
            let text =
                std::fs::read_to_string(dir.join(name)).map_err(|e| format!("read {name}: {e}"))?;
            self.install_unit(name, &text, substitutions)?;
        }
        Ok(())
    }

    /// A command run as the test user, in the manager's environment.
    pub fn command_as_user(&self, program: &str) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("env")
            .arg("-i")
            .args(self.env_assignments())
            .arg(program)
            .current_dir("/")
            .stdin(Stdio::null());
        command
    }

    /// `systemctl --user ARGS` as the test user.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        self.command_as_user("systemctl")
            .arg("--user")
            .arg("--no-pager")
            .args(args)
            .output()
            .expect("run systemctl")
    }

    /// `systemctl --user ARGS`, failing with its output unless it exits 0.
    pub fn systemctl_ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.systemctl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "systemctl --user {} failed ({}): {stdout}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `systemctl --user is-active UNIT`: `active`, `inactive`, `activating`, `failed`...
    pub fn state(&self, unit: &str) -> String {
        String::from_utf8_lossy(&self.systemctl(&["is-active", unit]).stdout)
            .trim()
            .to_owned()
    }

    /// Waits until `unit` is in `state`; false after `timeout`.
    pub fn wait_for_state(&self, unit: &str, state: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.state(unit) == state {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `systemctl --user status UNIT` for failure messages.
    pub fn status(&self, unit: &str) -> String {
        let out = self.systemctl(&["status", "--lines=0", unit]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every pid in the manager's cgroups (the manager included).
    fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for cgroup in &self.cgroups {
            collect_pids(cgroup, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything the manager left behind in its cgroups.
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(pids.iter().map(u32::to_string))
                .status();
            std::thread::sleep(Duration::from_millis(100));
        }
        for cgroup in &self.cgroups {
            remove_cgroup_tree(cgroup);
        }
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_dir_all(self.unit_dir());
        if self.created_marker {
            let _ = std::fs::remove_dir(BOOTED_MARKER);
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn in_path(tool: &str) -> bool {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .any(|dir| Path::new(dir).join(tool).is_file())
}

fn id_of(flag: &str) -> Option<u32> {
    let out = Command::new("id")
        .arg(flag)
        .arg(TEST_USER)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|_| out.status.success())
}

/// The test user's uid and gid, creating the user the first time.
fn ensure_user() -> Result<(u32, u32), String> {
    if id_of("-u").is_none() {
        let out = Command::new("useradd")
            .args([
                "--system",
                "--create-home",
                "--home-dir",
                TEST_HOME,
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ])
            .output()
            .map_err(|e| format!("run useradd: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "useradd {TEST_USER} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let (uid, gid) = (id_of("-u"), id_of("-g"));
    let (Some(uid), Some(gid)) = (uid, gid) else {
        return Err(format!("cannot find the ids of {TEST_USER}"));
    };
    if !Path::new(TEST_HOME).is_dir() {
        std::fs::create_dir_all(TEST_HOME).map_err(|e| format!("create {TEST_HOME}: {e}"))?;
    }
    chown(Path::new(TEST_HOME), uid, gid)?;
    Ok((uid, gid))
}

/// The cgroup hierarchies a user manager needs a delegated cgroup in.
fn cgroup_hierarchies() -> Result<Vec<PathBuf>, String> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return Ok(vec![root.to_path_buf()]); // cgroup v2 only
    }
    let hybrid = [root.join("unified"), root.join("systemd")];
    if hybrid.iter().all(|h| h.join("cgroup.procs").exists()) {
        return Ok(hybrid.to_vec());
    }
    Err(
        "no cgroup hierarchy for systemd (neither cgroup2 at /sys/fs/cgroup nor unified+systemd)"
            .into(),
    )
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))
}

fn chown_recursive(dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    chown(dir, uid, gid)?;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        // Some cgroup files cannot change owner; the ones systemd needs can.
        let _ = std::os::unix::fs::chown(&path, Some(uid), Some(gid));
    }
    Ok(())
}

fn collect_pids(cgroup: &Path, pids: &mut Vec<u32>) {
    if let Ok(text) = std::fs::read_to_string(cgroup.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(cgroup) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&entry.path(), pids);
            }
        }
    }
}

/// Removes a cgroup and its children, deepest first (cgroup directories are removed with
/// rmdir, never by deleting their files).
fn remove_cgroup_tree(cgroup: &Path) {
    if let Ok(entries) = std::fs::read_dir(cgroup) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(cgroup);
}

/// How long a unit may take to change state, and a scenario's call to be answered.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(15);

/// A daemon installed under a [`UserManager`] behind its socket unit, as
/// [`socket_activation_scenario`] checks it.
#[derive(Debug, Clone, Copy)]
pub struct ActivatedService<'a> {
    /// The socket unit, e.g. `localrpcd.socket`.
    pub socket_unit: &'a str,
    /// The service unit it activates, e.g. `localrpcd.service`.
    pub service_unit: &'a str,
    /// The socket file the socket unit creates.
    pub socket: &'a Path,
    /// The service's stderr (see [`install_with_log`]), shown when a check fails.
    pub log: &'a Path,
}

impl ActivatedService<'_> {
    /// The service's status and log, for failure messages.
    pub fn diagnose(&self, manager: &UserManager) -> String {
        format!(
            "{}\n{}",
            manager.status(self.service_unit),
            std::fs::read_to_string(self.log).unwrap_or_default()
        )
    }
}

/// Installs `binary` (as `@BINDIR@`) and the `unit_files` from the workspace's `systemd/`
/// directory, plus a test-only drop-in that appends the stderr of `service_unit` to
/// `<runtime dir>/<service name>.log` (there is no journal here); returns that log's path.
pub fn install_with_log(
    manager: &UserManager,
    binary: &Path,
    unit_files: &[&str],
    service_unit: &str,
) -> Result<PathBuf, String> {
    let bindir = manager.install_binary(binary)?.display().to_string();
    let units = crate::workspace_root().join("systemd");
    manager.install_units_from(&units, unit_files, &[("@BINDIR@", &bindir)])?;
    let name = service_unit
        .strip_suffix(".service")
        .unwrap_or(service_unit);
    let log = manager.runtime_dir().join(format!("{name}.log"));
    manager.install_unit(
        &format!("{service_unit}.d/test.conf"),
        &format!("[Service]\nStandardError=append:{}\n", log.display()),
        &[],
    )?;
    Ok(log)
}

/// One varlink call over raw bytes on a new connection: `request` (NUL-terminated) in, the
/// reply out without its NUL. Reads are bounded by [`SCENARIO_TIMEOUT`].
pub fn call(socket: &Path, request: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(SCENARIO_TIMEOUT))
        .map_err(|e| format!("set read timeout: {e}"))?;
    stream
        .write_all(request)
        .map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Err(format!("connection closed after {} bytes", reply.len())),
            Ok(_) if byte[0] == 0 => return Ok(reply),
            Ok(_) => reply.push(byte[0]),
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

/// Asserts that [`call`] with `request` is answered with exactly `reply` (without the NUL);
/// `diagnose` explains a failure.
pub fn assert_call(socket: &Path, request: &[u8], reply: &[u8], diagnose: impl Fn() -> String) {
    let got = call(socket, request).unwrap_or_else(|e| panic!("{e}\n{}", diagnose()));
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(reply),
        "reply to {}",
        String::from_utf8_lossy(request)
    );
}

/// Socket activation by a real systemd user manager (parity R11), for units installed with
/// [`install_with_log`] (after which it runs `daemon-reload`):
///
/// 1. `enable` links the socket unit into `sockets.target`; `start` makes it active and
///    creates the socket file, mode 0600, owned by the test user; the service is inactive;
/// 2. `calls[0]` (request, exact reply without NUL) activates the service, which becomes
///    active; then `after_activation(1)`;
/// 3. `stop` of the service leaves it inactive while the socket unit stays active and the
///    very same socket file (same inode) stays; `calls[1]` activates the service again; then
///    `after_activation(2)`.
///
/// Panics (with the unit status and the service's log) when a step fails. The units are left
/// running: finish with [`stop_removes_socket`].
pub fn socket_activation_scenario(
    manager: &UserManager,
    service: &ActivatedService,
    calls: [(&[u8], &[u8]); 2],
    mut after_activation: impl FnMut(usize),
) {
    use std::os::unix::fs::MetadataExt;
    let diagnose = || service.diagnose(manager);
    manager.systemctl_ok(&["daemon-reload"]).unwrap();
    manager
        .systemctl_ok(&["enable", service.socket_unit])
        .unwrap();
    assert!(
        manager
            .unit_dir()
            .join("sockets.target.wants")
            .join(service.socket_unit)
            .exists(),
        "enable links the socket into sockets.target"
    );
    manager
        .systemctl_ok(&["start", service.socket_unit])
        .unwrap();
    assert_eq!(manager.state(service.socket_unit), "active");
    let meta = std::fs::metadata(service.socket)
        .unwrap_or_else(|e| panic!("the socket unit created {}: {e}", service.socket.display()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "SocketMode=0600");
    assert_eq!(meta.uid(), manager.user_ids().0);
    let inode = meta.ino();
    assert_eq!(
        manager.state(service.service_unit),
        "inactive",
        "nothing started before the first call"
    );

    for (round, (request, reply)) in calls.into_iter().enumerate() {
        if round > 0 {
            // Stop the service: the socket unit and file stay; the next call re-activates.
            manager
                .systemctl_ok(&["stop", service.service_unit])
                .unwrap();
            assert_eq!(
                manager.state(service.service_unit),
                "inactive",
                "{}",
                diagnose()
            );
            assert_eq!(
                manager.state(service.socket_unit),
                "active",
                "{}",
                manager.status(service.socket_unit)
            );
            assert!(
                service.socket.exists(),
                "stopping the service must not delete the socket (the rhc trap)"
            );
            assert_eq!(
                std::fs::metadata(service.socket).unwrap().ino(),
                inode,
                "the very same socket"
            );
        }
        // Socket activation by systemd itself, answered byte for byte.
        assert_call(service.socket, request, reply, diagnose);
        assert!(
            manager.wait_for_state(service.service_unit, "active", SCENARIO_TIMEOUT),
            "{}",
            diagnose()
        );
        after_activation(round + 1);
    }
}

/// Stops `units` (which include the socket unit) and asserts that the socket file is gone
/// (`RemoveOnStop=yes`).
pub fn stop_removes_socket(manager: &UserManager, service: &ActivatedService, units: &[&str]) {
    let mut args = vec!["stop"];
    args.extend_from_slice(units);
    manager.systemctl_ok(&args).unwrap();
    assert!(
        !service.socket.exists(),
        "RemoveOnStop=yes: stopping the socket unit removes the file"
    );
}
