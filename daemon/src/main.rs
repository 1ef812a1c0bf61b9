//! `soong-daemon`: see the library's [`soong_daemon::cli`].

fn main() -> std::process::ExitCode {
    soong_daemon::cli::main()
}
