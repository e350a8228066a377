//! The loaders under test, each with valid seed files, how its inputs are mutated, and how
//! they are opened (through the same public entry points the app and the CLI use).

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use candle_core::Device;
use clap::Parser;
use fragility_explorer::cli::Cli;
use fragility_explorer::engine::card::ModelCard;
use fragility_explorer::engine::checkpoint;
use fragility_explorer::engine::data::{self, DataSpec, Subset};
use fragility_explorer::engine::model::Network;
use fragility_explorer::ui::settings::Settings;

use crate::mutate::Mutator;

/// Files written together for one input; `files[mutated]` is the one the mutator changes.
#[derive(Clone)]
pub struct Seed {
    pub files: Vec<(String, Vec<u8>)>,
    pub mutated: usize,
}

impl Seed {
    fn one(name: &str, bytes: Vec<u8>) -> Self {
        Self { files: vec![(name.into(), bytes)], mutated: 0 }
    }
}

pub type Mutate = fn(&mut Mutator, &[u8]) -> Vec<u8>;
/// Opens the input (`dir` holds the seed's files, `file` is the mutated one); Err is the
/// message a user would see.
pub type Open = fn(&Path, &Path) -> Result<(), String>;

pub struct Target {
    pub name: &'static str,
    pub seeds: Vec<Seed>,
    pub mutate: Mutate,
    pub open: Open,
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn err(e: impl std::fmt::Display) -> String {
    format!("{e:#}")
}

pub fn all() -> Vec<Target> {
    vec![safetensors(), pth(), legacy_pickle(), onnx(), card(), idx(), cifar(), png(), results(), settings()]
}

fn open_checkpoint(_dir: &Path, file: &Path) -> Result<(), String> {
    checkpoint::load(file, &Device::Cpu).map(drop).map_err(err)?;
    Network::load(file, None, &Device::Cpu).map(drop).map_err(err)
}

fn safetensors() -> Target {
    let a = fixtures().join("analysis");
    let card = read(a.join("tiny_cnn.json"));
    Target {
        name: "safetensors",
        seeds: vec![
            Seed {
                files: vec![
                    ("model.safetensors".into(), read(a.join("tiny_cnn.safetensors"))),
                    ("model.json".into(), card),
                ],
                mutated: 0,
            },
            Seed::one("pruned.safetensors", read(fixtures().join("checkpoints/pruned_expected.safetensors"))),
        ],
        mutate: |m, b| m.bytes(b),
        open: open_checkpoint,
    }
}

/// The small ONNX exports, from both exporters, without their cards (the graph's input
/// shape stands in).
fn onnx() -> Target {
    let models = fixtures().join("models");
    Target {
        name: "onnx",
        seeds: ["seq_cnn.ts.onnx", "seq_cnn.dynamo.onnx"]
            .iter()
            .map(|n| Seed::one("model.onnx", read(models.join(n))))
            .collect(),
        mutate: |m, b| m.bytes(b),
        open: |_, file| Network::load(file, None, &Device::Cpu).map(drop).map_err(err),
    }
}

const PTH: [&str; 9] = [
    "plain.pth",
    "nested.pth",
    "nested_state_dict.pth",
    "nested_model.pth",
    "dataparallel.pth",
    "noncontig.pth",
    "fp16.pth",
    "pruned.pth",
    "evil.pth",
];

fn pth() -> Target {
    Target {
        name: "pth",
        seeds: PTH.iter().map(|n| Seed::one("model.pth", read(fixtures().join("checkpoints").join(n)))).collect(),
        mutate: mutate_zip,
        open: |_, file| checkpoint::load(file, &Device::Cpu).map(drop).map_err(err),
    }
}

/// Half the time the bytes of the archive; else one entry inside it (the pickle, a storage
/// or the byte order), re-packed, so that mutations get past the zip's checksums.
fn mutate_zip(m: &mut Mutator, bytes: &[u8]) -> Vec<u8> {
    if m.chance(0.5) {
        return m.bytes(bytes);
    }
    let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(bytes)) else { return m.bytes(bytes) };
    let mut entries = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).expect("a seed's entry");
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("a seed's entry reads");
        entries.push((f.name().expect("a seed entry's name").to_string(), data));
    }
    let pick = entries.iter().position(|(n, _)| n.ends_with("data.pkl")).filter(|_| m.chance(0.7));
    let i = pick.unwrap_or_else(|| m.below(entries.len()));
    entries[i].1 = m.bytes(&entries[i].1);
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in &entries {
        out.start_file(name.as_str(), options).expect("zip entry");
        out.write_all(data).expect("zip write");
    }
    out.finish().expect("zip finish").into_inner()
}

fn legacy_pickle() -> Target {
    Target {
        name: "legacy-pickle",
        seeds: vec![Seed::one("model.pth", read(fixtures().join("checkpoints/legacy.pth")))],
        mutate: |m, b| m.bytes(b),
        open: |_, file| checkpoint::load(file, &Device::Cpu).map(drop).map_err(err),
    }
}

fn card() -> Target {
    let a = fixtures().join("analysis");
    let model = read(a.join("tiny_cnn.safetensors"));
    let mut seeds = vec![Seed {
        files: vec![("model.json".into(), read(a.join("tiny_cnn.json"))), ("model.safetensors".into(), model.clone())],
        mutated: 0,
    }];
    // The other fixtures' cards, beside a checkpoint they do not fit: parsing and checking.
    let models = fixtures().join("models");
    let mut names: Vec<_> = std::fs::read_dir(&models).unwrap().flatten().map(|e| e.path()).collect();
    names.sort();
    for p in names.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("manifest.json")) {
        seeds.push(Seed {
            files: vec![("model.json".into(), read(p)), ("model.safetensors".into(), model.clone())],
            mutated: 0,
        });
    }
    Target {
        name: "card",
        seeds,
        mutate: |m, b| m.json(b),
        open: |dir, file| {
            ModelCard::load(file).map_err(err)?;
            Network::load(&dir.join("model.safetensors"), Some(file), &Device::Cpu).map(drop).map_err(err)
        },
    }
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b).read_to_end(&mut out).expect("a gzip fixture");
    out
}

/// The whole set, then a subset: both read paths of the IDX loader.
fn open_data(dir: &Path, _file: &Path) -> Result<(), String> {
    data::load(&DataSpec::new(dir)).map(drop).map_err(err)?;
    let mut spec = DataSpec::new(dir);
    spec.subset = Subset::First { n: 7 };
    data::load(&spec).map(drop).map_err(err)
}

fn idx() -> Target {
    let a = fixtures().join("analysis");
    let (images, labels) = (read(a.join("t10k-images-idx3-ubyte.gz")), read(a.join("t10k-labels-idx1-ubyte.gz")));
    let (raw_images, raw_labels) = (gunzip(&images), gunzip(&labels));
    let set = |i: Vec<u8>, l: Vec<u8>, gz: bool, mutated| {
        let ext = if gz { ".gz" } else { "" };
        Seed {
            files: vec![(format!("t10k-images-idx3-ubyte{ext}"), i), (format!("t10k-labels-idx1-ubyte{ext}"), l)],
            mutated,
        }
    };
    Target {
        name: "idx",
        seeds: vec![
            set(images.clone(), labels.clone(), true, 0),
            set(images, labels, true, 1),
            set(raw_images.clone(), raw_labels.clone(), false, 0),
            set(raw_images, raw_labels, false, 1),
        ],
        mutate: |m, b| m.bytes(b),
        open: open_data,
    }
}

pub fn cifar_records(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        b.push(l);
        b.extend((0..3072).map(|p| ((p + i) % 251) as u8));
    }
    b
}

fn cifar() -> Target {
    Target {
        name: "cifar",
        seeds: vec![
            Seed::one("test_batch.bin", cifar_records(&[3, 1, 4])),
            Seed {
                files: vec![
                    ("cifar-10-batches-bin/test_batch.bin".into(), cifar_records(&[0, 9])),
                    ("cifar-10-batches-bin/data_batch_1.bin".into(), cifar_records(&[5])),
                ],
                mutated: 0,
            },
        ],
        mutate: |m, b| m.bytes(b),
        open: |dir, file| {
            let path = if file.parent() == Some(dir) { file.to_path_buf() } else { dir.to_path_buf() };
            data::load(&DataSpec::new(path)).map(drop).map_err(err)
        },
    }
}

pub fn png_bytes(w: u32, h: u32, colour: bool) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    if colour {
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]))
            .write_to(&mut out, image::ImageFormat::Png)
    } else {
        image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * y) as u8])).write_to(&mut out, image::ImageFormat::Png)
    }
    .expect("a PNG");
    out.into_inner()
}

fn png() -> Target {
    Target {
        name: "png",
        seeds: vec![
            Seed::one("digits_0_3.png", png_bytes(8, 8, false)),
            Seed::one("digits_1_7.png", png_bytes(5, 6, true)),
            Seed {
                files: vec![("cat/a.png".into(), png_bytes(4, 4, true)), ("dog/b.png".into(), png_bytes(4, 4, true))],
                mutated: 1,
            },
        ],
        mutate: |m, b| m.bytes(b),
        open: |dir, file| {
            let path = if file.parent() == Some(dir) { file.to_path_buf() } else { dir.to_path_buf() };
            data::load(&DataSpec::new(path)).map(drop).map_err(err)
        },
    }
}

fn results() -> Target {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/results");
    let mut paths: Vec<_> = std::fs::read_dir(&corpus).unwrap().flatten().map(|e| e.path()).collect();
    paths.sort();
    let seeds = paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| Seed::one(&p.file_name().unwrap().to_string_lossy(), read(p.clone())))
        .collect();
    Target {
        name: "results",
        seeds,
        mutate: |m, b| m.json(b),
        open: |dir, file| {
            let out = dir.join("figures");
            let mut argv: Vec<std::ffi::OsString> =
                ["fragility-explorer", "figure", "--all", "--results"].iter().map(Into::into).collect();
            argv.extend([file.into(), "--out".into(), out.into()]);
            let cli = Cli::try_parse_from(argv).map_err(err)?;
            fragility_explorer::cli::run(cli.command.expect("a command")).map_err(err)
        },
    }
}

/// eframe's storage as the app sees it: a map from key to the RON text of the value.
#[derive(Default)]
struct Memory(HashMap<String, String>);

impl eframe::Storage for Memory {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.into(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

fn settings() -> Target {
    let mut m = Memory::default();
    eframe::set_value(&mut m, Settings::STORAGE_KEY, &Settings::default());
    let text = m.0.remove(Settings::STORAGE_KEY).expect("settings saved");
    Target {
        name: "settings",
        seeds: vec![Seed::one("settings.ron", text.into_bytes())],
        mutate: |m, b| m.bytes(b),
        open: |_, file| {
            let text = String::from_utf8_lossy(&std::fs::read(file).map_err(err)?).into_owned();
            let storage = Memory(HashMap::from([(Settings::STORAGE_KEY.to_string(), text)]));
            // Unreadable settings start the app on the defaults: never an error, never a panic.
            let _ = Settings::load_or_explain(Some(&storage));
            Ok(())
        },
    }
}
