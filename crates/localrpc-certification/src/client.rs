//! The client side of the certification sequence: Start, Test01 … Test09 (each with the
//! values the previous reply returned), Test10 with `more`, Test11 as `oneway`, End; every
//! reply is compared with the values the certification prescribes.

use std::fmt::Debug;

use localrpc::client::CallError;

use crate::certification::{self as cert, Client, Error};

/// A step of the sequence that did not pass.
#[derive(Debug)]
pub struct StepFailed {
    /// The method (`Test05`).
    pub step: &'static str,
    /// What went wrong.
    pub reason: String,
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.step, self.reason)
    }
}

impl std::error::Error for StepFailed {}

fn call_failed(step: &'static str) -> impl FnOnce(CallError<Error>) -> StepFailed {
    move |error| StepFailed {
        step,
        reason: error.to_string(),
    }
}

fn expect<T: PartialEq + Debug>(step: &'static str, got: T, wants: T) -> Result<T, StepFailed> {
    if got == wants {
        Ok(got)
    } else {
        Err(StepFailed {
            step,
            reason: format!("got {got:?}, wants {wants:?}"),
        })
    }
}

/// Runs the whole sequence on `client`; `log` gets one line per step.
pub async fn run<C>(client: &mut Client<C>, mut log: impl FnMut(String)) -> Result<(), StepFailed>
where
    C: std::borrow::BorrowMut<localrpc::client::Connection>,
{
    let id = client
        .start()
        .await
        .map_err(call_failed("Start"))?
        .client_id;
    log(format!("Start: client_id={id}"));

    let ret = client
        .test01(id.clone())
        .await
        .map_err(call_failed("Test01"))?;
    log(format!("Test01: {ret:?}"));
    let bool1 = expect("Test01", ret.r#bool, true)?;

    let ret = client
        .test02(id.clone(), bool1)
        .await
        .map_err(call_failed("Test02"))?;
    log(format!("Test02: {ret:?}"));
    let int = expect("Test02", ret.int, 1)?;

    let ret = client
        .test03(id.clone(), int)
        .await
        .map_err(call_failed("Test03"))?;
    log(format!("Test03: {ret:?}"));
    let float = expect("Test03", ret.float, 1.0)?;

    let ret = client
        .test04(id.clone(), float)
        .await
        .map_err(call_failed("Test04"))?;
    log(format!("Test04: {ret:?}"));
    let string = expect("Test04", ret.string, "ping".to_owned())?;

    let ret = client
        .test05(id.clone(), string)
        .await
        .map_err(call_failed("Test05"))?;
    log(format!("Test05: {ret:?}"));
    let wants = cert::Test05Output {
        r#bool: false,
        int: 2,
        float: crate::PI,
        string: crate::A_LOT_OF_STRING.to_owned(),
    };
    let ret = expect("Test05", ret, wants)?;

    let ret = client
        .test06(id.clone(), ret.r#bool, ret.int, ret.float, ret.string)
        .await
        .map_err(call_failed("Test06"))?;
    log(format!("Test06: {ret:?}"));
    let wants = cert::Test06OutputStruct {
        r#bool: false,
        int: 2,
        float: crate::PI,
        string: crate::A_LOT_OF_STRING.to_owned(),
    };
    let s = expect("Test06", ret.r#struct, wants)?;

    let input = cert::Test07InputStruct {
        r#bool: s.r#bool,
        int: s.int,
        float: s.float,
        string: s.string,
    };
    let ret = client
        .test07(id.clone(), input)
        .await
        .map_err(call_failed("Test07"))?;
    log(format!("Test07: {ret:?}"));
    let map = expect("Test07", ret.map, crate::expected_map())?;

    let ret = client
        .test08(id.clone(), map)
        .await
        .map_err(call_failed("Test08"))?;
    log(format!("Test08: {ret:?}"));
    let set = expect("Test08", ret.set, crate::expected_set())?;

    let ret = client
        .test09(id.clone(), set)
        .await
        .map_err(call_failed("Test09"))?;
    log(format!("Test09: {ret:?}"));
    // The reference servers disagree on the keys of `interface.foo[1]` (Python: "foo", "bar";
    // Go: "Foo", "Bar"), so those keys are compared ignoring case. The value goes back
    // unchanged in Test10.
    let mytype = ret.mytype;
    expect(
        "Test09",
        fold_foo_keys(&mytype),
        fold_foo_keys(&crate::expected_mytype()),
    )?;

    let mut strings = Vec::new();
    {
        // The stream borrows the connection until it is dropped.
        let mut replies = client
            .test10(id.clone(), mytype)
            .await
            .map_err(call_failed("Test10"))?;
        while let Some(reply) = replies.next().await {
            let reply = reply.map_err(call_failed("Test10"))?;
            log(format!("Test10: {reply:?}"));
            strings.push(reply.string);
        }
    }
    let strings = expect("Test10", strings, crate::expected_more_replies())?;

    client
        .test11_oneway(id.clone(), strings)
        .await
        .map_err(|e| StepFailed {
            step: "Test11",
            reason: e.to_string(),
        })?;
    log("Test11: sent as oneway".to_owned());

    let ret = client.end(id).await.map_err(call_failed("End"))?;
    log(format!("End: {ret:?}"));
    expect("End", ret.all_ok, true)?;
    Ok(())
}

/// `mytype` with the keys of `interface.foo`'s maps in lower case.
fn fold_foo_keys(mytype: &cert::MyType) -> cert::MyType {
    let mut folded = mytype.clone();
    for map in folded.interface.foo.iter_mut().flatten().flatten() {
        *map = std::mem::take(map)
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
    }
    folded
}
