//! The checker on JSON text does not allocate on valid, ordinary input (a counting global
//! allocator in this test binary, counting on the test's own thread only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use localrpc_idl::{check_parameters_str, parse};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: forwards to the system allocator; the bookkeeping does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(Cell::get)
}

const IDL: &str = "\
interface org.example.alloc

type Item (name: string, count: ?int)

type Mode (fast, slow)

method Set(
  text: string,
  items: []Item,
  labels: [string]string,
  tags: [string](),
  mode: Mode,
  level: ?float,
  any: ?any,
  object: ?object
) -> ()
";

#[test]
fn valid_parameters_do_not_allocate() {
    let iface = parse(IDL).expect("parses");
    let fields = iface.method("Set").expect("Set").input.clone();
    let big = format!(
        r#"{{"text": "{}", "items": [], "labels": {{}}, "tags": {{}}, "mode": "fast"}}"#,
        "x".repeat(1 << 20)
    );
    let texts = [
        r#"{"text": "hello", "items": [], "labels": {}, "tags": {}, "mode": "slow"}"#,
        r#"{"mode": "fast", "tags": {"a": {}, "b": {"x": [1]}}, "labels": {"k": "v", "l": "w"},
           "items": [{"name": "a"}, {"name": "b", "count": 18446744073709551615},
                     {"count": null, "name": "c"}],
           "text": "", "level": 1.5, "any": [1, "x", {"y": null}], "object": {"z": {}}}"#,
        &big,
    ];
    for text in texts {
        let mut result = Ok(());
        let count = allocations(|| result = check_parameters_str(&iface, &fields, text));
        assert_eq!(result, Ok(()), "{text}");
        assert_eq!(count, 0, "{text}");
    }
    // The counter does count: an error is built on the heap.
    let count = allocations(|| {
        let _ = check_parameters_str(&iface, &fields, r#"{"text": 1}"#);
    });
    assert!(count > 0);
}
