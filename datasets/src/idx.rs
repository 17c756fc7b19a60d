//! The IDX format: big-endian magic, dimension counts, then raw `u8` data.
//!
//! Images: magic 2051 (0x00000803), then count, rows, cols (16-byte header).
//! Labels: magic 2049 (0x00000801), then count (8-byte header).
//! Source: <http://yann.lecun.com/exdb/mnist/> ("FILE FORMATS FOR THE MNIST DATABASE").

use crate::DataError;
use std::path::Path;

const IMAGES_MAGIC: u32 = 2051;
const LABELS_MAGIC: u32 = 2049;

/// Images with labels. `images` holds `len() * rows * cols` pixels, row-major, 0..=255.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// Pixels, `[n, rows, cols]` flattened.
    pub images: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set has no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image (`rows * cols`).
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`, `rows * cols` bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        let p = self.pixels();
        &self.images[i * p..(i + 1) * p]
    }

    /// Image `i` moved by `dx` columns right and `dy` rows down (negative: left, up), the
    /// uncovered border filled with 0 (background), `rows * cols` bytes. Shifts of at least the
    /// image size give a blank image.
    pub fn translated(&self, i: usize, dx: isize, dy: isize) -> Vec<u8> {
        let (rows, cols) = (self.rows as isize, self.cols as isize);
        let src = self.image(i);
        let mut out = vec![0u8; src.len()];
        for y in 0..rows {
            let sy = y - dy;
            if !(0..rows).contains(&sy) {
                continue;
            }
            for x in 0..cols {
                let sx = x - dx;
                if (0..cols).contains(&sx) {
                    out[(y * cols + x) as usize] = src[(sy * cols + sx) as usize];
                }
            }
        }
        out
    }

    /// The first `n` images (or all if fewer).
    pub fn head(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        ImageSet {
            images: self.images[..n * self.pixels()].to_vec(),
            labels: self.labels[..n].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The images `start..end` (clamped to the set).
    pub fn range(&self, start: usize, end: usize) -> ImageSet {
        let end = end.min(self.len());
        let start = start.min(end);
        ImageSet {
            images: self.images[start * self.pixels()..end * self.pixels()].to_vec(),
            labels: self.labels[start..end].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Read an image file and its label file.
    ///
    /// # Errors
    /// [`DataError::Io`] if a file cannot be read, [`DataError::Format`] if either is malformed
    /// or their counts differ.
    pub fn load(images: &Path, labels: &Path) -> Result<Self, DataError> {
        let img_bytes = std::fs::read(images).map_err(|e| DataError::io(images, e))?;
        let lbl_bytes = std::fs::read(labels).map_err(|e| DataError::io(labels, e))?;
        let (n, rows, cols, pixels) =
            parse_images(&img_bytes).map_err(|reason| DataError::Format {
                path: images.to_path_buf(),
                reason,
            })?;
        let lbls = parse_labels(&lbl_bytes).map_err(|reason| DataError::Format {
            path: labels.to_path_buf(),
            reason,
        })?;
        if lbls.len() != n {
            return Err(DataError::Format {
                path: labels.to_path_buf(),
                reason: format!(
                    "{} labels for {} images in {}",
                    lbls.len(),
                    n,
                    images.display()
                ),
            });
        }
        Ok(Self {
            images: pixels.to_vec(),
            labels: lbls.to_vec(),
            rows,
            cols,
        })
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Result<u32, String> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("file ends at byte {} inside the header", bytes.len()))
}

/// Parse an IDX3 image file: `(count, rows, cols, pixels)`.
///
/// # Errors
/// A description of what is wrong: bad magic, truncated header or data, trailing bytes.
pub fn parse_images(bytes: &[u8]) -> Result<(usize, usize, usize, &[u8]), String> {
    let magic = be_u32(bytes, 0)?;
    if magic != IMAGES_MAGIC {
        return Err(format!("magic number {magic}, expected {IMAGES_MAGIC} for an image file (is it still gzip-compressed?)"));
    }
    let n = be_u32(bytes, 4)? as usize;
    let rows = be_u32(bytes, 8)? as usize;
    let cols = be_u32(bytes, 12)? as usize;
    if rows == 0 || cols == 0 {
        return Err(format!("image size {rows}x{cols}"));
    }
    let expected = n.checked_mul(rows * cols).ok_or("image count overflows")?;
    let data = &bytes[16..];
    if data.len() != expected {
        return Err(format!(
            "header announces {n} images of {rows}x{cols} = {expected} bytes but the file holds {} (truncated or padded)",
            data.len()
        ));
    }
    Ok((n, rows, cols, data))
}

/// Parse an IDX1 label file.
///
/// # Errors
/// A description of what is wrong: bad magic, truncated header or data, trailing bytes.
pub fn parse_labels(bytes: &[u8]) -> Result<&[u8], String> {
    let magic = be_u32(bytes, 0)?;
    if magic != LABELS_MAGIC {
        return Err(format!("magic number {magic}, expected {LABELS_MAGIC} for a label file (is it still gzip-compressed?)"));
    }
    let n = be_u32(bytes, 4)? as usize;
    let data = &bytes[8..];
    if data.len() != n {
        return Err(format!(
            "header announces {n} labels but the file holds {} (truncated or padded)",
            data.len()
        ));
    }
    Ok(data)
}

/// Encode images as an IDX3 file (used by tests and fixtures).
pub fn encode_images(images: &[u8], n: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + images.len());
    for v in [IMAGES_MAGIC, n as u32, rows as u32, cols as u32] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(images);
    out
}

/// Encode labels as an IDX1 file (used by tests and fixtures).
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}
