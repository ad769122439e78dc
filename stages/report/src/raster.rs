//! A tiny RGB canvas (pixels, alpha blending) and its PNG encoding, for the CT slice
//! figures (charts are SVG, see `svg_chart`), plus the atomic file write every figure uses.
//!
//! Slices only need pixel fills and blends, so a few dozen lines replace an image library; the
//! PNGs carry no text, the HTML around them does.

use std::fs;
use std::io;
use std::path::Path;

use crate::ReportError;

/// An 8-bit sRGB colour.
pub(crate) type Rgb = [u8; 3];

/// `#rrggbb`, for HTML swatches that must match the PNG exactly.
pub(crate) fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// Row-major RGB pixels, row 0 at the top. Drawing outside the canvas is silently clipped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Canvas {
    pub width: usize,
    pub height: usize,
    data: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Canvas {
        let mut data = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            data.extend_from_slice(&background);
        }
        Canvas {
            width,
            height,
            data,
        }
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        if x < 0 || y < 0 || x as u64 >= self.width as u64 || y as u64 >= self.height as u64 {
            return None;
        }
        Some((y as usize * self.width + x as usize) * 3)
    }

    /// The pixel at (x, y), or `None` outside the canvas.
    pub fn get(&self, x: i64, y: i64) -> Option<Rgb> {
        self.index(x, y)
            .map(|i| [self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// Sets one pixel (ignored outside the canvas).
    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if let Some(i) = self.index(x, y) {
            self.data[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Mixes `c` over the pixel with opacity `alpha` in 0..=1.
    pub fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f32) {
        if let Some(old) = self.get(x, y) {
            let a = alpha.clamp(0.0, 1.0);
            let mix = |o: u8, n: u8| (o as f32 * (1.0 - a) + n as f32 * a).round() as u8;
            self.set(
                x,
                y,
                [mix(old[0], c[0]), mix(old[1], c[1]), mix(old[2], c[2])],
            );
        }
    }

    /// The canvas as an 8-bit RGB PNG.
    pub fn encode_png(&self) -> Result<Vec<u8>, png::EncodingError> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header()?;
            writer.write_image_data(&self.data)?;
        }
        Ok(out)
    }

    /// Encodes and writes the canvas to `path` (atomically, see [`write_atomic`]).
    pub fn save_png(&self, path: &Path) -> Result<(), ReportError> {
        let bytes = self.encode_png().map_err(|source| ReportError::Png {
            path: path.to_path_buf(),
            cause: source,
        })?;
        write_atomic(path, &bytes)
    }
}

/// Writes `bytes` to a sibling temporary file, then renames it over `path`, so a reader never
/// sees a half-written figure or page.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let io_err = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source: io::Error| ReportError::Io {
            path: p,
            action,
            cause: source,
        }
    };
    fs::write(tmp, bytes).map_err(io_err("write", tmp))?;
    fs::rename(tmp, path).map_err(io_err("rename into place", path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Decodes PNG bytes with the png crate: (width, height, RGB canvas).
    pub(crate) fn decode(bytes: &[u8]) -> Canvas {
        let decoder = png::Decoder::new(io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("png frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        Canvas {
            width: info.width as usize,
            height: info.height as usize,
            data: buf,
        }
    }

    #[test]
    fn png_round_trips_size_and_pixels() {
        let mut c = Canvas::new(7, 5, [10, 20, 30]);
        c.set(6, 4, [255, 0, 0]);
        (0..7).for_each(|x| c.set(x, 0, [0, 255, 0]));
        let back = decode(&c.encode_png().unwrap());
        assert_eq!((back.width, back.height), (7, 5));
        assert_eq!(back, c);
        assert_eq!(back.get(6, 4), Some([255, 0, 0]));
        assert_eq!(back.get(3, 0), Some([0, 255, 0]));
        assert_eq!(back.get(3, 1), Some([10, 20, 30]));
    }

    #[test]
    fn drawing_outside_is_clipped_not_a_panic() {
        let mut c = Canvas::new(4, 4, [0; 3]);
        for i in -10..100 {
            c.set(i, 0, [1, 1, 1]);
            c.set(i, i, [2, 2, 2]);
        }
        c.blend(9, 9, [9, 9, 9], 0.5);
        assert_eq!(c.get(3, 0), Some([1, 1, 1]));
        assert_eq!(c.get(2, 2), Some([2, 2, 2]));
        assert_eq!(c.get(4, 0), None);
    }

    #[test]
    fn blend_mixes_towards_the_colour() {
        let mut c = Canvas::new(1, 1, [100, 100, 100]);
        c.blend(0, 0, [200, 0, 100], 0.5);
        assert_eq!(c.get(0, 0), Some([150, 50, 100]));
    }

    #[test]
    fn write_atomic_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        write_atomic(&p, b"x").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"x");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = write_atomic(&dir.path().join("missing/a.png"), b"x").unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
