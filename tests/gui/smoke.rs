//! The real binary under Xvfb with the software Vulkan driver, started the ways the README
//! documents: bare (as `cargo run --release` starts it), with stored settings, with the
//! README's `gui` commands, and with `--screenshot`. Each must keep a window up that paints
//! the app, not a blank screen. The screen is read from Xvfb's own framebuffer file
//! (`-fbdir`), so no screenshot tool is needed. Skips with a message when Xvfb is not
//! installed (.ci/run installs it).

use crate::common;

use std::collections::HashSet;
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

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where the pixels of an XWD file lie.
struct XwdLayout {
    pixels_at: usize,
    line: usize,
    height: usize,
}

/// The layout of an XWD screen file, once Xvfb has written its header (32-bit pixels).
fn xwd_layout(bytes: &[u8]) -> Option<XwdLayout> {
    let field = |i: usize| bytes.get(4 * i..4 * i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let (header, bits, line, height, ncolours) = (field(0)?, field(11)?, field(12)?, field(5)?, field(19)?);
    (bits == 32 && header > 0).then_some(XwdLayout { pixels_at: header + 12 * ncolours, line, height })
}

fn xwd_header(fb: &Path) -> Option<XwdLayout> {
    xwd_layout(&std::fs::read(fb).ok()?)
}

/// An X server of our own with its screen in a file, and a fresh empty home.
struct Display {
    number: u32,
    fb: PathBuf,
    home: tempfile::TempDir,
    _server: Killer,
}

impl Display {
    /// None (with a message) when Xvfb is not installed.
    fn start() -> Option<Self> {
        let Some(xvfb) = which("Xvfb") else {
            eprintln!("SKIPPED: Xvfb is not installed (apt-get install xvfb mesa-vulkan-drivers)");
            return None;
        };
        let home = tempfile::tempdir().unwrap();
        let fbdir = home.path().join("fb");
        std::fs::create_dir(&fbdir).unwrap();
        // Tests run in parallel: each takes the first display whose lock it wins.
        for number in (90 + std::process::id() % 200)..400 {
            if Path::new(&format!("/tmp/.X11-unix/X{number}")).exists()
                || Path::new(&format!("/tmp/.X{number}-lock")).exists()
            {
                continue;
            }
            // -noreset: by default the server resets when its last client leaves, rewriting the
            // framebuffer file (header included) just as the next test command reads it.
            let server = Command::new(&xvfb)
                .arg(format!(":{number}"))
                .args(["-screen", "0", "1400x900x24", "-nolisten", "tcp", "-noreset", "-fbdir"])
                .arg(&fbdir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xvfb starts");
            let mut server = Killer(server);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                // Xvfb creates its framebuffer file, fills it with zeros and only then writes the
                // XWD header: the screen is ready when the header is.
                let fb = fbdir.join("Xvfb_screen0");
                if Path::new(&format!("/tmp/.X11-unix/X{number}")).exists() && xwd_header(&fb).is_some() {
                    let runtime = home.path().join("run");
                    std::fs::create_dir(&runtime).unwrap();
                    // XDG_RUNTIME_DIR must be private to its user.
                    std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
                    return Some(Self { number, fb, home, _server: server });
                }
                if server.0.try_wait().ok().flatten().is_some() {
                    break; // lost the race for this display number
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("no free X display");
    }

    /// The binary with `args`, on this display, with only this test's home to read and write.
    fn launch(&self, args: &[&str]) -> Killer {
        let home = self.home.path();
        let child = Command::new(env!("CARGO_BIN_EXE_fragility-explorer"))
            .args(args)
            .env("DISPLAY", format!(":{}", self.number))
            .env("WGPU_BACKEND", "vulkan")
            .env("HOME", home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("stderr.log")).unwrap())
            .spawn()
            .expect("the app starts");
        Killer(child)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.home.path().join("stderr.log")).unwrap_or_default()
    }

    /// The screen's distinct colours, read from Xvfb's XWD framebuffer file.
    fn colours(&self) -> usize {
        let Ok(bytes) = std::fs::read(&self.fb) else { return 0 };
        let XwdLayout { pixels_at, line, height } =
            xwd_layout(&bytes).expect("Xvfb's screen is 24-bit in 32-bit pixels, under a whole XWD header");
        let pixels = bytes.get(pixels_at..pixels_at + line * height).unwrap_or(&[]);
        pixels.chunks_exact(4).map(|p| [p[0], p[1], p[2]]).collect::<HashSet<_>>().len()
    }

    /// Waits until the app paints a picture (the bare X screen has one colour), then checks
    /// that it keeps its window up for a few seconds more.
    fn expect_window_stays_up(&self, app: &mut Killer, what: &str) {
        let start = Instant::now();
        loop {
            if let Some(status) = app.0.try_wait().ok().flatten() {
                panic!("{what} exited ({status}) instead of showing a window:\n{}", self.stderr());
            }
            let colours = self.colours();
            if colours > 200 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(240),
                "{what}: the screen stayed blank ({colours} colours):\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        std::thread::sleep(Duration::from_secs(3));
        if let Some(status) = app.0.try_wait().ok().flatten() {
            panic!("{what} exited ({status}) after painting:\n{}", self.stderr());
        }
        assert!(self.colours() > 200, "{what}: the picture went blank:\n{}", self.stderr());
    }
}

/// The README's first command, `cargo run --release`, starts the binary with no arguments.
#[test]
fn the_bare_binary_opens_the_explorer_on_a_fresh_account() {
    let Some(display) = Display::start() else { return };
    let mut app = display.launch(&[]);
    display.expect_window_stays_up(&mut app, "the bare binary, fresh home");
}

/// Stored settings (the app's settings file, as it writes it on exit) are taken up at a bare
/// start: here they name a remembered model and dataset and the curves view.
#[test]
fn the_bare_binary_opens_with_stored_settings() {
    let Some(display) = Display::start() else { return };
    let fixtures = common::fixtures().join("analysis");
    let settings = serde_json::json!({
        "model": fixtures.join("tiny_cnn.safetensors"),
        "data": fixtures,
        "layout": {"tab": "curves"},
    });
    let dir = display.home.path().join(".local/share/fragility-explorer");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("settings.json"), settings.to_string()).unwrap();
    let mut app = display.launch(&[]);
    display.expect_window_stays_up(&mut app, "the bare binary with stored settings");
}

/// The commands of the README's "Desktop app" block, run as written (the placeholders replaced
/// by fixtures): each keeps its window up.
#[test]
fn the_readme_gui_commands_open_the_explorer() {
    let Some(display) = Display::start() else { return };
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let block = common::readme::code_block_after(&readme, "## Desktop app");
    let commands = common::readme::commands(&block);
    assert!(commands.len() >= 3, "the Desktop app block lists the bare start and two gui commands: {commands:?}");
    let run = tempfile::tempdir().unwrap();
    let fixtures = common::fixtures().join("analysis");
    for (i, epoch) in ["001", "002"].iter().enumerate() {
        // A training run: checkpoints with their cards, as `train` writes them.
        let stem = run.path().join(format!("checkpoint-epoch-{epoch}"));
        std::fs::copy(fixtures.join("tiny_cnn.safetensors"), stem.with_extension("safetensors")).unwrap();
        let card = std::fs::read_to_string(fixtures.join("tiny_cnn.json")).unwrap();
        let card = card.trim_end().trim_end_matches('}').to_string()
            + &format!(",\"training\":{{\"epoch\":{},\"seed\":0}}}}", i + 1);
        std::fs::write(stem.with_extension("json"), card).unwrap();
    }
    let places = common::readme::Places {
        model: fixtures.join("tiny_cnn.safetensors"),
        card: fixtures.join("tiny_cnn.json"),
        training_card: fixtures.join("tiny_cnn.json"),
        data: fixtures.clone(),
        dir: run.path().to_path_buf(),
        study: run.path().join("study.toml"),
    };
    for command in &commands {
        let args = common::readme::fill(&command.words, &places);
        let Some(args) = args.strip_prefix(&["fragility-explorer".to_string()]).map(<[String]>::to_vec).or_else(|| {
            // `cargo run --release` is the bare binary.
            (command.words == ["cargo", "run", "--release"]).then(Vec::new)
        }) else {
            panic!("the Desktop app block has a command this test does not know: {command:?}")
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut app = display.launch(&args);
        display.expect_window_stays_up(&mut app, &format!("`{}`", command.text));
        drop(app);
        // The next command starts on a blank screen.
        wait_for("the window to go", Duration::from_secs(30), || display.colours() <= 2);
    }
}

/// `--screenshot` (how the README's screenshots are made): the app shows itself, writes the
/// picture once idle, and quits; the picture shows the panels and the coloured heatmap.
#[test]
fn the_binary_takes_its_own_screenshot() {
    let Some(display) = Display::start() else { return };
    let shot = display.home.path().join("screenshot.png");
    let mut app = display.launch(&["gui", "--fresh", "--size", "1200x760", "--screenshot", shot.to_str().unwrap()]);
    let mut status = None;
    wait_for("the app to take its screenshot and quit", Duration::from_secs(300), || {
        status = app.0.try_wait().ok().flatten();
        status.is_some()
    });
    assert!(status.is_some_and(|s| s.success()), "the app failed: {status:?}\n{}", display.stderr());

    let img = image::open(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", display.stderr())).to_rgb8();
    assert!(img.width() >= 1000 && img.height() >= 600, "{}x{}", img.width(), img.height());
    let mut colours = HashSet::new();
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
