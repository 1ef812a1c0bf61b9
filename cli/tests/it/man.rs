//! The man pages under `cli/man/` are `soong man --dir`'s output: a drift
//! test that says how to regenerate them.

use crate::common::{TestContext, render};

#[test]
fn the_checked_in_man_pages_match_the_command_line() {
    let context = TestContext::new(None);
    let fresh = context.dir.path().join("man");
    let output = context.run(&["man", "--dir", fresh.to_str().unwrap()]);
    assert!(output.status.success(), "{}", render(&output));
    let checked_in = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let fix =
        "run `cargo run -p soong -- man --dir cli/man` (and delete pages of removed commands)";
    assert_eq!(names(&fresh), names(&checked_in), "{fix}");
    for name in names(&fresh) {
        assert_eq!(
            std::fs::read_to_string(fresh.join(&name)).unwrap(),
            std::fs::read_to_string(checked_in.join(&name)).unwrap(),
            "`cli/man/{name}` is stale: {fix}"
        );
    }
    let output = context.run(&["man"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        std::fs::read_to_string(checked_in.join("soong.1")).unwrap()
    );
}

#[test]
fn completions_cover_the_new_commands() {
    let context = TestContext::new(None);
    for shell in ["bash", "zsh", "fish"] {
        let output = context.run(&["completions", shell]);
        assert!(output.status.success(), "{}", render(&output));
        let text = String::from_utf8_lossy(&output.stdout);
        for command in ["ssh", "tunnel", "dashboard", "history", "worker", "man"] {
            assert!(text.contains(command), "{shell}: no `{command}`");
        }
    }
}
