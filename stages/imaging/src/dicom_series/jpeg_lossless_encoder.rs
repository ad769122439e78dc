//! A small JPEG Lossless encoder (process 14, one component), for the decoder's tests only:
//! any predictor 1-7, a fixed or generated Huffman table (code lengths 1-16), point transform
//! and restart intervals of whole rows; plus seeded random test images.
//!
//! Written from T.81 Annex H independently of the decoder's code, so that a round trip
//! checks the decoder against the standard's prediction rules, not against itself.

/// xorshift64: seeded, reproducible cases.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A Huffman table for the difference categories SSSS 0..=16, with canonical codes.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    counts: [u8; 16],
    values: Vec<u8>,
    /// (code, length) by category.
    codes: [(u32, u32); 17],
}

impl Table {
    /// Codes of `lengths[category]` bits; same-length codes in the order of `order`.
    fn from_lengths(lengths: &[u32; 17], order: &[u8]) -> Table {
        let mut values = order.to_vec();
        values.sort_by_key(|&s| lengths[s as usize]);
        let mut counts = [0u8; 16];
        for &s in &values {
            counts[lengths[s as usize] as usize - 1] += 1;
        }
        let (mut codes, mut code, mut k) = ([(0, 0); 17], 0u32, 0);
        for len in 1..=16u32 {
            for _ in 0..counts[len as usize - 1] {
                codes[values[k] as usize] = (code, len);
                code += 1;
                k += 1;
            }
            code <<= 1;
        }
        Table {
            counts,
            values,
            codes,
        }
    }

    /// Short codes for small categories; 13-16 take 10-13 bits (the slow path).
    pub fn fixed() -> Table {
        let lengths = [4, 3, 3, 3, 3, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
        Table::from_lengths(&lengths, &(0..17).collect::<Vec<_>>())
    }

    /// Random code lengths (1-16, never the all-ones code) in a random value order.
    pub fn random(rng: &mut Rng) -> Table {
        let mut lengths = [16u32; 17];
        let mut kraft = 17u32; // sum of 2^(16 - length)
        for _ in 0..rng.below(300) {
            let s = rng.below(17) as usize;
            let grow = 1 << (16 - lengths[s]);
            if lengths[s] > 1 && kraft + grow < 1 << 16 {
                kraft += grow;
                lengths[s] -= 1;
            }
        }
        let mut order: Vec<u8> = (0..17).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        Table::from_lengths(&lengths, &order)
    }
}

/// How [`encode`] codes an image.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    pub precision: u32,
    pub predictor: u8,
    pub point_transform: u32,
    /// Rows per restart interval; 0: none.
    pub restart_rows: usize,
    pub table: Table,
}

impl Opts {
    pub fn new(precision: u32, predictor: u8) -> Opts {
        Opts {
            precision,
            predictor,
            point_transform: 0,
            restart_rows: 0,
            table: Table::fixed(),
        }
    }
}

pub(crate) fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend([0xFF, marker]);
    out.extend((body.len() as u16 + 2).to_be_bytes());
    out.extend(body);
}

#[derive(Default)]
struct BitWriter {
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, bits: u32, len: u32, out: &mut Vec<u8>) {
        self.acc = self.acc << len | (bits as u64 & ((1 << len) - 1));
        self.n += len;
        while self.n >= 8 {
            self.n -= 8;
            let b = (self.acc >> self.n) as u8;
            out.push(b);
            if b == 0xFF {
                out.push(0);
            }
        }
    }
    /// Pad the last byte with 1 bits.
    fn flush(&mut self, out: &mut Vec<u8>) {
        if self.n > 0 {
            let pad = 8 - self.n;
            self.put((1 << pad) - 1, pad, out);
        }
    }
}

/// Encode `img` (`rows x columns` samples below 2^precision) as a JPEG Lossless stream:
/// SOI, APP0, SOF3, DHT, [DRI], SOS, scan, EOI.
pub(crate) fn encode(img: &[u16], rows: usize, columns: usize, o: &Opts) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    segment(&mut out, 0xE0, b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0");
    let [y0, y1] = (rows as u16).to_be_bytes();
    let [x0, x1] = (columns as u16).to_be_bytes();
    segment(
        &mut out,
        0xC3,
        &[o.precision as u8, y0, y1, x0, x1, 1, 7, 0x11, 0],
    );
    let mut dht = vec![0x00];
    dht.extend(o.table.counts);
    dht.extend(&o.table.values);
    segment(&mut out, 0xC4, &dht);
    if o.restart_rows > 0 {
        segment(
            &mut out,
            0xDD,
            &((o.restart_rows * columns) as u16).to_be_bytes(),
        );
    }
    let sos = [1, 7, 0x00, o.predictor, 0, o.point_transform as u8];
    segment(&mut out, 0xDA, &sos);
    let t: Vec<i32> = img
        .iter()
        .map(|&v| (v >> o.point_transform) as i32)
        .collect();
    let at = |x: usize, y: usize| t[y * columns + x];
    let initial = 1 << (o.precision - o.point_transform - 1);
    let interval = if o.restart_rows == 0 {
        rows
    } else {
        o.restart_rows
    };
    let (mut w, mut rst) = (BitWriter::default(), 0u8);
    for y in 0..rows {
        let first_line = y % interval == 0;
        if first_line && y > 0 {
            w.flush(&mut out);
            out.extend([0xFF, 0xD0 + rst]);
            rst = (rst + 1) % 8;
        }
        for x in 0..columns {
            // T.81 H.1.2.1 and Table H.1.
            let predicted = match (x, first_line) {
                (0, true) => initial,
                (_, true) => at(x - 1, y),
                (0, false) => at(0, y - 1),
                _ => {
                    let (a, b, c) = (at(x - 1, y), at(x, y - 1), at(x - 1, y - 1));
                    match o.predictor {
                        1 => a,
                        2 => b,
                        3 => c,
                        4 => a + b - c,
                        5 => a + ((b - c) >> 1),
                        6 => b + ((a - c) >> 1),
                        _ => (a + b) >> 1,
                    }
                }
            };
            let d = (at(x, y) - predicted).rem_euclid(1 << 16);
            let d = if d > 32768 { d - 65536 } else { d };
            let ssss = 32 - d.unsigned_abs().leading_zeros();
            let (code, len) = o.table.codes[ssss as usize];
            w.put(code, len, &mut out);
            if (1..=15).contains(&ssss) {
                let extra = if d < 0 { d + (1 << ssss) - 1 } else { d };
                w.put(extra as u32, ssss, &mut out);
            }
        }
    }
    w.flush(&mut out);
    out.extend([0xFF, 0xD9]);
    out
}

/// A random image of values below 2^precision: noise, a smooth walk or extremes; it holds
/// 0 and the largest value when it has two samples or more.
pub(crate) fn image(rng: &mut Rng, n: usize, precision: u32) -> Vec<u16> {
    let max = (1u32 << precision) - 1;
    let kind = rng.below(3);
    let mut walk = rng.below(max as u64 + 1) as i64;
    let mut img: Vec<u16> = (0..n)
        .map(|_| match kind {
            0 => rng.below(max as u64 + 1) as u16,
            1 => {
                walk = (walk + rng.below(41) as i64 - 20).clamp(0, max as i64);
                walk as u16
            }
            _ => [0, max, max / 2 + 1, rng.below(max as u64 + 1) as u32][rng.below(4) as usize]
                as u16,
        })
        .collect();
    if n >= 2 {
        let (i, j) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
        img[i] = 0;
        img[if j == i { (i + 1) % n } else { j }] = max as u16;
    }
    img
}

/// What the decoder must give back: the samples with the point transform's low bits cleared.
pub(crate) fn expected(img: &[u16], pt: u32) -> Vec<u16> {
    img.iter().map(|&v| (v >> pt) << pt).collect()
}
