//! Every hostile input of issue 21, rebuilt from the fixtures, opened through its loader's
//! target: each must give its error (or, where the input is valid, load), never a panic, an
//! abort or unbounded memory. The bombs are generated rather than stored: they are small
//! to describe and large to hold.

use std::io::{Cursor, Read, Write};

use crate::targets::{Seed, fixtures};

pub struct Case {
    pub name: &'static str,
    pub target: &'static str,
    pub seed: Seed,
    /// Ok(()) when the input is valid; else a fragment of the expected message.
    pub expect: Result<(), &'static str>,
}

/// Inputs the fuzzer found, kept as it wrote them.
fn found(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/found").join(name)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap()
}

/// What replaces an entry: bytes, or that many MiB of zeros written a MiB at a time (a bomb
/// must not cost the harness its own memory to build).
enum Entry<'a> {
    Bytes(&'a [u8]),
    ZerosMib(usize),
}

/// plain.pth with one entry replaced (`data.pkl`, or a storage), deflated where `deflate`.
fn pth_with(suffix: &str, entry: Entry<'_>, deflate: bool) -> Vec<u8> {
    let src = read("checkpoints/plain.pth");
    let mut zip = zip::ZipArchive::new(Cursor::new(&src)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let mut replaced = false;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        let options = zip::write::SimpleFileOptions::default().large_file(true);
        if !replaced && name.ends_with(suffix) {
            replaced = true;
            out.start_file(name, options.compression_method(method)).unwrap();
            match entry {
                Entry::Bytes(b) => out.write_all(b).unwrap(),
                Entry::ZerosMib(n) => {
                    let zeros = vec![0u8; 1 << 20];
                    for _ in 0..n {
                        out.write_all(&zeros).unwrap();
                    }
                }
            }
        } else {
            out.start_file(name, options.compression_method(zip::CompressionMethod::Stored)).unwrap();
            out.write_all(&data).unwrap();
        }
    }
    assert!(replaced, "plain.pth has no entry ending in {suffix}");
    out.finish().unwrap().into_inner()
}

fn pickle(body: &[u8]) -> Vec<u8> {
    [&b"\x80\x02"[..], body, b"."].concat()
}

fn nested_tuples(n: usize) -> Vec<u8> {
    pickle(&[vec![b'('; n], vec![b't'; n]].concat())
}

fn nested_lists(n: usize) -> Vec<u8> {
    pickle(&[vec![b'('; n], vec![b'l'; n]].concat())
}

fn nested_dicts(n: usize) -> Vec<u8> {
    pickle(&[b"}".to_vec(), b"K\x00}".repeat(n), vec![b's'; n]].concat())
}

/// Lists nested `n` deep with a short stack: each new list holds the one before, from the memo.
fn memo_nesting(n: usize) -> Vec<u8> {
    pickle(&[b"]q\x00".to_vec(), b"(h\x00lq\x00".repeat(n)].concat())
}

/// A list whose every level holds the level below twice, 64 times: 2^64 values if copied.
fn memo_doubling() -> Vec<u8> {
    pickle(&[b"]q\x00".to_vec(), b"(h\x00h\x00lq\x00".repeat(64)].concat())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// The header announces 3 images of 2x2; the stream inflates to `mib` MiB.
fn gzip_bomb(mib: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&idx(&[3, 2, 2], &[0; 12])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..mib {
        e.write_all(&zeros).unwrap();
    }
    e.finish().unwrap()
}

fn idx_set(images: Vec<u8>, gz: bool) -> Seed {
    let ext = if gz { ".gz" } else { "" };
    let labels = idx(&[3], &[1, 2, 3]);
    Seed {
        files: vec![
            (format!("t10k-images-idx3-ubyte{ext}"), images),
            (format!("t10k-labels-idx1-ubyte{ext}"), if gz { gzip(&labels) } else { labels }),
        ],
        mutated: 0,
    }
}

/// The tiny CNN's card with `edit` applied to its first layer of `kind`, beside its checkpoint.
fn card_with(kind: &str, edit: &[(&str, serde_json::Value)]) -> Seed {
    let mut card: serde_json::Value = serde_json::from_slice(&read("analysis/tiny_cnn.json")).unwrap();
    let layer = card["layers"].as_array_mut().unwrap().iter_mut().find(|l| l["type"] == kind).unwrap();
    for (k, v) in edit {
        layer[*k] = v.clone();
    }
    card_seed(serde_json::to_vec_pretty(&card).unwrap())
}

fn card_seed(card: Vec<u8>) -> Seed {
    Seed {
        files: vec![("model.json".into(), card), ("model.safetensors".into(), read("analysis/tiny_cnn.safetensors"))],
        mutated: 0,
    }
}

fn results_seed(name: &str, edit: impl Fn(&mut serde_json::Value)) -> Seed {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/results").join(name);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    Seed { files: vec![(name.into(), serde_json::to_vec(&v).unwrap())], mutated: 0 }
}

pub fn all() -> Vec<Case> {
    use serde_json::json;
    let pth = |body: Vec<u8>| Seed {
        files: vec![("model.pth".into(), pth_with("data.pkl", Entry::Bytes(&body), false))],
        mutated: 0,
    };
    let deep = "nests containers more than 200 levels deep";
    let wide = "values on its stack at once";
    let tiny_card = read("analysis/tiny_cnn.json");
    vec![
        Case {
            name: "pickle: 300,000 nested tuples",
            target: "pth",
            seed: pth(nested_tuples(300_000)),
            expect: Err(wide),
        },
        Case {
            name: "pickle: 300,000 nested lists",
            target: "pth",
            seed: pth(nested_lists(300_000)),
            expect: Err(wide),
        },
        Case {
            name: "pickle: 300,000 nested dicts",
            target: "pth",
            seed: pth(nested_dicts(300_000)),
            expect: Err(wide),
        },
        Case {
            name: "pickle: 300 lists nested through the memo",
            target: "pth",
            seed: pth(memo_nesting(300)),
            expect: Err(deep),
        },
        Case {
            name: "pickle: a memo doubled 64 times",
            target: "pth",
            seed: pth(memo_doubling()),
            expect: Err("values, far more than a state_dict holds"),
        },
        Case {
            // Read as far as the pickle announces, as PyTorch reads it: the rest is never inflated.
            name: "zip bomb: a storage entry inflating to 256 MiB",
            target: "pth",
            seed: Seed {
                files: vec![("model.pth".into(), pth_with("data/0", Entry::ZerosMib(256), true))],
                mutated: 0,
            },
            expect: Ok(()),
        },
        Case {
            name: "idx: a gzip bomb (3 images announced, 256 MiB inflated)",
            target: "idx",
            seed: idx_set(gzip_bomb(256), true),
            expect: Err("the data goes on for more than"),
        },
        Case {
            name: "idx: a zero dimension",
            target: "idx",
            seed: idx_set(idx(&[3, 0, 2], &[]), false),
            expect: Err("hold a 0"),
        },
        Case {
            name: "idx: sizes that overflow",
            target: "idx",
            seed: idx_set(idx(&[u32::MAX, u32::MAX, u32::MAX], &[]), false),
            expect: Err("t10k-images-idx3-ubyte"),
        },
        Case {
            // Found by the fuzzer (with 60 images): a 110 MB image was allocated before its bytes came.
            name: "idx: images announced at 110 MB each, 1,000 bytes there",
            target: "idx",
            seed: idx_set(gzip(&idx(&[3, 60, 1_835_068], &[0; 1000])), true),
            expect: Err("ends before image 1"),
        },
        Case {
            // Found by the fuzzer: a pickle naming a pruned weight's `_orig` twice panicked.
            name: "pth: a pruned weight's key given twice",
            target: "pth",
            seed: Seed {
                files: vec![("model.pth".into(), std::fs::read(found("pth-pruned-key-twice.pth")).unwrap())],
                mutated: 0,
            },
            expect: Ok(()),
        },
        Case {
            name: "idx: named .gz, not gzip",
            target: "idx",
            seed: idx_set(idx(&[3, 2, 2], &[0; 12]), true),
            expect: Err("named .gz but is not gzip-compressed"),
        },
        Case {
            name: "card: an input of 2^64 - 1 rows (the tiny CNN read as VGG)",
            target: "card",
            seed: card_seed(
                br#"{"architecture":"vgg","input":[1,18446744073709551615,32],"normalize":{"mean":[0.5],"std":[0.25]}}"#
                    .to_vec(),
            ),
            expect: Err("is too large"),
        },
        Case {
            name: "card: an input of 2M values per image",
            target: "card",
            seed: card_seed(br#"{"architecture":"vgg","input":[1,65536,32]}"#.to_vec()),
            expect: Err("is too large"),
        },
        Case {
            name: "card: convolution stride 0",
            target: "card",
            seed: card_with("conv2d", &[("stride", json!(0))]),
            expect: Err("`stride` must be at least 1"),
        },
        Case {
            name: "card: convolution dilation 0",
            target: "card",
            seed: card_with("conv2d", &[("dilation", json!(0))]),
            expect: Err("`dilation` must be at least 1"),
        },
        Case {
            name: "card: convolution kernel 0x0",
            target: "card",
            seed: card_with("conv2d", &[("kernel", json!([0, 0]))]),
            expect: Err("`kernel` must be at least 1"),
        },
        Case {
            name: "card: pooling kernel 0",
            target: "card",
            seed: card_with("maxpool2d", &[("kernel", json!(0))]),
            expect: Err("`kernel` must be at least 1"),
        },
        Case {
            name: "card: a normalisation std of 1e-30",
            target: "card",
            seed: card_seed(String::from_utf8(tiny_card.clone()).unwrap().replace("0.3081", "1e-30").into_bytes()),
            expect: Err("std"),
        },
        Case {
            name: "card: a UTF-8 byte-order mark before valid JSON",
            target: "card",
            seed: card_seed([&b"\xef\xbb\xbf"[..], &tiny_card].concat()),
            expect: Ok(()),
        },
        Case {
            name: "results: arrays of different lengths",
            target: "results",
            seed: results_seed("sweep.json", |v| {
                let rec = &mut v["records"][0];
                let accuracies = rec["clean_accuracy"].as_array_mut().unwrap();
                accuracies.truncate(accuracies.len() - 1);
            }),
            expect: Err("sweep.json"),
        },
        Case {
            name: "results: 200,000 nested arrays",
            target: "results",
            seed: Seed {
                files: vec![(
                    "sweep.json".into(),
                    format!("{}{}", "[".repeat(200_000), "]".repeat(200_000)).into_bytes(),
                )],
                mutated: 0,
            },
            expect: Err("sweep.json"),
        },
        Case {
            name: "settings: written by another version",
            target: "settings",
            seed: Seed {
                files: vec![("settings.ron".into(), b"(version: 99, future: [1, 2, 3])".to_vec())],
                mutated: 0,
            },
            expect: Ok(()),
        },
    ]
}
