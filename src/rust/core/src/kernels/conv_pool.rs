//! A convolution and the max pooling after it, for inference (`predict()`, where the pooling
//! folds into the convolution): a few images at a time on each thread, the unpooled output
//! (and on the patch-matrix route the patches) kept in a buffer of the thread's that stays in
//! cache, only the pooled values written out. Run apart, the CNN's convolutions wrote their
//! outputs (11 MB a batch for the first) and the second its patch matrix (18 MB) to memory,
//! and the poolings and the matrix product read them back (perf: max pooling 10% and im2col's
//! copies 7% of its predict).
use super::conv::{im2col_image, ConvGeometry};
use rayon::prelude::*;

/// Images per task on the patch-matrix route: the CNN's second convolution (11x11 outputs of
/// 288-value patches) holds 0.56 MB of patches per 4 images, within a core's 2 MB L2.
const PATCH_IMAGES: usize = 4;

/// `(batch, h, w, c)` convolved (the direct route, [`super::direct_conv_forward`]'s
/// arithmetic), then max-pooled over `pool`'s windows: `(batch * pool.out_h * pool.out_w,
/// filters)`.
#[allow(clippy::too_many_arguments)]
pub fn direct_conv_pool_forward(
    x: &[f32],
    batch: usize,
    g: &ConvGeometry,
    kernel: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    filters: usize,
    pool: &ConvGeometry,
) -> Vec<f32> {
    let per_image = g.out_h * g.out_w * filters;
    let pooled = pool.out_h * pool.out_w * filters;
    let ilen = g.image_len();
    let mut out = vec![f32::NEG_INFINITY; batch * pooled];
    out.par_chunks_mut(pooled.max(1)).enumerate().for_each_init(
        || Vec::with_capacity(per_image),
        |conv: &mut Vec<f32>, (b, o)| {
            conv.clear();
            super::direct_conv::forward_image(&x[b * ilen..(b + 1) * ilen], &mut conv.spare_capacity_mut()[..per_image], g, kernel, bias, relu, filters);
            // SAFETY: forward_image writes each of the image's per_image outputs once.
            unsafe { conv.set_len(per_image) };
            super::pool::max_pool_image(conv, o, pool);
        },
    );
    out
}

/// `(batch, h, w, c)` convolved through patch rows and one matrix product per few images
/// (im2col's rows, the same product and bias and ReLU as the layer's other route), then
/// max-pooled over `pool`'s windows: `(batch * pool.out_h * pool.out_w, filters)`.
#[allow(clippy::too_many_arguments)]
pub fn patch_conv_pool_forward(
    x: &[f32],
    batch: usize,
    g: &ConvGeometry,
    kernel: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    filters: usize,
    pool: &ConvGeometry,
) -> Vec<f32> {
    let (plen, pixels) = (g.patch_len(), g.out_h * g.out_w);
    let per_image = pixels * filters;
    let pooled = pool.out_h * pool.out_w * filters;
    let ilen = g.image_len();
    let mut out = vec![f32::NEG_INFINITY; batch * pooled];
    out.par_chunks_mut((PATCH_IMAGES * pooled).max(1)).enumerate().for_each_init(
        || (Vec::with_capacity(PATCH_IMAGES * pixels * plen), Vec::with_capacity(PATCH_IMAGES * per_image)),
        |(cols, conv): &mut (Vec<f32>, Vec<f32>), (chunk, o)| {
            let images = o.len().checked_div(pooled).unwrap_or(0);
            let first = chunk * PATCH_IMAGES;
            cols.clear();
            for (i, dst) in cols.spare_capacity_mut()[..images * pixels * plen].chunks_mut((pixels * plen).max(1)).enumerate() {
                im2col_image(&x[(first + i) * ilen..(first + i + 1) * ilen], dst, g);
            }
            // SAFETY: im2col_image writes every value of each image's patch rows.
            unsafe { cols.set_len(images * pixels * plen) };
            conv.clear();
            conv.resize(images * per_image, 0.0);
            super::matmul::product_on_this_thread(conv, cols, kernel, plen, false);
            super::matmul::bias_relu_rows(conv, filters, bias, relu);
            for (image, o) in conv.chunks_exact(per_image.max(1)).zip(o.chunks_exact_mut(pooled.max(1))) {
                super::pool::max_pool_image(image, o, pool);
            }
        },
    );
    out
}
