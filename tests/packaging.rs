//! The Docker image's runtime stage, proven without a Docker engine: the files it copies
//! (`docker/Dockerfile`, stage "run": the binary, the rule packs, the model, the packaged
//! configuration), its user (uid 10001, when the test runs as root) and its working folder
//! (/var/lib/scamscreen) are reproduced under a temporary root, and `run` screens a call
//! there with the packaged configuration's paths (relative to /etc/scamscreen, so they point
//! into the temporary root). Keep the list below in step with the Dockerfile.

mod common;

use common::screening::{callee, speech, CALLER_IP, GREETING_MS, LOOPBACK};
use scamscreen::demo::{self, DemoCaller};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn the_images_runtime_stage_screens_a_call_from_its_own_tree() {
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path();
    let repo = common::root();
    let model = common::model("ggml-tiny.en-q8_0.bin");
    // COPY --from=build … /usr/bin/scamscreen
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_scamscreen"),
        root.join("usr/bin/scamscreen"),
    )
    .unwrap();
    // COPY … /usr/share/scamscreen/rules/ and the model
    copy_dir(
        &repo.join("models/rules"),
        &root.join("usr/share/scamscreen/rules"),
    );
    let models = root.join("usr/share/scamscreen/models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(&model, models.join("ggml-tiny.en-q8_0.bin")).unwrap();
    let meta = model.with_extension("bin.json");
    if meta.exists() {
        std::fs::copy(&meta, models.join("ggml-tiny.en-q8_0.bin.json")).unwrap();
    }
    let packaged = std::fs::read_to_string(repo.join("packaging/scamscreen.toml")).unwrap();
    std::fs::create_dir_all(root.join("etc/scamscreen")).unwrap();
    std::fs::write(root.join("etc/scamscreen/scamscreen.toml"), packaged).unwrap();
    screen_a_call_in(root, &models);
}

/// Set this test's addresses in the tree's configuration (what a user edits), start the
/// tree's binary as the image or the unit would (uid 10001 when root, in
/// /var/lib/scamscreen), and screen a scam call: its record must be in the tree's database.
fn screen_a_call_in(root: &Path, models: &Path) {
    let _cpu = common::cpu_heavy();
    // COPY packaging/scamscreen.toml /etc/scamscreen/scamscreen.toml, with this test's
    // addresses (what a user edits).
    let callee = callee();
    let port = demo::free_sip_port(LOOPBACK).unwrap();
    let rtp = demo::free_rtp_range(LOOPBACK, 8).unwrap();
    let packaged = std::fs::read_to_string(root.join("etc/scamscreen/scamscreen.toml")).unwrap();
    let cfg = packaged
        .replace(
            "upstream = \"127.0.0.1:5080\"",
            &format!("upstream = \"{}\"", callee.addr()),
        )
        .replace("0.0.0.0:5060", &format!("127.0.0.1:{port}"))
        .replace(
            "rtp_ports = \"20000-20999\"",
            &format!("rtp_ports = \"{}-{}\"", rtp.0, rtp.1),
        )
        .replace("listen = \"127.0.0.1:9060\"", "listen = \"off\"");
    assert_ne!(
        cfg, packaged,
        "the packaged configuration changed: update this test"
    );
    std::fs::write(root.join("etc/scamscreen/scamscreen.toml"), cfg).unwrap();
    // useradd --uid 10001 … --home-dir /var/lib/scamscreen; WORKDIR /var/lib/scamscreen.
    let state = root.join("var/lib/scamscreen");
    std::fs::create_dir_all(&state).unwrap();
    let as_root = unsafe { libc::geteuid() } == 0;
    if as_root {
        // As the postinst does: the configuration readable by the service's group only.
        let conf = root.join("etc/scamscreen/scamscreen.toml");
        let c = std::ffi::CString::new(conf.to_str().unwrap()).unwrap();
        // SAFETY: chown on a file we wrote.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 0, 10001) }, 0);
    }
    let mut cmd = if as_root {
        let c = std::ffi::CString::new(state.to_str().unwrap()).unwrap();
        // SAFETY: chown on a path we created.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 10001, 10001) }, 0);
        // The temporary root's parents must be enterable by the unprivileged user.
        let mut p = state.clone();
        while let Some(parent) = p.parent() {
            if parent == Path::new("/") || parent == Path::new("/tmp") {
                break;
            }
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(parent).unwrap().permissions().mode();
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode | 0o755))
                .unwrap();
            p = parent.to_path_buf();
        }
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "10001",
            "--regid",
            "10001",
            "--clear-groups",
            "--",
        ]);
        c.arg(root.join("usr/bin/scamscreen"));
        c
    } else {
        Command::new(root.join("usr/bin/scamscreen"))
    };
    // ENTRYPOINT/CMD of the image, with the temporary root's paths.
    let mut child = cmd
        .args(["run", "--config"])
        .arg(root.join("etc/scamscreen/scamscreen.toml"))
        .arg("--models-dir")
        .arg(models)
        .current_dir(&state)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SCAMSCREEN_LOG", "info,whisper_rs=off")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the binary from the temporary root");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening udp"), "{line:?}");
    let sip = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
    let words = speech(
        "This is Microsoft support. Your computer has a virus. Install TeamViewer so we can fix it.",
    );
    let mut c = DemoCaller::call(sip, CALLER_IP, "packaged", Duration::from_secs(10)).unwrap();
    let call_id = c.call_id().to_string();
    c.silence(GREETING_MS).unwrap();
    c.speak(&words).unwrap();
    c.silence(6000).unwrap();
    c.hang_up().unwrap();
    // The record is in the volume, the prompts were spoken into it.
    let db = state.join("calls.db");
    let deadline = Instant::now() + Duration::from_secs(10);
    let rec = loop {
        let found = scamscreen::store::CallStore::open_existing(&db)
            .and_then(|s| s.get(&call_id))
            .ok()
            .flatten();
        if let Some(r) = found {
            break r;
        }
        assert!(Instant::now() < deadline, "no record in {}", db.display());
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        matches!(rec.action.as_str(), "divert" | "warn"),
        "screened as {}: {}",
        rec.action,
        rec.transcript
    );
    assert!(state.join("prompts/greeting.wav").is_file());
}

/// `make deb` built the package: unpacked with `dpkg -x` into a temporary root, it holds what
/// the issue lists, `check-config` passes with the packaged paths (relative to
/// /etc/scamscreen, so inside the root), and a call is screened from the unpacked tree.
#[test]
fn the_debian_package_unpacks_checks_and_screens_a_call() {
    let debs: Vec<_> = std::fs::read_dir(common::root().join("target/debian"))
        .expect("target/debian: run `make deb` (make test does)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    let deb = debs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("no .deb in target/debian: run `make deb`");
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path();
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(root)
        .status()
        .unwrap();
    assert!(ok.success());
    for f in [
        "usr/bin/scamscreen",
        "etc/scamscreen/scamscreen.toml",
        "usr/share/scamscreen/rules/en.toml",
        "usr/share/scamscreen/rules/de.toml",
        "usr/share/man/man1/scamscreen.1.gz",
        "usr/share/bash-completion/completions/scamscreen",
        "usr/lib/systemd/system/scamscreen.service",
    ] {
        assert!(root.join(f).exists(), "{f} missing from {}", deb.display());
    }
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/scamscreen.service")).unwrap();
    for line in [
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "TimeoutStopSec=60",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(line), "{line} missing from the unit");
    }
    systemd_verify(&root.join("usr/lib/systemd/system/scamscreen.service"));
    // The state folder the postinst makes, and the models the user fetches after install.
    std::fs::create_dir_all(root.join("var/lib/scamscreen")).unwrap();
    let models = common::model("ggml-tiny.en-q8_0.bin")
        .parent()
        .unwrap()
        .to_path_buf();
    let out = Command::new(root.join("usr/bin/scamscreen"))
        .arg("check-config")
        .arg("--config")
        .arg(root.join("etc/scamscreen/scamscreen.toml"))
        .arg("--models-dir")
        .arg(&models)
        .args(["--admin", "off", "--listen", "127.0.0.1:0"])
        .current_dir(root.join("var/lib/scamscreen"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("configuration OK"), "{text}");
    screen_a_call_in(root, &models);
}

/// `systemd-analyze verify` on the unit, where the host has it (not in a container without
/// systemd): no complaint but the one that the binary is not installed on this host. A copy
/// with a misspelt key shows the check can fail.
fn systemd_verify(unit: &Path) {
    let verify = |unit: &Path| -> Option<Vec<String>> {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(unit)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        Some(
            text.lines()
                .filter(|l| !l.contains("/usr/bin/scamscreen is not executable"))
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect(),
        )
    };
    let Some(complaints) = verify(unit) else {
        eprintln!("systemd-analyze not found: the unit is not verified");
        return;
    };
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify: {complaints:#?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("scamscreen.service");
    let text = std::fs::read_to_string(unit).unwrap();
    std::fs::write(&bad, text.replace("ProtectSystem=", "ProtectSystm=")).unwrap();
    let complaints = verify(&bad).unwrap();
    assert!(
        complaints.iter().any(|l| l.contains("ProtectSystm")),
        "{complaints:?}"
    );
}
