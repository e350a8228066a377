//! Image folders (one sub-folder per class, optionally under `train/` and `test/`)
//! and PNG files named `<name>_<index>_<label>.png`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Dataset, Known, Split, Subset, display_name, keep, subset_name};
use crate::engine::error::{EngineError, Result};

const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::io("list", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// Channel-major pixels of an image with the given channel count (1 or 3).
fn pixels(img: image::DynamicImage, channels: usize) -> Vec<u8> {
    if channels == 1 {
        return img.into_luma8().into_raw();
    }
    let plane = (img.width() * img.height()) as usize;
    let rgb = img.into_rgb8().into_raw();
    let mut chw = vec![0u8; 3 * plane];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * plane + i] = px[c];
        }
    }
    chw
}

/// Reads labelled images (those a subset kept); all must share the first image's size. Any
/// colour image among them makes the set RGB; otherwise it is greyscale.
fn read_all(items: &[(PathBuf, u32)], source: &Path) -> Result<([usize; 3], Vec<u8>)> {
    let mut decoded = Vec::with_capacity(items.len());
    for (path, _) in items {
        let img = image::open(path).map_err(|e| EngineError::data(path, format!("cannot read the image ({e})")))?;
        if let Some((first, first_path)) = decoded.first().map(|d: &(image::DynamicImage, &PathBuf)| (&d.0, d.1))
            && (img.width(), img.height()) != (first.width(), first.height())
        {
            return Err(EngineError::data(
                path,
                format!(
                    "the image is {}x{} but the first image ({}) is {}x{}; all images must have one size",
                    img.width(),
                    img.height(),
                    display_name(first_path),
                    first.width(),
                    first.height()
                ),
            ));
        }
        decoded.push((img, path));
    }
    let Some((first, _)) = decoded.first() else {
        return Err(EngineError::data(source, "no images found"));
    };
    let (w, h) = (first.width() as usize, first.height() as usize);
    let channels = if decoded.iter().any(|(img, _)| img.color().has_color()) { 3 } else { 1 };
    let images = decoded.into_iter().flat_map(|(img, _)| pixels(img, channels)).collect();
    Ok(([channels, h, w], images))
}

/// A folder whose sub-folders are classes (sorted by name, as torchvision's ImageFolder).
pub(super) fn load(dir: &Path, split: Split, subset: Subset) -> Result<Dataset> {
    let split_dir = dir.join(if split == Split::Train { "train" } else { "test" });
    let mut notes = Vec::new();
    let root = if split_dir.is_dir() {
        split_dir
    } else {
        if dir.join("train").is_dir() || dir.join("test").is_dir() {
            return Err(EngineError::data(
                dir,
                format!("this folder has no `{}` split folder", if split == Split::Train { "train" } else { "test" }),
            ));
        }
        dir.to_path_buf()
    };
    let entries = list_dir(&root)?;
    let class_dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    if class_dirs.is_empty() {
        if entries.iter().any(|p| is_image(p)) {
            return load_named_pngs(&root, subset);
        }
        return Err(EngineError::data(
            dir,
            "no dataset found: expected IDX files, CIFAR-10 batches, one sub-folder of images per class, \
             or PNG files named <name>_<index>_<label>.png",
        ));
    }
    let mut items = Vec::new();
    let mut classes = Vec::new();
    for (label, class_dir) in class_dirs.iter().enumerate() {
        classes.push(display_name(class_dir));
        for p in list_dir(class_dir)?.into_iter().filter(|p| is_image(p)) {
            items.push((p, label as u32));
        }
    }
    if root == dir {
        notes.push("this image folder has no train/test split; the whole folder is used".to_string());
    }
    let (items, total) = keep(items, subset, dir)?;
    let (shape, images) = read_all(&items, dir)?;
    Ok(Dataset {
        name: subset_name(display_name(dir), subset, items.len(), total),
        known: Known::from_name(&display_name(dir)),
        source: dir.to_path_buf(),
        shape,
        images,
        labels: items.iter().map(|(_, l)| *l).collect(),
        classes: Some(classes),
        notes,
    })
}

/// Parses `<name>_<index>_<label>.png` into (name, index, label).
fn parse_name(path: &Path) -> Option<(String, usize, u32)> {
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let (rest, label) = stem.rsplit_once('_')?;
    let (name, index) = rest.rsplit_once('_')?;
    Some((name.to_string(), index.parse().ok()?, label.parse().ok()?))
}

fn from_named(name: &str, mut files: Vec<(PathBuf, usize, u32)>, source: &Path, subset: Subset) -> Result<Dataset> {
    files.sort_by_key(|f| f.1);
    let items: Vec<(PathBuf, u32)> = files.into_iter().map(|(p, _, l)| (p, l)).collect();
    let (items, total) = keep(items, subset, source)?;
    let (shape, images) = read_all(&items, source)?;
    let known = Known::from_name(name);
    Ok(Dataset {
        name: subset_name(format!("{name} samples"), subset, items.len(), total),
        known,
        source: source.to_path_buf(),
        shape,
        images,
        labels: items.iter().map(|(_, l)| *l).collect(),
        classes: known.map(Known::classes),
        notes: Vec::new(),
    })
}

/// A folder of named PNGs (one name), or a single named PNG file.
pub(super) fn load_named_pngs(path: &Path, subset: Subset) -> Result<Dataset> {
    if path.is_file() {
        let (name, index, label) = parse_name(path).ok_or_else(|| {
            EngineError::data(path, "a single image must be named <name>_<index>_<label>.png to carry its label")
        })?;
        return from_named(&name, vec![(path.to_path_buf(), index, label)], path, subset);
    }
    let mut groups: BTreeMap<String, Vec<(PathBuf, usize, u32)>> = BTreeMap::new();
    let mut unnamed = 0;
    for p in list_dir(path)?.into_iter().filter(|p| is_image(p)) {
        match parse_name(&p) {
            Some((name, index, label)) => groups.entry(name).or_default().push((p, index, label)),
            None => unnamed += 1,
        }
    }
    match groups.len() {
        0 => Err(EngineError::data(path, format!("{unnamed} images, none named <name>_<index>_<label>.png"))),
        1 => {
            let (name, files) = groups.into_iter().next().expect("one group");
            from_named(&name, files, path, subset)
        }
        _ => {
            let names: Vec<String> = groups.keys().map(|n| format!("`{n}`")).collect();
            Err(EngineError::data(
                path,
                format!(
                    "the folder mixes sets named {}; choose one by appending its name to the folder, e.g. {}",
                    names.join(", "),
                    path.join(groups.keys().next().expect("two groups")).display()
                ),
            ))
        }
    }
}

/// `folder/name`: the PNGs in `folder` named `name_<index>_<label>.png`.
pub(super) fn load_prefix(path: &Path, subset: Subset) -> Result<Option<Dataset>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(None);
    };
    if !dir.is_dir() {
        return Ok(None);
    }
    let files: Vec<_> = list_dir(dir)?
        .into_iter()
        .filter_map(|p| parse_name(&p).map(|(n, i, l)| (n, p, i, l)))
        .filter(|(n, ..)| n == name)
        .map(|(_, p, i, l)| (p, i, l))
        .collect();
    if files.is_empty() {
        return Ok(None);
    }
    from_named(name, files, path, subset).map(Some)
}
