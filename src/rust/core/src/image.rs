//! Keras's image augmentation (`ImageDataGenerator.apply_transform`): rotation, shifts, shear
//! and zoom as one affine map about the image's centre, sampled with linear interpolation as
//! `scipy.ndimage.affine_transform(order = 1)` does, then flips. Images are `(h, w, c)`,
//! row-major (channels last); the random parameters are drawn by the caller.
use crate::error::{Error, Result};

/// One image's transform, with Keras's conventions: `theta` and `shear` in degrees, `tx` a
/// shift along the rows (height), `ty` along the columns, `zx`/`zy` zoom factors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub theta: f64,
    pub tx: f64,
    pub ty: f64,
    pub shear: f64,
    pub zx: f64,
    pub zy: f64,
    pub flip_horizontal: bool,
    pub flip_vertical: bool,
}

/// What points outside the image read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FillMode {
    /// The nearest edge pixel (Keras's default).
    Nearest,
    /// A constant, beyond the edges (no interpolation there, as scipy's "constant").
    Constant(f32),
}

impl FillMode {
    pub fn parse(mode: &str, cval: f64) -> Result<Self> {
        match mode {
            "nearest" => Ok(FillMode::Nearest),
            "constant" => Ok(FillMode::Constant(cval as f32)),
            other => Err(Error::Value(format!("`fill_mode = \"{}\"` is not supported yet: use \"nearest\" or \"constant\"", other))),
        }
    }
}

type Matrix = [[f64; 3]; 3];

fn multiply(a: &Matrix, b: &Matrix) -> Matrix {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Keras's matrix for `t` on an `h` x `w` image, in scipy's (row, column) coordinates: the
/// map from each output pixel to where it reads the input. None when it is the identity.
fn affine(t: &Transform, h: usize, w: usize) -> Option<Matrix> {
    let mut m: Option<Matrix> = None;
    let mut then = |next: Matrix| {
        m = Some(match m {
            Some(cur) => multiply(&cur, &next),
            None => next,
        })
    };
    if t.theta != 0.0 {
        let a = t.theta.to_radians();
        then([[a.cos(), -a.sin(), 0.0], [a.sin(), a.cos(), 0.0], [0.0, 0.0, 1.0]]);
    }
    if t.tx != 0.0 || t.ty != 0.0 {
        then([[1.0, 0.0, t.tx], [0.0, 1.0, t.ty], [0.0, 0.0, 1.0]]);
    }
    if t.shear != 0.0 {
        let s = t.shear.to_radians();
        then([[1.0, -s.sin(), 0.0], [0.0, s.cos(), 0.0], [0.0, 0.0, 1.0]]);
    }
    if t.zx != 1.0 || t.zy != 1.0 {
        then([[t.zx, 0.0, 0.0], [0.0, t.zy, 0.0], [0.0, 0.0, 1.0]]);
    }
    let m = m?;
    // About the centre (Keras's transform_matrix_offset_center, x the rows).
    let (ox, oy) = (h as f64 / 2.0 - 0.5, w as f64 / 2.0 - 0.5);
    let offset = [[1.0, 0.0, ox], [0.0, 1.0, oy], [0.0, 0.0, 1.0]];
    let reset = [[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]];
    let mut m = multiply(&multiply(&offset, &m), &reset);
    // Keras swaps x and y for channels-last images (columns after rows): columns 0 and 1,
    // then rows 0 and 1.
    for row in m.iter_mut() {
        row.swap(0, 1);
    }
    m.swap(0, 1);
    Some(m)
}

/// An `h` x `w` x `ch` image, row-major.
struct Image<'a> {
    data: &'a [f32],
    h: usize,
    w: usize,
    ch: usize,
}

impl Image<'_> {
    /// The value at real coordinates (r, c) of one channel, linearly interpolated.
    fn sample(&self, channel: usize, r: f64, c: f64, fill: FillMode) -> f32 {
        let Image { data: img, h, w, ch } = *self;
        let at = |i: isize, j: isize| -> f32 {
            let i = i.clamp(0, h as isize - 1) as usize;
            let j = j.clamp(0, w as isize - 1) as usize;
            img[(i * w + j) * ch + channel]
        };
        if let FillMode::Constant(v) = fill {
            // scipy's "constant": beyond the edges the constant, no interpolation with it.
            let eps = 1e-9;
            if r < -eps || c < -eps || r > (h - 1) as f64 + eps || c > (w - 1) as f64 + eps {
                return v;
            }
        }
        let (r0, c0) = (r.floor(), c.floor());
        let (fr, fc) = (r - r0, c - c0);
        let (i, j) = (r0 as isize, c0 as isize);
        let top = (1.0 - fc) * at(i, j) as f64 + fc * at(i, j + 1) as f64;
        let bottom = (1.0 - fc) * at(i + 1, j) as f64 + fc * at(i + 1, j + 1) as f64;
        ((1.0 - fr) * top + fr * bottom) as f32
    }
}

/// `img` (`h` x `w` x `c`, row-major) transformed by `t`.
pub fn apply_transform(img: &[f32], h: usize, w: usize, c: usize, t: &Transform, fill: FillMode) -> Vec<f32> {
    let mut out = match affine(t, h, w) {
        None => img.to_vec(),
        Some(m) => {
            let mut out = vec![0f32; img.len()];
            let image = Image { data: img, h, w, ch: c };
            for i in 0..h {
                for j in 0..w {
                    let r = m[0][0] * i as f64 + m[0][1] * j as f64 + m[0][2];
                    let col = m[1][0] * i as f64 + m[1][1] * j as f64 + m[1][2];
                    for k in 0..c {
                        out[(i * w + j) * c + k] = image.sample(k, r, col, fill);
                    }
                }
            }
            out
        }
    };
    if t.flip_horizontal {
        for i in 0..h {
            for j in 0..w / 2 {
                for k in 0..c {
                    out.swap((i * w + j) * c + k, (i * w + (w - 1 - j)) * c + k);
                }
            }
        }
    }
    if t.flip_vertical {
        for i in 0..h / 2 {
            for j in 0..w {
                for k in 0..c {
                    out.swap((i * w + j) * c + k, ((h - 1 - i) * w + j) * c + k);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_copies_and_flips_mirror() {
        let img: Vec<f32> = (0..12).map(|v| v as f32).collect(); // 2 x 3 x 2
        let id = Transform { theta: 0.0, tx: 0.0, ty: 0.0, shear: 0.0, zx: 1.0, zy: 1.0, flip_horizontal: false, flip_vertical: false };
        assert_eq!(apply_transform(&img, 2, 3, 2, &id, FillMode::Nearest), img);
        let flipped = apply_transform(&img, 2, 3, 2, &Transform { flip_horizontal: true, ..id }, FillMode::Nearest);
        assert_eq!(&flipped[..6], &[4., 5., 2., 3., 0., 1.]);
        assert!(FillMode::parse("wrap", 0.0).is_err());
    }
}
