use super::*;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

#[test]
fn glorot_uniform_respects_keras_limit_and_fills_it() {
    let w = Initializer::glorot_uniform().sample(&[784, 512], &mut rng(1)).unwrap();
    let limit = (6.0f64 / (784.0 + 512.0)).sqrt() as f32;
    assert!(w.iter().all(|v| v.abs() <= limit));
    let max = w.iter().cloned().fold(0.0f32, |a, b| a.max(b.abs()));
    assert!(max > 0.99 * limit);
    let mean: f32 = w.iter().sum::<f32>() / w.len() as f32;
    assert!(mean.abs() < 1e-3);
}

fn variance(w: &[f32]) -> f64 {
    w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64
}

#[test]
fn truncated_normal_has_keras_variance() {
    let w = Initializer::parse("he_normal").unwrap().sample(&[400, 300], &mut rng(2)).unwrap();
    // Keras's correction makes the truncated variance equal scale / fan_in.
    assert!((variance(&w) - 2.0 / 400.0).abs() / (2.0 / 400.0) < 0.03, "var {}", variance(&w));
    let sd = (2.0f64 / 400.0).sqrt() / 0.879_625_661_034_239_8;
    assert!(w.iter().all(|v| (*v as f64).abs() <= 2.0 * sd + 1e-6));
}

#[test]
fn variance_scaling_covers_the_presets() {
    for (mode, distribution, expected) in
        [("fan_avg", "uniform", 1.0 / 350.0), ("fan_out", "untruncated_normal", 1.0 / 300.0), ("fan_in", "normal", 1.0 / 400.0)]
    {
        let init = Initializer::from_config("VarianceScaling", &json!({"scale": 1.0, "mode": mode, "distribution": distribution})).unwrap();
        let v = variance(&init.sample(&[400, 300], &mut rng(3)).unwrap());
        assert!((v - expected).abs() / expected < 0.03, "{} {}: {} vs {}", mode, distribution, v, expected);
    }
    assert!(Initializer::from_config("VarianceScaling", &json!({"mode": "fan_sum"})).unwrap_err().to_string().contains("`mode`"));
}

#[test]
fn orthogonal_and_identity() {
    for shape in [[6usize, 4], [4, 6], [3, 3]] {
        let w = Initializer::from_config("Orthogonal", &json!({"gain": 2.0})).unwrap().sample(&shape, &mut rng(4)).unwrap();
        let (r, c) = (shape[0], shape[1]);
        // The shorter side's vectors (columns of a tall matrix, rows of a wide one) are
        // orthogonal with norm `gain`.
        let (outer, inner) = if r >= c { (c, r) } else { (r, c) };
        let at = |v: usize, k: usize| if r >= c { w[k * c + v] as f64 } else { w[v * c + k] as f64 };
        for a in 0..outer {
            for b in 0..outer {
                let dot: f64 = (0..inner).map(|k| at(a, k) * at(b, k)).sum();
                assert!((dot - if a == b { 4.0 } else { 0.0 }).abs() < 1e-5, "{:?} ({}, {}): {}", shape, a, b, dot);
            }
        }
    }
    let eye = Initializer::parse("identity").unwrap().sample(&[2, 3], &mut rng(0)).unwrap();
    assert_eq!(eye, vec![1., 0., 0., 0., 1., 0.]);
    assert!(Initializer::parse("identity").unwrap().sample(&[2, 2, 2], &mut rng(0)).is_err());
}

/// Every registered initializer: its config survives Keras's serialized form, it gives a
/// value per element, and a seed in its config (where it has one) makes its draws repeat.
#[test]
fn every_initializer_round_trips_fills_and_honours_its_seed() {
    for r in INITIALIZERS {
        let init = Initializer::parse(r.name).unwrap();
        assert_eq!(init.name(), r.name);
        let written = serde_json::to_value(&init).unwrap();
        assert_eq!(written["class_name"], r.class_name);
        let read: Initializer = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(read, init, "{}", r.class_name);
        let shape = [5, 5];
        assert_eq!(init.sample(&shape, &mut rng(5)).unwrap().len(), 25, "{}", r.class_name);
        if written["config"].get("seed").is_some() {
            let seeded = Initializer::from_config(r.class_name, &json!({"seed": 42})).unwrap();
            assert_eq!(seeded.sample(&shape, &mut rng(1)).unwrap(), seeded.sample(&shape, &mut rng(2)).unwrap(), "{}", r.class_name);
            assert_ne!(init.sample(&shape, &mut rng(1)).unwrap(), init.sample(&shape, &mut rng(2)).unwrap(), "{}", r.class_name);
        }
    }
    assert_eq!(Initializer::parse("uniform").unwrap(), Initializer::random_uniform(-0.05, 0.05));
    assert!(Initializer::parse("glorot").unwrap_err().to_string().contains("unknown initializer \"glorot\""));
}

#[test]
fn fans_follow_keras() {
    assert_eq!(compute_fans(&[3, 3, 16, 32]), (144.0, 288.0));
    assert_eq!(compute_fans(&[10, 4]), (10.0, 4.0));
}
