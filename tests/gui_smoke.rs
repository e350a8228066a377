//! The real binary under Xvfb with the software Vulkan driver: it opens its window on the
//! embedded model, takes a screenshot of itself once idle, and quits; the screenshot must
//! show the app (panels and the coloured heatmap), not a blank window.
//! Skips with a message when Xvfb is not installed (.ci/run installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the process it holds when dropped, so a failing test leaves no Xvfb behind.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}

/// A display number whose socket and lock file are both free.
fn free_display() -> u32 {
    (90..400)
        .find(|n| {
            !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        })
        .expect("a free X display number")
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_binary_shows_the_app_under_xvfb() {
    let Some(xvfb) = which("Xvfb") else {
        eprintln!("SKIPPED: Xvfb is not installed (apt-get install xvfb mesa-vulkan-drivers)");
        return;
    };
    let display = free_display();
    let server = Command::new(xvfb)
        .args([format!(":{display}").as_str(), "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb starts");
    let _server = Killer(server);
    wait_for("Xvfb's socket", Duration::from_secs(20), || Path::new(&format!("/tmp/.X11-unix/X{display}")).exists());

    let home = tempfile::tempdir().unwrap();
    let runtime = home.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    // XDG_RUNTIME_DIR must be private to its user.
    std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let shot = home.path().join("screenshot.png");
    let app = Command::new(env!("CARGO_BIN_EXE_fragility-explorer"))
        .args(["gui", "--fresh", "--size", "1200x760", "--screenshot"])
        .arg(&shot)
        .env("DISPLAY", format!(":{display}"))
        .env("WGPU_BACKEND", "vulkan")
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the app starts");
    let mut app = Killer(app);
    let mut status = None;
    wait_for("the app to take its screenshot and quit", Duration::from_secs(300), || {
        status = app.0.try_wait().ok().flatten();
        status.is_some()
    });
    let mut stderr = String::new();
    if let Some(mut e) = app.0.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).ok();
    }
    assert!(status.is_some_and(|s| s.success()), "the app failed: {status:?}\n{stderr}");

    let img = image::open(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {stderr}")).to_rgb8();
    assert!(img.width() >= 1000 && img.height() >= 600, "{}x{}", img.width(), img.height());
    let mut colours = std::collections::HashSet::new();
    let (mut red, mut blue) = (0, 0);
    for p in img.pixels() {
        colours.insert(p.0);
        let [r, g, b] = p.0.map(i32::from);
        // The heatmap's diverging colormap: saturated reds and blues.
        red += (r > 150 && r - g > 60 && r - b > 60) as usize;
        blue += (b > 120 && b - r > 60) as usize;
    }
    assert!(colours.len() > 200, "the screenshot looks blank: {} colours", colours.len());
    assert!(red > 200 && blue > 200, "no heatmap in the screenshot (red {red}, blue {blue} pixels)");
}
