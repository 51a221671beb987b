//! The workspace's shape, checked: no source file over 500 lines (a file that grows past it holds
//! more than one behaviour: split it), and no import cycle between the top-level modules of a
//! crate (`crate::a` using `crate::b` while `crate::b` uses `crate::a`), so each module can be read
//! on its own. Tests (`#[cfg(test)]` modules, `tests/`, `benches/`) are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;
const CRATES: &[&str] = &[
    "api",
    "common",
    "config-service",
    "orchestrator",
    "agent-runner",
    "cli",
    "console",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable source folder") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its test module and comments.
fn code(text: &str) -> String {
    let before_tests = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    before_tests
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_source_file_is_longer_than_500_lines() {
    let mut long = Vec::new();
    for krate in CRATES {
        let mut files = Vec::new();
        sources(&workspace().join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "{krate} has sources");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let lines = text.lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", f.display()));
            }
        }
    }
    assert!(long.is_empty(), "split these files: {long:?}");
}

#[test]
fn no_import_cycle_between_modules() {
    for krate in CRATES {
        let src = workspace().join(krate).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        // Top-level module -> the top-level modules it uses.
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in files {
            let rel = f.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = code(&std::fs::read_to_string(&f).unwrap());
            for (i, _) in text.match_indices("crate::") {
                let name: String = text[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    uses.entry(top.clone()).or_default().insert(name);
                }
            }
        }
        // A cycle is a module reachable from itself.
        for start in uses.keys() {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
            while let Some((m, path)) = todo.pop() {
                for next in uses.get(&m).into_iter().flatten() {
                    assert!(
                        next != start,
                        "{krate}: import cycle {} -> {start}",
                        path.join(" -> ")
                    );
                    if seen.insert(next.clone()) {
                        let mut p = path.clone();
                        p.push(next.clone());
                        todo.push((next.clone(), p));
                    }
                }
            }
        }
    }
}
