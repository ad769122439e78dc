//! A fast decoder for one grey-scale JPEG Lossless frame (ITU-T T.81 process 14: Huffman
//! coded, non-hierarchical), as DICOM stores it in transfer syntaxes 1.2.840.10008.1.2.4.57
//! (any predictor) and 1.2.840.10008.1.2.4.70 (predictor 1).
//!
//! Why our own: the general path (dicom-pixeldata's `jpeg` feature, the `jpeg-decoder` crate)
//! first collects every Huffman difference of the image into a vector through a generic bit
//! reader and predicts in a second pass; it was over 60 % of a JPEG Lossless series'
//! conversion time. Here the scan is read through a 64-bit bit buffer, most Huffman codes are
//! decoded with one look-up on the next [`LOOKUP_BITS`] bits (code length and SSSS), and
//! samples are predicted in the same pass, row by row, with the predictor chosen at compile
//! time.
//!
//! Scope: one component, precision 2-16, predictors 1-7, point transform, restart intervals
//! of whole rows. Anything else that is valid JPEG (several components, DCT, hierarchical or
//! arithmetic processes, DNL, restart intervals that split a row) is
//! [`LosslessError::Unsupported`], for the caller to fall back to the general decoder.
//! Corrupt or truncated data is an error, never a panic or an endless loop; the one large
//! allocation is the output of `rows x columns` samples, which must match the frame header
//! and is made only once the scan holds at least one bit per sample.

/// Why a frame was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LosslessError {
    /// Valid JPEG this decoder does not handle: use the general decoder.
    Unsupported(String),
    /// The data ends before every sample is decoded.
    Truncated(String),
    /// Anything else wrong with the stream.
    Corrupt(String),
}

use LosslessError::{Corrupt, Truncated, Unsupported};

/// Bits of the Huffman look-up table: codes up to this length decode in one step.
pub(crate) const LOOKUP_BITS: u32 = 9;

/// One Huffman table (DHT class 0) ready for decoding.
struct Huffman {
    /// By the next [`LOOKUP_BITS`] bits: `code length << 8 | value`; 0 for longer codes.
    lookup: [u16; 1 << LOOKUP_BITS],
    /// Largest code of each length (index 1..=16), -1 where there is none.
    max_code: [i32; 17],
    /// Index into `values` of a code of each length, minus that length's first code.
    offset: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    /// Build from the 16 code counts and the values of a DHT table (canonical codes, T.81 C).
    fn new(counts: &[u8], values: &[u8]) -> Result<Self, LosslessError> {
        let mut t = Huffman {
            lookup: [0; 1 << LOOKUP_BITS],
            max_code: [-1; 17],
            offset: [0; 17],
            values: values.to_vec(),
        };
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            if code + n as i32 > 1 << len {
                return Err(Corrupt(format!(
                    "Huffman table has more codes of {len} bits than fit"
                )));
            }
            t.offset[len as usize] = k as i32 - code;
            for &v in &values[k..k + n] {
                if len <= LOOKUP_BITS {
                    let first = (code as usize) << (LOOKUP_BITS - len);
                    let entry = (len as u16) << 8 | v as u16;
                    t.lookup[first..first + (1 << (LOOKUP_BITS - len))].fill(entry);
                }
                code += 1;
            }
            if n > 0 {
                t.max_code[len as usize] = code - 1;
            }
            k += n;
            code <<= 1;
        }
        Ok(t)
    }

    /// (length, value) of a code longer than [`LOOKUP_BITS`] at the top of `buf`.
    #[cold]
    fn slow(&self, buf: u64) -> Option<(u32, u32)> {
        (LOOKUP_BITS + 1..=16).find_map(|len| {
            let code = (buf >> (64 - len)) as i32;
            (code <= self.max_code[len as usize]).then(|| {
                let i = (code + self.offset[len as usize]) as usize;
                (len, self.values.get(i).copied().unwrap_or(0xFF) as u32)
            })
        })
    }
}

/// What went wrong inside the entropy-coded data (kept small: checked once per sample).
#[derive(Debug, Clone, Copy)]
enum ScanError {
    BadCode,
    BadSsss(u32),
}

/// The entropy-coded data of a scan as a bit stream: 0xFF00 stuffing removed, zeros appended
/// at a marker or at the end of the data (and counted, to detect reading past them).
#[derive(Clone, Copy)]
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    /// Next bit at bit 63.
    buf: u64,
    count: u32,
    /// Appended zero bits at the bottom of `buf`; `count < padded` means data ran out.
    padded: u32,
}

impl Bits<'_> {
    /// Fill the buffer to at least 57 bits, a byte at a time.
    #[inline(always)]
    fn refill(&mut self) {
        while self.count <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(&0xFF) if self.data.get(self.pos + 1) == Some(&0) => {
                    self.pos += 2;
                    0xFF
                }
                Some(&0xFF) | None => {
                    // A marker or the end: stay there and append zeros.
                    self.padded = self.padded.saturating_add(64 - self.count);
                    self.count = 64;
                    return;
                }
                Some(&b) => {
                    self.pos += 1;
                    b
                }
            };
            self.buf |= (byte as u64) << (56 - self.count);
            self.count += 8;
        }
    }

    /// The next difference: a Huffman-coded SSSS and SSSS extra bits (T.81 H.1.2.2).
    #[inline(always)]
    fn diff(&mut self, t: &Huffman) -> Result<i32, ScanError> {
        if self.count < 32 {
            self.refill();
        }
        let entry = t.lookup[(self.buf >> (64 - LOOKUP_BITS)) as usize] as u32;
        let (len, ssss) = if entry != 0 {
            (entry >> 8, entry & 0xFF)
        } else {
            t.slow(self.buf).ok_or(ScanError::BadCode)?
        };
        self.buf <<= len;
        self.count -= len;
        match ssss {
            0 => Ok(0),
            1..=15 => {
                let v = (self.buf >> (64 - ssss)) as i32;
                self.buf <<= ssss;
                self.count -= ssss;
                // A leading 0 bit means a negative difference.
                Ok(if v < 1 << (ssss - 1) {
                    v - (1 << ssss) + 1
                } else {
                    v
                })
            }
            16 => Ok(32768),
            _ => Err(ScanError::BadSsss(ssss)),
        }
    }

    /// Whether bits past the data (a marker or the end) were decoded; with the reason.
    fn overrun(&self) -> Option<LosslessError> {
        if self.count >= self.padded {
            return None;
        }
        Some(match self.data.get(self.pos + 1) {
            Some(&m) => Corrupt(format!(
                "marker FF{m:02X} at byte {} inside the scan data, before every sample was decoded",
                self.pos
            )),
            None => Truncated(format!(
                "the JPEG Lossless stream ends ({} bytes) before every sample was decoded",
                self.data.len()
            )),
        })
    }

    /// End a restart interval: drop the buffered fill bits and read the marker RST`n`
    /// (skipping stray bytes before it, as libjpeg does).
    fn restart(&mut self, n: u8) -> Result<(), LosslessError> {
        if let Some(e) = self.overrun() {
            return Err(e);
        }
        (self.buf, self.count, self.padded) = (0, 0, 0);
        loop {
            match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
                (Some(&0xFF), Some(&m)) if m == 0xD0 + n => {
                    self.pos += 2;
                    return Ok(());
                }
                (Some(&0xFF), Some(&m)) if m != 0 && m != 0xFF => {
                    return Err(Corrupt(format!(
                        "marker FF{m:02X} at byte {} where RST{n} was expected",
                        self.pos
                    )))
                }
                (_, None) => {
                    return Err(Truncated(format!(
                        "the JPEG Lossless stream ends ({} bytes) where RST{n} was expected",
                        self.data.len()
                    )))
                }
                _ => self.pos += 1,
            }
        }
    }
}

/// Frame (SOF3) and scan (SOS) parameters the decoder needs.
struct Params {
    rows: usize,
    columns: usize,
    precision: u32,
    predictor: u8,
    point_transform: u32,
    /// Rows per restart interval (all rows without restarts).
    interval: usize,
}

/// Decode the JPEG Lossless stream `data` (one frame: SOI ... SOS, scan data) of a
/// `rows x columns` image into its samples, row by row, already shifted back by the point
/// transform. The frame header must state the same size.
pub(crate) fn decode(data: &[u8], rows: u32, columns: u32) -> Result<Vec<u16>, LosslessError> {
    if data.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err(Corrupt(
            "no SOI marker (FFD8) at the start of the frame".into(),
        ));
    }
    let mut pos = 2;
    let mut frame: Option<(usize, usize, u32, u8)> = None;
    let mut tables: [Option<Huffman>; 4] = [None, None, None, None];
    let mut restart = 0usize;
    loop {
        // Markers start with 0xFF; bytes before one are skipped (libjpeg tolerates them too).
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = data.get(pos) else {
            return Err(Truncated(
                "the JPEG Lossless stream ends before its scan (SOS)".into(),
            ));
        };
        pos += 1;
        match marker {
            0x00 | 0x01 => continue, // stuffed byte outside a scan, TEM: no segment
            0xD9 => return Err(Corrupt("EOI before any scan (SOS)".into())),
            0xD0..=0xD8 => {
                return Err(Corrupt(format!(
                    "marker FF{marker:02X} before the scan (SOS)"
                )))
            }
            _ => {}
        }
        let len = match data.get(pos..pos + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
            None => return Err(Truncated(format!("marker FF{marker:02X} has no length"))),
        };
        if len < 2 {
            return Err(Corrupt(format!("segment FF{marker:02X} of length {len}")));
        }
        let Some(seg) = data.get(pos + 2..pos + len) else {
            return Err(Truncated(format!(
                "segment FF{marker:02X} of {len} bytes runs past the end of the stream"
            )));
        };
        pos += len;
        match marker {
            0xC3 => {
                if frame.is_some() {
                    return Err(Corrupt("a second frame header (SOF)".into()));
                }
                frame = Some(parse_sof(seg, rows, columns)?);
            }
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                return Err(Unsupported(format!(
                    "frame header SOF{} (only SOF3, lossless Huffman, is decoded here)",
                    marker - 0xC0
                )))
            }
            0xC4 => parse_dht(seg, &mut tables)?,
            0xDD => {
                let b = seg
                    .get(..2)
                    .ok_or(Corrupt("DRI segment too short".into()))?;
                restart = u16::from_be_bytes([b[0], b[1]]) as usize;
            }
            0xDA => {
                let (rows, columns, precision, component) =
                    frame.ok_or(Corrupt("scan (SOS) before the frame header (SOF3)".into()))?;
                let (table, predictor, point_transform) = parse_sos(seg, component, precision)?;
                let table = tables[table as usize].as_ref().ok_or_else(|| {
                    Corrupt(format!(
                        "the scan uses Huffman table {table}, which no DHT defines"
                    ))
                })?;
                if !restart.is_multiple_of(columns) {
                    return Err(Unsupported(format!(
                        "restart interval of {restart} samples is not whole rows of {columns}"
                    )));
                }
                let p = Params {
                    rows,
                    columns,
                    precision,
                    predictor,
                    point_transform,
                    interval: if restart == 0 {
                        rows
                    } else {
                        restart / columns
                    },
                };
                return decode_scan(data, pos, &p, table);
            }
            _ => {} // APPn, COM, DQT, DNL (after the scan), ...: not needed
        }
    }
}

/// SOF3: (rows, columns, precision, component id), checked against the DICOM header.
fn parse_sof(
    seg: &[u8],
    rows: u32,
    columns: u32,
) -> Result<(usize, usize, u32, u8), LosslessError> {
    let [p, y0, y1, x0, x1, nf, ..] = *seg else {
        return Err(Corrupt("frame header (SOF3) too short".into()));
    };
    let (y, x) = (u16::from_be_bytes([y0, y1]), u16::from_be_bytes([x0, x1]));
    if nf != 1 {
        return Err(match nf {
            0 => Corrupt("frame header (SOF3) has no component".into()),
            n => Unsupported(format!("{n} components (only grey-scale is decoded here)")),
        });
    }
    let Some(&component) = seg.get(6) else {
        return Err(Corrupt("frame header (SOF3) too short".into()));
    };
    if !(2..=16).contains(&p) {
        return Err(Corrupt(format!(
            "sample precision {p} (lossless allows 2-16)"
        )));
    }
    if x == 0 {
        return Err(Corrupt("frame header (SOF3) has 0 samples per line".into()));
    }
    if y == 0 {
        return Err(Unsupported(
            "number of lines defined by a DNL marker".into(),
        ));
    }
    if y as u32 != rows || x as u32 != columns {
        return Err(Corrupt(format!(
            "frame header says {y}x{x} samples, the DICOM header {rows}x{columns} (Rows x Columns)"
        )));
    }
    Ok((y as usize, x as usize, p as u32, component))
}

/// DHT: store the DC (class 0) tables; AC tables are checked and ignored.
fn parse_dht(mut seg: &[u8], tables: &mut [Option<Huffman>; 4]) -> Result<(), LosslessError> {
    while !seg.is_empty() {
        let (class, id) = (seg[0] >> 4, seg[0] & 15);
        let counts = seg
            .get(1..17)
            .ok_or(Corrupt("Huffman table (DHT) too short".into()))?;
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let values = seg.get(17..17 + total).ok_or(Corrupt(
            "Huffman table (DHT) too short for its values".into(),
        ))?;
        if class > 1 || id > 3 {
            return Err(Corrupt(format!("Huffman table class {class} id {id}")));
        }
        if class == 0 {
            tables[id as usize] = Some(Huffman::new(counts, values)?);
        }
        seg = &seg[17 + total..];
    }
    Ok(())
}

/// SOS: (Huffman table, predictor 1-7, point transform).
fn parse_sos(seg: &[u8], component: u8, precision: u32) -> Result<(u8, u8, u32), LosslessError> {
    let [ns, cs, tables, ss, _se, ahal, ..] = *seg else {
        return Err(Corrupt("scan header (SOS) too short".into()));
    };
    if ns != 1 || cs != component {
        return Err(Corrupt(format!(
            "scan of {ns} components (first {cs}) in a frame of one component ({component})"
        )));
    }
    let table = tables >> 4;
    if table > 3 {
        return Err(Corrupt(format!(
            "scan uses Huffman table {table} (0-3 allowed)"
        )));
    }
    if !(1..=7).contains(&ss) {
        return Err(Corrupt(format!("predictor {ss} (1-7 allowed)")));
    }
    let point_transform = (ahal & 15) as u32;
    if point_transform >= precision {
        return Err(Corrupt(format!(
            "point transform {point_transform} not below the precision {precision}"
        )));
    }
    Ok((table, ss, point_transform))
}

/// Decode the scan starting at `data[start]` into `rows x columns` samples.
fn decode_scan(
    data: &[u8],
    start: usize,
    p: &Params,
    table: &Huffman,
) -> Result<Vec<u16>, LosslessError> {
    let n = p.rows * p.columns;
    // Every sample takes at least one bit: refuse to allocate for a stream that cannot hold it.
    let have = data.len().saturating_sub(start) as u64 * 8;
    if have < n as u64 {
        return Err(Truncated(format!(
            "the scan data holds {have} bits, {n} samples need at least as many"
        )));
    }
    let mut out = vec![0u16; n];
    let (buf, count, padded) = (0, 0, 0);
    let mut bits = Bits {
        data,
        pos: start,
        buf,
        count,
        padded,
    };
    let initial = 1i32 << (p.precision - p.point_transform - 1);
    let mut next_rst = 0u8;
    for y in 0..p.rows {
        let (done, rest) = out.split_at_mut(y * p.columns);
        let row = &mut rest[..p.columns];
        let result = if y % p.interval == 0 {
            if y > 0 {
                bits.restart(next_rst)?;
                next_rst = (next_rst + 1) & 7;
            }
            // First line (of the image or of a restart interval): predict from the left.
            row_left(&mut bits, table, row, initial)
        } else {
            let above = &done[(y - 1) * p.columns..];
            match p.predictor {
                1 => row_left(&mut bits, table, row, above[0] as i32),
                2 => row_2d::<2>(&mut bits, table, row, above),
                3 => row_2d::<3>(&mut bits, table, row, above),
                4 => row_2d::<4>(&mut bits, table, row, above),
                5 => row_2d::<5>(&mut bits, table, row, above),
                6 => row_2d::<6>(&mut bits, table, row, above),
                _ => row_2d::<7>(&mut bits, table, row, above),
            }
        };
        result.map_err(|e| match e {
            ScanError::BadCode => Corrupt(format!("row {y}: a Huffman code not in the table")),
            ScanError::BadSsss(s) => Corrupt(format!("row {y}: difference category {s} (>16)")),
        })?;
        // Stop at the first row that ran past the data rather than decode zeros to the end.
        if let Some(e) = bits.overrun() {
            return Err(e);
        }
    }
    if p.point_transform > 0 {
        for v in &mut out {
            *v <<= p.point_transform;
        }
    }
    Ok(out)
}

/// A row whose first sample is predicted by `first` and the others by their left neighbour
/// (predictor 1, and the first line of the image or of a restart interval).
#[inline(always)]
fn row_left(bits: &mut Bits, t: &Huffman, row: &mut [u16], first: i32) -> Result<(), ScanError> {
    // A local copy of the bit reader stays in registers through the loop.
    let mut r = *bits;
    let mut left = first;
    for v in row.iter_mut() {
        left = (left + r.diff(t)?) & 0xFFFF;
        *v = left as u16;
    }
    *bits = r;
    Ok(())
}

/// A row below another with a two-dimensional predictor `SV` (T.81 Table H.1); the first
/// sample is predicted from above.
#[inline(always)]
fn row_2d<const SV: u8>(
    bits: &mut Bits,
    t: &Huffman,
    row: &mut [u16],
    above: &[u16],
) -> Result<(), ScanError> {
    let mut r = *bits;
    let mut left = (above[0] as i32 + r.diff(t)?) & 0xFFFF;
    row[0] = left as u16;
    for (v, up) in row[1..].iter_mut().zip(above.windows(2)) {
        let (a, b, c) = (left, up[1] as i32, up[0] as i32);
        let predicted = match SV {
            2 => b,
            3 => c,
            4 => a + b - c,
            5 => a + ((b - c) >> 1),
            6 => b + ((a - c) >> 1),
            _ => (a + b) >> 1,
        };
        left = (predicted + r.diff(t)?) & 0xFFFF;
        *v = left as u16;
    }
    *bits = r;
    Ok(())
}

#[cfg(test)]
#[path = "jpeg_lossless_encoder.rs"]
pub(crate) mod encoder;
#[cfg(test)]
#[path = "jpeg_lossless_tests.rs"]
mod tests;
