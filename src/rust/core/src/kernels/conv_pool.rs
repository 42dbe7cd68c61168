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

/// A convolution of `(batch, h, w, c)` images `x` by `kernel` (patch rows by filters) plus
/// `bias`, then ReLU if asked, then max pooling over `pool`'s windows of its output.
pub struct ConvPool<'a> {
    pub x: &'a [f32],
    pub batch: usize,
    pub conv: &'a ConvGeometry,
    pub kernel: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
    pub filters: usize,
    pub pool: &'a ConvGeometry,
}

impl ConvPool<'_> {
    /// Values per image: the convolution's output and the pooled output.
    fn per_image(&self) -> (usize, usize) {
        (self.conv.out_h * self.conv.out_w * self.filters, self.pool.out_h * self.pool.out_w * self.filters)
    }

    /// On the direct route ([`super::direct_conv_forward`]'s arithmetic), image by image:
    /// `(batch * pool.out_h * pool.out_w, filters)`.
    pub fn direct(&self) -> Vec<f32> {
        let (g, (per_image, pooled)) = (self.conv, self.per_image());
        let ilen = g.image_len();
        let mut out = vec![f32::NEG_INFINITY; self.batch * pooled];
        out.par_chunks_mut(pooled.max(1)).enumerate().for_each_init(
            || Vec::with_capacity(per_image),
            |conv: &mut Vec<f32>, (b, o)| {
                conv.clear();
                let img = &self.x[b * ilen..(b + 1) * ilen];
                super::direct_conv::forward_image(img, &mut conv.spare_capacity_mut()[..per_image], g, self.kernel, self.bias, self.relu, self.filters);
                // SAFETY: forward_image writes each of the image's per_image outputs once.
                unsafe { conv.set_len(per_image) };
                super::pool::max_pool_image(conv, o, self.pool);
            },
        );
        out
    }

    /// Through patch rows and one matrix product per few images (im2col's rows, the same
    /// product and bias and ReLU as the layer's other route): `(batch * pool.out_h *
    /// pool.out_w, filters)`.
    pub fn through_patches(&self) -> Vec<f32> {
        let (g, (per_image, pooled)) = (self.conv, self.per_image());
        let (plen, pixels, ilen) = (g.patch_len(), g.out_h * g.out_w, g.image_len());
        let mut out = vec![f32::NEG_INFINITY; self.batch * pooled];
        out.par_chunks_mut((PATCH_IMAGES * pooled).max(1)).enumerate().for_each_init(
            || (Vec::with_capacity(PATCH_IMAGES * pixels * plen), Vec::with_capacity(PATCH_IMAGES * per_image)),
            |(cols, conv): &mut (Vec<f32>, Vec<f32>), (chunk, o)| {
                let images = o.len().checked_div(pooled).unwrap_or(0);
                let first = chunk * PATCH_IMAGES;
                cols.clear();
                for (i, dst) in cols.spare_capacity_mut()[..images * pixels * plen].chunks_mut((pixels * plen).max(1)).enumerate() {
                    im2col_image(&self.x[(first + i) * ilen..(first + i + 1) * ilen], dst, g);
                }
                // SAFETY: im2col_image writes every value of each image's patch rows.
                unsafe { cols.set_len(images * pixels * plen) };
                conv.clear();
                conv.resize(images * per_image, 0.0);
                super::matmul::product_on_this_thread(conv, cols, self.kernel, plen, false);
                super::matmul::bias_relu_rows(conv, self.filters, self.bias, self.relu);
                for (image, o) in conv.chunks_exact(per_image.max(1)).zip(o.chunks_exact_mut(pooled.max(1))) {
                    super::pool::max_pool_image(image, o, self.pool);
                }
            },
        );
        out
    }
}
