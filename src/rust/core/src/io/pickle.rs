//! A reader for the Python pickles Keras's data sets ship: CIFAR's batches (dicts holding a
//! numpy array) and the object arrays inside imdb/reuters `.npz` files (lists of lists of
//! word ids). Protocols 0-5's binary opcodes for None, booleans, numbers, strings, bytes,
//! tuples, lists, dicts, memo, and `numpy.core.multiarray._reconstruct` (numpy arrays);
//! any other global or opcode is refused with an error naming it. Nothing in a file can make
//! it allocate more than the file holds.
use crate::error::{Error, Result};

/// A value from a pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A numpy array: its dtype (numpy's `str`, e.g. "|u1", "<i8", "|O"), shape, whether it
    /// is in Fortran order, and its data: raw bytes, or the objects of an object array.
    Array {
        dtype: String,
        shape: Vec<usize>,
        fortran: bool,
        data: ArrayData,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    Raw(Vec<u8>),
    Objects(Vec<Value>),
}

/// What the machine holds while running: values, marks, and the partial objects of numpy's
/// reconstruction protocol.
#[derive(Debug, Clone)]
enum Item {
    Value(Value),
    Mark,
    Global(String, String),
    /// `_reconstruct(ndarray, (0,), b)`: an empty array waiting for its state.
    EmptyArray,
    /// `numpy.dtype(name, align, copy)`: waiting for its state.
    Dtype(String),
}

fn err(msg: impl Into<String>) -> Error {
    Error::Io(format!("pickle: {}", msg.into()))
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    memo: Vec<Option<Item>>,
    /// Values copied out of (and into) the memo so far: a small file that fetches one big
    /// value from its memo again and again would otherwise grow without bound.
    copied: usize,
}

/// Values in an item, counting nested ones (what copying it costs).
fn values_in(item: &Item) -> usize {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::List(items) | Value::Tuple(items) => items.iter().map(count).sum(),
            Value::Dict(entries) => entries.iter().map(|(k, v)| count(k) + count(v)).sum(),
            Value::Array { data: ArrayData::Objects(o), .. } => o.iter().map(count).sum(),
            Value::Bytes(b) | Value::Array { data: ArrayData::Raw(b), .. } => b.len() / 16,
            Value::Str(s) => s.len() / 16,
            _ => 0,
        }
    }
    match item {
        Item::Value(v) => count(v),
        _ => 1,
    }
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end =
            self.pos.checked_add(n).filter(|e| *e <= self.data.len()).ok_or_else(|| err(format!("truncated: {} bytes wanted at offset {}", n, self.pos)))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|b| *b == b'\n').ok_or_else(|| err("unterminated text line"))?;
        let s = String::from_utf8_lossy(&rest[..n]).to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Item> {
        self.stack.pop().ok_or_else(|| err("stack underflow"))
    }

    fn pop_value(&mut self) -> Result<Value> {
        let item = self.pop()?;
        Self::value(item)
    }

    /// An item as a value: a dtype stands for its name, a global (numpy's `ndarray` among
    /// `_reconstruct`'s arguments) for its dotted name.
    fn value(item: Item) -> Result<Value> {
        match item {
            Item::Value(v) => Ok(v),
            Item::Dtype(d) => Ok(Value::Str(d)),
            Item::Global(m, n) => Ok(Value::Str(format!("{}.{}", m, n))),
            other => Err(err(format!("expected a value, found {:?}", other))),
        }
    }

    /// The values above the topmost mark (which is removed).
    fn pop_mark(&mut self) -> Result<Vec<Item>> {
        let at = self.stack.iter().rposition(|i| matches!(i, Item::Mark)).ok_or_else(|| err("no mark"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn values(items: Vec<Item>) -> Result<Vec<Value>> {
        items.into_iter().map(Self::value).collect()
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Item::Value(v));
    }

    /// Counts a copy against the file's budget: as many values as the file has bytes (each
    /// value the file itself writes takes at least one byte), plus a million.
    fn charge(&mut self, item: &Item) -> Result<()> {
        self.copied = self.copied.saturating_add(values_in(item));
        if self.copied > self.data.len() + 1_000_000 {
            return Err(err("the file copies values from its memo far beyond its own size (a corrupt or malicious pickle)"));
        }
        Ok(())
    }

    fn memo_put(&mut self, index: usize) -> Result<()> {
        let top = self.stack.last().cloned().ok_or_else(|| err("memoize on an empty stack"))?;
        self.charge(&top)?;
        if index > self.data.len() {
            return Err(err(format!("memo index {} beyond the file", index)));
        }
        if self.memo.len() <= index {
            self.memo.resize(index + 1, None);
        }
        self.memo[index] = Some(top);
        Ok(())
    }

    fn memo_get(&mut self, index: usize) -> Result<()> {
        let item = self.memo.get(index).cloned().flatten().ok_or_else(|| err(format!("memo {} is empty", index)))?;
        self.charge(&item)?;
        self.stack.push(item);
        Ok(())
    }

    /// Appends `items` to the list (or sets items of the dict) below them.
    fn extend_top(&mut self, items: Vec<Value>, dict: bool) -> Result<()> {
        match self.stack.last_mut() {
            Some(Item::Value(Value::List(l))) if !dict => l.extend(items),
            Some(Item::Value(Value::Dict(d))) if dict => {
                if !items.len().is_multiple_of(2) {
                    return Err(err("odd number of dict items"));
                }
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            _ => return Err(err(if dict { "SETITEMS without a dict" } else { "APPENDS without a list" })),
        }
        Ok(())
    }

    fn reduce(&mut self) -> Result<()> {
        let args = self.pop_value()?;
        let func = self.pop()?;
        let item = match func {
            Item::Global(m, n) if n == "_reconstruct" && m.starts_with("numpy") => Item::EmptyArray,
            Item::Global(m, n) if n == "dtype" && m.starts_with("numpy") => match args {
                Value::Tuple(a) => match a.first() {
                    Some(Value::Str(s)) => Item::Dtype(s.clone()),
                    _ => return Err(err("numpy.dtype without a type name")),
                },
                _ => return Err(err("numpy.dtype without arguments")),
            },
            // Python 3 pickles of Python 2 byte strings: _codecs.encode(text, "latin1").
            Item::Global(m, n) if m == "_codecs" && n == "encode" => match args {
                Value::Tuple(a) => match a.first() {
                    Some(Value::Str(s)) => Item::Value(Value::Bytes(s.chars().map(|c| c as u32 as u8).collect())),
                    _ => return Err(err("_codecs.encode without text")),
                },
                _ => return Err(err("_codecs.encode without arguments")),
            },
            Item::Global(m, n) => return Err(err(format!("unsupported object {}.{}", m, n))),
            other => return Err(err(format!("cannot call {:?}", other))),
        };
        self.stack.push(item);
        Ok(())
    }

    fn build(&mut self) -> Result<()> {
        let state = self.pop_value()?;
        let target = self.pop()?;
        let built = match (target, state) {
            // A dtype's state: (version, byte order, ...): the order joins the type name.
            (Item::Dtype(name), Value::Tuple(s)) => {
                let order = match s.get(1) {
                    Some(Value::Str(o)) => o.clone(),
                    _ => "|".into(),
                };
                let kind = name.trim_start_matches(['<', '>', '|', '=']);
                Item::Dtype(format!("{}{}", if order == "=" { "<" } else { &order }, kind))
            }
            // An array's state: (version, shape, dtype, is_fortran, data).
            (Item::EmptyArray, Value::Tuple(s)) if s.len() == 5 => {
                let shape = match &s[1] {
                    Value::Tuple(d) => d
                        .iter()
                        .map(|v| match v {
                            Value::Int(i) if *i >= 0 => Ok(*i as usize),
                            _ => Err(err("bad array shape")),
                        })
                        .collect::<Result<Vec<_>>>()?,
                    _ => return Err(err("bad array shape")),
                };
                let dtype = match &s[2] {
                    Value::Str(d) => d.clone(),
                    _ => return Err(err("bad array dtype")),
                };
                let fortran = matches!(s[3], Value::Bool(true) | Value::Int(1));
                let data = match &s[4] {
                    Value::Bytes(b) => ArrayData::Raw(b.clone()),
                    Value::Str(t) => ArrayData::Raw(t.chars().map(|c| c as u32 as u8).collect()),
                    Value::List(objects) => ArrayData::Objects(objects.clone()),
                    _ => return Err(err("bad array data")),
                };
                Item::Value(Value::Array { dtype, shape, fortran, data })
            }
            // Objects whose state is a dict (instances): the dict stands for them.
            (Item::Value(Value::Dict(mut d)), Value::Dict(s)) => {
                d.extend(s);
                Item::Value(Value::Dict(d))
            }
            (t, _) => return Err(err(format!("cannot set the state of {:?}", t))),
        };
        self.stack.push(built);
        Ok(())
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.u64()?; // FRAME
                }
                b'.' => return self.pop_value(), // STOP
                b'(' => self.stack.push(Item::Mark),
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.push(Value::Int(v as i64))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into().unwrap());
                    self.push(Value::Int(v as i64))
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(err("integer too large"));
                    }
                    let mut v: i64 = 0;
                    for (i, byte) in b.iter().enumerate() {
                        v |= (*byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v))
                }
                b'I' => {
                    let s = self.line()?;
                    let v = match s.as_str() {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        t => Value::Int(t.parse().map_err(|_| err(format!("bad INT {}", t)))?),
                    };
                    self.push(v)
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(v))
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).to_string();
                    self.push(Value::Str(s))
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).to_string();
                    self.push(Value::Str(s))
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).to_string();
                    self.push(Value::Str(s))
                }
                // Python 2 byte strings (STRING types): kept as text, byte for byte.
                b'U' => {
                    let n = self.u8()? as usize;
                    let s = self.take(n)?.iter().map(|b| *b as char).collect();
                    self.push(Value::Str(s))
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let s = self.take(n)?.iter().map(|b| *b as char).collect();
                    self.push(Value::Str(s))
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))
                }
                0x8e => {
                    let n = self.u64()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))
                }
                b')' => self.push(Value::Tuple(Vec::new())),
                b']' => self.push(Value::List(Vec::new())),
                b'}' => self.push(Value::Dict(Vec::new())),
                b't' => {
                    let items = Self::values(self.pop_mark()?)?;
                    self.push(Value::Tuple(items))
                }
                b'l' => {
                    let items = Self::values(self.pop_mark()?)?;
                    self.push(Value::List(items))
                }
                b'd' => {
                    let items = Self::values(self.pop_mark()?)?;
                    self.push(Value::Dict(Vec::new()));
                    self.extend_top(items, true)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(err("stack underflow"));
                    }
                    let items = Self::values(self.stack.split_off(self.stack.len() - n))?;
                    self.push(Value::Tuple(items))
                }
                b'a' => {
                    let v = self.pop_value()?;
                    self.extend_top(vec![v], false)?
                }
                b'e' => {
                    let items = Self::values(self.pop_mark()?)?;
                    self.extend_top(items, false)?
                }
                b's' => {
                    let v = self.pop_value()?;
                    let k = self.pop_value()?;
                    self.extend_top(vec![k, v], true)?
                }
                b'u' => {
                    let items = Self::values(self.pop_mark()?)?;
                    self.extend_top(items, true)?
                }
                b'q' => {
                    let i = self.u8()? as usize;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = self.u32()? as usize;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = self.memo.len();
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()? as usize;
                    self.memo_get(i)?
                }
                b'j' => {
                    let i = self.u32()? as usize;
                    self.memo_get(i)?
                }
                b'p' => {
                    let i: usize = self.line()?.parse().map_err(|_| err("bad PUT"))?;
                    self.memo_put(i)?
                }
                b'g' => {
                    let i: usize = self.line()?.parse().map_err(|_| err("bad GET"))?;
                    self.memo_get(i)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Item::Global(module, name))
                }
                0x93 => {
                    let name = match self.pop_value()? {
                        Value::Str(s) => s,
                        _ => return Err(err("STACK_GLOBAL without a name")),
                    };
                    let module = match self.pop_value()? {
                        Value::Str(s) => s,
                        _ => return Err(err("STACK_GLOBAL without a module")),
                    };
                    self.stack.push(Item::Global(module, name))
                }
                b'R' => self.reduce()?,
                b'b' => self.build()?,
                other => return Err(err(format!("unsupported opcode 0x{:02x} at offset {}", other, self.pos - 1))),
            }
        }
    }
}

/// The value a pickle holds.
pub fn read(data: &[u8]) -> Result<Value> {
    Machine { data, pos: 0, stack: Vec::new(), memo: Vec::new(), copied: 0 }.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_python_pickles_of_the_data_sets_kinds() {
        // pickle.dumps({"a": [1, -2, 300, 70000], "b": (None, True, 1.5), "c": b"xy"}, protocol=2)
        let p2: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00eX\x01\x00\x00\x00bq\x03N\x88G?\xf8\x00\x00\x00\x00\x00\x00\x87q\x04X\x01\x00\x00\x00cq\x05c_codecs\nencode\nq\x06X\x02\x00\x00\x00xyq\x07X\x06\x00\x00\x00latin1q\x08\x86q\tRq\nu.";
        let v = read(p2).unwrap();
        let Value::Dict(d) = v else { panic!("{:?}", v) };
        assert_eq!(d[0], (Value::Str("a".into()), Value::List(vec![Value::Int(1), Value::Int(-2), Value::Int(300), Value::Int(70000)])));
        assert_eq!(d[1].1, Value::Tuple(vec![Value::None, Value::Bool(true), Value::Float(1.5)]));
        assert_eq!(d[2].1, Value::Bytes(b"xy".to_vec()));
        // Protocol 4 (frames, memoize, 8-byte ints, short strings).
        let p4: &[u8] = b"\x80\x04\x95O\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\xffe\x8c\x01b\x94N\x88G?\xf8\x00\x00\x00\x00\x00\x00\x87\x94\x8c\x01c\x94C\x02xy\x94\x8c\x01d\x94\x8c\x02\xc3\xa9\x94u.";
        let Value::Dict(d) = read(p4).unwrap() else { panic!() };
        let ints = vec![1, -2, 300, 70000, 1i64 << 40, -(1i64 << 40)].into_iter().map(Value::Int).collect();
        assert_eq!(d[0].1, Value::List(ints));
        assert_eq!(d[2].1, Value::Bytes(b"xy".to_vec()));
        assert_eq!(d[3].1, Value::Str("é".into()));
        assert!(read(b"\x80\x02K").is_err());
        // A bomb: a list memoized, then fetched and appended to itself, doubling each round.
        let mut bomb = b"\x80\x02]q\x00(K\x01K\x02K\x03e".to_vec();
        for _ in 0..40 {
            bomb.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        bomb.push(b'.');
        assert!(read(&bomb).unwrap_err().to_string().contains("beyond its own size"));
        assert!(read(b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.").unwrap_err().to_string().contains("unsupported object os.system"));
    }
}
