//! The system-level part of the suite: unit files (`systemd-analyze verify`
//! and `security`), man pages against `--help` and the config, the Debian
//! package (lintian, install, purge), the RPM spec, and the end-to-end test
//! under a real systemd in a throwaway container.
//!
//! It needs root, Debian's packages and a few minutes, so it runs only with
//! `CI=true` (as `.ci/run` does) and skips with a printed reason otherwise.
//! It is its own test binary so that cargo runs it after the daemon tests,
//! not beside them: the container's timing checks want a quiet machine.

use std::path::Path;
use std::process::Command;

#[test]
fn units_man_pages_packages_and_real_systemd_end_to_end() {
    if std::env::var("CI").as_deref() != Ok("true") {
        eprintln!(
            "skipped: the systemd/packaging checks run with CI=true as root \
             (bash .ci/systemd-and-packaging.sh)"
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/systemd-and-packaging.sh");
    // Inherited stdout/stderr: the script's report goes straight to the log.
    let status = Command::new("bash")
        .arg(&script)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running .ci/systemd-and-packaging.sh");
    assert!(status.success(), "{} failed: {status}", script.display());
}
