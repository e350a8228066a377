//! Dataset formats, subsets and the errors malformed files give.

use crate::common;

use std::io::Write;
use std::path::Path;

use candle_core::Device;
use common::*;
use fragility_explorer::engine::card::Normalize;
use fragility_explorer::engine::data::{self, DataSpec, Known, Split, Subset};

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_idx_set(dir: &Path, prefix: &str, n: u32, gz: bool) {
    let pixels: Vec<u8> = (0..n * 4).map(|i| (i * 7 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let (img, lab) = (idx_bytes(&[n, 2, 2], &pixels), idx_bytes(&[n], &labels));
    let ext = if gz { ".gz" } else { "" };
    let write = |name: String, b: Vec<u8>| std::fs::write(dir.join(name), if gz { gzip(&b) } else { b }).unwrap();
    write(format!("{prefix}-images-idx3-ubyte{ext}"), img);
    write(format!("{prefix}-labels-idx1-ubyte{ext}"), lab);
}

#[test]
fn idx_raw_and_gzip_load_with_both_splits() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_idx_set(dir.path(), "train", 6, gz);
        write_idx_set(dir.path(), "t10k", 3, gz);
        let test = data::load(&DataSpec::new(dir.path())).unwrap();
        assert_eq!((test.len(), test.shape), (3, [1, 2, 2]));
        assert_eq!(test.labels, vec![0, 1, 2]);
        assert_eq!(test.image(1), &[28, 35, 42, 49]);
        assert_eq!(test.known, Some(Known::Mnist));
        let train = data::load(&DataSpec { split: Split::Train, ..DataSpec::new(dir.path()) }).unwrap();
        assert_eq!(train.len(), 6);
    }
}

#[test]
fn idx_header_that_disagrees_with_the_length_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), "t10k", 3, false);
    let mut bytes = idx_bytes(&[3, 2, 2], &[1; 12]);
    bytes.pop();
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), bytes).unwrap();
    let e = data::load(&DataSpec::new(dir.path())).unwrap_err().to_string();
    assert!(e.contains("the IDX header says 3x2x2 (12 bytes of data) but the file holds 11"), "{e}");
    assert!(e.ends_with("t10k-images-idx3-ubyte"), "{e}");

    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), b"\x00\x00\x0d\x03rest").unwrap();
    let e = data::load(&DataSpec::new(dir.path())).unwrap_err().to_string();
    assert!(e.contains("wrong IDX magic number"), "{e}");
}

fn cifar_records(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        b.push(l);
        b.extend((0..3072).map(|p| ((p + i) % 251) as u8));
    }
    b
}

#[test]
fn cifar_batches_in_their_binary_format() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("test_batch.bin"), cifar_records(&[3, 8, 0])).unwrap();
    for i in 1..=5 {
        std::fs::write(sub.join(format!("data_batch_{i}.bin")), cifar_records(&[i as u8; 2])).unwrap();
    }
    let test = data::load(&DataSpec::new(dir.path())).unwrap();
    assert_eq!((test.len(), test.shape, test.labels.clone()), (3, [3, 32, 32], vec![3, 8, 0]));
    assert_eq!(test.image(1)[0], 1);
    assert_eq!(test.image(1)[1024], ((1024 + 1) % 251) as u8);
    assert_eq!(test.classes.as_ref().unwrap()[3], "cat");
    let train = data::load(&DataSpec { split: Split::Train, ..DataSpec::new(dir.path()) }).unwrap();
    assert_eq!(train.labels, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);

    let mut broken = cifar_records(&[1, 2]);
    broken.truncate(3073 + 100);
    std::fs::write(sub.join("test_batch.bin"), broken).unwrap();
    let e = data::load(&DataSpec::new(dir.path())).unwrap_err().to_string();
    assert!(e.contains("3173 bytes is not a whole number of CIFAR-10 records"), "{e}");
    std::fs::write(sub.join("test_batch.bin"), cifar_records(&[12])).unwrap();
    let e = data::load(&DataSpec::new(dir.path())).unwrap_err().to_string();
    assert!(e.contains("label 12"), "{e}");
}

fn write_png(path: &Path, w: u32, h: u32, v: u8, colour: bool) {
    if colour {
        image::RgbImage::from_fn(w, h, |x, _| image::Rgb([v, x as u8, 255 - v])).save(path).unwrap();
    } else {
        image::GrayImage::from_pixel(w, h, image::Luma([v])).save(path).unwrap();
    }
}

#[test]
fn image_folders_use_sorted_class_folders() {
    let dir = tempfile::tempdir().unwrap();
    for (class, v) in [("cat", 10u8), ("ant", 20), ("bee", 30)] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        write_png(&dir.path().join(class).join("a.png"), 4, 3, v, false);
        write_png(&dir.path().join(class).join("b.png"), 4, 3, v + 1, false);
    }
    let d = data::load(&DataSpec::new(dir.path())).unwrap();
    assert_eq!(d.classes.clone().unwrap(), vec!["ant", "bee", "cat"]);
    assert_eq!(d.labels, vec![0, 0, 1, 1, 2, 2]);
    assert_eq!(d.shape, [1, 3, 4]);
    assert_eq!(d.image(2)[0], 30);
    write_png(&dir.path().join("bee").join("c.png"), 5, 3, 1, false);
    let e = data::load(&DataSpec::new(dir.path())).unwrap_err().to_string();
    assert!(e.contains("the image is 5x3 but the first image (a.png) is 4x3") && e.ends_with("c.png"), "{e}");
}

#[test]
fn colour_images_are_channel_major() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("set_0_4.png"), 2, 2, 9, true);
    write_png(&dir.path().join("set_1_7.png"), 2, 2, 50, true);
    let d = data::load(&DataSpec::new(dir.path())).unwrap();
    assert_eq!((d.shape, d.labels.clone()), ([3, 2, 2], vec![4, 7]));
    // R plane, then G (the column index), then B.
    assert_eq!(d.image(0), &[9, 9, 9, 9, 0, 1, 0, 1, 246, 246, 246, 246]);
}

#[test]
fn named_pngs_choose_a_set_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("mnist_01_2.png"), 28, 28, 5, false);
    write_png(&dir.path().join("mnist_00_7.png"), 28, 28, 6, false);
    write_png(&dir.path().join("cifar10_00_3.png"), 32, 32, 6, true);
    let e = data::load(&DataSpec::new(dir.path())).unwrap_err().to_string();
    assert!(e.contains("mixes sets named `cifar10`, `mnist`"), "{e}");
    let d = data::load(&DataSpec::new(dir.path().join("mnist"))).unwrap();
    assert_eq!((d.labels.clone(), d.known), (vec![7, 2], Some(Known::Mnist)));
    let one = data::load(&DataSpec::new(dir.path().join("cifar10_00_3.png"))).unwrap();
    assert_eq!((one.shape, one.labels.clone()), ([3, 32, 32], vec![3]));
}

#[test]
fn shared_samples_load_when_present() {
    let Some(shared) = shared_data() else { return };
    for (name, shape) in [("mnist", [1, 28, 28]), ("fashionMNIST", [1, 28, 28]), ("cifar10", [3, 32, 32])] {
        let d = data::load(&DataSpec::new(shared.join("samples").join(name))).unwrap();
        assert_eq!((d.len(), d.shape), (20, shape), "{name}");
    }
    let d = data::load(&DataSpec::new(shared.join("samples/mnist"))).unwrap();
    assert_eq!(&d.labels[..5], &[7, 2, 1, 0, 4], "the first MNIST test labels");
}

#[test]
fn subsets_first_and_seeded_random() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), "t10k", 50, true);
    let spec = |subset| DataSpec { subset, ..DataSpec::new(dir.path()) };
    let first = data::load(&spec(Subset::First { n: 5 })).unwrap();
    assert_eq!(first.labels, vec![0, 1, 2, 3, 4]);
    let a = data::load(&spec(Subset::Random { n: 10, seed: 3 })).unwrap();
    let b = data::load(&spec(Subset::Random { n: 10, seed: 3 })).unwrap();
    let c = data::load(&spec(Subset::Random { n: 10, seed: 4 })).unwrap();
    assert_eq!(a.images, b.images);
    assert_ne!(a.images, c.images);
    let e = data::load(&spec(Subset::First { n: 51 })).unwrap_err().to_string();
    assert!(e.contains("51 images were asked for but this split has only 50"), "{e}");
}

#[test]
fn batches_are_normalised_like_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), "t10k", 2, false);
    let d = data::load(&DataSpec::new(dir.path())).unwrap();
    let norm = Normalize { mean: vec![0.1307], std: vec![0.3081] };
    let (x, y) = d.batch(0..2, &norm, &Device::Cpu).unwrap();
    assert_eq!(x.dims(), &[2, 1, 2, 2]);
    assert_eq!(y.to_vec1::<u32>().unwrap(), vec![0, 1]);
    let v = vec4(&x);
    assert_eq!(v[5], (35f32 / 255.0 - 0.1307) / 0.3081);
}

#[test]
fn missing_and_unknown_paths_are_errors() {
    let e = data::load(&DataSpec::new("/no/such/place")).unwrap_err().to_string();
    assert!(e.contains("no such file or folder"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hi").unwrap();
    let e = data::load(&DataSpec::new(dir.path())).unwrap_err().to_string();
    assert!(e.contains("no dataset found"), "{e}");
}

/// Peak resident memory of this process so far, in bytes (Linux; None elsewhere).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn hostile_idx_files_get_clear_errors_and_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), "t10k", 3, true);
    let images = dir.path().join("t10k-images-idx3-ubyte.gz");
    let load = || data::load(&DataSpec::new(dir.path())).unwrap_err().to_string();

    // A gzip bomb: the header announces 3 images of 2x2, the stream inflates to 512 MB.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&idx_bytes(&[3, 2, 2], &[0; 12])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        e.write_all(&zeros).unwrap();
    }
    std::fs::write(&images, e.finish().unwrap()).unwrap();
    let before = peak_rss();
    let err = load();
    assert!(err.contains("the data goes on for more than"), "{err}");
    if let (Some(before), Some(after)) = (before, peak_rss()) {
        assert!(after < before + (64 << 20), "the bomb took {} MB", (after - before) >> 20);
    }

    // A header whose sizes hold a 0, and one that overflows.
    std::fs::write(&images, gzip(&idx_bytes(&[3, 0, 2], &[]))).unwrap();
    assert!(load().contains("sizes 3x0x2 hold a 0"), "{}", load());
    std::fs::write(&images, gzip(&idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[]))).unwrap();
    let err = load();
    assert!(err.contains("overflow") || err.contains("ends before image 1"), "{err}");

    // Named .gz, not gzip.
    std::fs::write(&images, idx_bytes(&[3, 2, 2], &[0; 12])).unwrap();
    assert!(load().contains("named .gz but is not gzip-compressed"), "{}", load());

    // A stream that ends before its header's count.
    std::fs::write(&images, gzip(&idx_bytes(&[3, 2, 2], &[0; 8]))).unwrap();
    assert!(load().contains("the decompressed stream ends before image 3"), "{}", load());
}

/// The first N images of a set are read without decoding the rest: a header announcing a
/// million images over a stream that holds ten still gives its first five.
#[test]
fn a_subset_decodes_only_its_images() {
    let dir = tempfile::tempdir().unwrap();
    let (pixels, labels): (Vec<u8>, Vec<u8>) = ((0..40).collect(), (0..10).collect());
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte.gz"), gzip(&idx_bytes(&[1_000_000, 2, 2], &pixels)))
        .unwrap();
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), gzip(&idx_bytes(&[1_000_000], &labels))).unwrap();
    let d = data::load(&DataSpec { subset: Subset::First { n: 5 }, ..DataSpec::new(dir.path()) }).unwrap();
    assert_eq!((d.len(), d.image(4), d.labels[4]), (5, &[16u8, 17, 18, 19][..], 4));
    assert!(d.name.contains("(5 of 1000000)"), "{}", d.name);
    // The whole set is read to its end, so the lie is found.
    let e = data::load(&DataSpec::new(dir.path())).unwrap_err().to_string();
    assert!(e.contains("ends before image 11"), "{e}");
}

/// CIFAR batches and image folders also read only what a subset asks for, and give the same
/// images as taking that subset of the whole set.
#[test]
fn cifar_and_folder_subsets_read_only_their_images() {
    let dir = tempfile::tempdir().unwrap();
    let cifar = dir.path().join("batch.bin");
    std::fs::write(&cifar, cifar_records(&(0..40).map(|i| (i % 10) as u8).collect::<Vec<_>>())).unwrap();
    let folder = dir.path().join("folder");
    for class in ["a", "b", "c"] {
        std::fs::create_dir_all(folder.join(class)).unwrap();
        for i in 0..7u8 {
            write_png(&folder.join(class).join(format!("{i}.png")), 3, 2, 10 * i + class.len() as u8, false);
        }
    }
    for path in [&cifar, &folder] {
        let whole = data::load(&DataSpec::new(path)).unwrap();
        for subset in [Subset::First { n: 6 }, Subset::Random { n: 9, seed: 5 }] {
            let read = data::load(&DataSpec { subset, ..DataSpec::new(path) }).unwrap();
            let taken = whole.clone().subset(subset).unwrap();
            assert_eq!(
                (&read.images, &read.labels, &read.name),
                (&taken.images, &taken.labels, &taken.name),
                "{subset:?}"
            );
        }
    }
    // A CIFAR file of a million records (a sparse 3 GB file, zeros: label 0) gives its first
    // 100 and 1,000 drawn at random without reading the rest.
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big).unwrap().set_len(3073 * 1_000_000).unwrap();
    let before = peak_rss();
    let first = data::load(&DataSpec { subset: Subset::First { n: 100 }, ..DataSpec::new(&big) }).unwrap();
    let drawn = data::load(&DataSpec { subset: Subset::Random { n: 1000, seed: 1 }, ..DataSpec::new(&big) }).unwrap();
    assert_eq!((first.len(), drawn.len()), (100, 1000));
    assert!(drawn.name.contains("(1000 of 1000000)"), "{}", drawn.name);
    if let (Some(before), Some(after)) = (before, peak_rss()) {
        assert!(after < before + (64 << 20), "the subsets took {} MB", (after - before) >> 20);
    }
}

#[cfg(unix)]
#[test]
fn a_named_pipe_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.pth");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = fragility_explorer::engine::checkpoint::load(&fifo, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("a named pipe, not a regular file") && e.ends_with("model.pth"), "{e}");
}
