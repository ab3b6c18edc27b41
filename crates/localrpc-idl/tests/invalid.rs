//! Invalid interface text and the exact `line:column: message` each one produces.

use localrpc_idl::parse;

const CASES: &[(&str, &str)] = &[
    // -- structure --
    (
        "",
        "1:1: expected 'interface' at the start of the definition, found end of input",
    ),
    (
        "type T (a: int)",
        "1:1: expected 'interface' at the start of the definition, found \"type\"",
    ),
    (
        "# only a comment\n",
        "2:1: expected 'interface' at the start of the definition, found end of input",
    ),
    (
        "interface",
        "1:10: expected interface name after 'interface', found end of input",
    ),
    (
        "interface org.example.a",
        "1:24: expected at least one 'type', 'method' or 'error' declaration, found end of input",
    ),
    (
        // Columns count characters: the comment's é is one column, not two bytes.
        "interface org.example.a # café",
        "1:31: expected at least one 'type', 'method' or 'error' declaration, found end of input",
    ),
    (
        "interface org.example.a\n# just a comment\n",
        "3:1: expected at least one 'type', 'method' or 'error' declaration, found end of input",
    ),
    (
        "interface org.example.a\nfunction F() -> ()",
        "2:1: expected at least one declaration: 'type', 'method' or 'error', found \"function\"",
    ),
    (
        "interface org.example.a\nmethod F() -> ()\ninterface org.example.b",
        "3:1: expected 'type', 'method' or 'error', found \"interface\"",
    ),
    (
        "interface org.example.a\nmethod F() -> ()\n}",
        "3:1: unexpected character '}'",
    ),
    // -- interface names --
    (
        "interface org",
        "1:11: invalid interface name \"org\": expected a reverse-domain name like \"org.example.service\" (at least two dot-separated parts of letters, digits and inner '-', starting with a letter)",
    ),
    (
        "interface 1org.example\nmethod F() -> ()",
        "1:11: invalid interface name \"1org.example\": expected a reverse-domain name like \"org.example.service\" (at least two dot-separated parts of letters, digits and inner '-', starting with a letter)",
    ),
    (
        "interface org.example-\nmethod F() -> ()",
        "1:11: invalid interface name \"org.example-\": expected a reverse-domain name like \"org.example.service\" (at least two dot-separated parts of letters, digits and inner '-', starting with a letter)",
    ),
    (
        "interface org..example\nmethod F() -> ()",
        "1:11: invalid interface name \"org..example\": expected a reverse-domain name like \"org.example.service\" (at least two dot-separated parts of letters, digits and inner '-', starting with a letter)",
    ),
    (
        "interface org.my_example\nmethod F() -> ()",
        "1:11: invalid interface name \"org.my_example\": expected a reverse-domain name like \"org.example.service\" (at least two dot-separated parts of letters, digits and inner '-', starting with a letter)",
    ),
    // -- member names --
    (
        "interface org.example.a\nmethod foo() -> ()",
        "2:8: invalid method name \"foo\": must start with an uppercase letter followed by letters and digits ([A-Z][A-Za-z0-9]*)",
    ),
    (
        "interface org.example.a\ntype My_Type (a: int)",
        "2:6: invalid type name \"My_Type\": must start with an uppercase letter followed by letters and digits ([A-Z][A-Za-z0-9]*)",
    ),
    (
        "interface org.example.a\nerror 9Lives ()",
        "2:7: invalid error name \"9Lives\": must start with an uppercase letter followed by letters and digits ([A-Z][A-Za-z0-9]*)",
    ),
    (
        "interface org.example.a\nmethod (a: int) -> ()",
        "2:8: expected method name after 'method', found '('",
    ),
    // -- field and enum value names --
    (
        "interface org.example.a\nmethod F(a__b: int) -> ()",
        "2:10: invalid field name \"a__b\": must start with a letter, followed by letters, digits and single inner '_' ([A-Za-z](_?[A-Za-z0-9])*)",
    ),
    (
        "interface org.example.a\nmethod F(_a: int) -> ()",
        "2:10: invalid field name \"_a\": must start with a letter, followed by letters, digits and single inner '_' ([A-Za-z](_?[A-Za-z0-9])*)",
    ),
    (
        "interface org.example.a\nmethod F(a_: int) -> ()",
        "2:10: invalid field name \"a_\": must start with a letter, followed by letters, digits and single inner '_' ([A-Za-z](_?[A-Za-z0-9])*)",
    ),
    (
        "interface org.example.a\ntype E (one, 2two)",
        "2:14: invalid enum value name \"2two\": must start with a letter, followed by letters, digits and single inner '_' ([A-Za-z](_?[A-Za-z0-9])*)",
    ),
    // -- syntax inside lists --
    (
        "interface org.example.a\nmethod F(\n  a: int,\n  foo int\n) -> ()",
        "4:7: expected ':' after field name \"foo\", found \"int\"",
    ),
    (
        "interface org.example.a\nmethod F(a, b) -> ()",
        "2:11: expected ':' after field name \"a\", found ','",
    ),
    (
        "interface org.example.a\ntype T (a: int, b: string,)",
        "2:27: unexpected ')' after ',': trailing commas are not allowed",
    ),
    (
        "interface org.example.a\ntype E (one, two,)",
        "2:18: unexpected ')' after ',': trailing commas are not allowed",
    ),
    (
        "interface org.example.a\ntype T (a: int b: int)",
        "2:16: expected ',' or ')' after field \"a\", found \"b\"",
    ),
    (
        "interface org.example.a\ntype E (one, two: int)",
        "2:17: unexpected ':' after enum value \"two\": an enum cannot mix plain values and typed fields",
    ),
    (
        "interface org.example.a\ntype T (a: int, b)",
        "2:18: expected ':' after field name \"b\", found ')'",
    ),
    (
        "interface org.example.a\ntype E (one two)",
        "2:13: expected ':' after field name \"one\", found \"two\"",
    ),
    (
        "interface org.example.a\ntype E (one, two three)",
        "2:18: expected ',' or ')' after enum value \"two\", found \"three\"",
    ),
    (
        "interface org.example.a\ntype T (a: int",
        "2:15: expected ',' or ')' after field \"a\", found end of input",
    ),
    (
        "interface org.example.a\ntype T (,)",
        "2:9: expected a field name, found ','",
    ),
    (
        "interface org.example.a\ntype T int",
        "2:8: expected '(' after type name \"T\" (a struct or an enum), found \"int\"",
    ),
    (
        "interface org.example.a\nmethod F() (a: int)",
        "2:12: expected '->' after the method's input parameters, found '('",
    ),
    (
        "interface org.example.a\nmethod F() - > ()",
        "2:12: expected '->'",
    ),
    (
        "interface org.example.a\nmethod F() -> int",
        "2:15: expected '(' to start the method's output parameters, found \"int\"",
    ),
    (
        "interface org.example.a\nmethod F(a: one, two) -> ()",
        "2:13: unknown type \"one\": expected bool, int, float, string, object, any, a type name, '(', '[]', '[string]' or '?'",
    ),
    (
        "interface org.example.a\nmethod F(a: ) -> ()",
        "2:13: expected a type, found ')'",
    ),
    (
        "interface org.example.a\nerror E",
        "2:8: expected '(' after error name \"E\", found end of input",
    ),
    // -- types --
    (
        "interface org.example.a\nmethod F(a: ??int) -> ()",
        "2:14: \"??\" is not allowed: a nullable type cannot be made nullable again",
    ),
    (
        "interface org.example.a\nmethod F(a: [int]int) -> ()",
        "2:13: expected '[]' or '[string]'",
    ),
    (
        "interface org.example.a\nmethod F(a: [ ]int) -> ()",
        "2:13: expected '[]' or '[string]'",
    ),
    (
        "interface org.example.a\nmethod F(a: [] int) -> ()",
        "2:15: expected a type directly after '[]', found whitespace",
    ),
    (
        "interface org.example.a\nmethod F(a: ? int) -> ()",
        "2:14: expected a type directly after '?', found whitespace",
    ),
    (
        "interface org.example.a\nmethod F(a: Missing) -> ()",
        "2:13: unknown type \"Missing\"",
    ),
    (
        "interface org.example.a\nmethod F() -> (a: []Later)\nmethod G() -> (b: ?Gone)\ntype Later (x: int)",
        "3:20: unknown type \"Gone\"",
    ),
    (
        "interface org.example.a\nmethod F() -> ()\nmethod G(f: F) -> ()",
        "3:13: \"F\" is declared as a method at line 2, not as a type",
    ),
    (
        "interface org.example.a\nerror E ()\ntype T (e: ?E)",
        "3:13: \"E\" is declared as an error at line 2, not as a type",
    ),
    (
        "interface org.example.a\nmethod F(a: int é) -> ()",
        "2:17: unexpected character 'é'",
    ),
    // -- duplicates --
    (
        "interface org.example.a\ntype Foo (a: int)\n\nmethod Foo() -> ()",
        "4:8: duplicate name \"Foo\": method at line 4 conflicts with type declared at line 2 (types, methods and errors share one namespace)",
    ),
    (
        "interface org.example.a\nmethod F() -> ()\nerror E ()\nerror E (a: int)",
        "4:7: duplicate name \"E\": error at line 4 conflicts with error declared at line 3 (types, methods and errors share one namespace)",
    ),
    (
        "interface org.example.a\nmethod F(a: int, b: int, a: string) -> ()",
        "2:26: duplicate field \"a\" (first declared at 2:10)",
    ),
    (
        "interface org.example.a\ntype T (x: (a: int,\n  a: int))",
        "3:3: duplicate field \"a\" (first declared at 2:13)",
    ),
    (
        "interface org.example.a\ntype E (one, two, one)",
        "2:19: duplicate enum value \"one\" (first declared at 2:9)",
    ),
    // -- positions the byte-wise lexer must keep exact --
    (
        // A comment at the end of the input: its characters (not bytes) count.
        "interface org.example.a # 😀 a comment with ünïcödé, longer than sixteen bytes",
        "1:78: expected at least one 'type', 'method' or 'error' declaration, found end of input",
    ),
    (
        "interface org.example.a\n#é",
        "2:3: expected at least one 'type', 'method' or 'error' declaration, found end of input",
    ),
    (
        "interface org.example.a\n# ünïcödé doc 😀\nmethod F(a: int é) -> ()",
        "3:17: unexpected character 'é'",
    ),
    (
        "interface org.example.a\r\nmethod F(a: int,\r\n) -> ()\r\n",
        "3:1: unexpected ')' after ',': trailing commas are not allowed",
    ),
    (
        // CR and tab are one column each.
        "interface org.example.a\r\n# doc\r\r\n\tmethod F(\r\ta: int\t}",
        "3:20: unexpected character '}'",
    ),
    // Errors at the last byte.
    (
        "interface org.example.a\nmethod F() -> (",
        "2:16: expected a field name, found end of input",
    ),
    (
        "interface org.example.a\nmethod F() -> (a: int",
        "2:22: expected ',' or ')' after field \"a\", found end of input",
    ),
    (
        "interface org.example.a\ntype T (a: [",
        "2:12: expected '[]' or '[string]'",
    ),
    (
        "interface org.example.a\nmethod F() -",
        "2:12: expected '->'",
    ),
    (
        "interface org.example.a\nmethod F() -> (a: ?",
        "2:20: expected a type, found end of input",
    ),
    // Names checked eight bytes at a time: `_` on both sides of a window edge, and at the end.
    (
        "interface org.example.a\ntype T (abcdefgh__x: int)",
        "2:9: invalid field name \"abcdefgh__x\": must start with a letter, followed by letters, digits and single inner '_' ([A-Za-z](_?[A-Za-z0-9])*)",
    ),
    (
        "interface org.example.a\ntype T (abcdefg__h: int)",
        "2:9: invalid field name \"abcdefg__h\": must start with a letter, followed by letters, digits and single inner '_' ([A-Za-z](_?[A-Za-z0-9])*)",
    ),
    (
        "interface org.example.a\ntype T (abcdefghijklmn__: int)",
        "2:9: invalid field name \"abcdefghijklmn__\": must start with a letter, followed by letters, digits and single inner '_' ([A-Za-z](_?[A-Za-z0-9])*)",
    ),
    (
        "interface org.example.a\ntype T (a_b_c_d_e_f_g_h_i: int, abcdefghijklmnop__q: int)",
        "2:33: invalid field name \"abcdefghijklmnop__q\": must start with a letter, followed by letters, digits and single inner '_' ([A-Za-z](_?[A-Za-z0-9])*)",
    ),
    (
        "interface org.example.a\ntype Abcdefghij_k (a: int)",
        "2:6: invalid type name \"Abcdefghij_k\": must start with an uppercase letter followed by letters and digits ([A-Z][A-Za-z0-9]*)",
    ),
    (
        "interface org.example.a\ntype T (a: Abcdefghijklmnop_q)",
        "2:12: unknown type \"Abcdefghijklmnop_q\": expected bool, int, float, string, object, any, a type name, '(', '[]', '[string]' or '?'",
    ),
];

/// Duplicates and references in lists and interfaces longer than the parser's linear scan (it
/// switches to a hash index past 16 names): the same messages, with the first declaration.
#[test]
fn long_lists_report_the_same_duplicates_and_references() {
    let fields: String = (0..20).map(|i| format!("f{i}: int, ")).collect();
    let values: String = (0..20).map(|i| format!("v{i}, ")).collect();
    let types: String = (0..20).map(|i| format!("type T{i} (a: int)\n")).collect();
    let cases = [
        (
            format!("interface org.example.a\ntype T ({fields}f2: int)"),
            "2:199: duplicate field \"f2\" (first declared at 2:27)",
        ),
        (
            format!("interface org.example.a\ntype T ({fields}f18: int)"),
            "2:199: duplicate field \"f18\" (first declared at 2:179)",
        ),
        (
            format!("interface org.example.a\ntype T (x: ({values}v19))"),
            "2:103: duplicate enum value \"v19\" (first declared at 2:98)",
        ),
        (
            format!("interface org.example.a\n{types}error T17 ()"),
            "22:7: duplicate name \"T17\": error at line 22 conflicts with type declared at line 19 (types, methods and errors share one namespace)",
        ),
        (
            format!("interface org.example.a\n{types}method M() -> ()\ntype U (m: M, t: T19)"),
            "23:12: \"M\" is declared as a method at line 22, not as a type",
        ),
        (
            format!("interface org.example.a\n{types}type U (t: T19, x: X)"),
            "22:20: unknown type \"X\"",
        ),
    ];
    for (input, expected) in &cases {
        assert_eq!(
            parse(input).unwrap_err().to_string(),
            *expected,
            "{input:?}"
        );
    }
    // Nested lists keep their own names, also past the linear scan.
    let nested =
        format!("interface org.example.a\ntype T ({fields}g: ({fields}f0: int), f20: int)");
    assert_eq!(
        parse(&nested).unwrap_err().to_string(),
        "2:393: duplicate field \"f0\" (first declared at 2:203)"
    );
    let ok = format!("interface org.example.a\ntype T ({fields}g: ({fields}x: int), f20: int)");
    assert!(parse(&ok).is_ok());
}

#[test]
fn invalid_inputs_report_exact_messages() {
    let mut failures = Vec::new();
    for (input, expected) in CASES {
        match parse(input) {
            Ok(_) => failures.push(format!("{input:?}: parsed, expected error {expected:?}")),
            Err(e) if e.to_string() == *expected => {}
            Err(e) => failures.push(format!(
                "{input:?}:\n  expected {expected:?}\n  got      {:?}",
                e.to_string()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_edge_cases() {
    for ok in [
        // Same field name in input and output, and in different structs.
        "interface org.example.a\nmethod F(a: int) -> (a: int)\ntype T (a: (a: int))",
        // Forward and recursive references.
        "interface org.example.a\nmethod F(t: Tree) -> ()\ntype Tree (children: []Tree, label: ?string)",
        // Everything on one line, minimal whitespace, comments between tokens.
        "interface org.example.a method F(a:int)->(b:?[string][]?bool)",
        "interface org.example.a\nmethod F( # c\n a # c\n : # c\n int # c\n ) # c\n -> # c\n () # c",
        // Whitespace around ':' and in the method head.
        "interface org.example.a\nmethod F (a : int) -> ( )",
        // Interface names with dashes, digits and uppercase.
        "interface io.systemd.Example-1\nerror E ()",
        "interface a--b.c\nerror E ()",
        "interface xn--lgbbat1ad8j.example.algeria\nerror E ()",
        // Types of every kind.
        "interface org.example.a\ntype T (a: bool, b: int, c: float, d: string, e: object, f: any, g: (x, y), h: [string](), i: ?[]?T, j: ())",
        // Only types or only errors.
        "interface org.example.a\ntype E (x)",
    ] {
        if let Err(e) = parse(ok) {
            panic!("{ok:?}: {e}");
        }
    }
}
