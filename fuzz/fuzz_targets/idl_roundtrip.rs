//! The IDL parser on arbitrary text, plus the formatter round trip: when `x` parses,
//! `format(parse(x))` parses back to the same tree and formatting it again gives the same
//! text. The systemd lint and the zero-value filler must not panic on any parsed interface.

#![no_main]

use libfuzzer_sys::fuzz_target;
use localrpc_idl::{Member, format, parse, systemd_lint};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(iface) = parse(text) else {
        return;
    };
    let formatted = format(&iface);
    let reparsed = parse(&formatted)
        .unwrap_or_else(|e| panic!("formatted output does not parse: {e}\n{formatted}"));
    assert_eq!(
        reparsed, iface,
        "format -> parse changed the tree:\n{formatted}"
    );
    assert_eq!(format(&reparsed), formatted, "format is not idempotent");
    let _ = systemd_lint(&iface);
    for member in &iface.members {
        if let Member::Method(method) = member {
            let mut params = serde_json::Map::new();
            localrpc_idl::fill_zero_values(&iface, &method.input, &mut params);
        }
    }
});
