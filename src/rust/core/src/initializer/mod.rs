//! Keras weight initializers (same distributions, limits and configs as tf.keras; the random
//! stream is our own seeded generator, so values differ from TensorFlow's draws). Each
//! initializer is a type implementing [`InitializerType`] (its Keras class name, its string
//! name, its config fields by serde, how it samples) plus one line in [`INITIALIZERS`].
mod constant;
mod orthogonal;
mod random;
mod variance_scaling;

pub use constant::{Constant, Ones, Zeros};
pub use orthogonal::{Identity, Orthogonal};
pub use random::{RandomNormal, RandomUniform, TruncatedNormal};
pub use variance_scaling::{GlorotNormal, GlorotUniform, HeNormal, HeUniform, LecunNormal, LecunUniform, VarianceScaling};

use crate::error::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// An initializer type: its config is the struct itself (Keras's `get_config()` fields;
/// `Default` = Keras's defaults).
pub trait InitializerType: Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Keras's class name ("GlorotUniform").
    const CLASS_NAME: &'static str;
    /// The name a layer argument gives it by ("glorot_uniform").
    const NAME: &'static str;
    /// Other names Keras knows it by ("uniform" for RandomUniform).
    const ALIASES: &'static [&'static str] = &[];

    /// Checks the values after parsing, naming the field.
    fn normalize(&mut self) -> Result<()> {
        Ok(())
    }

    /// The config's `seed`, when it has one set: the initializer then draws from its own
    /// generator, so that it gives the same values wherever it is used.
    fn seed(&self) -> Option<u64> {
        None
    }

    /// Values for a weight of `shape` (row-major), drawing from `rng`.
    fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>>;
}

/// The object-safe face of an [`InitializerType`].
pub trait AnyInitializer: std::fmt::Debug + Send + Sync {
    fn class_name(&self) -> &'static str;
    fn name(&self) -> &'static str;
    fn config_json(&self) -> Value;
    fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>>;
}

impl<T: InitializerType> AnyInitializer for T {
    fn class_name(&self) -> &'static str {
        T::CLASS_NAME
    }
    fn name(&self) -> &'static str {
        T::NAME
    }
    fn config_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
        match self.seed() {
            Some(seed) => InitializerType::sample(self, shape, &mut StdRng::seed_from_u64(seed)),
            None => InitializerType::sample(self, shape, rng),
        }
    }
}

/// An initializer's entry.
pub struct Registration {
    pub class_name: &'static str,
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    parse: fn(&Value) -> Result<Arc<dyn AnyInitializer>>,
}

impl Registration {
    pub const fn of<T: InitializerType>() -> Self {
        Self { class_name: T::CLASS_NAME, name: T::NAME, aliases: T::ALIASES, parse: parse::<T> }
    }
}

fn parse<T: InitializerType>(config: &Value) -> Result<Arc<dyn AnyInitializer>> {
    let mut init: T = serde_path_to_error::deserialize(config).map_err(|e| {
        let field = e.path().to_string();
        let at = if field == "." { String::new() } else { format!(" `{}`", field) };
        Error::Value(format!("{} initializer config{}: {}", T::CLASS_NAME, at, e.into_inner()))
    })?;
    init.normalize().map_err(|e| match e {
        Error::Value(m) => Error::Value(format!("{} initializer: {}", T::CLASS_NAME, m)),
        other => other,
    })?;
    Ok(Arc::new(init))
}

/// One line per initializer.
pub static INITIALIZERS: &[Registration] = &[
    Registration::of::<Zeros>(),
    Registration::of::<Ones>(),
    Registration::of::<Constant>(),
    Registration::of::<GlorotUniform>(),
    Registration::of::<GlorotNormal>(),
    Registration::of::<HeUniform>(),
    Registration::of::<HeNormal>(),
    Registration::of::<LecunUniform>(),
    Registration::of::<LecunNormal>(),
    Registration::of::<VarianceScaling>(),
    Registration::of::<RandomUniform>(),
    Registration::of::<RandomNormal>(),
    Registration::of::<TruncatedNormal>(),
    Registration::of::<Orthogonal>(),
    Registration::of::<Identity>(),
];

/// A weight's initializer, as a layer's config holds it.
#[derive(Clone)]
pub struct Initializer(Arc<dyn AnyInitializer>);

impl Initializer {
    pub fn of<T: InitializerType>(init: T) -> Self {
        Self(Arc::new(init))
    }

    /// By name ("glorot_uniform", "uniform") with Keras's defaults.
    pub fn parse(name: &str) -> Result<Self> {
        let reg = INITIALIZERS.iter().find(|r| r.name == name || r.aliases.contains(&name) || r.class_name == name).ok_or_else(|| {
            let names: Vec<&str> = INITIALIZERS.iter().map(|r| r.name).collect();
            Error::Value(format!("unknown initializer \"{}\": expected one of {}", name, names.join(", ")))
        })?;
        Ok(Self((reg.parse)(&json!({}))?))
    }

    /// From Keras's `{"class_name", "config"}` form.
    pub fn from_config(class_name: &str, config: &Value) -> Result<Self> {
        let reg = INITIALIZERS.iter().find(|r| r.class_name == class_name).ok_or_else(|| {
            let names: Vec<&str> = INITIALIZERS.iter().map(|r| r.class_name).collect();
            Error::Value(format!("unknown initializer class \"{}\": expected one of {}", class_name, names.join(", ")))
        })?;
        let config = if config.is_null() { json!({}) } else { config.clone() };
        Ok(Self((reg.parse)(&config)?))
    }

    pub fn zeros() -> Self {
        Self::of(Zeros {})
    }

    pub fn ones() -> Self {
        Self::of(Ones {})
    }

    pub fn glorot_uniform() -> Self {
        Self::of(GlorotUniform::default())
    }

    pub fn random_uniform(minval: f64, maxval: f64) -> Self {
        Self::of(RandomUniform { minval, maxval, seed: None })
    }

    pub fn random_normal(mean: f64, stddev: f64) -> Self {
        Self::of(RandomNormal { mean, stddev, seed: None })
    }

    /// The name a layer argument gives it by ("glorot_uniform").
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    pub fn class_name(&self) -> &'static str {
        self.0.class_name()
    }

    /// Values for a weight of `shape`, with Keras's fan rules (`compute_fans`).
    pub fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
        self.0.sample(shape, rng)
    }
}

impl PartialEq for Initializer {
    fn eq(&self, other: &Self) -> bool {
        self.class_name() == other.class_name() && self.0.config_json() == other.0.config_json()
    }
}

impl std::fmt::Debug for Initializer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.class_name(), self.0.config_json())
    }
}

/// Keras's serialized form: `{"module", "class_name", "config", "registered_name"}` (tf-keras
/// 2.x); read from that, from Keras 2's `{"class_name", "config"}`, or from a name.
impl serde::Serialize for Initializer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        json!({ "module": "keras.initializers", "class_name": self.class_name(), "config": self.0.config_json(), "registered_name": null }).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Initializer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = Value::deserialize(d)?;
        if let Some(name) = v.as_str() {
            return Initializer::parse(name).map_err(D::Error::custom);
        }
        let class = v.get("class_name").and_then(Value::as_str).ok_or_else(|| D::Error::custom(format!("not an initializer: {}", v)))?;
        match Initializer::from_config(class, v.get("config").unwrap_or(&Value::Null)) {
            Ok(init) => Ok(init),
            // A loaded model's weights come from its file: an initializer class we do not have
            // only matters if the layer is rebuilt, so it reads as Keras's default.
            Err(_) if !INITIALIZERS.iter().any(|r| r.class_name == class) => Ok(Initializer::glorot_uniform()),
            Err(e) => Err(D::Error::custom(e)),
        }
    }
}

/// Keras's `compute_fans`: dense kernels (in, out); conv kernels (..spatial, in, out).
pub fn compute_fans(shape: &[usize]) -> (f64, f64) {
    match shape.len() {
        0 => (1.0, 1.0),
        1 => (shape[0] as f64, shape[0] as f64),
        2 => (shape[0] as f64, shape[1] as f64),
        k => {
            let receptive: usize = shape[..k - 2].iter().product();
            ((shape[k - 2] * receptive) as f64, (shape[k - 1] * receptive) as f64)
        }
    }
}

/// A standard normal draw (Box-Muller); avoids pulling in rand_distr for one function.
pub(crate) fn standard_normal<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `n` draws from a normal with `mean` and `stddev` truncated at two standard deviations
/// (redrawn beyond), as Keras's TruncatedNormal.
fn truncated_normal(n: usize, mean: f64, stddev: f64, rng: &mut StdRng) -> Vec<f32> {
    (0..n)
        .map(|_| loop {
            let z = standard_normal(rng);
            if z.abs() <= 2.0 {
                break (mean + z * stddev) as f32;
            }
        })
        .collect()
}

fn uniform(n: usize, lo: f64, hi: f64, rng: &mut StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(lo..hi) as f32).collect()
}

#[cfg(test)]
mod tests;
