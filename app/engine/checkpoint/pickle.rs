//! A restricted unpickler for PyTorch checkpoints.
//!
//! It interprets the pickle opcodes into plain values and never runs code: the only
//! globals it accepts are the handful PyTorch uses to describe tensors and ordered
//! dicts (the same idea as `torch.load(weights_only=True)`). Any other global is an
//! error that names it.

use std::collections::HashMap;

/// Element type of a PyTorch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDtype {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// PyTorch's name of the type, as a user would write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F64 => "float64",
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::I16 => "int16",
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }

    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A tensor described by the pickle: its bytes live in the zip under `data/<key>`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage_key: String,
    pub dtype: StorageDtype,
    pub storage_numel: usize,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    TensorType,
    Storage(StorageDtype),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Global(Global),
    Storage { dtype: StorageDtype, key: String, numel: usize },
    Tensor(TensorRef),
    Mark,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global(_) => "class",
            Value::Storage { .. } => "storage",
            Value::Tensor(_) => "tensor",
            Value::Mark => "mark",
        }
    }
}

fn resolve_global(module: &str, name: &str) -> Result<Global, String> {
    let global = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") | ("torch._tensor", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorType,
        ("torch", class) => match StorageDtype::from_class(class) {
            Some(dtype) => Global::Storage(dtype),
            None => return Err(format!("{module}.{name}")),
        },
        _ => return Err(format!("{module}.{name}")),
    };
    Ok(global)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let bytes = &self.data[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            None => Err(format!("pickle ends early at byte {} (wanted {n} more bytes)", self.pos)),
        }
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("pickle line has no end")?;
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
    fn sized(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "pickle length too large".to_string())?;
        self.take(n)
    }
}

/// How deeply containers may nest: a state_dict nests a handful of levels, and deeper
/// structures would overflow the stack when dropped or walked.
const MAX_DEPTH: u32 = 200;
/// Values a pickle may create, copies from the memo included: a state_dict makes about 20 per
/// tensor (7,000 for a ResNet-50), and a pickle which multiplies its objects stops at about
/// 70 MB (each value is a few dozen bytes).
const MAX_VALUES: u64 = 1_000_000;
/// Values the stack may hold at once: pickle writes containers in batches of 1,000 items, so
/// a real checkpoint's stack stays in the low thousands.
const MAX_STACK: usize = 100_000;

/// What a value on the stack holds: its nesting depth and its count of values.
#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    depth: u32,
    values: u64,
}

impl Meta {
    const LEAF: Meta = Meta { depth: 0, values: 1 };

    /// A container of items with these combined measures.
    fn around(self) -> Meta {
        Meta { depth: self.depth + 1, values: self.values + 1 }
    }

    fn join(self, other: Meta) -> Meta {
        Meta { depth: self.depth.max(other.depth), values: self.values + other.values }
    }
}

/// The pickle virtual machine's state. Every value on the stack and in the memo carries its
/// [`Meta`], kept up to date as containers grow, so depth and size are bounded as they are
/// built, without walking (or recursing into) what was built.
struct Machine {
    stack: Vec<Value>,
    meta: Vec<Meta>,
    memo: HashMap<u32, (Value, Meta)>,
    /// Values created so far.
    created: u64,
}

impl Machine {
    fn charge(&mut self, meta: Meta) -> Result<(), String> {
        if meta.depth > MAX_DEPTH {
            return Err(format!("the pickle nests containers more than {MAX_DEPTH} levels deep"));
        }
        self.created += meta.values;
        if self.created > MAX_VALUES {
            return Err(format!("the pickle builds more than {MAX_VALUES} values, far more than a state_dict holds"));
        }
        Ok(())
    }
    fn push_meta(&mut self, v: Value, meta: Meta) -> Result<(), String> {
        self.charge(meta)?;
        self.check_stack()?;
        self.stack.push(v);
        self.meta.push(meta);
        Ok(())
    }
    fn check_stack(&self) -> Result<(), String> {
        if self.stack.len() >= MAX_STACK {
            return Err(format!("the pickle holds more than {MAX_STACK} values on its stack at once"));
        }
        Ok(())
    }
    /// Pushes a value that holds no other values.
    fn push(&mut self, v: Value) -> Result<(), String> {
        self.push_meta(v, Meta::LEAF)
    }
    /// Pushes a new container around items measured `inner` (already charged).
    fn push_container(&mut self, v: Value, inner: Meta) -> Result<(), String> {
        self.charge(Meta::LEAF)?;
        self.check_stack()?;
        let meta = inner.around();
        if meta.depth > MAX_DEPTH {
            return Err(format!("the pickle nests containers more than {MAX_DEPTH} levels deep"));
        }
        self.stack.push(v);
        self.meta.push(meta);
        Ok(())
    }
    fn pop_entry(&mut self) -> Result<(Value, Meta), String> {
        match (self.stack.pop(), self.meta.pop()) {
            (Some(v), Some(m)) => Ok((v, m)),
            _ => Err("pickle stack underflow".to_string()),
        }
    }
    fn pop(&mut self) -> Result<Value, String> {
        self.pop_entry().map(|(v, _)| v)
    }
    /// The values above the topmost mark (and the mark itself) off the stack.
    fn pop_mark(&mut self) -> Result<(Vec<Value>, Meta), String> {
        let mark = self.stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or("pickle has no mark to pop to")?;
        self.pop_top(self.stack.len() - mark - 1).and_then(|items| {
            self.pop()?;
            Ok(items)
        })
    }
    /// The top `n` values, in stack order.
    fn pop_top(&mut self, n: usize) -> Result<(Vec<Value>, Meta), String> {
        if self.stack.len() < n {
            return Err("pickle stack underflow".into());
        }
        let at = self.stack.len() - n;
        let meta = self.meta.split_off(at).into_iter().fold(Meta { depth: 0, values: 0 }, Meta::join);
        Ok((self.stack.split_off(at), meta))
    }
    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack.last_mut().ok_or_else(|| "pickle stack underflow".to_string())
    }
    /// Grows the top container by items measured `inner`.
    fn grow_top(&mut self, inner: Meta) -> Result<(), String> {
        let top = self.meta.last_mut().ok_or("pickle stack underflow")?;
        top.depth = top.depth.max(inner.depth + 1);
        top.values += inner.values;
        if top.depth > MAX_DEPTH {
            return Err(format!("the pickle nests containers more than {MAX_DEPTH} levels deep"));
        }
        Ok(())
    }
    /// A copy of the top value (DUP), counted like any new value before it is made.
    fn dup(&mut self) -> Result<(), String> {
        let meta = *self.meta.last().ok_or("pickle stack underflow")?;
        self.charge(meta)?;
        self.check_stack()?;
        let v = self.stack.last().ok_or("pickle stack underflow")?.clone();
        self.stack.push(v);
        self.meta.push(meta);
        Ok(())
    }
    /// A copy of a memo entry, counted before it is made: an entry can stand for millions of
    /// values.
    fn memo_get(&mut self, index: u32) -> Result<(), String> {
        let meta = self.memo.get(&index).map(|(_, m)| *m).ok_or_else(|| format!("pickle memo {index} missing"))?;
        self.charge(meta)?;
        self.check_stack()?;
        let v = self.memo[&index].0.clone();
        self.stack.push(v);
        self.meta.push(meta);
        Ok(())
    }
    fn memo_put(&mut self, index: u32) -> Result<(), String> {
        let meta = *self.meta.last().ok_or("pickle stack underflow")?;
        self.charge(meta)?;
        let v = self.stack.last().ok_or("pickle stack underflow")?.clone();
        self.memo.insert(index, (v, meta));
        Ok(())
    }
    fn set_items(&mut self, (items, inner): (Vec<Value>, Meta)) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("pickle SETITEMS with an odd item count".into());
        }
        let Value::Dict(dict) = self.top()? else {
            return Err("pickle SETITEM on something that is not a dict".into());
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            dict.push((k, v));
        }
        self.grow_top(inner)
    }
    fn append(&mut self, (items, inner): (Vec<Value>, Meta)) -> Result<(), String> {
        match self.top()? {
            Value::List(list) | Value::Set(list) => list.extend(items),
            other => return Err(format!("pickle APPEND on a {}", other.kind())),
        }
        self.grow_top(inner)
    }
}

fn int_arg(v: &Value, what: &str) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(format!("{what}: expected an int, found a {}", other.kind())),
    }
}

fn usize_list(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    let items = match v {
        Value::Tuple(items) | Value::List(items) => items,
        other => return Err(format!("{what}: expected a tuple, found a {}", other.kind())),
    };
    items.iter().map(|i| usize::try_from(int_arg(i, what)?).map_err(|_| format!("{what}: negative value"))).collect()
}

fn tuple_items(v: Value, what: &str) -> Result<Vec<Value>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => Ok(items),
        other => Err(format!("{what}: expected a tuple, found a {}", other.kind())),
    }
}

fn persistent_load(pid: Value) -> Result<Value, String> {
    let items = tuple_items(pid, "persistent id")?;
    match items.as_slice() {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), key, _location, numel] if tag == "storage" => {
            let key = match key {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                other => return Err(format!("storage key is a {}", other.kind())),
            };
            let numel =
                usize::try_from(int_arg(numel, "storage size")?).map_err(|_| "negative storage size".to_string())?;
            Ok(Value::Storage { dtype: *dtype, key, numel })
        }
        _ => Err("unsupported persistent id (expected a torch storage)".into()),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(global) = callable else {
        return Err(format!("pickle calls a {}, not an allowed class", callable.kind()));
    };
    let mut args = tuple_items(args, "call arguments")?;
    match global {
        Global::OrderedDict => Ok(Value::Dict(Vec::new())),
        Global::RebuildTensorV2 => {
            if args.len() < 4 {
                return Err("_rebuild_tensor_v2 with too few arguments".into());
            }
            let Value::Storage { dtype, key, numel } = args.remove(0) else {
                return Err("_rebuild_tensor_v2 without a storage".into());
            };
            let offset = usize::try_from(int_arg(&args[0], "storage offset")?)
                .map_err(|_| "negative storage offset".to_string())?;
            let size = usize_list(&args[1], "tensor size")?;
            let stride = usize_list(&args[2], "tensor stride")?;
            if size.len() != stride.len() {
                return Err("tensor size and stride differ in length".into());
            }
            Ok(Value::Tensor(TensorRef { storage_key: key, dtype, storage_numel: numel, offset, size, stride }))
        }
        Global::RebuildParameter | Global::RebuildParameterWithState => {
            if args.is_empty() {
                return Err("_rebuild_parameter without arguments".into());
            }
            Ok(args.swap_remove(0))
        }
        Global::RebuildFromTypeV2 => {
            // (func, new_type, args, state): apply func to args; the type is always a tensor.
            if args.len() < 3 {
                return Err("_rebuild_from_type_v2 with too few arguments".into());
            }
            let inner_args = args.swap_remove(2);
            let func = args.swap_remove(0);
            reduce(func, inner_args)
        }
        Global::TensorType | Global::Storage(_) => {
            Err("pickle constructs a tensor type directly, which a state_dict never does".into())
        }
    }
}

/// Interprets a pickle stream into a value. Unknown globals and opcodes are errors.
pub fn unpickle(data: &[u8]) -> Result<Value, String> {
    let mut r = Reader { data, pos: 0 };
    let mut m = Machine { stack: Vec::new(), meta: Vec::new(), memo: HashMap::new(), created: 0 };
    loop {
        let at = r.pos;
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?;
            } // PROTO
            0x95 => {
                r.u64()?;
            } // FRAME
            b'.' => return m.pop(), // STOP
            b'(' => m.push(Value::Mark)?,
            b'0' => {
                m.pop()?;
            }
            b'1' => {
                m.pop_mark()?;
            }
            b'2' => m.dup()?,
            b'N' => m.push(Value::None)?,
            0x88 => m.push(Value::Bool(true))?,
            0x89 => m.push(Value::Bool(false))?,
            b'I' => {
                let line = r.line()?;
                let v = match line.as_str() {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => Value::Int(s.trim().parse().map_err(|_| format!("bad INT {s:?}"))?),
                };
                m.push(v)?;
            }
            b'J' => m.push(Value::Int(r.u32()? as i32 as i64))?,
            b'K' => m.push(Value::Int(r.u8()? as i64))?,
            b'M' => m.push(Value::Int(r.u16()? as i64))?,
            b'L' => {
                let line = r.line()?;
                let s = line.trim_end_matches('L');
                m.push(Value::Int(s.parse().map_err(|_| format!("bad LONG {s:?}"))?))?;
            }
            0x8a | 0x8b => {
                let n = if op == 0x8a { r.u8()? as u64 } else { r.u32()? as u64 };
                let bytes = r.sized(n)?;
                if bytes.len() > 8 {
                    return Err("integer too large in pickle".into());
                }
                let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                buf[..bytes.len()].copy_from_slice(bytes);
                m.push(Value::Int(i64::from_le_bytes(buf)))?;
            }
            b'F' => {
                let line = r.line()?;
                m.push(Value::Float(line.trim().parse().map_err(|_| format!("bad FLOAT {line:?}"))?))?;
            }
            b'G' => m.push(Value::Float(f64::from_be_bytes(r.take(8)?.try_into().expect("8"))))?,
            b'S' => {
                let line = r.line()?;
                m.push(Value::Str(line.trim_matches(|c| c == '\'' || c == '"').to_string()))?;
            }
            b'T' | b'U' | b'X' | 0x8c | 0x8d | b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'U' | 0x8c | b'C' => r.u8()? as u64,
                    0x8d | 0x8e => r.u64()?,
                    _ => r.u32()? as u64,
                };
                let bytes = r.sized(n)?;
                let v = match op {
                    b'B' | b'C' | 0x8e => Value::Bytes(bytes.to_vec()),
                    _ => Value::Str(String::from_utf8_lossy(bytes).into_owned()),
                };
                m.push(v)?;
            }
            b'V' => {
                let line = r.line()?;
                m.push(Value::Str(line))?;
            }
            b')' => m.push(Value::Tuple(Vec::new()))?,
            b't' => {
                let (items, inner) = m.pop_mark()?;
                m.push_container(Value::Tuple(items), inner)?;
            }
            0x85..=0x87 => {
                let (items, inner) = m.pop_top((op - 0x84) as usize)?;
                m.push_container(Value::Tuple(items), inner)?;
            }
            b']' => m.push(Value::List(Vec::new()))?,
            b'l' => {
                let (items, inner) = m.pop_mark()?;
                m.push_container(Value::List(items), inner)?;
            }
            b'a' => {
                let item = m.pop_top(1)?;
                m.append(item)?;
            }
            b'e' | 0x90 => {
                let items = m.pop_mark()?;
                m.append(items)?;
            }
            0x8f => m.push(Value::Set(Vec::new()))?,
            0x91 => {
                let (items, inner) = m.pop_mark()?;
                m.push_container(Value::Set(items), inner)?;
            }
            b'}' => m.push(Value::Dict(Vec::new()))?,
            b'd' => {
                let items = m.pop_mark()?;
                m.push(Value::Dict(Vec::new()))?;
                m.set_items(items)?;
            }
            b's' => {
                let pair = m.pop_top(2)?;
                m.set_items(pair)?;
            }
            b'u' => {
                let items = m.pop_mark()?;
                m.set_items(items)?;
            }
            b'g' => {
                let line = r.line()?;
                let idx = line.trim().parse().map_err(|_| format!("bad GET {line:?}"))?;
                m.memo_get(idx)?;
            }
            b'h' => {
                m.memo_get(r.u8()? as u32)?;
            }
            b'j' => {
                m.memo_get(r.u32()?)?;
            }
            b'p' => {
                let line = r.line()?;
                m.memo_put(line.trim().parse().map_err(|_| format!("bad PUT {line:?}"))?)?;
            }
            b'q' => {
                let i = r.u8()? as u32;
                m.memo_put(i)?;
            }
            b'r' => {
                let i = r.u32()?;
                m.memo_put(i)?;
            }
            0x94 => {
                let i = m.memo.len() as u32;
                m.memo_put(i)?;
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                m.push(Value::Global(resolve_global(&module, &name).map_err(unexpected)?))?;
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                    return Err("STACK_GLOBAL without strings".into());
                };
                m.push(Value::Global(resolve_global(module, name).map_err(unexpected)?))?;
            }
            b'R' | 0x81 => {
                let (args, inner) = m.pop_entry()?;
                let callable = m.pop()?;
                m.push_container(reduce(callable, args)?, inner)?;
            }
            0x92 => {
                let _kwargs = m.pop()?;
                let (args, inner) = m.pop_entry()?;
                let callable = m.pop()?;
                m.push_container(reduce(callable, args)?, inner)?;
            }
            b'b' => {
                // BUILD sets state on the object below; plain values keep none we need
                // (an OrderedDict's `_metadata`, a parameter's hooks).
                m.pop()?;
            }
            b'Q' => {
                let pid = m.pop()?;
                m.push(persistent_load(pid)?)?;
            }
            b'P' => return Err("text persistent ids are not used by torch.save".into()),
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {at}")),
        }
    }
}

fn unexpected(global: String) -> String {
    format!(
        "the pickle names the global `{global}`, which a plain state_dict never contains; \
         this loader never runs pickled code, so re-save only the weights with \
         torch.save(model.state_dict(), path)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_ordered_dict_of_ints() {
        // pickle.dumps(OrderedDict(a=1, b=300), protocol=2)
        let bytes = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aq\x02K\x01X\x01\x00\x00\x00bq\x03M,\x01u.";
        let v = unpickle(bytes).unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![(Value::Str("a".into()), Value::Int(1)), (Value::Str("b".into()), Value::Int(300))])
        );
    }

    #[test]
    fn refuses_unexpected_globals() {
        let bytes = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.";
        let err = unpickle(bytes).unwrap_err();
        assert!(err.contains("`os.system`"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        for n in [MAX_DEPTH as usize + 2, 300_000] {
            // ((((...)))) as tuples, and [[[[...]]]] as lists appended into lists.
            let tuples = [b"\x80\x02".to_vec(), b"(".repeat(n), b"t".repeat(n), b".".to_vec()].concat();
            let lists = [b"\x80\x02".to_vec(), b"]".repeat(n), b"a".repeat(n - 1), b".".to_vec()].concat();
            for bytes in [tuples, lists] {
                // Refused by depth, or (300,000 marks) by the stack's size before any nesting.
                let err = unpickle(&bytes).unwrap_err();
                assert!(err.contains("levels deep") || err.contains("on its stack at once"), "{err}");
            }
        }
        let shallow = [b"\x80\x02".to_vec(), b"(".repeat(50), b"t".repeat(50), b".".to_vec()].concat();
        assert!(unpickle(&shallow).is_ok());
    }

    #[test]
    fn a_pickle_that_multiplies_its_objects_is_refused() {
        // x = []; then 64 times x = (x, x) through the memo: 2^64 values if copied blindly.
        let mut bytes = b"\x80\x02]q\x00".to_vec();
        for _ in 0..64 {
            bytes.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        bytes.push(b'.');
        let err = unpickle(&bytes).unwrap_err();
        assert!(err.contains(&format!("more than {MAX_VALUES} values")), "{err}");
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let err = unpickle(b"\x80\x02X\x10\x00\x00\x00ab").unwrap_err();
        assert!(err.contains("ends early"), "{err}");
    }
}
