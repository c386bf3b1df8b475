//! The crate's modules form layers: each imports only from the layers below it, so there is no
//! import circle (the backends speak the core's types, never the `network` facade's, and the
//! facade sits above the backends it drives).
//!
//! This reads `src/` and fails on any `crate::<module>` path that points up or sideways.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom to top. A module may name the ones before it, never the ones after it.
const LAYERS: &[&str] = &[
    "adapters",
    "core",
    "util",
    "events",
    "adapter",
    "protocols",
    "backend",
    "network",
    "node",
    "sim",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/backend/native/ws.rs` → `backend`).
fn module_of(src: &Path, file: &Path) -> String {
    let first = file.strip_prefix(src).unwrap().components().next().unwrap();
    first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// Every `crate::<name>` in `text`, outside `//` comments (doc links may point anywhere).
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String =
                rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            names.insert(name);
        }
    }
    names
}

#[test]
fn modules_import_only_from_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let rank = |module: &str| LAYERS.iter().position(|m| *m == module);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(own) = rank(&module) else { continue };
        checked += 1;
        let text = fs::read_to_string(file).unwrap();
        for name in crate_paths(&text) {
            match rank(&name) {
                Some(other) if other >= own && name != module => wrong.push(format!(
                    "{}: `crate::{name}` ({name} is not below {module})",
                    file.strip_prefix(&src).unwrap().display()
                )),
                None => wrong.push(format!(
                    "{}: `crate::{name}` is in no layer: add it to LAYERS in tests/layering.rs",
                    file.strip_prefix(&src).unwrap().display()
                )),
                _ => (),
            }
        }
    }
    // Every layer's files were found (a renamed folder must not make this pass vacuously).
    assert!(checked > 30, "only {checked} files of src/ found in the layers");
    for layer in LAYERS {
        assert!(
            files.iter().any(|f| module_of(&src, f) == *layer),
            "no file of src/ belongs to the layer {layer}"
        );
    }
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
}

#[test]
fn the_scan_sees_paths_and_skips_comments() {
    let found =
        crate_paths("use crate::core::Endpoint; // crate::sim\nlet x = crate::node::split();");
    assert_eq!(found, BTreeSet::from(["core".to_owned(), "node".to_owned()]));
}
