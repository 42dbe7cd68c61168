//! Values that appear in many layers' Keras configs, with Keras's serialized forms: tuples of
//! integers (`kernel_size`, `strides`, ...), `padding`, `data_format`, and the fields rustgpu
//! does not implement yet (regularizers, constraints), which must be `null`.
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Keras's "integer or tuple of 1 integer" (Conv1D's `kernel_size`); written as `[n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple1(pub usize);

/// Keras's "integer or tuple of 2 integers" (Conv2D's `kernel_size`); written as `[a, b]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple2(pub usize, pub usize);

impl Tuple2 {
    pub fn pair(self) -> (usize, usize) {
        (self.0, self.1)
    }
}

fn whole_numbers(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Number(n) => n.as_u64().map(|x| vec![x as usize]),
        Value::Array(items) => items.iter().map(|x| x.as_u64().map(|x| x as usize)).collect(),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for Tuple1 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match whole_numbers(&v).as_deref() {
            Some([n]) => Ok(Tuple1(*n)),
            _ => Err(serde::de::Error::custom(format!("expected a whole number >= 0 or a list of one, got {}", v))),
        }
    }
}

impl Serialize for Tuple1 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [self.0].serialize(s)
    }
}

impl<'de> Deserialize<'de> for Tuple2 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match whole_numbers(&v).as_deref() {
            Some([n]) => Ok(Tuple2(*n, *n)),
            Some([a, b]) => Ok(Tuple2(*a, *b)),
            _ => Err(serde::de::Error::custom(format!("expected a whole number >= 0 or a list of two, got {}", v))),
        }
    }
}

impl Serialize for Tuple2 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [self.0, self.1].serialize(s)
    }
}

/// Keras's 3-d sizes (`kernel_size = 3` or `c(2, 3, 3)`): depth, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tuple3(pub usize, pub usize, pub usize);

impl<'de> Deserialize<'de> for Tuple3 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match whole_numbers(&v).as_deref() {
            Some([n]) => Ok(Tuple3(*n, *n, *n)),
            Some([a, b, c]) => Ok(Tuple3(*a, *b, *c)),
            _ => Err(serde::de::Error::custom(format!("expected a whole number >= 0 or a list of three, got {}", v))),
        }
    }
}

impl Serialize for Tuple3 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [self.0, self.1, self.2].serialize(s)
    }
}

/// Keras's `padding`: "valid" (none), "same" (output size `ceil(input / stride)`, as
/// TensorFlow pads) or "causal" (1-D convolutions, left padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    #[default]
    Valid,
    Same,
    Causal,
}

impl Padding {
    /// Whether the window layers' geometry pads to keep `ceil(input / stride)` outputs.
    pub fn is_same(self) -> bool {
        self == Padding::Same
    }

    /// "valid" or "same" (2-D windows and pooling have no causal padding).
    pub fn check_not_causal(self, class: &str) -> crate::Result<()> {
        if self == Padding::Causal {
            return Err(crate::Error::Value(format!("`padding = \"causal\"` is for 1-D convolutions; {} takes \"valid\" or \"same\"", class)));
        }
        Ok(())
    }
}

/// Keras's `data_format`; rustgpu runs channels last (Keras's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    #[default]
    ChannelsLast,
    ChannelsFirst,
}

impl DataFormat {
    pub fn check(self) -> crate::Result<()> {
        if self == DataFormat::ChannelsFirst {
            return Err(crate::Error::Value("`data_format = \"channels_first\"` is not supported: rustgpu runs channels last (Keras's default)".into()));
        }
        Ok(())
    }
}

/// A config field rustgpu does not implement yet (a regularizer, a constraint, a noise
/// shape): Keras writes `null` there, and any other value is refused rather than ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotSupported;

impl<'de> Deserialize<'de> for NotSupported {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(NotSupported),
            other => Err(serde::de::Error::custom(format!("is not supported by rustgpu yet (got {}); leave it NULL", other))),
        }
    }
}

impl Serialize for NotSupported {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

/// Keras's "integer or list of integers" axis argument (BatchNormalization's `axis`): axes
/// count the batch axis as 0, and -1 is the last. Written as a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axes(pub Vec<i64>);

impl Axes {
    /// Whether these axes are exactly the last axis of inputs of `rank` sample axes.
    pub fn is_last(&self, rank: usize) -> bool {
        matches!(self.0.as_slice(), [a] if *a == -1 || *a == rank as i64)
    }
}

impl<'de> Deserialize<'de> for Axes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let axes = match &v {
            Value::Number(n) => n.as_i64().map(|a| vec![a]),
            Value::Array(items) => items.iter().map(Value::as_i64).collect(),
            _ => None,
        };
        axes.map(Axes).ok_or_else(|| serde::de::Error::custom(format!("expected an axis or a list of axes, got {}", v)))
    }
}

impl Serialize for Axes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// `Err` naming `field` unless every value is at least 1.
pub fn check_positive(field: &str, values: &[usize]) -> crate::Result<()> {
    if values.contains(&0) {
        let shown = values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
        return Err(crate::Error::Value(format!("`{}` must be positive, got {}", field, shown)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tuples_read_a_number_or_a_list_and_write_a_list() {
        assert_eq!(serde_json::from_value::<Tuple2>(json!(3)).unwrap(), Tuple2(3, 3));
        assert_eq!(serde_json::from_value::<Tuple2>(json!([2, 5])).unwrap(), Tuple2(2, 5));
        assert_eq!(serde_json::to_value(Tuple2(2, 5)).unwrap(), json!([2, 5]));
        assert_eq!(serde_json::from_value::<Tuple1>(json!([4])).unwrap(), Tuple1(4));
        assert_eq!(serde_json::to_value(Tuple1(4)).unwrap(), json!([4]));
        assert!(serde_json::from_value::<Tuple2>(json!([1, 2, 3])).is_err());
        assert!(serde_json::from_value::<Tuple1>(json!(-1)).is_err());
        assert!(serde_json::from_value::<Tuple1>(json!(1.5)).is_err());
    }

    #[test]
    fn unsupported_fields_must_be_null() {
        assert!(serde_json::from_value::<NotSupported>(json!(null)).is_ok());
        let e = serde_json::from_value::<NotSupported>(json!({"class_name": "L2"})).unwrap_err();
        assert!(e.to_string().contains("not supported"));
        assert_eq!(serde_json::from_value::<Padding>(json!("same")).unwrap(), Padding::Same);
        assert!(serde_json::from_value::<Padding>(json!("full")).is_err());
        assert_eq!(serde_json::to_value(DataFormat::ChannelsLast).unwrap(), json!("channels_last"));
    }
}
