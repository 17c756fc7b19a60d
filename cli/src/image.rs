//! Reading a PNG as the circuit's input pixels.

use anyhow::{bail, Context};
use std::path::Path;

/// Largest decoded image accepted, bytes (a 28×28 digit takes 784).
const MAX_DECODED_BYTES: usize = 16 << 20;

/// The 8-bit gray pixels of the PNG at `path`, row-major, which must have `features` pixels
/// (a square of side √features for MNIST-like circuits). Colour images are converted to gray
/// with the Rec. 601 luma weights; alpha is ignored.
pub fn gray_pixels(path: &Path, features: usize) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let limits = png::Limits {
        bytes: MAX_DECODED_BYTES,
    };
    let mut decoder = png::Decoder::new_with_limits(std::io::BufReader::new(file), limits);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{} is not a readable PNG", path.display()))?;
    let (w, h) = (reader.info().width as usize, reader.info().height as usize);
    if w.checked_mul(h) != Some(features) {
        let side = (features as f64).sqrt().round() as usize;
        let want = if side * side == features {
            format!("{side}×{side}")
        } else {
            format!("{features} pixels")
        };
        bail!(
            "{} is {w}×{h}; the circuit takes {want} (one gray value per input): resize it",
            path.display()
        );
    }
    let size = reader
        .output_buffer_size()
        .context("the PNG's size overflows")?;
    let mut buf = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buf)
        .with_context(|| format!("decoding {}", path.display()))?;
    let channels = frame.color_type.samples();
    let bytes = &buf[..frame.buffer_size()];
    let mut gray = Vec::with_capacity(features);
    for row in bytes.chunks(frame.line_size).take(h) {
        for px in row.chunks_exact(channels).take(w) {
            gray.push(match channels {
                1 | 2 => px[0],
                _ => ((299 * px[0] as u32 + 587 * px[1] as u32 + 114 * px[2] as u32) / 1000) as u8,
            });
        }
    }
    if gray.len() != features {
        bail!(
            "{}: decoded {} pixels, expected {features}",
            path.display(),
            gray.len()
        );
    }
    Ok(gray)
}

#[cfg(test)]
mod tests {
    use super::gray_pixels;

    fn write_png(path: &std::path::Path, w: u32, h: u32, color: png::ColorType, data: &[u8]) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(data).unwrap();
    }

    #[test]
    fn gray_and_rgb_images_read_as_gray_and_wrong_sizes_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let gray: Vec<u8> = (0..16).map(|i| i * 16).collect();
        let p = dir.path().join("g.png");
        write_png(&p, 4, 4, png::ColorType::Grayscale, &gray);
        assert_eq!(gray_pixels(&p, 16).unwrap(), gray);
        let rgb: Vec<u8> = gray.iter().flat_map(|&g| [g, g, g]).collect();
        let p = dir.path().join("c.png");
        write_png(&p, 4, 4, png::ColorType::Rgb, &rgb);
        assert_eq!(gray_pixels(&p, 16).unwrap(), gray);
        let err = gray_pixels(&p, 784).unwrap_err().to_string();
        assert!(err.contains("28×28") && err.contains("4×4"), "{err}");
        std::fs::write(dir.path().join("x.png"), b"not a png").unwrap();
        assert!(gray_pixels(&dir.path().join("x.png"), 16).is_err());
    }
}
