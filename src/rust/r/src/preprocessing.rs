//! Image augmentation (R/preprocessing.R): a batch of images transformed by the core, each
//! with its own parameters (drawn in R, from R's random numbers).
use crate::convert::{host_to_r, RArray};
use crate::guard;
use extendr_api::prelude::*;
use rustgpu_core::image::{apply_transform, FillMode, Transform};
use rustgpu_core::{Error, HostTensor};

/// `x`: images `(n, h, w, c)`; `params`: an `n` x 8 matrix (theta, tx, ty, shear, zx, zy,
/// flip_horizontal, flip_vertical), Keras's `apply_transform` parameters.
/// @noRd
#[extendr]
fn rg_apply_transforms(x: Robj, params: Robj, fill_mode: &str, cval: f64) -> Robj {
    guard(|| {
        let images = RArray::new(&x, "x", false)?.all();
        let [n, h, w, c] = images.shape[..] else {
            return Err(Error::Value(format!("images must have 4 axes (samples, height, width, channels), got {}", images.shape.len())));
        };
        let p = params.as_real_slice().ok_or_else(|| Error::Value("transform parameters must be a numeric matrix".into()))?;
        if p.len() != n * 8 {
            return Err(Error::Value(format!("{} transform parameters for {} images: 8 each expected", p.len(), n)));
        }
        let fill = FillMode::parse(fill_mode, cval)?;
        let size = h * w * c;
        let mut out = Vec::with_capacity(images.data.len());
        for i in 0..n {
            // Column-major n x 8: parameter k of image i is at k * n + i.
            let at = |k: usize| p[k * n + i];
            let t = Transform {
                theta: at(0),
                tx: at(1),
                ty: at(2),
                shear: at(3),
                zx: at(4),
                zy: at(5),
                flip_horizontal: at(6) != 0.0,
                flip_vertical: at(7) != 0.0,
            };
            out.extend(apply_transform(&images.data[i * size..(i + 1) * size], h, w, c, &t, fill));
        }
        Ok(host_to_r(&HostTensor::new(images.shape.clone(), out)?))
    })
}

extendr_module! {
    mod preprocessing;
    fn rg_apply_transforms;
}
