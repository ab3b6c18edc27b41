//! Generates the certification interface for the program, and the code of a corpus of real
//! interfaces (org.varlink.service, systemd's, the generator's golden example) that only the
//! tests include (`tests/generated_corpus.rs`): a cargo package cannot have a build script
//! for its tests alone, and this crate is the workspace's consumer of localrpc-build.

use std::path::{Path, PathBuf};

use localrpc_build::{Config, Streaming};

fn main() {
    let out_dir =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    Config::new()
        // The IDL says it in prose ("returns more than one reply"), not with systemd's marker.
        .streaming("org.varlink.certification.Test10", Streaming::Requires)
        .compile(&["src/org.varlink.certification.varlink"], &out_dir)
        .unwrap_or_else(|e| panic!("{e}"));

    let corpus_dir = out_dir.join("corpus");
    std::fs::create_dir_all(&corpus_dir).expect("create OUT_DIR/corpus");
    let systemd = Path::new("../localrpc-idl/tests/data/systemd");
    println!("cargo:rerun-if-changed={}", systemd.display());
    let mut files = vec![
        PathBuf::from("../localrpc/src/service/org.varlink.service.varlink"),
        PathBuf::from("../localrpc-build/tests/data/org.example.golden.varlink"),
    ];
    let mut systemd_files: Vec<PathBuf> = std::fs::read_dir(systemd)
        .expect("read the systemd interface corpus")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "varlink"))
        .collect();
    systemd_files.sort();
    files.extend(systemd_files);
    Config::new()
        .compile(&files, &corpus_dir)
        .unwrap_or_else(|e| panic!("{e}"));
}
