//! The certification server: checks that each client calls Start, Test01 … Test11, End in
//! order, with exactly the values the previous reply gave it, Test10 with `more` and Test11
//! as `oneway`; any deviation ends that client's run with `CertificationError`.

// The interface's `CertificationError` carries two JSON objects, which makes the generated
// error enum large; it only travels on the error path of a test protocol.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use localrpc::service::{CallContext, ErrorReply};
use serde::Serialize;
use serde_json::{Value, json};

use crate::certification::{self as cert, Error, ReplySink};

/// How long a client id stays valid (as the reference implementations: 12 hours).
const CLIENT_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// At most this many certification runs are tracked at once; the oldest is dropped first.
const MAX_CLIENTS: usize = 10_000;

struct ClientState {
    /// The method this client must call next.
    next: &'static str,
    started: Instant,
}

/// The state of every certification run in progress, by client id.
#[derive(Default)]
pub struct CertificationServer {
    clients: Mutex<HashMap<String, ClientState>>,
}

fn qualified(method: &str) -> String {
    format!("{}.{method}", cert::INTERFACE_NAME)
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// 16 random bytes as hex, from the kernel (falling back to time and address entropy).
fn new_client_id() -> String {
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        bytes[..8].copy_from_slice(&state.hash_one(Instant::now()).to_le_bytes());
        bytes[8..].copy_from_slice(&state.hash_one(std::process::id()).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CertificationServer {
    /// A server with no run in progress.
    pub fn new() -> Self {
        Self::default()
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClientState>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks that `method` is what `client_id` must call now, and moves it on to `next`.
    fn step(&self, client_id: &str, method: &'static str, next: &'static str) -> Result<(), Error> {
        let mut clients = self.clients();
        let Some(state) = clients.get_mut(client_id) else {
            return Err(Error::ClientIdError);
        };
        if state.started.elapsed() > CLIENT_LIFETIME {
            clients.remove(client_id);
            return Err(Error::ClientIdError);
        }
        if state.next != method {
            let wants = json!({ "method": qualified(state.next) });
            clients.remove(client_id);
            return Err(Error::CertificationError {
                wants,
                got: json!({ "method": qualified(method) }),
            });
        }
        state.next = next;
        Ok(())
    }

    /// Fails the run of `client_id` unless `ok`.
    fn check(
        &self,
        client_id: &str,
        ok: bool,
        method: &str,
        wants: Value,
        got: &impl Serialize,
    ) -> Result<(), Error> {
        if ok {
            return Ok(());
        }
        self.clients().remove(client_id);
        Err(Error::CertificationError {
            wants: json!({ "method": qualified(method), "parameters": wants }),
            got: json!({ "method": qualified(method), "parameters": to_json(got) }),
        })
    }
}

fn disconnected(error: localrpc::service::ReplyError) -> Error {
    Error::Other(ErrorReply::new(
        "io.localrpc.InternalError",
        json!({ "message": error.to_string() }),
    ))
}

impl cert::Service for CertificationServer {
    async fn start(
        &self,
        _call: &CallContext,
        _input: cert::StartInput,
    ) -> Result<cert::StartOutput, Error> {
        let client_id = new_client_id();
        let mut clients = self.clients();
        clients.retain(|_, state| state.started.elapsed() <= CLIENT_LIFETIME);
        if clients.len() >= MAX_CLIENTS {
            let oldest = clients
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                clients.remove(&oldest);
            }
        }
        clients.insert(
            client_id.clone(),
            ClientState {
                next: "Test01",
                started: Instant::now(),
            },
        );
        Ok(cert::StartOutput { client_id })
    }

    async fn test01(
        &self,
        _call: &CallContext,
        input: cert::Test01Input,
    ) -> Result<cert::Test01Output, Error> {
        self.step(&input.client_id, "Test01", "Test02")?;
        Ok(cert::Test01Output { r#bool: true })
    }

    async fn test02(
        &self,
        _call: &CallContext,
        input: cert::Test02Input,
    ) -> Result<cert::Test02Output, Error> {
        self.step(&input.client_id, "Test02", "Test03")?;
        let wants = json!({ "client_id": input.client_id, "bool": true });
        self.check(&input.client_id, input.r#bool, "Test02", wants, &input)?;
        Ok(cert::Test02Output { int: 1 })
    }

    async fn test03(
        &self,
        _call: &CallContext,
        input: cert::Test03Input,
    ) -> Result<cert::Test03Output, Error> {
        self.step(&input.client_id, "Test03", "Test04")?;
        let wants = json!({ "client_id": input.client_id, "int": 1 });
        self.check(&input.client_id, input.int == 1, "Test03", wants, &input)?;
        Ok(cert::Test03Output { float: 1.0 })
    }

    async fn test04(
        &self,
        _call: &CallContext,
        input: cert::Test04Input,
    ) -> Result<cert::Test04Output, Error> {
        self.step(&input.client_id, "Test04", "Test05")?;
        let wants = json!({ "client_id": input.client_id, "float": 1.0 });
        self.check(
            &input.client_id,
            input.float == 1.0,
            "Test04",
            wants,
            &input,
        )?;
        Ok(cert::Test04Output {
            string: "ping".to_owned(),
        })
    }

    async fn test05(
        &self,
        _call: &CallContext,
        input: cert::Test05Input,
    ) -> Result<cert::Test05Output, Error> {
        self.step(&input.client_id, "Test05", "Test06")?;
        let wants = json!({ "client_id": input.client_id, "string": "ping" });
        self.check(
            &input.client_id,
            input.string == "ping",
            "Test05",
            wants,
            &input,
        )?;
        Ok(cert::Test05Output {
            r#bool: false,
            int: 2,
            float: crate::PI,
            string: crate::A_LOT_OF_STRING.to_owned(),
        })
    }

    async fn test06(
        &self,
        _call: &CallContext,
        input: cert::Test06Input,
    ) -> Result<cert::Test06Output, Error> {
        self.step(&input.client_id, "Test06", "Test07")?;
        let ok = !input.r#bool
            && input.int == 2
            && input.float == crate::PI
            && input.string == crate::A_LOT_OF_STRING;
        let wants = json!({
            "client_id": input.client_id, "bool": false, "int": 2, "float": crate::PI,
            "string": crate::A_LOT_OF_STRING,
        });
        self.check(&input.client_id, ok, "Test06", wants, &input)?;
        Ok(cert::Test06Output {
            r#struct: cert::Test06OutputStruct {
                r#bool: false,
                int: 2,
                float: crate::PI,
                string: crate::A_LOT_OF_STRING.to_owned(),
            },
        })
    }

    async fn test07(
        &self,
        _call: &CallContext,
        input: cert::Test07Input,
    ) -> Result<cert::Test07Output, Error> {
        self.step(&input.client_id, "Test07", "Test08")?;
        let s = &input.r#struct;
        let ok =
            !s.r#bool && s.int == 2 && s.float == crate::PI && s.string == crate::A_LOT_OF_STRING;
        let wants = json!({
            "client_id": input.client_id,
            "struct": { "bool": false, "int": 2, "float": crate::PI, "string": crate::A_LOT_OF_STRING },
        });
        self.check(&input.client_id, ok, "Test07", wants, &input)?;
        Ok(cert::Test07Output {
            map: crate::expected_map(),
        })
    }

    async fn test08(
        &self,
        _call: &CallContext,
        input: cert::Test08Input,
    ) -> Result<cert::Test08Output, Error> {
        self.step(&input.client_id, "Test08", "Test09")?;
        let wants = json!({ "client_id": input.client_id, "map": crate::expected_map() });
        self.check(
            &input.client_id,
            input.map == crate::expected_map(),
            "Test08",
            wants,
            &input,
        )?;
        Ok(cert::Test08Output {
            set: crate::expected_set(),
        })
    }

    async fn test09(
        &self,
        _call: &CallContext,
        input: cert::Test09Input,
    ) -> Result<cert::Test09Output, Error> {
        self.step(&input.client_id, "Test09", "Test10")?;
        let wants =
            json!({ "client_id": input.client_id, "set": {"one": {}, "two": {}, "three": {}} });
        self.check(
            &input.client_id,
            input.set == crate::expected_set(),
            "Test09",
            wants,
            &input,
        )?;
        Ok(cert::Test09Output {
            mytype: crate::expected_mytype(),
        })
    }

    async fn test10(
        &self,
        call: &CallContext,
        input: cert::Test10Input,
        mut replies: ReplySink<'_, cert::Test10Output>,
    ) -> Result<cert::Test10Output, Error> {
        self.step(&input.client_id, "Test10", "Test11")?;
        let ok = call.flags.more && input.mytype == crate::expected_mytype();
        let wants =
            json!({ "client_id": input.client_id, "mytype": to_json(&crate::expected_mytype()) });
        self.check(&input.client_id, ok, "Test10", wants, &input)?;
        let mut strings = crate::expected_more_replies();
        let last = strings.pop().unwrap_or_default();
        for string in strings {
            replies
                .send(cert::Test10Output { string })
                .await
                .map_err(disconnected)?;
        }
        Ok(cert::Test10Output { string: last })
    }

    async fn test11(
        &self,
        call: &CallContext,
        input: cert::Test11Input,
    ) -> Result<cert::Test11Output, Error> {
        self.step(&input.client_id, "Test11", "End")?;
        let ok = call.flags.oneway && input.last_more_replies == crate::expected_more_replies();
        let wants = json!({
            "client_id": input.client_id,
            "last_more_replies": crate::expected_more_replies(),
            "oneway": true,
        });
        self.check(&input.client_id, ok, "Test11", wants, &input)?;
        Ok(cert::Test11Output {})
    }

    async fn end(
        &self,
        _call: &CallContext,
        input: cert::EndInput,
    ) -> Result<cert::EndOutput, Error> {
        self.step(&input.client_id, "End", "Start")?;
        self.clients().remove(&input.client_id);
        Ok(cert::EndOutput { all_ok: true })
    }
}
