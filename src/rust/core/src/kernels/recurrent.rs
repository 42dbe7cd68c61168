//! The elementwise arithmetic of one LSTM or GRU step in one pass over contiguous f32 rows,
//! forward and back, for the CPU. Written as candle ops a step is a dozen passes, each a
//! fresh allocation and a thread hand-off over a (batch, units) block: for batch 32 and 128
//! units those passes, not the recurrent product, were two thirds of an LSTM step (bench
//! imdb_lstm, 2026-12-02: 0.49x tf-keras's predict before this kernel). The cells fall back
//! to candle ops on other devices and for other activations; tests here compare the two.
//! [`lstm_sequence`] and [`gru_sequence`] run a whole sequence: each thread all the steps of
//! a block of the batch's rows (its own product through gemm, then the same row passes).

/// `exp(x)` for f32 without a libm call, so that loops over it vectorize: Cephes's expf
/// (range reduction by ln 2, degree-6 polynomial, 2^k by exponent bits; about 1 ulp; inputs
/// clamped to where the result is finite and normal). glibc's tanhf took 13 ns a value here
/// and expf 4 ns, most of a step; this runs at about 1 ns in a vectorized loop.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to an integer with plain SSE2 arithmetic.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let rounded = x * LOG2E + ROUND;
    let k = rounded - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^k from the bits of `rounded` (between 2^23 and 2^24, so its low mantissa bits are
    // 2^22 + k): the low 9 bits of that plus 127 are k's biased exponent. `k as i32` here was
    // a saturating conversion that LLVM compiled to scalar compares, one value at a time.
    e * f32::from_bits(rounded.to_bits().wrapping_add(127) << 23)
}

/// `tanh(x)` from [`exp`]: `1 - 2 / (exp(2x) + 1)` (absolute error about 1e-7).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// A gate's activation (the output activation is tanh in the fused kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Sigmoid,
    /// Keras 2's `clip(0.2 x + 0.5, 0, 1)`.
    HardSigmoid,
}

impl Gate {
    #[inline]
    fn apply(self, x: f32) -> f32 {
        match self {
            Gate::Sigmoid => 1.0 / (1.0 + exp(-x)),
            Gate::HardSigmoid => (0.2 * x + 0.5).clamp(0.0, 1.0),
        }
    }

    /// The derivative at pre-activation `x` with output `y`.
    #[inline]
    fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Gate::Sigmoid => y * (1.0 - y),
            Gate::HardSigmoid => {
                if x > -2.5 && x < 2.5 {
                    0.2
                } else {
                    0.0
                }
            }
        }
    }
}

/// An LSTM step's values: the activated gates `(rows, 4 units)` in Keras's order i, f, g, o,
/// the cell state, its tanh, and the output.
pub struct LstmForward {
    pub gates: Vec<f32>,
    pub c: Vec<f32>,
    pub c_act: Vec<f32>,
    pub h: Vec<f32>,
}

/// Applies `f` to each value: a plain loop over a slice, which the compiler vectorizes once
/// `f` is inlined (the activations above are branch-free for that reason).
#[inline(always)]
fn map_into(src: &[f32], dst: &mut [f32], f: impl Fn(f32) -> f32) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f(*s);
    }
}

/// Row blocks of at least this many values go to separate threads (rayon), so the step's
/// passes and its matrix products keep the same threads busy.
const PARALLEL_VALUES: usize = 4096;

/// From the pre-activations `z` `(rows, 4 units)` and the previous cell state.
pub fn lstm_forward(z: &[f32], c_prev: &[f32], units: usize, gate: Gate) -> LstmForward {
    use rayon::prelude::*;
    let u = units.max(1);
    let mut out = LstmForward { gates: vec![0.0; z.len()], c: vec![0.0; c_prev.len()], c_act: vec![0.0; c_prev.len()], h: vec![0.0; c_prev.len()] };
    let rows_per_task = (PARALLEL_VALUES / (4 * u)).max(1);
    out.gates
        .par_chunks_mut(4 * u * rows_per_task)
        .zip(out.c.par_chunks_mut(u * rows_per_task))
        .zip(out.c_act.par_chunks_mut(u * rows_per_task))
        .zip(out.h.par_chunks_mut(u * rows_per_task))
        .zip(z.par_chunks(4 * u * rows_per_task).zip(c_prev.par_chunks(u * rows_per_task)))
        .for_each(|((((gates, c), c_act), h), (z, c_prev))| {
            lstm_rows(z, c_prev, CellRows { gates, c, c_act, h }, units, gate);
        });
    out
}

/// Where rows of an LSTM step write: their activated gates (4 units a row) and their cell
/// states, the cell states' tanh and their outputs (units a row).
struct CellRows<'a> {
    gates: &'a mut [f32],
    c: &'a mut [f32],
    c_act: &'a mut [f32],
    h: &'a mut [f32],
}

widest_vectors! {
    /// Rows of an LSTM step from their pre-activations `z` (4 units a row) and previous
    /// cell states. Compiled for the CPU's widest vectors: at the baseline (SSE2) the
    /// activations were 22% of an LSTM layer's inference pass (rnn_profile, perf).
    fn lstm_rows(z: &[f32], c_prev: &[f32], out: CellRows<'_>, units: usize, gate: Gate) {
        match gate {
            Gate::Sigmoid => lstm_rows_with(z, c_prev, out, units, |x| Gate::Sigmoid.apply(x)),
            Gate::HardSigmoid => lstm_rows_with(z, c_prev, out, units, |x| Gate::HardSigmoid.apply(x)),
        }
    }
}

#[inline(always)]
fn lstm_rows_with(z: &[f32], c_prev: &[f32], out: CellRows<'_>, units: usize, gate: impl Fn(f32) -> f32 + Copy) {
    let u = units.max(1);
    for ((((zr, cp), g), (c, c_act)), h) in z
        .chunks_exact(4 * u)
        .zip(c_prev.chunks_exact(u))
        .zip(out.gates.chunks_exact_mut(4 * u))
        .zip(out.c.chunks_exact_mut(u).zip(out.c_act.chunks_exact_mut(u)))
        .zip(out.h.chunks_exact_mut(u))
    {
        map_into(&zr[..2 * u], &mut g[..2 * u], gate);
        map_into(&zr[2 * u..3 * u], &mut g[2 * u..3 * u], tanh);
        map_into(&zr[3 * u..], &mut g[3 * u..], gate);
        let (i, rest) = g.split_at(u);
        let (f, rest) = rest.split_at(u);
        let (gg, o) = rest.split_at(u);
        for k in 0..u {
            c[k] = f[k] * cp[k] + i[k] * gg[k];
        }
        map_into(c, c_act, tanh);
        for k in 0..u {
            h[k] = o[k] * c_act[k];
        }
    }
}

/// An LSTM layer's values over a whole sequence, time-major, each step's rows contiguous.
pub struct LstmSequence {
    /// Pre-activations `(time, rows, 4 units)`: the input projections with the recurrent
    /// products added in place.
    pub z: Vec<f32>,
    /// Activated gates `(time, rows, 4 units)`.
    pub gates: Vec<f32>,
    /// Outputs `(time + 1, rows, units)`, the initial output first.
    pub h: Vec<f32>,
    /// Cell states `(time + 1, rows, units)`, the initial state first.
    pub c: Vec<f32>,
    /// The cell states' tanh `(time, rows, units)`.
    pub c_act: Vec<f32>,
}

/// Splits a `(slices, rows, width)` buffer into each row block's part of each slice:
/// `[block][slice]`, blocks of `block_rows` rows (the last may be shorter).
fn row_blocks(buf: &mut [f32], rows: usize, width: usize, block_rows: usize) -> Vec<Vec<&mut [f32]>> {
    let blocks = rows.div_ceil(block_rows);
    let mut out: Vec<Vec<&mut [f32]>> = (0..blocks).map(|_| Vec::new()).collect();
    for slice in buf.chunks_exact_mut(rows * width) {
        for (block, part) in out.iter_mut().zip(slice.chunks_mut(block_rows * width)) {
            block.push(part);
        }
    }
    out
}

/// Rows per block when `rows` are split over the threads.
fn rows_per_block(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads().clamp(1, rows))
}

/// Runs `step(block index, t, block)` for every step `t` of `time`, each block on a thread of
/// its own, asking `stopped()` between steps; false when it said so.
fn each_block_over_time<B: Send>(blocks: Vec<B>, time: usize, stopped: &(dyn Fn() -> bool + Sync), step: impl Fn(usize, usize, &mut B) + Sync) -> bool {
    use rayon::prelude::*;
    let finished: Vec<bool> = blocks
        .into_par_iter()
        .enumerate()
        .map(|(index, mut block)| {
            for t in 0..time {
                if stopped() {
                    return false;
                }
                step(index, t, &mut block);
            }
            true
        })
        .collect();
    finished.iter().all(|&done| done)
}

/// A whole LSTM sequence from the input projections `xw` `(time, rows, 4 units)` (bias
/// included), the initial output `h0` and cell state `c0` `(rows, units)` and the recurrent
/// kernel `(units, 4 units)`, row-major. None when `stopped()` said so between steps.
///
/// The rows of a batch never meet in an LSTM, so each thread runs every step for a block of
/// rows: one product (gemm, single-threaded) and one gate pass per step and thread, with no
/// hand-off between them. Step by step, each pass split over the threads, the hand-offs
/// (thread wake-ups, yields) took a third of the time at batch 32 and 128 units
/// (rnn_profile, perf: `__schedule`, `do_sched_yield`). A hand-written product of register
/// tiles without FMA took 33 us a step where gemm took 20 (rnn_profile), so gemm it is.
#[allow(clippy::too_many_arguments)]
pub fn lstm_sequence(
    xw: &[f32],
    h0: &[f32],
    c0: &[f32],
    recurrent: &[f32],
    time: usize,
    units: usize,
    gate: Gate,
    stopped: &(dyn Fn() -> bool + Sync),
) -> Option<LstmSequence> {
    let u = units.max(1);
    let rows = h0.len() / u;
    let (mut z, mut gates) = (vec![0.0; xw.len()], vec![0.0; xw.len()]);
    let (mut h, mut c, mut c_act) = (vec![0.0; (time + 1) * rows * u], vec![0.0; (time + 1) * rows * u], vec![0.0; time * rows * u]);
    h[..rows * u].copy_from_slice(h0);
    c[..rows * u].copy_from_slice(c0);
    if rows == 0 {
        return Some(LstmSequence { z, gates, h, c, c_act });
    }
    let block_rows = rows_per_block(rows);
    let blocks: Vec<_> = row_blocks(&mut z, rows, 4 * u, block_rows)
        .into_iter()
        .zip(row_blocks(&mut gates, rows, 4 * u, block_rows))
        .zip(row_blocks(&mut h, rows, u, block_rows))
        .zip(row_blocks(&mut c, rows, u, block_rows))
        .zip(row_blocks(&mut c_act, rows, u, block_rows))
        .collect();
    let finished = each_block_over_time(blocks, time, stopped, |block_index, t, ((((z, gates), h), c), c_act)| {
        let (h_before, h_after) = h.split_at_mut(t + 1);
        let (c_before, c_after) = c.split_at_mut(t + 1);
        let (h_prev, c_prev, z_t) = (&*h_before[t], &*c_before[t], &mut *z[t]);
        let block = h_prev.len() / u;
        let first = (t * rows + block_index * block_rows) * 4 * u;
        z_t.copy_from_slice(&xw[first..first + block * 4 * u]);
        super::matmul::product_on_this_thread(z_t, h_prev, recurrent, u, true);
        let out = CellRows { gates: &mut *gates[t], c: &mut *c_after[0], c_act: &mut *c_act[t], h: &mut *h_after[0] };
        lstm_rows(z_t, c_prev, out, u, gate);
    });
    finished.then_some(LstmSequence { z, gates, h, c, c_act })
}

/// The gradients of an LSTM step's pre-activations `(rows, 4 units)` and of the previous cell
/// state, from the gradients of its output `dh` and cell state `dc`.
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward(z: &[f32], gates: &[f32], c_prev: &[f32], c_act: &[f32], dh: &[f32], dc: &[f32], units: usize, gate: Gate) -> (Vec<f32>, Vec<f32>) {
    use rayon::prelude::*;
    let u = units.max(1);
    let mut dz = vec![0.0; z.len()];
    let mut dc_prev = vec![0.0; c_prev.len()];
    let rows_per_task = (PARALLEL_VALUES / (4 * u)).max(1);
    dz.par_chunks_mut(4 * u * rows_per_task).zip(dc_prev.par_chunks_mut(u * rows_per_task)).enumerate().for_each(|(task, (dz, dc_prev_out))| {
        for (rl, dzr) in dz.chunks_exact_mut(4 * u).enumerate() {
            let r = task * rows_per_task + rl;
            let (base, s0) = (r * 4 * u, r * u);
            for k in 0..u {
                let s = s0 + k;
                let (i, f, g, o) = (gates[base + k], gates[base + u + k], gates[base + 2 * u + k], gates[base + 3 * u + k]);
                let d_o = dh[s] * c_act[s];
                let dcc = dc[s] + dh[s] * o * (1.0 - c_act[s] * c_act[s]);
                dzr[k] = dcc * g * gate.derivative(z[base + k], i);
                dzr[u + k] = dcc * c_prev[s] * gate.derivative(z[base + u + k], f);
                dzr[2 * u + k] = dcc * i * (1.0 - g * g);
                dzr[3 * u + k] = d_o * gate.derivative(z[base + 3 * u + k], o);
                dc_prev_out[rl * u + k] = dcc * f;
            }
        }
    });
    (dz, dc_prev)
}

/// A GRU step with `reset_after`: the update and reset gates' pre-activations and values,
/// the candidate's pre-activation and value (each `(rows, units)`), and the output.
pub struct GruForward {
    pub z_pre: Vec<f32>,
    pub z: Vec<f32>,
    pub r_pre: Vec<f32>,
    pub r: Vec<f32>,
    pub a: Vec<f32>,
    pub n: Vec<f32>,
    pub h: Vec<f32>,
}

/// From the input projection `xw` and the recurrent product `hu` (recurrent bias included),
/// both `(rows, 3 units)` in Keras's order z, r, h, and the previous output.
pub fn gru_forward(xw: &[f32], hu: &[f32], h_prev: &[f32], units: usize, gate: Gate) -> GruForward {
    use rayon::prelude::*;
    let n_out = h_prev.len();
    let u = units.max(1);
    let mut out = GruForward {
        z_pre: vec![0.0; n_out],
        z: vec![0.0; n_out],
        r_pre: vec![0.0; n_out],
        r: vec![0.0; n_out],
        a: vec![0.0; n_out],
        n: vec![0.0; n_out],
        h: vec![0.0; n_out],
    };
    let chunk = u * (PARALLEL_VALUES / (3 * u)).max(1);
    out.z_pre
        .par_chunks_mut(chunk)
        .zip(out.z.par_chunks_mut(chunk))
        .zip(out.r_pre.par_chunks_mut(chunk))
        .zip(out.r.par_chunks_mut(chunk))
        .zip(out.a.par_chunks_mut(chunk))
        .zip(out.n.par_chunks_mut(chunk))
        .zip(out.h.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(task, ((((((z_pre, z), r_pre), r), a), n), h))| {
            let rows = task * chunk / u..task * chunk / u + z.len() / u;
            let (x, hr, hp) = (&xw[rows.start * 3 * u..rows.end * 3 * u], &hu[rows.start * 3 * u..rows.end * 3 * u], &h_prev[rows.start * u..rows.end * u]);
            gru_rows(x, hr, hp, GruRows { z_pre, z, r_pre, r, a, n, h }, units, gate);
        });
    out
}

/// Where rows of a GRU step write (each `(rows, units)`).
struct GruRows<'a> {
    z_pre: &'a mut [f32],
    z: &'a mut [f32],
    r_pre: &'a mut [f32],
    r: &'a mut [f32],
    a: &'a mut [f32],
    n: &'a mut [f32],
    h: &'a mut [f32],
}

widest_vectors! {
    /// Rows of a `reset_after` GRU step from their input projections `xw` and recurrent
    /// products `hu` (3 units a row) and previous outputs, compiled for the widest vectors.
    fn gru_rows(xw: &[f32], hu: &[f32], h_prev: &[f32], out: GruRows<'_>, units: usize, gate: Gate) {
        match gate {
            Gate::Sigmoid => gru_rows_with(xw, hu, h_prev, out, units, |v| Gate::Sigmoid.apply(v)),
            Gate::HardSigmoid => gru_rows_with(xw, hu, h_prev, out, units, |v| Gate::HardSigmoid.apply(v)),
        }
    }
}

#[inline(always)]
fn gru_rows_with(xw: &[f32], hu: &[f32], h_prev: &[f32], out: GruRows<'_>, units: usize, gate: impl Fn(f32) -> f32 + Copy) {
    let u = units.max(1);
    let GruRows { z_pre, z, r_pre, r, a, n, h } = out;
    for (row, ((x, hr), hp)) in xw.chunks_exact(3 * u).zip(hu.chunks_exact(3 * u)).zip(h_prev.chunks_exact(u)).enumerate() {
        let o = row * u..(row + 1) * u;
        let (z_pre, z, r_pre, r) = (&mut z_pre[o.clone()], &mut z[o.clone()], &mut r_pre[o.clone()], &mut r[o.clone()]);
        let (a, n, h) = (&mut a[o.clone()], &mut n[o.clone()], &mut h[o]);
        for k in 0..u {
            z_pre[k] = x[k] + hr[k];
            r_pre[k] = x[u + k] + hr[u + k];
        }
        map_into(z_pre, z, gate);
        map_into(r_pre, r, gate);
        for k in 0..u {
            a[k] = x[2 * u + k] + r[k] * hr[2 * u + k];
        }
        map_into(a, n, tanh);
        for k in 0..u {
            h[k] = n[k] + z[k] * (hp[k] - n[k]);
        }
    }
}

/// A `reset_after` GRU layer's values over a whole sequence, time-major, each step's rows
/// contiguous: the recurrent products `(time, rows, 3 units)` (recurrent bias included), and
/// a step's values ([`GruForward`]) for all steps, `(time, rows, units)` each but the outputs
/// `h`, `(time + 1, rows, units)` with the initial output first.
pub struct GruSequence {
    pub hu: Vec<f32>,
    pub values: GruForward,
}

/// A whole `reset_after` GRU sequence from the input projections `xw` `(time, rows, 3
/// units)`, the initial output `h0`, the recurrent kernel `(units, 3 units)` and bias (3
/// units), row-major; each thread runs every step for a block of rows, as
/// [`lstm_sequence`] does. None when `stopped()` said so between steps.
#[allow(clippy::too_many_arguments)]
pub fn gru_sequence(
    xw: &[f32],
    h0: &[f32],
    recurrent: &[f32],
    recurrent_bias: Option<&[f32]>,
    time: usize,
    units: usize,
    gate: Gate,
    stopped: &(dyn Fn() -> bool + Sync),
) -> Option<GruSequence> {
    let u = units.max(1);
    let rows = h0.len() / u;
    let each = time * rows * u;
    let mut s = GruSequence {
        hu: vec![0.0; 3 * each],
        values: GruForward {
            z_pre: vec![0.0; each],
            z: vec![0.0; each],
            r_pre: vec![0.0; each],
            r: vec![0.0; each],
            a: vec![0.0; each],
            n: vec![0.0; each],
            h: vec![0.0; (time + 1) * rows * u],
        },
    };
    let v = &mut s.values;
    v.h[..rows * u].copy_from_slice(h0);
    if rows == 0 {
        return Some(s);
    }
    let block_rows = rows_per_block(rows);
    let blocks: Vec<_> = row_blocks(&mut s.hu, rows, 3 * u, block_rows)
        .into_iter()
        .zip(row_blocks(&mut v.z_pre, rows, u, block_rows).into_iter().zip(row_blocks(&mut v.z, rows, u, block_rows)))
        .zip(row_blocks(&mut v.r_pre, rows, u, block_rows).into_iter().zip(row_blocks(&mut v.r, rows, u, block_rows)))
        .zip(row_blocks(&mut v.a, rows, u, block_rows).into_iter().zip(row_blocks(&mut v.n, rows, u, block_rows)))
        .zip(row_blocks(&mut v.h, rows, u, block_rows))
        .collect();
    let finished = each_block_over_time(blocks, time, stopped, |block_index, t, ((((hu, (z_pre, z)), (r_pre, r)), (a, n)), h)| {
        let (h_before, h_after) = h.split_at_mut(t + 1);
        let (h_prev, hu_t) = (&*h_before[t], &mut *hu[t]);
        let block = h_prev.len() / u;
        super::matmul::product_on_this_thread(hu_t, h_prev, recurrent, u, false);
        if let Some(b) = recurrent_bias {
            for row in hu_t.chunks_exact_mut(3 * u) {
                for (v, b) in row.iter_mut().zip(b) {
                    *v += b;
                }
            }
        }
        let first = (t * rows + block_index * block_rows) * 3 * u;
        let out = GruRows { z_pre: &mut *z_pre[t], z: &mut *z[t], r_pre: &mut *r_pre[t], r: &mut *r[t], a: &mut *a[t], n: &mut *n[t], h: &mut *h_after[0] };
        gru_rows(&xw[first..first + block * 3 * u], hu_t, h_prev, out, u, gate);
    });
    finished.then_some(s)
}

/// What a GRU step's backward pass reads of its forward values (each `(rows, units)`).
pub struct GruValues<'a> {
    pub z_pre: &'a [f32],
    pub z: &'a [f32],
    pub r_pre: &'a [f32],
    pub r: &'a [f32],
    pub n: &'a [f32],
    /// The recurrent product's candidate block.
    pub hu_h: &'a [f32],
}

/// The gradients of a `reset_after` GRU step's input projection and recurrent product (each
/// `(rows, 3 units)`) and of the previous output through `z * h`, from the output's gradient.
pub fn gru_backward(f: &GruValues, h_prev: &[f32], dh: &[f32], units: usize, gate: Gate) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let hu_h = f.hu_h;
    let n_out = h_prev.len();
    let rows = n_out / units.max(1);
    let mut d_xw = vec![0.0; 3 * n_out];
    let mut d_hu = vec![0.0; 3 * n_out];
    let mut d_prev = vec![0.0; n_out];
    for row in 0..rows {
        let base = row * 3 * units;
        for k in 0..units {
            let s = row * units + k;
            let (z, r, n) = (f.z[s], f.r[s], f.n[s]);
            let da = dh[s] * (1.0 - z) * (1.0 - n * n);
            let daz = dh[s] * (h_prev[s] - n) * gate.derivative(f.z_pre[s], z);
            let dar = da * hu_h[s] * gate.derivative(f.r_pre[s], r);
            d_xw[base + k] = daz;
            d_xw[base + units + k] = dar;
            d_xw[base + 2 * units + k] = da;
            d_hu[base + k] = daz;
            d_hu[base + units + k] = dar;
            d_hu[base + 2 * units + k] = da * r;
            d_prev[s] = dh[s] * z;
        }
    }
    (d_xw, d_hu, d_prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_tanh_match_libm() {
        let mut worst = (0f32, 0f32);
        for i in -20_000..20_000 {
            let x = i as f32 * 0.0043;
            let e = exp(x);
            let rel = ((e as f64 - (x as f64).exp()) / (x as f64).exp()).abs() as f32;
            let abs_tanh = (tanh(x) as f64 - (x as f64).tanh()).abs() as f32;
            worst = (worst.0.max(rel), worst.1.max(abs_tanh));
        }
        assert!(worst.0 < 3e-7 && worst.1 < 3e-7, "exp relative {}, tanh absolute {}", worst.0, worst.1);
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
        assert!(exp(-200.0) >= 0.0 && exp(200.0).is_finite());
    }
}
