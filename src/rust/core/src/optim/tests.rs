use super::sharded::CHUNK;
use super::*;

fn weight(v: Vec<f32>) -> Weight {
    Weight { name: "w".into(), shape: vec![v.len()], value: Arc::new(v), trainable: true, layer_state: false }
}

fn optimizer(name: &str, config: Value) -> Optimizer {
    Optimizer::new(OptimizerConfig::from_config(name, &config).unwrap())
}

#[test]
fn sgd_momentum_follows_keras_rule() {
    let mut w = vec![weight(vec![1.0])];
    let mut opt = optimizer("sgd", json!({"learning_rate": 0.1, "momentum": 0.9}));
    opt.apply(&mut w, &[vec![&[1.0][..]]]).unwrap(); // m = -0.1, w = 0.9
    opt.apply(&mut w, &[vec![&[1.0][..]]]).unwrap(); // m = -0.1 - 0.09 = -0.19, w = 0.71
    assert!((w[0].value[0] - 0.71).abs() < 1e-6);
}

#[test]
fn adam_first_step_moves_by_learning_rate() {
    // With bias correction, Adam's first step is lr * g / (|g| + eps*sqrt(1-b2)) ~ lr * sign(g).
    let mut w = vec![weight(vec![0.5, -0.5])];
    let mut opt = Optimizer::new(OptimizerConfig::by_name("adam").unwrap());
    opt.apply(&mut w, &[vec![&[2.0, -0.01][..]]]).unwrap();
    assert!((w[0].value[0] - 0.499).abs() < 1e-6);
    assert!((w[0].value[1] - -0.499).abs() < 1e-5);
}

#[test]
fn rmsprop_puts_epsilon_inside_the_root() {
    let mut w = vec![weight(vec![0.0])];
    let mut opt = Optimizer::new(OptimizerConfig::by_name("rmsprop").unwrap());
    opt.apply(&mut w, &[vec![&[1e-4][..]]]).unwrap();
    let v = 0.1f64 * 1e-8;
    let expected = -0.001 * 1e-4 / (v + 1e-7).sqrt();
    assert!((w[0].value[0] as f64 - expected).abs() < 1e-8);
}

/// The rules written out in f64 for one weight value, two steps, against the optimizers.
#[test]
fn the_newer_optimizers_follow_tf_keras_rules() {
    let gs = [0.5f64, -0.2];
    let run = |name: &str| -> f64 {
        let mut w = vec![weight(vec![1.0])];
        let mut opt = Optimizer::new(OptimizerConfig::by_name(name).unwrap());
        for g in gs {
            opt.apply(&mut w, &[vec![&[g as f32][..]]]).unwrap();
        }
        w[0].value[0] as f64
    };
    // Adagrad: lr 0.01, accumulator from 0.1.
    let (mut w, mut a) = (1.0f64, 0.1f64);
    for g in gs {
        a += g * g;
        w -= 0.01 * g / (a + 1e-7).sqrt();
    }
    assert!((run("adagrad") - w).abs() < 1e-6, "adagrad");
    // Adadelta: lr 1, rho 0.95.
    let (mut w, mut a, mut d) = (1.0f64, 0.0f64, 0.0f64);
    for g in gs {
        a = 0.95 * a + 0.05 * g * g;
        let delta = -(d + 1e-7).sqrt() * g / (a + 1e-7).sqrt();
        d = 0.95 * d + 0.05 * delta * delta;
        w += delta;
    }
    assert!((run("adadelta") - w).abs() < 1e-6, "adadelta");
    // Adamax: lr 0.002.
    let (mut w, mut m, mut u) = (1.0f64, 0.0f64, 0.0f64);
    for (t, g) in gs.iter().enumerate() {
        m += (g - m) * 0.1;
        u = (0.999 * u).max(g.abs());
        w -= 0.002 * m / ((1.0 - 0.9f64.powi(t as i32 + 1)) * (u + 1e-7));
    }
    assert!((run("adamax") - w).abs() < 1e-6, "adamax");
    // Nadam: lr 0.002.
    let (mut w, mut m, mut v, mut product) = (1.0f64, 0.0f64, 0.0f64, 1.0f64);
    let u = |t: f64| 0.9 * (1.0 - 0.5 * 0.96f64.powf(t));
    for (i, g) in gs.iter().enumerate() {
        let t = i as f64 + 1.0;
        product *= u(t);
        let product_next = product * u(t + 1.0);
        m += (g - m) * 0.1;
        v += (g * g - v) * 0.001;
        let m_hat = u(t + 1.0) * m / (1.0 - product_next) + (1.0 - u(t)) * g / (1.0 - product);
        w -= 0.002 * m_hat / ((v / (1.0 - 0.999f64.powf(t))).sqrt() + 1e-7);
    }
    assert!((run("nadam") - w).abs() < 1e-6, "nadam");
}

#[test]
fn frozen_weights_do_not_move() {
    for r in OPTIMIZERS {
        let mut w = vec![weight(vec![1.0])];
        w[0].trainable = false;
        let mut opt = Optimizer::new(OptimizerConfig::by_name(r.class_name).unwrap());
        opt.apply(&mut w, &[vec![&[1.0][..]]]).unwrap();
        assert_eq!(w[0].value[0], 1.0, "{}", r.class_name);
    }
}

/// Every optimizer, with every slot in use: its config survives the round trip, replicas'
/// parts equal their sum, and a state restored mid-training continues exactly.
#[test]
fn every_optimizer_round_trips_sums_parts_and_restores() {
    let full = |name: &str| -> Value {
        match name {
            "SGD" => json!({"momentum": 0.9, "nesterov": true}),
            "RMSprop" => json!({"momentum": 0.5, "centered": true}),
            "Adam" => json!({"amsgrad": true}),
            _ => json!({}),
        }
    };
    let n = 3 * CHUNK + 5; // several chunks, one partial
    let g1: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.01).collect();
    let g2: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * -0.02).collect();
    let total: Vec<f32> = g1.iter().zip(&g2).map(|(a, b)| a + b).collect();
    for r in OPTIMIZERS {
        let config = OptimizerConfig::from_config(r.class_name, &full(r.class_name)).unwrap();
        let again = OptimizerConfig::from_config(&r.class_name.to_ascii_lowercase(), &config.fields()).unwrap();
        assert_eq!(again, config, "{}", r.class_name);
        let saved = config.keras_config();
        assert_eq!(OptimizerConfig::from_config(saved["class_name"].as_str().unwrap(), &saved["config"]).unwrap(), config);
        let mut split = vec![weight(vec![0.5; n])];
        let mut whole = vec![weight(vec![0.5; n])];
        let mut o1 = Optimizer::new(config.clone());
        let mut o2 = o1.clone();
        for _ in 0..3 {
            o1.apply(&mut split, &[vec![&g1[..]], vec![&g2[..]]]).unwrap();
            o2.apply(&mut whole, &[vec![&total[..]]]).unwrap();
        }
        assert_eq!(split[0].value, whole[0].value, "{}: parts vs sum", r.class_name);
        // Restored from its slots after 3 steps, a fresh optimizer takes the 4th step as o2 does.
        let mut o3 = Optimizer::new(config.clone());
        let slots = o2.slot_names().iter().map(|(_, i)| (*i, o2.slot(0, *i, n))).collect();
        o3.restore(o2.iterations, &[n], vec![slots]).unwrap();
        let mut restored = whole.clone();
        o2.apply(&mut whole, &[vec![&total[..]]]).unwrap();
        o3.apply(&mut restored, &[vec![&total[..]]]).unwrap();
        assert_eq!(whole[0].value, restored[0].value, "{}: restored", r.class_name);
    }
}

#[test]
fn decay_and_clipping_follow_keras() {
    // decay: lr / (1 + decay * iterations), iterations counted before the step.
    let mut w = vec![weight(vec![0.0])];
    let mut opt = optimizer("sgd", json!({"learning_rate": 0.1, "decay": 0.5}));
    opt.apply(&mut w, &[vec![&[1.0][..]]]).unwrap();
    opt.apply(&mut w, &[vec![&[1.0][..]]]).unwrap();
    assert!((w[0].value[0] - -(0.1 + 0.1 / 1.5)).abs() < 1e-6);
    // clipnorm: the gradient (3, 4) has norm 5; scaled to norm 1.
    let mut w = vec![weight(vec![0.0, 0.0])];
    let mut opt = optimizer("sgd", json!({"learning_rate": 1.0, "clipnorm": 1.0}));
    opt.apply(&mut w, &[vec![&[1.0, 2.0][..]], vec![&[2.0, 2.0][..]]]).unwrap();
    assert!((w[0].value[0] - -0.6).abs() < 1e-6 && (w[0].value[1] - -0.8).abs() < 1e-6, "{:?}", w[0].value);
    // clipvalue: each value clipped.
    let mut w = vec![weight(vec![0.0, 0.0])];
    let mut opt = optimizer("sgd", json!({"learning_rate": 1.0, "clipvalue": 0.5}));
    opt.apply(&mut w, &[vec![&[-2.0, 0.25][..]]]).unwrap();
    assert_eq!(*w[0].value, vec![0.5, -0.25]);
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    for (name, config, says) in [
        ("adam", json!({"beta_1": 1.5}), "beta_1"),
        ("sgd", json!({"learning_rate": -1}), "learning_rate"),
        ("rmsprop", json!({"rho": "high"}), "rho"),
        ("adagrad", json!({"clipnorm": 0}), "clipnorm"),
        ("adamw", json!({}), "unknown optimizer"),
    ] {
        let e = OptimizerConfig::from_config(name, &config).unwrap_err().to_string();
        assert!(e.contains(says), "{}: {}", name, e);
    }
    // Keras 2's `lr` is the learning rate.
    assert_eq!(OptimizerConfig::from_config("sgd", &json!({"lr": 0.5})).unwrap().learning_rate(), 0.5);
}

#[test]
fn mirrors_hold_the_new_values_and_their_transpose() {
    // A (rows, cols) weight whose chunks end mid-row, updated by three shards.
    let (rows, cols) = (37, 1000);
    let n = rows * cols;
    assert!(n % CHUNK != 0 && !CHUNK.is_multiple_of(cols));
    let w = |v: Vec<f32>, shape: Vec<usize>| Weight { name: "w".into(), shape, value: Arc::new(v), trainable: true, layer_state: false };
    let mut weights = vec![w((0..n).map(|i| i as f32 * 1e-3).collect(), vec![rows, cols]), w(vec![0.5; 7], vec![7])];
    let g0: Vec<f32> = (0..n).map(|i| (i % 11) as f32 * 0.1).collect();
    let g1 = [0.3f32; 7];
    let mut opt = Optimizer::new(OptimizerConfig::by_name("rmsprop").unwrap());
    let mut mirrors = vec![Mirror { transpose: Some((rows, cols)), ..Default::default() }, Mirror::default()];
    let parts = vec![vec![&g0[..], &g1[..]]];
    opt.apply_sharded(&mut weights, Some(&mut mirrors), 3, |shards| shards.into_iter().try_for_each(|s| s(&parts))).unwrap();
    for (m, w) in mirrors.iter_mut().zip(&weights) {
        // SAFETY: the update returned Ok (apply_sharded's contract).
        unsafe { m.values.set_len(w.value.len()) };
        assert_eq!(&m.values, &*w.value);
    }
    unsafe { mirrors[0].transposed.set_len(n) };
    for r in 0..rows {
        for c in 0..cols {
            assert_eq!(mirrors[0].transposed[c * rows + r], weights[0].value[r * cols + c], "({}, {})", r, c);
        }
    }
    assert!(mirrors[1].transposed.is_empty());
}
