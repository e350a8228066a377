//! Pixel images inside figures (heatmap cells, sample images, colorbars).
//!
//! The PNG gets them pixel by pixel, scaled with nearest-neighbour sampling. plotters' SVG
//! backend can only embed a bitmap at its native size (and needs the old `image` crate), so
//! in SVG a placeholder text is drawn at the image's place in the drawing order, then
//! replaced by an `<image>` element holding the PNG, scaled by the viewer without smoothing.
//! This is what plotting libraries do for large heatmaps: a vector rectangle per cell would
//! make SVGs of hundreds of megabytes for a linear layer.

use anyhow::{Context, Result, bail};
use image::ImageEncoder;
use image::codecs::png::PngEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::pen::Pen;

/// An image waiting to be put into the SVG in place of its placeholder.
pub struct Embedded {
    token: String,
    rect: [i32; 4],
    png: Vec<u8>,
}

/// Paints the `w` x `h` RGB image `rgb` into `rect` = [x0, y0, x1, y1) of `root`.
pub fn paint<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    pen: &Pen,
    rect: [i32; 4],
    (w, h): (usize, usize),
    rgb: &[u8],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let [x0, y0, x1, y1] = rect;
    if w == 0 || h == 0 || x1 <= x0 || y1 <= y0 || rgb.len() < w * h * 3 {
        return Ok(());
    }
    match &pen.embedded {
        None => {
            let (dw, dh) = ((x1 - x0) as usize, (y1 - y0) as usize);
            for py in 0..dh {
                let sy = (py * h / dh).min(h - 1);
                for px in 0..dw {
                    let sx = (px * w / dw).min(w - 1);
                    let i = (sy * w + sx) * 3;
                    root.draw_pixel((x0 + px as i32, y0 + py as i32), &RGBColor(rgb[i], rgb[i + 1], rgb[i + 2]))?;
                }
            }
        }
        Some(list) => {
            let mut list = list.borrow_mut();
            let token = format!("\u{E000}raster-{}\u{E000}", list.len());
            root.draw_text(&token, &pen.font(1.0), (x0, y0))?;
            list.push(Embedded { token, rect, png: encode_png(&rgb[..w * h * 3], w as u32, h as u32)? });
        }
    }
    Ok(())
}

/// Replaces each placeholder of `embedded` in the finished SVG document by its image.
pub fn embed(mut svg: String, embedded: Vec<Embedded>) -> Result<String> {
    for e in embedded {
        let Some(at) = svg.find(&e.token) else { bail!("internal error: an SVG image placeholder is missing") };
        let (Some(start), Some(end)) = (svg[..at].rfind("<text"), svg[at..].find("</text>")) else {
            bail!("internal error: an SVG image placeholder is malformed")
        };
        let end = at + end + "</text>".len();
        let [x0, y0, x1, y1] = e.rect;
        let element = format!(
            "<image x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" preserveAspectRatio=\"none\" \
             style=\"image-rendering:pixelated;image-rendering:crisp-edges\" href=\"data:image/png;base64,{}\"/>",
            x1 - x0,
            y1 - y0,
            base64(&e.png)
        );
        svg.replace_range(start..end, &element);
    }
    Ok(svg)
}

/// PNG bytes of an 8-bit RGB image.
pub fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(rgb, w, h, image::ExtendedColorType::Rgb8).context("encoding PNG")?;
    Ok(out)
}

/// Standard base64 with padding (RFC 4648), for data URIs.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_examples() {
        let cases =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")];
        for (plain, coded) in cases {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }
}
