//! The systemd unit shipped in `contrib/systemd/` is one systemd accepts:
//! `systemd-analyze verify` finds no unknown key, no bad value and an
//! executable `ExecStart`, and the sandboxing the install page promises
//! is in it. Where systemd-analyze is not installed the check is skipped
//! with a printed reason (a Windows or non-systemd build machine).

use std::path::Path;
use std::process::Command;

const UNIT: &str = "multiserver-upload.service";
/// Where the shipped unit expects the binary (docs/install-linux.md).
const INSTALLED_BIN: &str = "/usr/local/bin/multiserver-upload";

fn shipped_unit() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib/systemd")
            .join(UNIT),
    )
    .expect("contrib/systemd/multiserver-upload.service")
}

/// `systemd-analyze verify` on `unit`, written into a folder of its own;
/// `None` when systemd-analyze is not there. The complaints are the lines
/// naming the unit: the tool also reports on units of the machine.
fn verify(unit: &str) -> Option<(bool, String)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(UNIT);
    std::fs::write(&path, unit).expect("write unit");
    let output = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("systemd-analyze: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("multiserver-upload"))
        .collect();
    Some((
        output.status.success() && complaints.is_empty(),
        complaints.join("\n"),
    ))
}

/// The shipped unit with `ExecStart` pointing at the binary under test:
/// verify checks that the program exists and is executable.
fn with_test_binary(unit: &str) -> String {
    assert!(
        unit.contains(INSTALLED_BIN),
        "ExecStart is not {INSTALLED_BIN}"
    );
    unit.replace(INSTALLED_BIN, env!("CARGO_BIN_EXE_multiserver-upload"))
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let unit = with_test_binary(&shipped_unit());
    let Some((ok, complaints)) = verify(&unit) else {
        eprintln!("skipped: systemd-analyze is not installed here");
        return;
    };
    assert!(ok, "systemd-analyze verify refused the unit:\n{complaints}");

    // The check itself bites: a misspelt key and a missing program are
    // both refused, so a pass above is not the tool saying nothing.
    let misspelt = unit.replace("ProtectSystem=strict", "ProtectSystm=strict");
    let (ok, complaints) = verify(&misspelt).expect("systemd-analyze");
    assert!(!ok && complaints.contains("ProtectSystm"), "{complaints}");
    let missing = shipped_unit().replace(INSTALLED_BIN, "/nonexistent/multiserver-upload");
    let (ok, complaints) = verify(&missing).expect("systemd-analyze");
    assert!(!ok && complaints.contains("/nonexistent"), "{complaints}");
}

#[test]
fn the_shipped_unit_runs_sandboxed_as_its_own_user() {
    let unit = shipped_unit();
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let value = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{key} is not set"))
    };
    assert_eq!(value("User"), "multiserver-upload");
    assert_eq!(value("ProtectSystem"), "strict");
    assert_eq!(value("NoNewPrivileges"), "yes");
    assert_eq!(value("PrivateTmp"), "yes");
    assert_eq!(value("Restart"), "on-failure");
    // A bad setting exits 2 (tests/config.rs): restarting cannot mend it.
    assert_eq!(value("RestartPreventExitStatus"), "2");
    assert!(value("LimitNOFILE").parse::<u64>().expect("a number") >= 4096 + 256);
    let writable: Vec<&str> = value("ReadWritePaths").split_whitespace().collect();
    assert_eq!(
        writable,
        ["/var/lib/multiserver-upload", "/var/log/multiserver-upload"]
    );
    assert!(
        value("ExecStart").ends_with("serve --config /etc/multiserver-upload/app.toml"),
        "{}",
        value("ExecStart")
    );
}
