//! Figure export: every figure kind renders to PNG (2x) and SVG with its data and config, the
//! `figure` command renders saved results, and failed writes leave existing files alone.

use crate::common::synthetic;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use fragility_explorer::engine::analysis::filter::FilterKind;
use fragility_explorer::engine::analysis::scores::Class;
use fragility_explorer::export::figures::builders::{self, Built, PerturbationSample, Score, View, WeightView};
use fragility_explorer::export::figures::{Figure, PNG_SCALE, export};
use fragility_explorer::render::colormap::Colormap;
use fragility_explorer::render::palette;
use serde_json::json;

/// Every kind of figure, built from synthetic results.
fn every_figure() -> Vec<(&'static str, Built)> {
    let sweep = synthetic::sweep();
    let landscape = synthetic::landscape();
    let dropout = synthetic::dropout();
    let trajectory = synthetic::trajectory();
    let conv: Vec<f32> = (0..32 * 9).map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.4).collect();
    let removed: Vec<bool> = conv.iter().map(|&w| w <= -0.1).collect();
    let classes: Vec<Class> =
        (0..conv.len()).map(|i| [Class::Fragile, Class::Robust, Class::Antifragile][i % 3]).collect();
    let weights = |classes| WeightView {
        layer: "features.0",
        values: &conv,
        shape: &[32, 1, 3, 3],
        range: [-0.4, 0.4],
        colormap: Colormap::Diverging,
        removed: Some(&removed),
        removed_label: "Removed by h1 at a = -0.1",
        classes,
    };
    let ok = |r: anyhow::Result<Built>| r.unwrap_or_else(|e| panic!("{e:#}"));
    vec![
        ("curves", ok(builders::sweep_curves(&sweep, "features.0", FilterKind::H1, Some(0.05)))),
        ("compression", ok(builders::compression(&sweep, "classifier.2"))),
        ("scores", ok(builders::layer_scores(&sweep, None))),
        ("eps", builders::accuracy_vs_eps(&[(0.1, 0.98, 0.9), (0.0, 0.98, 0.98), (0.3, 0.98, 0.62)])),
        ("dropout", builders::dropout_accuracy(&dropout)),
        ("targeting", builders::dropout_targeting(&dropout)),
        (
            "landscape-accuracy",
            ok(builders::landscape_accuracy(&landscape, "features.0", FilterKind::H2, View::Adversarial)),
        ),
        ("landscape-classes", ok(builders::landscape_classes(&landscape, "features.0", FilterKind::H3, View::Clean))),
        ("landscape-influential", ok(builders::landscape_influential(&landscape, "features.0", View::Adversarial))),
        ("trajectory-scores", ok(builders::trajectory_scores(&trajectory, Score::Adv, None))),
        ("trajectory-scores-h3", ok(builders::trajectory_scores(&trajectory, Score::Diff, Some(FilterKind::H3)))),
        ("trajectory-kernels", ok(builders::trajectory_kernels(&trajectory))),
        ("trajectory-targeting", ok(builders::trajectory_targeting(&trajectory))),
        ("training", builders::training_curves(&synthetic::train())),
        ("selective", builders::selective_curves(&synthetic::selective())),
        ("weights", ok(builders::weight_heatmap(&weights(None)))),
        ("weight-classes", ok(builders::weight_heatmap(&weights(Some(&classes))))),
        ("perturbations", ok(builders::perturbation_grid("FGSM, eps 0.3", &samples(5), &[]))),
    ]
}

/// `n` 6x6 grey samples; odd ones have their prediction flipped.
fn samples(n: usize) -> Vec<PerturbationSample> {
    (0..n)
        .map(|k| {
            let clean: Vec<f32> = (0..36).map(|i| ((i + k) % 6) as f32 / 5.0).collect();
            let perturbation: Vec<f32> = (0..36).map(|i| if (i + k) % 2 == 0 { 0.1 } else { -0.1 }).collect();
            let adversarial = clean.iter().zip(&perturbation).map(|(c, p)| c + p).collect();
            PerturbationSample {
                channels: 1,
                height: 6,
                width: 6,
                clean,
                perturbation,
                adversarial,
                label: 3,
                clean_pred: 3,
                clean_conf: 0.99,
                adv_pred: if k % 2 == 1 { 5 } else { 3 },
                adv_conf: 0.7,
            }
        })
        .collect()
}

/// Texts the SVG must show: title, axis labels, legend entries, category names or captions.
fn expected_texts(f: &Figure) -> Vec<String> {
    let mut t = vec![f.title().to_string()];
    match f {
        Figure::Line(p) => {
            t.extend([p.x_label.clone(), p.y_label.clone()]);
            t.extend(p.series.iter().chain(p.y2.iter().flat_map(|y| &y.1)).map(|s| s.name.clone()));
            t.extend(p.y2.iter().map(|y| y.0.clone()));
        }
        Figure::Bar(p) => {
            t.extend([p.x_label.clone(), p.y_label.clone()]);
            t.extend(p.series.iter().map(|s| s.0.clone()));
            t.extend(p.legend_extra.iter().map(|e| e.0.clone()));
            t.extend(p.categories.first().cloned());
        }
        Figure::Heatmap(h) => {
            t.extend([h.x_label.clone(), h.y_label.clone()]);
            match &h.categories {
                Some(c) => t.extend(c.iter().map(|c| c.0.clone())),
                None => t.push(h.colorbar_label.clone()),
            }
            if h.shaded.iter().any(|s| *s) {
                t.push(h.shaded_label.clone());
            }
        }
        Figure::Grid(g) => t.extend(g.images.iter().flat_map(|i| i.caption.lines().map(str::to_string))),
    }
    t.retain(|s| !s.is_empty());
    t
}

/// As plotters' SVG backend writes text.
fn svg_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn read_png(path: &Path) -> image::RgbImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

fn distinct_colours(img: &image::RgbImage) -> usize {
    img.pixels().map(|p| p.0).collect::<HashSet<_>>().len()
}

#[test]
fn every_figure_kind_exports_png_svg_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    for (stem, (figure, table)) in every_figure() {
        let header = table_header(&figure, stem);
        let config = json!({"figure": stem, "seed": 7});
        let paths = export(&figure, table, &config, dir.path(), stem).unwrap_or_else(|e| panic!("{stem}: {e:#}"));
        let names: Vec<String> = paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["png", "svg", "csv", "json"].map(|e| format!("{stem}.{e}")), "{stem}");

        let (w, h) = figure.logical_size();
        let png = read_png(&paths[0]);
        assert_eq!(png.dimensions(), (w * PNG_SCALE, h * PNG_SCALE), "{stem}: PNG size");
        assert!(distinct_colours(&png) >= 8, "{stem}: the PNG looks blank ({} colours)", distinct_colours(&png));

        let svg = std::fs::read_to_string(&paths[1]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains(&format!("width=\"{w}\"")), "{stem}: SVG header");
        for text in expected_texts(&figure) {
            assert!(svg.contains(&svg_escape(&text)), "{stem}: the SVG lacks `{text}`");
        }
        assert!(!svg.contains('\u{E000}'), "{stem}: an image placeholder was left in the SVG");

        let csv = std::fs::read_to_string(&paths[2]).unwrap();
        assert_eq!(csv.lines().next(), Some(header.as_str()), "{stem}: CSV header");
        assert!(csv.lines().count() > 1, "{stem}: the CSV has no data");
        let sidecar: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&paths[3]).unwrap()).unwrap();
        assert_eq!(sidecar, config, "{stem}: JSON sidecar");
    }
}

/// The CSV header each figure's table must have.
fn table_header(_figure: &Figure, stem: &str) -> String {
    let epochs = "arm,epoch,train_loss,train_accuracy,test_clean_accuracy,test_adv_accuracy,frozen_fraction";
    match stem {
        "curves" => "step,alpha,removed,rho,clean_accuracy,adv_accuracy,class_clean,class_adv",
        "compression" => "filter,step,alpha,rho,clean_normalised,adv_normalised",
        "scores" => "layer,s_clean,s_adv,s_diff,records,class",
        "eps" => "eps,clean_accuracy,adv_accuracy",
        "dropout" | "targeting" => "kernel,correct,accuracy,fragile,null,d",
        "landscape-accuracy" => "epoch,step,adv_accuracy",
        "landscape-classes" => "epoch,step,class_index",
        "landscape-influential" => "epoch,step,influential",
        "trajectory-scores" => "epoch,layer,filter,S_adv",
        "trajectory-scores-h3" => "epoch,layer,filter,S_diff",
        "trajectory-kernels" => "epoch,kernel,fragile,null,consistently_fragile",
        "trajectory-targeting" => "epoch,d_fragile,d_other,targeted,fragile_fraction,null_fraction",
        "training" | "selective" => epochs,
        "weights" | "weight-classes" => "index,position,value,removed,class",
        "perturbations" => "sample,label,clean_pred,clean_conf,adv_pred,adv_conf,flipped,max_abs_perturbation",
        other => panic!("no header known for {other}"),
    }
    .to_string()
}

#[test]
fn the_figures_use_the_apps_colours() {
    let figures = every_figure();
    let get = |name: &str| &figures.iter().find(|(n, _)| *n == name).unwrap().1.0;
    let has = |f: &Figure, c: [u8; 3]| read_png_of(f).pixels().any(|p| p.0 == c);
    // Series in the palette, classes in the app's class colours, flips framed.
    assert!(has(get("curves"), palette::series(palette::CLEAN)));
    assert!(has(get("curves"), palette::series(palette::ADVERSARIAL)));
    for c in Class::ALL {
        assert!(has(get("landscape-classes"), palette::class(c)), "class colour of {}", c.name());
    }
    assert!(has(get("perturbations"), palette::HIGHLIGHT), "flipped predictions are framed");
    let unflipped: Vec<PerturbationSample> = samples(3).into_iter().step_by(2).collect();
    let (grid, _) = builders::perturbation_grid("No flips", &unflipped, &[]).unwrap();
    assert!(!has(&grid, palette::HIGHLIGHT), "nothing framed without flips");
}

fn read_png_of(f: &Figure) -> image::RgbImage {
    let bytes = fragility_explorer::export::figures::render_png(f).unwrap();
    image::load_from_memory(&bytes).unwrap().to_rgb8()
}

#[test]
fn large_heatmaps_embed_an_image_in_the_svg() {
    let (rows, cols) = (64, 800);
    let values: Vec<f32> = (0..rows * cols).map(|i| (i % 97) as f32 / 97.0 - 0.5).collect();
    let view = WeightView {
        layer: "classifier.0",
        values: &values,
        shape: &[rows, cols],
        range: [-0.5, 0.5],
        colormap: Colormap::Viridis,
        removed: None,
        removed_label: "",
        classes: None,
    };
    let (figure, _) = builders::weight_heatmap(&view).unwrap();
    let svg = fragility_explorer::export::figures::render_svg(&figure).unwrap();
    assert!(svg.contains("<image") && svg.contains("href=\"data:image/png;base64,"));
    assert!(svg.len() < 2_000_000, "SVG of {} bytes", svg.len());
    assert!(svg.contains("classifier.0 weights (64 × 800)"));
    // A small map stays vector: one rectangle per cell.
    let (small, _) =
        builders::landscape_accuracy(&synthetic::landscape(), "features.0", FilterKind::H1, View::Clean).unwrap();
    let svg = fragility_explorer::export::figures::render_svg(&small).unwrap();
    assert!(svg.matches("<rect").count() >= 4 * synthetic::STEPS);
}

#[test]
fn builders_name_what_is_missing() {
    let sweep = synthetic::sweep();
    let e = builders::sweep_curves(&sweep, "features.9", FilterKind::H1, None).unwrap_err().to_string();
    assert!(e.contains("`features.9`") && e.contains("features.0 (h0, h1, h2, h3)"), "{e}");
    let e = builders::landscape_accuracy(&synthetic::landscape(), "features.0", FilterKind::H0, View::Clean)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no h0 map") && e.contains("features.0 h1"), "{e}");
    let bad = WeightView {
        layer: "x",
        values: &[1.0, 2.0],
        shape: &[3],
        range: [0.0, 1.0],
        colormap: Colormap::Grey,
        removed: None,
        removed_label: "",
        classes: None,
    };
    assert!(builders::weight_heatmap(&bad).unwrap_err().to_string().contains("do not match their shape"));
}

#[test]
fn a_failed_export_leaves_existing_files_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (figure, table) = builders::dropout_accuracy(&synthetic::dropout());
    let png = dir.path().join("fig.png");
    std::fs::write(&png, b"the previous figure").unwrap();
    // A folder where the CSV should go makes the export fail part-way.
    std::fs::create_dir(dir.path().join("fig.csv")).unwrap();
    let e = export(&figure, table, &json!({}), dir.path(), "fig").unwrap_err();
    assert!(format!("{e:#}").contains("fig.csv"), "{e:#}");
    assert_eq!(std::fs::read(&png).unwrap(), b"the previous figure");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let (figure, table) = builders::dropout_accuracy(&synthetic::dropout());
    let missing = dir.path().join("no/such/folder");
    let e = export(&figure, table, &json!({}), &missing, "fig").unwrap_err().to_string();
    assert!(e.contains("does not exist") && e.ends_with("folder"), "{e}");
    let (figure, table) = builders::dropout_accuracy(&synthetic::dropout());
    assert!(export(&figure, table, &json!({}), dir.path(), "../escape").is_err());
}

/// Every file name in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[cfg(unix)]
#[test]
fn export_into_a_read_only_folder_fails_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("fig.png");
    std::fs::write(&png, b"old").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root writes anyway: `export_where_a_file_cannot_be_replaced_keeps_what_was_there`
    // covers the failure as root.
    if std::fs::File::create(dir.path().join("probe")).is_ok() {
        eprintln!("SKIPPED: running as root, read-only folders are writable");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        return;
    }
    let (figure, table) = builders::dropout_accuracy(&synthetic::dropout());
    let result = export(&figure, table, &json!({}), dir.path(), "fig");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(result.is_err());
    assert_eq!(std::fs::read(&png).unwrap(), b"old");
}

/// A path no one can write, root included: the image's name is taken by a folder of the
/// user's. The export fails with the path, the folder and its contents stay, and no
/// temporary file is left behind.
#[test]
fn export_where_a_file_cannot_be_replaced_keeps_what_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let taken = dir.path().join("fig.png");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), b"mine").unwrap();
    let (figure, table) = builders::dropout_accuracy(&synthetic::dropout());
    let e = format!("{:#}", export(&figure, table, &json!({}), dir.path(), "fig").unwrap_err());
    assert!(e.contains("fig.png"), "{e}");
    assert_eq!(std::fs::read(taken.join("notes.txt")).unwrap(), b"mine");
    // The other three files are each whole; nothing half-written remains.
    assert_eq!(names(dir.path()), ["fig.csv", "fig.json", "fig.png", "fig.svg"]);
    assert_eq!(names(&taken), ["notes.txt"]);
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fragility-explorer")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn figure_command_renders_a_real_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let sweep = run(&["sweep", "--limit", "60", "--steps", "5", "--layers", "features.0", "--out", out]);
    assert!(sweep.status.success(), "{}", stderr(&sweep));
    let results = dir.path().join("sweep.json");
    let results = results.to_str().unwrap();

    let o = run(&["figure", "--results", results, "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for stem in ["fig-curves-features.0-h1", "fig-curves-features.0-h3", "fig-compression-features.0", "fig-scores"] {
        for ext in ["png", "svg", "csv", "json"] {
            assert!(dir.path().join(format!("{stem}.{ext}")).is_file(), "{stem}.{ext} missing");
        }
    }
    // The sweep's own files are untouched by figures of the same folder.
    assert!(std::fs::read_to_string(dir.path().join("scores.csv")).unwrap().starts_with("layer,filter,s_clean"));
    let png = read_png(&dir.path().join("fig-curves-features.0-h1.png"));
    assert_eq!(png.dimensions(), (1600, 1000));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("fig-scores.json")).unwrap()).unwrap();
    assert_eq!(sidecar["result_kind"], "sweep");
    assert_eq!(sidecar["config"]["steps"], 5);

    let elsewhere = dir.path().join("figs");
    let o =
        run(&["figure", "--results", results, "--kind", "curves", "--filter", "h2", "--threshold", "-0.1", "--out"]
            .into_iter()
            .chain([elsewhere.to_str().unwrap()])
            .collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(elsewhere.join("fig-curves-features.0-h2.svg").is_file());

    let o = run(&["figure", "--results", results, "--layer", "features.7"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("`features.7`") && e.contains("features.0 (h1, h2, h3)") && e.contains("sweep.json"), "{e}");

    let o = run(&["figure", "--results", results, "--kind", "dropout"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("a sweep result gives curves, compression, scores figures"), "{e}");

    let o = run(&["figure", "--results", results, "--kind", "compression", "--layer", "features.0"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn figure_command_explains_unusable_files() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{ not json").unwrap();
    let o = run(&["figure", "--results", broken.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("not JSON") && stderr(&o).contains("broken.json"));

    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"hello": 1}"#).unwrap();
    let o = run(&["figure", "--results", other.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("no figures can be made"), "{}", stderr(&o));

    let o = run(&["figure", "--results", dir.path().join("absent.json").to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("cannot read") && stderr(&o).contains("absent.json"));

    // Results of other analyses and eval outputs are recognised.
    let write = |name: &str, v: &serde_json::Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
        p.to_string_lossy().into_owned()
    };
    let cases = [
        (write("dropout.json", &serde_json::to_value(synthetic::dropout()).unwrap()), "fig-targeting"),
        (
            write("landscape.json", &serde_json::to_value(synthetic::landscape()).unwrap()),
            "fig-landscape-influential-features.0-adv",
        ),
        (write("train.json", &serde_json::to_value(synthetic::train()).unwrap()), "fig-training"),
        (
            write("trajectory.json", &serde_json::to_value(synthetic::trajectory()).unwrap()),
            "fig-trajectory-scores-s-diff",
        ),
        (write("selective.json", &serde_json::to_value(synthetic::selective()).unwrap()), "fig-selective"),
        (
            write(
                "evals.json",
                &json!([{"eps": 0.0, "clean_accuracy": 0.99, "adversarial_accuracy": 0.99},
                        {"eps": 0.3, "clean_accuracy": 0.99, "adversarial_accuracy": 0.62}]),
            ),
            "fig-eps",
        ),
    ];
    for (path, stem) in cases {
        let o = run(&["figure", "--results", &path, "--all"]);
        assert!(o.status.success(), "{path}: {}", stderr(&o));
        assert!(dir.path().join(format!("{stem}.png")).is_file(), "{stem}.png from {path}");
    }
    // A trajectory whose series disagree with its epochs is an error, never a panic.
    let mut lying = serde_json::to_value(synthetic::trajectory()).unwrap();
    lying["kernels"]["d_fragile"].as_array_mut().unwrap().pop();
    let o = run(&["figure", "--results", &write("lying.json", &lying), "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("kernels.d_fragile has 3 values for 4 epochs"), "{}", stderr(&o));
}

#[test]
fn figure_help_documents_the_kinds() {
    let o = run(&["figure", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for kind in [
        "curves",
        "compression",
        "scores",
        "dropout",
        "targeting",
        "landscape-accuracy",
        "trajectory-scores",
        "trajectory-kernels",
        "trajectory-targeting",
        "training",
        "eps",
    ] {
        assert!(help.contains(kind), "--help does not mention {kind}");
    }
}
