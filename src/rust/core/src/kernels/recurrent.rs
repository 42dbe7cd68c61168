//! The elementwise arithmetic of one LSTM or GRU step in one pass over contiguous f32 rows,
//! forward and back, for the CPU. Written as candle ops a step is a dozen passes, each a
//! fresh allocation and a thread hand-off over a (batch, units) block: for batch 32 and 128
//! units those passes, not the recurrent product, were two thirds of an LSTM step (bench
//! imdb_lstm, 2026-12-02: 0.49x tf-keras's predict before this kernel). The cells fall back
//! to candle ops on other devices and for other activations; tests here compare the two.

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
            Gate::Sigmoid => 1.0 / (1.0 + (-x).exp()),
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

/// From the pre-activations `z` `(rows, 4 units)` and the previous cell state.
pub fn lstm_forward(z: &[f32], c_prev: &[f32], units: usize, gate: Gate) -> LstmForward {
    let rows = c_prev.len() / units.max(1);
    let mut out = LstmForward { gates: vec![0.0; z.len()], c: vec![0.0; c_prev.len()], c_act: vec![0.0; c_prev.len()], h: vec![0.0; c_prev.len()] };
    for r in 0..rows {
        let (zr, gr) = (&z[r * 4 * units..(r + 1) * 4 * units], &mut out.gates[r * 4 * units..(r + 1) * 4 * units]);
        for k in 0..units {
            let i = gate.apply(zr[k]);
            let f = gate.apply(zr[units + k]);
            let g = zr[2 * units + k].tanh();
            let o = gate.apply(zr[3 * units + k]);
            let c = f * c_prev[r * units + k] + i * g;
            let c_act = c.tanh();
            (gr[k], gr[units + k], gr[2 * units + k], gr[3 * units + k]) = (i, f, g, o);
            out.c[r * units + k] = c;
            out.c_act[r * units + k] = c_act;
            out.h[r * units + k] = o * c_act;
        }
    }
    out
}

/// The gradients of an LSTM step's pre-activations `(rows, 4 units)` and of the previous cell
/// state, from the gradients of its output `dh` and cell state `dc`.
pub fn lstm_backward(z: &[f32], gates: &[f32], c_prev: &[f32], c_act: &[f32], dh: &[f32], dc: &[f32], units: usize, gate: Gate) -> (Vec<f32>, Vec<f32>) {
    let rows = c_prev.len() / units.max(1);
    let mut dz = vec![0.0; z.len()];
    let mut dc_prev = vec![0.0; c_prev.len()];
    for r in 0..rows {
        let base = r * 4 * units;
        for k in 0..units {
            let s = r * units + k;
            let (i, f, g, o) = (gates[base + k], gates[base + units + k], gates[base + 2 * units + k], gates[base + 3 * units + k]);
            let d_o = dh[s] * c_act[s];
            let dcc = dc[s] + dh[s] * o * (1.0 - c_act[s] * c_act[s]);
            dz[base + k] = dcc * g * gate.derivative(z[base + k], i);
            dz[base + units + k] = dcc * c_prev[s] * gate.derivative(z[base + units + k], f);
            dz[base + 2 * units + k] = dcc * i * (1.0 - g * g);
            dz[base + 3 * units + k] = d_o * gate.derivative(z[base + 3 * units + k], o);
            dc_prev[s] = dcc * f;
        }
    }
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
    let n_out = h_prev.len();
    let rows = n_out / units.max(1);
    let mut out = GruForward {
        z_pre: vec![0.0; n_out],
        z: vec![0.0; n_out],
        r_pre: vec![0.0; n_out],
        r: vec![0.0; n_out],
        a: vec![0.0; n_out],
        n: vec![0.0; n_out],
        h: vec![0.0; n_out],
    };
    for row in 0..rows {
        let base = row * 3 * units;
        for k in 0..units {
            let s = row * units + k;
            let z_pre = xw[base + k] + hu[base + k];
            let r_pre = xw[base + units + k] + hu[base + units + k];
            let (z, r) = (gate.apply(z_pre), gate.apply(r_pre));
            let a = xw[base + 2 * units + k] + r * hu[base + 2 * units + k];
            let n = a.tanh();
            out.z_pre[s] = z_pre;
            out.z[s] = z;
            out.r_pre[s] = r_pre;
            out.r[s] = r;
            out.a[s] = a;
            out.n[s] = n;
            out.h[s] = n + z * (h_prev[s] - n);
        }
    }
    out
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
