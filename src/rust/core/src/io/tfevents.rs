//! TensorBoard event files (`events.out.tfevents.*`): TFRecord framing (length, masked
//! CRC-32C of the length, the record, its masked CRC-32C) around `Event` protocol buffers:
//! the file-version event first, then one scalar summary per value. What Keras's TensorBoard
//! callback writes for epoch metrics, encoded here by hand (a handful of protobuf fields).
use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// CRC-32C (Castagnoli), as TFRecord uses it.
pub fn crc32c(data: &[u8]) -> u32 {
    const POLY: u32 = 0x82F6_3B78;
    let mut crc = !0u32;
    for byte in data {
        crc ^= *byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ POLY } else { crc >> 1 };
        }
    }
    !crc
}

/// TFRecord's masking of a CRC.
fn masked(crc: u32) -> u32 {
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited protobuf field.
fn bytes_field(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// `Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 | summary = 5 }`.
fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = Vec::new();
    varint(1 << 3 | 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    varint(2 << 3, &mut e);
    varint(step as u64, &mut e);
    body(&mut e);
    e
}

/// One TFRecord.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(data.len() + 16);
    r.extend_from_slice(&len);
    r.extend_from_slice(&masked(crc32c(&len)).to_le_bytes());
    r.extend_from_slice(data);
    r.extend_from_slice(&masked(crc32c(data)).to_le_bytes());
    r
}

/// One record of an event at `step` whose summary holds one value:
/// `Summary { value = 1: Value { tag = 1, <what `body` writes> } }`.
fn summary_record(step: i64, tag: &str, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut value = Vec::new();
    bytes_field(1, tag.as_bytes(), &mut value);
    body(&mut value);
    let mut summary = Vec::new();
    bytes_field(1, &value, &mut summary);
    record(&event(now(), step, |e| bytes_field(5, &summary, e)))
}

/// An event file in `dir` (created if needed), named as TensorFlow names them.
pub struct EventWriter {
    path: PathBuf,
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("cannot write \"{}\": {}", path.display(), e))
}

impl EventWriter {
    /// A new file, starting with the `brain.Event:2` version event.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
        let t = now();
        let path = dir.join(format!("events.out.tfevents.{}.{}.{}.v2", t as u64, host, std::process::id()));
        let first = event(t, 0, |e| bytes_field(3, b"brain.Event:2", e));
        std::fs::write(&path, record(&first)).map_err(|e| io_err(&path, e))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An existing event file, to append to.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Io(format!("no event file \"{}\"", path.display())));
        }
        Ok(Self { path: path.to_path_buf() })
    }

    /// Appends scalar summaries (`Summary { value = 1: Value { tag = 1, simple_value = 2 } }`)
    /// for `step`.
    pub fn scalars(&self, step: i64, values: &[(String, f32)]) -> Result<()> {
        let out: Vec<u8> = values
            .iter()
            .flat_map(|(tag, v)| {
                summary_record(step, tag, |value| {
                    varint(2 << 3 | 5, value);
                    value.extend_from_slice(&v.to_le_bytes());
                })
            })
            .collect();
        self.append(&out)
    }

    /// Appends histogram summaries of each named set of values at `step`
    /// (`Summary.Value { tag = 1, histo = 5 }`), as [`histogram_proto`] makes them.
    pub fn histograms(&self, step: i64, values: &[(String, &[f32])]) -> Result<()> {
        let out: Vec<u8> = values.iter().flat_map(|(tag, v)| summary_record(step, tag, |value| bytes_field(5, &histogram_proto(v), value))).collect();
        self.append(&out)
    }

    fn append(&self, bytes: &[u8]) -> Result<()> {
        let mut f = std::fs::OpenOptions::new().append(true).open(&self.path).map_err(|e| io_err(&self.path, e))?;
        f.write_all(bytes).map_err(|e| io_err(&self.path, e))
    }
}

/// Buckets of a histogram summary: as tf.summary.histogram's default, 30 of equal width from
/// the minimum to the maximum (one bucket when they are equal).
pub const HISTOGRAM_BUCKETS: usize = 30;

/// TensorFlow's `HistogramProto { min = 1, max = 2, num = 3, sum = 4, sum_squares = 5,
/// bucket_limit = 6 (packed doubles), bucket = 7 (packed doubles) }` of the finite values
/// (TensorBoard reads it as the histograms of TensorFlow 1's Keras, which R keras 2.2 wrote).
pub fn histogram_proto(values: &[f32]) -> Vec<u8> {
    let finite: Vec<f64> = values.iter().filter(|v| v.is_finite()).map(|v| *v as f64).collect();
    let (min, max) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let (min, max) = if finite.is_empty() { (0.0, 0.0) } else { (min, max) };
    let buckets = if max > min { HISTOGRAM_BUCKETS } else { 1 };
    let width = (max - min) / buckets as f64;
    let mut counts = vec![0f64; buckets];
    for v in &finite {
        let i = if width > 0.0 { (((v - min) / width) as usize).min(buckets - 1) } else { 0 };
        counts[i] += 1.0;
    }
    let limits: Vec<f64> = (1..=buckets).map(|i| if i == buckets { max } else { min + width * i as f64 }).collect();
    let mut h = Vec::new();
    for (field, v) in [(1u64, min), (2, max), (3, finite.len() as f64), (4, finite.iter().sum()), (5, finite.iter().map(|v| v * v).sum())] {
        varint(field << 3 | 1, &mut h);
        h.extend_from_slice(&v.to_le_bytes());
    }
    for (field, list) in [(6u64, &limits), (7, &counts)] {
        let packed: Vec<u8> = list.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes_field(field, &packed, &mut h);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_record_framing() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        let r = record(b"abc");
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
        assert_eq!(u32::from_le_bytes(r[15..19].try_into().unwrap()), masked(crc32c(b"abc")));
    }

    // Reads back the doubles of a HistogramProto (fields 1-5 fixed64, 6-7 packed).
    fn read_histogram(h: &[u8]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mut scalars, mut limits, mut counts) = (Vec::new(), Vec::new(), Vec::new());
        let mut i = 0;
        while i < h.len() {
            let key = h[i] as u64;
            i += 1;
            if key & 7 == 1 {
                scalars.push(f64::from_le_bytes(h[i..i + 8].try_into().unwrap()));
                i += 8;
            } else {
                let (mut len, mut shift) = (0usize, 0);
                loop {
                    let b = h[i];
                    i += 1;
                    len |= ((b & 0x7f) as usize) << shift;
                    shift += 7;
                    if b < 0x80 {
                        break;
                    }
                }
                let doubles: Vec<f64> = h[i..i + len].chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
                if key >> 3 == 6 {
                    limits = doubles
                } else {
                    counts = doubles
                }
                i += len;
            }
        }
        (scalars, limits, counts)
    }

    #[test]
    fn histogram_counts_each_finite_value_once() {
        let values: Vec<f32> = (0..100).map(|i| i as f32 / 10.0).chain([f32::NAN, f32::INFINITY]).collect();
        let (scalars, limits, counts) = read_histogram(&histogram_proto(&values));
        assert_eq!(&scalars[..3], &[0.0, 9.9f32 as f64, 100.0]);
        assert!((scalars[3] - 495.0).abs() < 1e-3);
        assert_eq!(limits.len(), HISTOGRAM_BUCKETS);
        assert_eq!(limits[HISTOGRAM_BUCKETS - 1], 9.9f32 as f64);
        assert_eq!(counts.iter().sum::<f64>(), 100.0);
        assert!(counts.iter().all(|c| *c >= 3.0 && *c <= 4.0), "{:?}", counts);
        let (scalars, limits, counts) = read_histogram(&histogram_proto(&[2.0, 2.0]));
        assert_eq!((scalars[0], scalars[1], limits, counts), (2.0, 2.0, vec![2.0], vec![2.0]));
    }
}
